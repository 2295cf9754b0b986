//! Issue 13: the local CA on every LAN device (export, the install page, no
//! private key from a static route) and no silent ignoring of a seed's
//! configuration (TinyChat/uvicorn settings and flags).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{BIN, Wssd, http_get, run_bounded};

/// `wssd cert ca init` into `state`.
fn init_ca(state: &Path) {
    let out = run_bounded(
        Command::new(BIN)
            .args(["cert", "ca", "init", "--state-dir"])
            .arg(state),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn static_route_serves_the_ca_but_never_its_key() {
    let state = tempfile::tempdir().unwrap();
    init_ca(state.path());
    let ca_dir = state.path().join("local-ca");
    // A key under an innocent name is refused too: the check is by content.
    std::fs::copy(ca_dir.join("ca-key.pem"), ca_dir.join("notes.txt")).unwrap();
    let server = Wssd::builder()
        .plain_only()
        .arg("--route")
        .arg(format!("/state=static:{}", ca_dir.display()))
        .spawn()
        .await;
    let addr = server.http_addr();
    let get = |path: &'static str| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        http_get(tcp, "localhost", path, &[]).await
    };
    let r = get("/state/ca.pem").await;
    assert_eq!(r.status, 200);
    assert!(r.body_text().starts_with("-----BEGIN CERTIFICATE-----"));
    for path in [
        "/state/ca-key.pem",
        "/state/notes.txt",
        "/state/leaf/key.pem",
    ] {
        let r = get(path).await;
        if path.contains("leaf") {
            // No leaf without --tls local-ca: a plain 404.
            assert_eq!(r.status, 404, "{path}");
            continue;
        }
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.body_text().contains("PRIVATE KEY"), "{path}");
    }
    // Logged once per file per interval, not per request.
    let _ = get("/state/ca-key.pem").await;
    server
        .wait_for_log("static route refused a private key")
        .await;
    let log = server.stderr();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused a private key") && l.contains("ca-key.pem"))
        .count();
    assert_eq!(lines, 1, "{log}");
    assert_eq!(server.metric("wssd_private_keys_refused_total").await, 3.0);
}

fn sha256_colon(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn wssd(args: &[&str]) -> std::process::Output {
    run_bounded(Command::new(BIN).args(args), Duration::from_secs(20))
}

#[test]
fn ca_export_pem_and_der_public_part_only() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    // No CA yet: says how to make one, exports nothing.
    let out = wssd(&["cert", "ca", "export", "--state-dir", s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wssd cert ca init"), "{err}");
    init_ca(state.path());
    let stored = std::fs::read_to_string(state.path().join("local-ca/ca.pem")).unwrap();

    let out = wssd(&["cert", "ca", "export", "--state-dir", s]);
    assert!(out.status.success(), "{out:?}");
    let pem = String::from_utf8(out.stdout).unwrap();
    assert_eq!(pem.trim_end(), stored.trim_end());
    assert!(!pem.contains("PRIVATE"));

    let file = state.path().join("exported.crt");
    let out = wssd(&[
        "cert",
        "ca",
        "export",
        "--der",
        "--out",
        file.to_str().unwrap(),
        "--state-dir",
        s,
    ]);
    assert!(out.status.success(), "{out:?}");
    let der = std::fs::read(&file).unwrap();
    assert_eq!(der, pem_to_der(&stored));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(cert.is_ca());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&sha256_colon(&der)), "{said}");
    assert!(said.contains("no key"), "{said}");

    // DER is binary: never to a terminal or pipe by surprise.
    let out = wssd(&["cert", "ca", "export", "--der", "--state-dir", s]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
}

#[test]
fn ca_page_needs_local_ca() {
    let (out, _state) = Wssd::builder()
        .plain_only()
        .args(["--route", "/ca=ca"])
        .run_to_exit();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route /ca: kind `ca`") && err.contains("needs --tls local-ca"),
        "{err}"
    );
}

#[tokio::test]
async fn ca_page_on_plain_and_tls_listeners() {
    let state = tempfile::tempdir().unwrap();
    let server = Wssd::builder()
        .with_http()
        .state_dir(state.path())
        .args([
            "--tls",
            "local-ca",
            "--route",
            "/ca=ca",
            "--route",
            "/ws/echo=echo",
        ])
        .spawn()
        .await;
    let ca_file = state.path().join("local-ca/ca.pem");
    let der = pem_to_der(&std::fs::read_to_string(&ca_file).unwrap());
    let fp = sha256_colon(&der);
    // Printed at start: the page's URL, the fingerprint and a QR code.
    let http_port = server.http_addr().port();
    server.wait_for_log("local CA install page: http://").await;
    let log = server.stderr();
    assert!(log.contains(&format!(":{http_port}/ca")), "{log}");
    assert!(log.contains(&fp), "{log}");
    assert!(
        log.contains('\u{2584}') || log.contains('\u{2580}'),
        "{log}"
    );
    assert!(log.contains("not trusted on this machine yet"), "{log}");

    // Plain HTTP: the phone does not trust the CA yet.
    let addr = server.http_addr();
    let get = |path: &'static str| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        http_get(tcp, "192.168.1.20:8080", path, &[]).await
    };
    let page = get("/ca").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.body_text();
    assert!(html.contains(&fp), "fingerprint on the page");
    for needle in [
        "Android",
        "iPhone",
        "Windows",
        "macOS",
        "Firefox",
        "/ca/ca.crt",
        "/ca/ca.pem",
        "/ca/wssd-local-ca.mobileconfig",
        "<svg",
        "http://192.168.1.20:8080/ca",
        "width=device-width",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert!(!html.contains("PRIVATE KEY"));
    let crt = get("/ca/ca.crt").await;
    assert_eq!(crt.status, 200);
    assert_eq!(crt.body, der);
    assert_eq!(get("/ca/ca.pem").await.body_text().trim_end(), {
        std::fs::read_to_string(&ca_file)
            .unwrap()
            .trim_end()
            .to_string()
    });
    let profile = get("/ca/wssd-local-ca.mobileconfig").await;
    assert_eq!(
        profile.header("content-type"),
        Some("application/x-apple-aspen-config")
    );
    assert_eq!(get("/ca/ca-key.pem").await.status, 404);

    // Over TLS, verified against the same CA.
    let tls = crate::harness::client_tls_trusting(&ca_file);
    let stream = crate::harness::tls_connect(server.tls_addr(), &tls).await;
    let port = server.tls_addr().port();
    let r = http_get(stream, &format!("localhost:{port}"), "/ca", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body_text()
            .contains(&format!("https://localhost:{port}/ca")),
        "the QR and URL follow the scheme and Host"
    );
    // A hostile Host header is not echoed into the page.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = http_get(tcp, "x\"><script>alert(1)</script>", "/ca", &[]).await;
    assert!(!r.body_text().contains("<script>"));
}

#[tokio::test]
async fn tinychat_dotenv_gets_the_wssd_equivalents() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join(".env"),
        "HOST=0.0.0.0\nPORT=8765\nUSE_SSL=true\nSSL_CERT_PATH=/etc/letsencrypt/live/chat/fullchain.pem\nSSL_KEY_PATH=/etc/letsencrypt/live/chat/privkey.pem\nMOD_PASSWORD=hunter2\n",
    )
    .unwrap();
    let server = Wssd::builder().plain_only().cwd(work.path()).spawn().await;
    server.wait_for_log("MOD_PASSWORD in .env").await;
    let log = server.stderr();
    for (key, wssd) in [
        ("HOST", "--listen HOST:PORT"),
        ("PORT", "--listen HOST:PORT"),
        ("USE_SSL", "--tls off"),
        ("SSL_CERT_PATH", "--cert FILE"),
        ("SSL_KEY_PATH", "--key FILE"),
        ("MOD_PASSWORD", "WSSD_MOD_PASSWORD"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{key} in .env is not read by wssd")))
            .unwrap_or_else(|| panic!("no hint for {key}:\n{log}"));
        assert!(line.contains("WARN") && line.contains(wssd), "{line}");
    }
    assert!(!log.contains("hunter2"), "values are never logged");
}

#[tokio::test]
async fn host_and_port_alone_in_the_environment_are_not_a_seed() {
    let server = Wssd::builder()
        .plain_only()
        .env("HOST", "0.0.0.0")
        .env("PORT", "8000")
        .spawn()
        .await;
    assert!(!server.stderr().contains("not read by wssd"));
    let server = Wssd::builder()
        .plain_only()
        .env("PORT", "8000")
        .env("SSL_CERTFILE", "cert.pem")
        .spawn()
        .await;
    server.wait_for_log("SSL_CERTFILE in the environment").await;
    assert!(server.stderr().contains("PORT in the environment"));
}

#[test]
fn seed_flags_get_a_did_you_mean() {
    for (flag, equivalent) in [
        ("--port", "--listen HOST:PORT"),
        ("--host", "--listen HOST:PORT"),
        ("--ssl-certfile", "--cert FILE"),
        ("--ssl-keyfile", "--key FILE"),
        ("--generate-self-signed-cert", "--tls self-signed"),
    ] {
        let out = wssd(&[flag, "x"]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("unexpected argument '{flag}'")),
            "clap's own error stays: {err}"
        );
        assert!(
            err.contains(&format!("{flag} is another server's flag; in wssd use"))
                && err.contains(equivalent),
            "{flag}: {err}"
        );
    }
}

/// Whether NSS's certutil is installed (libnss3-tools).
fn certutil(args: &[&str]) -> Option<std::process::Output> {
    let out = Command::new("certutil").args(args).output().ok()?;
    Some(out)
}

#[tokio::test]
async fn startup_trust_hint_follows_the_nss_database() {
    if certutil(&["-H"]).is_none() {
        eprintln!("skipped: certutil missing (apt-get install libnss3-tools)");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    init_ca(state.path());
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    // Not in this HOME's NSS database (none at all): the hint says install.
    let server = Wssd::builder()
        .state_dir(state.path())
        .env("HOME", home_s)
        .args(["--tls", "local-ca"])
        .spawn()
        .await;
    server
        .wait_for_log("wssd cert ca install --state-dir")
        .await;
    assert!(
        server.stderr().contains("local CA is not trusted"),
        "{}",
        server.stderr()
    );
    drop(server);

    // Added to the NSS database by hand, under the nickname install uses.
    let ca = state.path().join("local-ca/ca.pem");
    let der = pem_to_der(&std::fs::read_to_string(&ca).unwrap());
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let nickname = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap()
        .to_string();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_spec = format!("sql:{}", db.display());
    let out = certutil(&["-N", "-d", &db_spec, "--empty-password"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = certutil(&[
        "-A",
        "-d",
        &db_spec,
        "-n",
        &nickname,
        "-t",
        "C,,",
        "-i",
        ca.to_str().unwrap(),
    ])
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let server = Wssd::builder()
        .state_dir(state.path())
        .env("HOME", home_s)
        .args(["--tls", "local-ca"])
        .spawn()
        .await;
    server.wait_for_log("the local CA is").await;
    let log = server.stderr();
    let system_has_it =
        std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").is_ok_and(|b| {
            b.contains(
                std::fs::read_to_string(&ca)
                    .unwrap()
                    .lines()
                    .nth(1)
                    .unwrap(),
            )
        });
    if system_has_it {
        assert!(
            log.contains("the local CA is trusted on this machine"),
            "{log}"
        );
    } else {
        assert!(
            log.contains("in Chromium's NSS database but not in the system store"),
            "{log}"
        );
    }
    assert!(!log.contains("local CA is not trusted"), "{log}");
}
