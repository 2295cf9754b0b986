//! `--tls acme` against Debian's `pebble` test CA, with `pebble-challtestsrv`
//! as its DNS server (every name resolves to 127.0.0.1), all on loopback:
//! issuance through HTTP-01 and TLS-ALPN-01 (and falling back from one to the
//! other), the served chain verified against Pebble's issuing root, restart
//! reusing the stored certificate without an order, renewal of short-lived
//! certificates, and a CA outage during renewal that leaves serving alone.
//!
//! Pebble's validation ports are wssd's listeners, so each test starts its own
//! Pebble with its own ports. Skipped (with a message) when `pebble` is not
//! installed, unless `CI` is set: then it fails (scripts/install-test-deps
//! installs it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{Wssd, free_port, http_get, try_tls_connect};

const NAME: &str = "wssd.test";

/// A child process killed (by PID) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
}

/// Whether the Pebble binaries are there; skips (or fails under CI) otherwise.
fn pebble_installed(test: &str) -> bool {
    if on_path("pebble") && on_path("pebble-challtestsrv") {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: `pebble` and `pebble-challtestsrv` are not installed and CI is set; run scripts/install-test-deps (Debian package pebble)"
        );
    }
    eprintln!(
        "SKIPPED {test}: `pebble`/`pebble-challtestsrv` not installed (Debian: apt-get install pebble, or scripts/install-test-deps)"
    );
    false
}

async fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "{what} not listening on {port}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pebble, its DNS server, and the ports wssd must use.
struct Ca {
    dir: TempDir,
    /// Pebble's own HTTPS certificate (what `--acme-ca-root` trusts).
    api_cert: PathBuf,
    acme_port: u16,
    mgmt_port: u16,
    dns_port: u16,
    /// wssd's plain listener: Pebble's HTTP-01 port.
    http_port: u16,
    /// wssd's TLS listener: Pebble's TLS-ALPN-01 port.
    tls_port: u16,
    /// Where Pebble validates TLS-ALPN-01 (normally `tls_port`).
    alpn_port: u16,
    /// Certificate lifetime in seconds (None: Pebble's default, 5 years).
    validity: Option<u64>,
    pebble: Option<Proc>,
    _dns: Proc,
}

impl Ca {
    async fn start(validity: Option<u64>) -> Ca {
        Self::start_with(validity, None).await
    }

    /// `alpn_port`: send TLS-ALPN-01 validation somewhere else (to make it fail).
    async fn start_with(validity: Option<u64>, alpn_port: Option<u16>) -> Ca {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let api_cert = dir.path().join("pebble-api.pem");
        std::fs::write(&api_cert, cert.pem()).expect("write");
        std::fs::write(dir.path().join("pebble-api.key"), key.serialize_pem()).expect("write");

        let dns_port = free_port();
        let dns_mgmt = free_port();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pebble-challtestsrv");
        let dns = Proc(dns);
        let tls_port = free_port();
        let mut ca = Ca {
            api_cert,
            acme_port: free_port(),
            mgmt_port: free_port(),
            dns_port,
            http_port: free_port(),
            tls_port,
            alpn_port: alpn_port.unwrap_or(tls_port),
            validity,
            pebble: None,
            _dns: dns,
            dir,
        };
        wait_port(dns_mgmt, "pebble-challtestsrv").await;
        ca.start_pebble().await;
        ca
    }

    async fn start_pebble(&mut self) {
        let mut config = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{}", self.acme_port),
            "managementListenAddress": format!("127.0.0.1:{}", self.mgmt_port),
            "certificate": self.api_cert,
            "privateKey": self.dir.path().join("pebble-api.key"),
            "httpPort": self.http_port,
            "tlsPort": self.alpn_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(v) = self.validity {
            config["certificateValidityPeriod"] = v.into();
        }
        let path = self.dir.path().join("pebble.json");
        std::fs::write(&path, serde_json::json!({ "pebble": config }).to_string()).expect("write");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pebble");
        self.pebble = Some(Proc(child));
        wait_port(self.acme_port, "pebble").await;
        wait_port(self.mgmt_port, "pebble management").await;
    }

    /// Stops Pebble (the DNS server stays).
    fn stop_pebble(&mut self) {
        self.pebble = None;
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The root Pebble issues under (new at every Pebble start).
    async fn issuing_root(&self) -> Arc<rustls::ClientConfig> {
        let api = client_trusting(
            CertificateDer::pem_file_iter(&self.api_cert)
                .expect("read")
                .map(|c| c.expect("pem"))
                .collect(),
        );
        let tcp = TcpStream::connect(("127.0.0.1", self.mgmt_port))
            .await
            .expect("connect to pebble management");
        let tls = TlsConnector::from(api)
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("TLS to pebble management");
        let r = http_get(tls, "127.0.0.1", "/roots/0", &[]).await;
        assert_eq!(r.status, 200, "GET /roots/0: {}", r.body_text());
        let roots = CertificateDer::pem_slice_iter(&r.body)
            .map(|c| c.expect("root pem"))
            .collect();
        client_trusting(roots)
    }
}

fn client_trusting(certs: Vec<CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Starts `wssd --tls acme` through the harness on the CA's ports with
/// `state`, and waits for `/readyz`.
async fn start_server(ca: &Ca, state: &Path, challenge: &str) -> Wssd {
    Wssd::builder()
        .state_dir(state)
        .tls_port(ca.tls_port)
        .http_port(ca.http_port)
        .args(["--tls", "acme", "--hostname", NAME])
        .args(["--acme-directory", &ca.directory()])
        .args(["--acme-ca-root", &ca.api_cert.display().to_string()])
        .args(["--acme-challenge", challenge])
        .args(["--acme-email", "ops@wssd.test"])
        .spawn()
        .await
}

/// What the ACME tests ask of a running server.
trait AcmeServer {
    /// The serial of the certificate served for SNI wssd.test, if it
    /// verifies against `roots`.
    async fn verified_serial(&self, roots: &Arc<rustls::ClientConfig>) -> Result<String, String>;
    /// Polls until the served certificate verifies against `roots` (and is
    /// not `old`); returns its serial.
    async fn wait_valid(
        &self,
        roots: &Arc<rustls::ClientConfig>,
        old: Option<&str>,
        limit: Duration,
    ) -> String;
    async fn ready(&self) -> bool;
    /// SIGTERM and wait for the exit.
    fn stop(&mut self);
}

impl AcmeServer for Wssd {
    async fn verified_serial(&self, roots: &Arc<rustls::ClientConfig>) -> Result<String, String> {
        let tls = try_tls_connect(self.tls_addr(), roots, NAME)
            .await
            .map_err(|e| e.to_string())?;
        let chain = tls.get_ref().1.peer_certificates().ok_or("no chain")?;
        Ok(serial_of(&chain[0]))
    }

    async fn wait_valid(
        &self,
        roots: &Arc<rustls::ClientConfig>,
        old: Option<&str>,
        limit: Duration,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.verified_serial(roots).await {
                Ok(serial) if old != Some(serial.as_str()) => return serial,
                Ok(serial) => format!("still serving serial {serial}"),
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "no valid ACME certificate within {limit:?} ({last}); stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn ready(&self) -> bool {
        self.admin_get("/readyz").await.status == 200
    }

    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(10));
    }
}

fn serial_of(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
    cert.raw_serial_as_string()
}

/// The stored files: `<state>/acme/<directory>/{account.json, wssd.test/cert.pem, key.pem}`.
fn stored_files(state: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let acme = state.join("acme");
    let dir = std::fs::read_dir(&acme)
        .expect("acme folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("directory folder");
    (
        dir.join("account.json"),
        dir.join(NAME).join("cert.pem"),
        dir.join(NAME).join("key.pem"),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Issues through `challenge`, checks the log and the stored files; returns
/// the server, the CA's roots and the serial.
async fn issue(
    ca: &Ca,
    state: &Path,
    challenge: &str,
) -> (Wssd, Arc<rustls::ClientConfig>, String) {
    let roots = ca.issuing_root().await;
    let server = start_server(ca, state, challenge).await;
    let ready = server.started.elapsed();
    let serial = server
        .wait_valid(&roots, None, Duration::from_secs(20))
        .await;
    let valid = server.started.elapsed();
    eprintln!(
        "ACME {challenge}: process start -> ready {} ms, -> serving a certificate that verifies against Pebble's root {} ms",
        ready.as_millis(),
        valid.as_millis()
    );
    // The install is logged just after the new certificate is served: wait
    // for that line, then read the whole log.
    server
        .wait_for_log("ACME: certificate installed for wssd.test")
        .await;
    let log = server.stderr();
    assert!(log.contains("TEMPORARY self-signed"), "{log}");
    for step in [
        "ACME: account created",
        "ACME: order placed for wssd.test",
        "ACME: wssd.test validated",
        "ACME: order finalized",
        "ACME: certificate installed for wssd.test",
    ] {
        assert!(log.contains(step), "no `{step}`: {log}");
    }
    let (account, cert, key) = stored_files(state);
    assert_eq!(mode(&account), 0o600, "account.json mode");
    assert_eq!(mode(&key), 0o600, "key.pem mode");
    let stored = CertificateDer::pem_file_iter(&cert)
        .expect("stored chain")
        .next()
        .expect("one certificate")
        .expect("pem");
    assert_eq!(serial_of(&stored), serial, "served = stored");
    (server, roots, serial)
}

#[tokio::test]
async fn acme_http01_issuance() {
    if !pebble_installed("acme_http01_issuance") {
        return;
    }
    let ca = Ca::start(None).await;
    let state = tempfile::tempdir().expect("tempdir");
    let (server, _, _) = issue(&ca, state.path(), "http-01").await;
    let log = server.stderr();
    assert!(log.contains("answering http-01 for wssd.test"), "{log}");
    assert!(!log.contains("answering tls-alpn-01"), "{log}");
}

#[tokio::test]
async fn acme_tls_alpn01_issuance() {
    if !pebble_installed("acme_tls_alpn01_issuance") {
        return;
    }
    let ca = Ca::start(None).await;
    let state = tempfile::tempdir().expect("tempdir");
    let (server, _, _) = issue(&ca, state.path(), "tls-alpn-01").await;
    let log = server.stderr();
    assert!(log.contains("answering tls-alpn-01 for wssd.test"), "{log}");
    assert!(!log.contains("answering http-01"), "{log}");
}

#[tokio::test]
async fn acme_falls_back_to_the_other_challenge() {
    if !pebble_installed("acme_falls_back_to_the_other_challenge") {
        return;
    }
    // Pebble validates TLS-ALPN-01 on a port nobody listens on.
    let ca = Ca::start_with(None, Some(free_port())).await;
    let state = tempfile::tempdir().expect("tempdir");
    let (server, _, _) = issue(&ca, state.path(), "tls-alpn-01").await;
    let log = server.stderr();
    assert!(log.contains("tls-alpn-01 validation failed"), "{log}");
    assert!(log.contains("trying http-01 instead"), "{log}");
    assert!(log.contains("answering http-01 for wssd.test"), "{log}");
}

#[tokio::test]
async fn acme_restart_reuses_the_stored_certificate() {
    if !pebble_installed("acme_restart_reuses_the_stored_certificate") {
        return;
    }
    let ca = Ca::start(None).await;
    let state = tempfile::tempdir().expect("tempdir");
    let (mut first, roots, serial) = issue(&ca, state.path(), "http-01").await;
    first.stop();

    let second = start_server(&ca, state.path(), "http-01").await;
    // Valid from the first handshake after readiness: no temporary certificate.
    assert_eq!(
        second.verified_serial(&roots).await,
        Ok(serial.clone()),
        "stderr:\n{}",
        second.stderr()
    );
    eprintln!(
        "ACME restart: process start -> serving the stored certificate {} ms",
        second.started.elapsed().as_millis()
    );
    // Let the background task look at the CA, then check it ordered nothing.
    second
        .wait_for_log_within("ACME: next renewal at", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = second.stderr();
    assert!(
        log.contains("ACME: reusing the stored certificate"),
        "{log}"
    );
    assert!(log.contains("ACME: using the account stored in"), "{log}");
    assert!(!log.contains("ACME: order placed"), "{log}");
    assert!(!log.contains("ACME: account created"), "{log}");
    assert!(!log.contains("TEMPORARY"), "{log}");
    assert_eq!(second.verified_serial(&roots).await, Ok(serial));
}

#[tokio::test]
async fn acme_renews_a_short_lived_certificate() {
    if !pebble_installed("acme_renews_a_short_lived_certificate") {
        return;
    }
    // 9 s certificates: renewal is due 6 s after issuance.
    let ca = Ca::start(Some(9)).await;
    let state = tempfile::tempdir().expect("tempdir");
    let (server, roots, first) = issue(&ca, state.path(), "tls-alpn-01").await;
    let issued = Instant::now();
    let second = server
        .wait_valid(&roots, Some(&first), Duration::from_secs(15))
        .await;
    let after = issued.elapsed();
    assert!(
        after >= Duration::from_secs(4),
        "renewed after {after:?}, before a third of the lifetime was left"
    );
    // The install is logged just after the new certificate is served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .stderr()
        .matches("ACME: certificate installed")
        .count()
        < 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = server.stderr();
    assert!(
        log.contains("renewal due: a third of the lifetime left"),
        "{log}"
    );
    assert_eq!(
        log.matches("ACME: certificate installed").count(),
        2,
        "{log}"
    );
    // The stored certificate is the new one.
    let (_, cert, _) = stored_files(state.path());
    let stored = CertificateDer::pem_file_iter(&cert)
        .expect("chain")
        .next()
        .expect("cert")
        .expect("pem");
    assert_eq!(serial_of(&stored), second);
}

#[tokio::test]
async fn acme_ca_outage_during_renewal_keeps_serving() {
    if !pebble_installed("acme_ca_outage_during_renewal_keeps_serving") {
        return;
    }
    let mut ca = Ca::start(Some(12)).await;
    let state = tempfile::tempdir().expect("tempdir");
    let (server, roots, serial) = issue(&ca, state.path(), "http-01").await;
    ca.stop_pebble();

    // Renewal is due 8 s after issuance and fails: the CA is gone.
    server
        .wait_for_log_within(
            "certificate reload failed, keeping the previous certificate",
            Duration::from_secs(15),
        )
        .await;
    let log = server.stderr();
    assert!(log.contains("renewal due"), "{log}");
    assert!(log.contains("next in 2 s"), "{log}");
    assert_eq!(
        server.verified_serial(&roots).await,
        Ok(serial.clone()),
        "serving changed during the outage"
    );
    assert!(server.ready().await, "not ready during the outage");

    // The CA comes back (a fresh Pebble: new root, the account is unknown):
    // the next attempt creates an account and renews.
    ca.start_pebble().await;
    let new_roots = ca.issuing_root().await;
    let renewed = server
        .wait_valid(&new_roots, Some(&serial), Duration::from_secs(15))
        .await;
    assert_ne!(renewed, serial);
    let log = server.stderr();
    assert!(
        log.contains("next in 4 s") || log.contains("rejected the stored account"),
        "{log}"
    );
    assert!(log.matches("ACME: account created").count() >= 2, "{log}");
}
