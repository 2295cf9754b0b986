//! Where the identity goes (issue 12): with a verified client certificate
//! (the identity the edge has before any route `auth`), proxy upstreams get
//! `X-Wssd-Identity` on upgrades and plain HTTP, exec programs get
//! `REMOTE_USER`/`AUTH_TYPE`, and session log lines carry `identity=`.
//! A client's own `X-Wssd-Identity` is removed, identity or not, and
//! nobody but wssd sets `REMOTE_USER`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Wssd, http_get, read_request_head, try_tls_connect};
use crate::test_ca::{Pair, TestCa};

/// The client CA (written to `dir/client-ca.pem`) and two client
/// certificates it signed: `alice` and a non-ASCII `José Díaz`.
struct Clients {
    ca_file: String,
    alice: Pair,
    jose: Pair,
}

fn clients(dir: &Path) -> Clients {
    let ca = TestCa::new("identity test client CA");
    let ca_file = dir.join("client-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    Clients {
        ca_file: ca_file.to_string_lossy().into_owned(),
        alice: ca.client("alice", 11),
        jose: ca.client("José Díaz", 12),
    }
}

/// A TLS client trusting `server`'s self-signed certificate, presenting
/// `cert` when given.
fn tls_config(server: &Wssd, cert: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server.cert_path()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap();
            builder
                .with_client_auth_cert(vec![CertificateDer::from(pair.der.clone())], key)
                .unwrap()
        }
    })
}

/// Forged identity headers a client might send: several, in mixed case.
const FORGED: &[(&str, &str)] = &[
    ("X-Wssd-Identity", "mallory"),
    ("x-wssd-identity", "eve"),
    ("X-WSSD-IDENTITY-SOURCE", "jwt"),
];

/// The `x-wssd-identity*` lines of a request head, lower-cased names.
fn identity_lines(head: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().to_ascii_lowercase().starts_with("x-wssd-identity"))
        .map(|(k, v)| format!("{}: {}", k.trim().to_ascii_lowercase(), v.trim()))
        .collect()
}

/// An upstream that answers HTTP requests with their head as the body,
/// and WebSocket upgrades with a 101 then the head as one text message.
async fn recording_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_request_head(&mut s).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let key = text.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                });
                let Some(key) = key else {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        head.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.write_all(&head).await;
                    return;
                };
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    s,
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                let _ = ws.send(Message::text(text)).await;
                // Keep the socket until the client goes.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    port
}

/// The request head the upstream saw for a WebSocket through `path`.
async fn upgrade_head(server: &Wssd, cert: Option<&Pair>, path: &str) -> String {
    let tls = try_tls_connect(server.tls_addr(), &tls_config(server, cert), "localhost")
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}{path}", server.tls_addr().port());
    let mut request = url.into_client_request().unwrap();
    for (k, v) in FORGED {
        request.headers_mut().append(*k, hyper_value(v));
    }
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket handshake");
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no message within 10 s")
        .expect("open")
        .expect("read");
    first.into_text().unwrap().to_string()
}

fn hyper_value(v: &str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_str(v).unwrap()
}

/// The request head the upstream saw for a plain GET through `path`.
async fn http_head(server: &Wssd, cert: Option<&Pair>, path: &str) -> String {
    let tls = try_tls_connect(server.tls_addr(), &tls_config(server, cert), "localhost")
        .await
        .expect("TLS handshake");
    let r = http_get(tls, "localhost", path, FORGED).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    r.body_text()
}

#[tokio::test]
async fn proxy_sends_the_identity_and_never_the_clients_own() {
    let dir = tempfile::tempdir().unwrap();
    let c = clients(dir.path());
    let up = recording_upstream().await;
    let server = Wssd::builder()
        .args(["--client-ca", &c.ca_file, "--client-auth", "optional"])
        .args(["--route", &format!("/ws=proxy:ws://127.0.0.1:{up}")])
        .args(["--route", &format!("/web=proxy:http://127.0.0.1:{up}")])
        .args(["--log-level", "debug"])
        .spawn()
        .await;

    let alice = [
        "x-wssd-identity: CN=alice".to_string(),
        "x-wssd-identity-source: client-cert".to_string(),
    ];
    assert_eq!(
        identity_lines(&upgrade_head(&server, Some(&c.alice), "/ws/a").await),
        alice,
        "WebSocket with a client certificate"
    );
    assert_eq!(
        identity_lines(&http_head(&server, Some(&c.alice), "/web/a").await),
        alice,
        "plain HTTP with a client certificate"
    );
    // No identity: every forged copy removed, nothing added.
    let none: Vec<String> = Vec::new();
    assert_eq!(
        identity_lines(&upgrade_head(&server, None, "/ws/b").await),
        none
    );
    assert_eq!(
        identity_lines(&http_head(&server, None, "/web/b").await),
        none
    );
    // Beyond visible ASCII: percent-encoded UTF-8, one header line.
    assert_eq!(
        identity_lines(&http_head(&server, Some(&c.jose), "/web/c").await),
        [
            "x-wssd-identity: CN=Jos%C3%A9%20D%C3%ADaz".to_string(),
            "x-wssd-identity-source: client-cert".to_string(),
        ]
    );
    // The proxied session's log lines carry the identity.
    server.wait_for_log("identity=\"CN=alice\"").await;
    // Every request above carried forged copies: each one counted.
    assert_eq!(
        server.metric("wssd_forged_identity_headers_total").await,
        5.0
    );
}

/// `VAR=value` lines of an `env`-printing program on `path`.
async fn program_env(
    server: &Wssd,
    cert: Option<&Pair>,
    path: &str,
    headers: &[(&'static str, &str)],
) -> BTreeMap<String, String> {
    let tls = try_tls_connect(server.tls_addr(), &tls_config(server, cert), "localhost")
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}{path}", server.tls_addr().port());
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().append(*k, hyper_value(v));
    }
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket handshake");
    let mut env = BTreeMap::new();
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(line) => {
                    if let Some((k, v)) = line.split_once('=') {
                        env.insert(k.to_string(), v.to_string());
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the program's output within 10 s");
    env
}

#[tokio::test]
async fn exec_gets_remote_user_only_with_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let c = clients(dir.path());
    let env_sh = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exec/env.sh");
    let config = dir.path().join("wssd.toml");
    std::fs::write(
        &config,
        format!(
            "[[route]]\npath = \"/env\"\nkind = \"exec\"\ncommand = [\"{}\"]\n\
             pass_env = [\"WSSD_TEST_PASSED\"]\n",
            env_sh.display()
        ),
    )
    .unwrap();
    let server = Wssd::builder()
        .args(["--client-ca", &c.ca_file, "--client-auth", "optional"])
        .args(["--config", config.to_str().unwrap()])
        // What an operator's environment holds: never the program's
        // identity.
        .env("REMOTE_USER", "root")
        .env("AUTH_TYPE", "Basic")
        .env("WSSD_TEST_PASSED", "yes")
        .spawn()
        .await;
    let spoof = [("Remote-User", "root"), ("Auth-Type", "Basic")];

    let env = program_env(&server, Some(&c.alice), "/env", &spoof).await;
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("REMOTE_USER"), Some("CN=alice"), "{env:#?}");
    assert_eq!(get("AUTH_TYPE"), Some("TLS"));
    assert_eq!(get("SSL_CLIENT_S_DN"), Some("CN=alice"));
    assert_eq!(get("WSSD_TEST_PASSED"), Some("yes"), "pass_env still works");
    // A client's headers only ever become HTTP_*.
    assert_eq!(get("HTTP_REMOTE_USER"), Some("root"));
    server.wait_for_log("identity=\"CN=alice\"").await;

    let env = program_env(&server, None, "/env", &spoof).await;
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("REMOTE_USER"), None, "{env:#?}");
    assert_eq!(get("AUTH_TYPE"), None, "{env:#?}");
    assert_eq!(get("WSSD_TEST_PASSED"), Some("yes"));

    let env = program_env(&server, Some(&c.jose), "/env", &[]).await;
    assert_eq!(
        env.get("REMOTE_USER").map(String::as_str),
        Some("CN=Jos%C3%A9%20D%C3%ADaz"),
        "{env:#?}"
    );
}

#[test]
fn pass_env_cannot_list_the_identity_variables() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wssd.toml");
    std::fs::write(
        &config,
        "[[route]]\npath = \"/env\"\nkind = \"exec\"\ncommand = \"env\"\n\
         pass_env = [\"LANG\", \"REMOTE_USER\"]\n",
    )
    .unwrap();
    let (out, _state) = Wssd::builder()
        .args(["--config", config.to_str().unwrap()])
        .run_to_exit();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pass_env cannot list REMOTE_USER"),
        "{stderr}"
    );
}
