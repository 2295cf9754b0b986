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
