//! Certificates while serving: PEM files replaced under load (atomic rename,
//! in-place rewrite, symlink swap, a broken pair in between) without
//! touching open connections; several certificates chosen by SNI; client
//! certificates (mTLS); `/readyz` and reload metrics.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Wssd, client_tls_trusting, try_tls_connect, ws_over};
use crate::test_ca::{Pair, TestCa};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The leaf certificate a fresh handshake with SNI `name` gets.
async fn served_leaf(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
) -> Vec<u8> {
    let tls = try_tls_connect(addr, config, name)
        .await
        .expect("handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .expect("a certificate")
}

/// Polls fresh handshakes until they serve `expected` (bounded).
async fn wait_for_leaf(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    expected: &[u8],
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        if served_leaf(addr, config, "localhost").await == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: new handshakes still get the old certificate after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server with `--tls files` on `cert.pem` and `key.pem` in a folder of
/// their own (a leaf of `ca` with `serial`), already serving it, and a
/// client trusting `ca`.
struct FilesServer {
    server: Wssd,
    client: Arc<rustls::ClientConfig>,
    certs: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    first: Pair,
    _ca_dir: tempfile::TempDir,
}

async fn serving_files(ca: &TestCa, serial: u64) -> FilesServer {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    write(&ca_file, &ca.pem());
    let certs = tempfile::tempdir().unwrap();
    let first = ca.leaf(&["localhost"], serial, false);
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    write(&cert, &first.cert_pem);
    write(&key, &first.key_pem);
    let server = Wssd::builder()
        .args(["--tls", "files", "--cert-check-interval", "60"])
        .args(["--cert", cert.to_str().unwrap()])
        .args(["--key", key.to_str().unwrap()])
        .spawn()
        .await;
    let client = client_tls_trusting(&ca_file);
    assert_eq!(
        served_leaf(server.tls_addr(), &client, "localhost").await,
        first.der
    );
    FilesServer {
        server,
        client,
        certs,
        cert,
        key,
        first,
        _ca_dir: ca_dir,
    }
}

/// How a swap puts the new files in place.
#[derive(Debug, Clone, Copy)]
enum Swap {
    AtomicRename,
    InPlace,
    Symlink,
}

/// Kubernetes-style layout: cert.pem -> ..data/cert.pem, ..data -> ..vN.
fn symlink_swap(dir: &Path, n: usize, cert: &str, key: &str) {
    let version = dir.join(format!("..v{n}"));
    std::fs::create_dir(&version).unwrap();
    write(&version.join("cert.pem"), cert);
    write(&version.join("key.pem"), key);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{n}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["cert.pem", "key.pem"] {
        let link = dir.join(f);
        let is_link = std::fs::symlink_metadata(&link)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            let t = dir.join(format!("{f}.lnk"));
            std::os::unix::fs::symlink(format!("..data/{f}"), &t).unwrap();
            std::fs::rename(&t, &link).unwrap();
        }
    }
}

fn place(dir: &Path, how: Swap, n: usize, cert: &str, key: &str) {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let is_link = std::fs::symlink_metadata(&cert_path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    match how {
        Swap::Symlink => symlink_swap(dir, n, cert, key),
        // Once the files are symlinks, writing through them is the in-place case.
        Swap::InPlace => {
            write(&cert_path, cert);
            write(&key_path, key);
        }
        Swap::AtomicRename if is_link => symlink_swap(dir, n, cert, key),
        Swap::AtomicRename => {
            write(&dir.join("cert.pem.new"), cert);
            write(&dir.join("key.pem.new"), key);
            std::fs::rename(dir.join("key.pem.new"), &key_path).unwrap();
            std::fs::rename(dir.join("cert.pem.new"), &cert_path).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_replaced_20_times_under_load() {
    let ca = TestCa::new("reload test CA");
    let FilesServer {
        server,
        client,
        certs,
        cert: cert_path,
        first,
        ..
    } = serving_files(&ca, 1000).await;
    let addr = server.tls_addr();

    // Streaming clients: every message must come back, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for c in 0..4 {
        let tls = try_tls_connect(addr, &client, "localhost").await.unwrap();
        let mut ws = ws_over(tls, &format!("wss://localhost:{}/ws/echo", addr.port())).await;
        let stop = stop.clone();
        let echoed = echoed.clone();
        streams.push(tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("{c}:{next}");
                ws.send(Message::text(text.clone())).await.expect("send");
                loop {
                    match ws.next().await.expect("open").expect("read") {
                        Message::Text(t) => {
                            assert_eq!(t.as_str(), text, "lost or reordered message");
                            break;
                        }
                        Message::Ping(_) | Message::Pong(_) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                next += 1;
                echoed.fetch_add(1, Ordering::Relaxed);
            }
            ws.close(None).await.ok();
            next
        }));
    }

    let mut current = first.der.clone();
    let (mut good, mut broken, mut worst) = (0, 0, Duration::ZERO);
    let methods = [Swap::AtomicRename, Swap::InPlace, Swap::Symlink];
    for i in 0..20usize {
        if i % 4 == 3 {
            // A broken pair: a fresh certificate with somebody else's key.
            let a = ca.leaf(&["localhost"], 5000 + i as u64, false);
            let b = ca.leaf(&["localhost"], 6000 + i as u64, false);
            let label = format!(
                "wssd_certificate_reloads_total{{name=\"{}\",result=\"error\"}}",
                cert_path.display()
            );
            let before = server.metric(&label).await;
            place(
                certs.path(),
                Swap::InPlace,
                100 + i,
                &a.cert_pem,
                &b.key_pem,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.metric(&label).await <= before {
                assert!(Instant::now() < deadline, "broken pair was not noticed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                served_leaf(addr, &client, "localhost").await,
                current,
                "the broken pair must be refused and the old certificate kept"
            );
            broken += 1;
        } else {
            let how = methods[i % 3];
            let next = ca.leaf(&["localhost"], 2000 + i as u64, false);
            place(certs.path(), how, i, &next.cert_pem, &next.key_pem);
            let took =
                wait_for_leaf(addr, &client, &next.der, &format!("swap {i} ({how:?})")).await;
            worst = worst.max(took);
            current = next.der;
            good += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut per_client = Vec::new();
    for s in streams {
        per_client.push(s.await.expect("a streaming client failed"));
    }
    assert!(per_client.iter().all(|n| *n > 0));
    let ok = server
        .metric(&format!(
            "wssd_certificate_reloads_total{{name=\"{}\",result=\"ok\"}}",
            cert_path.display()
        ))
        .await;
    eprintln!(
        "reload under load: {good} good swaps, {broken} broken pairs refused, {} messages echoed \
         on 4 open connections without loss ({per_client:?}), slowest swap seen after {worst:?}, \
         reloads ok={ok}",
        echoed.load(Ordering::Relaxed)
    );
    assert_eq!(good, 15);
    assert!(ok >= 16.0, "successful reloads counted: {ok}");
}

/// A log (or a profiler's output) written beside the certificate must not
/// hold the reload back: only the watched files restart the watcher's
/// debounce. Before, every write in the folder restarted it, so a
/// certificate replaced while another file there was written more often
/// than the debounce was only picked up once those writes stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_change_is_seen_while_another_file_beside_it_is_written() {
    let ca = TestCa::new("busy folder CA");
    let FilesServer {
        server,
        client,
        certs,
        cert,
        key,
        ..
    } = serving_files(&ca, 1).await;
    let addr = server.tls_addr();

    // Another file in the folder, appended to every 40 ms (well inside the
    // watcher's 200 ms debounce) until the test ends.
    let stop = Arc::new(AtomicBool::new(false));
    let lines = Arc::new(AtomicU64::new(0));
    let log = certs.path().join("app.log");
    let writer = {
        let (stop, lines) = (stop.clone(), lines.clone());
        tokio::spawn(async move {
            use std::io::Write;
            let mut f = std::fs::File::create(&log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                writeln!(f, "line {}", lines.fetch_add(1, Ordering::Relaxed)).unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = ca.leaf(&["localhost"], 2, false);
    write(&key.with_extension("new"), &second.key_pem);
    write(&cert.with_extension("new"), &second.cert_pem);
    std::fs::rename(key.with_extension("new"), &key).unwrap();
    std::fs::rename(cert.with_extension("new"), &cert).unwrap();
    let at_swap = lines.load(Ordering::Relaxed);
    let start = Instant::now();
    loop {
        if served_leaf(addr, &client, "localhost").await == second.der {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the new certificate was not served within 4 s while app.log was being written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = lines.load(Ordering::Relaxed) - at_swap;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        written >= 3,
        "app.log was written throughout the reload ({written} lines between the swap and the new certificate)"
    );
}

#[tokio::test]
async fn sighup_reloads_and_metrics_report_status() {
    let ca = TestCa::new("sighup CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    write(&ca_file, &ca.pem());
    let a = ca.leaf(&["localhost"], 1, false);
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    write(&cert, &a.cert_pem);
    write(&key, &a.key_pem);
    let server = Wssd::builder()
        .args([
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .spawn()
        .await;
    let body = server.admin_get("/metrics").await.body_text();
    assert!(
        body.contains("wssd_certificate_last_reload_success{name="),
        "{body}"
    );
    assert!(
        body.contains("wssd_certificate_last_reload_timestamp_seconds"),
        "{body}"
    );
    // Replace by SIGHUP as well (events may also fire; either must work).
    let b = ca.leaf(&["localhost"], 2, false);
    write(&cert, &b.cert_pem);
    write(&key, &b.key_pem);
    server.signal(libc::SIGHUP);
    let client = client_tls_trusting(&ca_file);
    wait_for_leaf(server.tls_addr(), &client, &b.der, "SIGHUP").await;
    server.wait_for_log("certificate reloaded").await;
    assert_eq!(server.admin_get("/readyz").await.status, 200);
}

#[tokio::test]
async fn two_names_on_one_listener_by_sni() {
    let ca = TestCa::new("sni CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    write(&ca_file, &ca.pem());
    let default = ca.leaf(&["localhost"], 1, false);
    let alpha = ca.leaf(&["alpha.test"], 2, false);
    let beta = ca.leaf(&["beta.test", "*.beta.test"], 3, false);
    for (name, pair) in [("d", &default), ("a", &alpha), ("b", &beta)] {
        write(&dir.path().join(format!("{name}.crt")), &pair.cert_pem);
        write(&dir.path().join(format!("{name}.key")), &pair.key_pem);
    }
    let p = |f: &str| dir.path().join(f).display().to_string();
    let config = dir.path().join("wssd.toml");
    write(
        &config,
        &format!(
            "[tls]\nmode = \"files\"\ncert = \"{}\"\nkey = \"{}\"\n\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\nnames = [\"alpha.test\"]\n\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            p("d.crt"),
            p("d.key"),
            p("a.crt"),
            p("a.key"),
            p("b.crt"),
            p("b.key")
        ),
    );
    let server = Wssd::builder()
        .args(["--config", config.to_str().unwrap()])
        .spawn()
        .await;
    let client = client_tls_trusting(&ca_file);
    let addr = server.tls_addr();
    assert_eq!(served_leaf(addr, &client, "alpha.test").await, alpha.der);
    assert_eq!(served_leaf(addr, &client, "beta.test").await, beta.der);
    assert_eq!(served_leaf(addr, &client, "x.beta.test").await, beta.der);
    assert_eq!(served_leaf(addr, &client, "localhost").await, default.der);
    // Unknown name: the default certificate (which then fails verification
    // for that name on a strict client).
    assert!(try_tls_connect(addr, &client, "gamma.test").await.is_err());
    // A WebSocket over an SNI certificate works end to end.
    let tls = try_tls_connect(addr, &client, "alpha.test").await.unwrap();
    let mut ws = ws_over(tls, &format!("wss://alpha.test:{}/ws/echo", addr.port())).await;
    ws.send(Message::text("sni")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("sni"));
}

fn client_config_with_cert(server_ca: &Path, client: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap();
            builder
                .with_client_auth_cert(vec![CertificateDer::from(pair.der.clone())], key)
                .unwrap()
        }
    };
    Arc::new(config)
}

/// Completes a WebSocket echo over a fresh connection, or says why not.
async fn echo_with(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("wss://localhost:{}/ws/echo", addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::text("mtls"))
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(m)) if m == Message::text("mtls") => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn client_certificates_required_and_optional() {
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let stranger_ca = TestCa::new("stranger CA");
    let dir = tempfile::tempdir().unwrap();
    let server_ca_file = dir.path().join("server-ca.pem");
    let client_ca_file = dir.path().join("client-ca.pem");
    write(&server_ca_file, &server_ca.pem());
    write(&client_ca_file, &client_ca.pem());
    let leaf = server_ca.leaf(&["localhost"], 1, false);
    write(&dir.path().join("s.crt"), &leaf.cert_pem);
    write(&dir.path().join("s.key"), &leaf.key_pem);
    let good_client = client_ca.leaf(&["alice"], 7, true);
    let stranger = stranger_ca.leaf(&["mallory"], 8, true);

    for mode in ["required", "optional"] {
        let server = Wssd::builder()
            .args(["--cert", dir.path().join("s.crt").to_str().unwrap()])
            .args(["--key", dir.path().join("s.key").to_str().unwrap()])
            .args(["--client-ca", client_ca_file.to_str().unwrap()])
            .args(["--client-auth", mode, "--log-level", "debug"])
            .spawn()
            .await;
        let addr = server.tls_addr();
        let without = echo_with(addr, &client_config_with_cert(&server_ca_file, None)).await;
        let with_good = echo_with(
            addr,
            &client_config_with_cert(&server_ca_file, Some(&good_client)),
        )
        .await;
        let with_stranger = echo_with(
            addr,
            &client_config_with_cert(&server_ca_file, Some(&stranger)),
        )
        .await;
        assert!(
            with_good.is_ok(),
            "{mode}: CA-signed client refused: {with_good:?}"
        );
        assert!(
            with_stranger.is_err(),
            "{mode}: a certificate from another CA was accepted"
        );
        if mode == "required" {
            assert!(
                without.is_err(),
                "required: a client without certificate got through"
            );
        } else {
            assert!(
                without.is_ok(),
                "optional: a client without certificate was refused: {without:?}"
            );
        }
        // The verified subject is available (logged here; exec gets it too).
        server.wait_for_log("CN=alice").await;
    }
}

#[test]
fn missing_client_ca_is_a_startup_error() {
    let (out, _s) = Wssd::builder()
        .args(["--client-ca", "/nonexistent/ca.pem"])
        .run_to_exit();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--client-ca /nonexistent/ca.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}
