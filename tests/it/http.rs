//! Plain HTTP on the same listeners: the bundled page, folders, 404, and
//! clear errors when a request goes to the wrong kind of route.

use crate::harness::{Wssd, http_get};

#[tokio::test]
async fn bundled_client_and_404_over_https() {
    let server = Wssd::builder().spawn().await;
    let r = http_get(server.tls_connect().await, "localhost", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.body_text().contains("app.js"));
    let r = http_get(server.tls_connect().await, "localhost", "/app.js", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let js = r.body_text();
    assert!(js.contains("/ws/echo") && js.contains("wss:") && js.contains("location.protocol"));
    let r = http_get(server.tls_connect().await, "localhost", "/nope.txt", &[]).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn static_folder_types_no_listing_no_escape() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("sub")).unwrap();
    std::fs::create_dir(site.path().join("withindex")).unwrap();
    std::fs::write(site.path().join("a.css"), "body{}").unwrap();
    std::fs::write(site.path().join("sub/b.json"), "{}").unwrap();
    std::fs::write(site.path().join("withindex/index.html"), "<p>hi</p>").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        site.path().join("link.txt"),
    )
    .unwrap();
    let server = Wssd::builder()
        .plain_only()
        .arg("--route")
        .arg(format!("/site=static:{}", site.path().display()))
        .arg("--route")
        .arg("/ws/echo=echo")
        .spawn()
        .await;
    let addr = server.http_addr();
    let get = |path: &'static str| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        http_get(tcp, "localhost", path, &[]).await
    };
    let r = get("/site/a.css").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.body_text(), "body{}");
    let r = get("/site/sub/b.json").await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(get("/site/sub/").await.status, 404, "no directory listing");
    assert_eq!(get("/site/withindex/").await.body_text(), "<p>hi</p>");
    assert_eq!(get("/site/withindex").await.status, 301);
    assert_eq!(get("/site/../Cargo.toml").await.status, 404);
    // Above the root: refused before routing.
    assert_eq!(get("/site/%2e%2e/%2e%2e/etc/passwd").await.status, 400);
    let r = get("/site/link.txt").await;
    assert_eq!(r.status, 404, "symlink out of the folder is refused");
    assert!(!r.body_text().contains("secret"));
    assert_eq!(get("/other").await.status, 404, "no route for /other");
}

#[tokio::test]
async fn wrong_kind_of_request_gets_a_clear_error() {
    let server = Wssd::builder().spawn().await;
    // Plain GET on a WebSocket route: 426 naming the route.
    let r = http_get(server.tls_connect().await, "localhost", "/ws/echo", &[]).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.body_text().contains("WebSocket endpoint"));
    // Upgrade on a file route: 400 listing the WebSocket routes.
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let r = http_get(
        server.tls_connect().await,
        "localhost",
        "/index.html",
        &upgrade,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body_text().contains("/ws/echo"), "{}", r.body_text());
    // Wrong WebSocket version: 426 with the supported version.
    let mut bad = upgrade;
    bad[2] = ("Sec-WebSocket-Version", "8");
    let r = http_get(server.tls_connect().await, "localhost", "/ws/echo", &bad).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    // A foreign browser Origin is refused.
    let mut foreign = upgrade.to_vec();
    foreign.push(("Origin", "https://evil.example"));
    let r = http_get(
        server.tls_connect().await,
        "localhost",
        "/ws/echo",
        &foreign,
    )
    .await;
    assert_eq!(r.status, 403);
}

/// Sends `request` as is and parses the response head (and whatever body
/// came with it); does not wait for the end of a 101's stream.
async fn exchange<S>(mut stream: S, request: &str) -> crate::harness::HttpResponse
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let r = crate::harness::parse_response(&raw);
                let length: usize = r
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if r.status == 101 || raw.len() >= end + 4 + length {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    crate::harness::parse_response(&raw)
}

fn upgrade_request(path: &str, host: &str, key: &str, origin: Option<&str>) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some(o) = origin {
        r.push_str(&format!("Origin: {o}\r\n"));
    }
    r.push_str("\r\n");
    r
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[tokio::test]
async fn websocket_key_must_be_base64_of_16_bytes() {
    let server = Wssd::builder().plain_only().spawn().await;
    let addr = server.http_addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let send = |key: &'static str| {
        let host = host.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            exchange(tcp, &upgrade_request("/ws/echo", &host, key, None)).await
        }
    };
    assert_eq!(send(KEY).await.status, 101);
    // 24 characters, but not base64 / not 16 bytes.
    for bad in [
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZQAA",
        "dGhlIHNhbXBsZSBub25j=Q==",
    ] {
        let r = send(bad).await;
        assert_eq!(r.status, 400, "key {bad}");
        assert!(r.body_text().contains("base64"), "{}", r.body_text());
    }
}

#[tokio::test]
async fn dns_rebinding_host_refused_on_plain_listeners() {
    let server = Wssd::builder().plain_only().spawn().await;
    let addr = server.http_addr();
    let port = addr.port();
    let send = |host: String, origin: Option<String>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        exchange(
            tcp,
            &upgrade_request("/ws/echo", &host, KEY, origin.as_deref()),
        )
        .await
    };
    // A page on the attacker's name, which now resolves to this listener:
    // same origin as far as the browser knows; the Host gives it away.
    let evil = format!("rebind.attacker.example:{port}");
    let r = send(evil.clone(), Some(format!("http://{evil}"))).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body_text()
            .contains("--allow-host rebind.attacker.example"),
        "{}",
        r.body_text()
    );
    // IP literals and localhost cannot be rebound.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = send(host.clone(), Some(format!("http://{host}"))).await;
        assert_eq!(r.status, 101, "{host}: {}", r.body_text());
    }
    // No Origin: not a browser page, not a rebinding.
    assert_eq!(send(evil.clone(), None).await.status, 101);
    // An http:// listener is not reached by an https:// page (cross-scheme).
    let host = format!("127.0.0.1:{port}");
    let r = send(host.clone(), Some(format!("https://{host}"))).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body_text().contains("--allow-origin"),
        "{}",
        r.body_text()
    );
    assert!(
        server
            .metric("wssd_handshake_failures_total{reason=\"http\"}")
            .await
            >= 2.0
    );

    // --allow-host names the box's own DNS names.
    let server = Wssd::builder()
        .plain_only()
        .args(["--allow-host", "box.lan", "--allow-host", "*.home.arpa"])
        .spawn()
        .await;
    let addr = server.http_addr();
    let port = addr.port();
    for (host, code) in [
        (format!("box.lan:{port}"), 101),
        (format!("pi.home.arpa:{port}"), 101),
        (format!("rebind.attacker.example:{port}"), 403),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let r = exchange(
            tcp,
            &upgrade_request("/ws/echo", &host, KEY, Some(&format!("http://{host}"))),
        )
        .await;
        assert_eq!(r.status, code, "{host}: {}", r.body_text());
    }
}

#[tokio::test]
async fn cross_scheme_origin_refused_on_tls_listeners() {
    let server = Wssd::builder().spawn().await;
    let host = format!("localhost:{}", server.tls_addr().port());
    let send = |origin: String| {
        let host = host.clone();
        let server = &server;
        async move {
            exchange(
                server.tls_connect().await,
                &upgrade_request("/ws/echo", &host, KEY, Some(&origin)),
            )
            .await
        }
    };
    assert_eq!(send(format!("https://{host}")).await.status, 101);
    // An http:// page (readable and writable by anyone on its network path)
    // does not get the wss:// socket.
    let r = send(format!("http://{host}")).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body_text().contains("--allow-origin"),
        "{}",
        r.body_text()
    );

    // Unless that exact origin is allowed (Host and Origin without a port
    // here, as a browser sends them for port 443).
    let server = Wssd::builder()
        .args(["--allow-origin", "http://localhost"])
        .spawn()
        .await;
    let send = |origin: &'static str| {
        let server = &server;
        async move {
            exchange(
                server.tls_connect().await,
                &upgrade_request("/ws/echo", "localhost", KEY, Some(origin)),
            )
            .await
        }
    };
    assert_eq!(send("http://localhost").await.status, 101);
    assert_eq!(send("https://localhost").await.status, 101);
    assert_eq!(send("http://localhost:8080").await.status, 403);
}

#[tokio::test]
async fn hsts_only_for_public_names_with_trusted_certificates() {
    use crate::harness::{client_tls_trusting, http_get, try_tls_connect};
    use crate::test_ca::TestCa;
    // --tls files (a certificate the operator got from a CA): HSTS for a
    // public DNS name, not for localhost or an IP address.
    let ca = TestCa::new("hsts test CA");
    let dir = tempfile::tempdir().unwrap();
    let pair = ca.leaf(&["localhost", "wssd.example.com"], 7, false);
    let (cert, key, ca_file) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server = Wssd::builder()
        .args(["--tls", "files"])
        .args([
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .with_http()
        .spawn()
        .await;
    let client = client_tls_trusting(&ca_file);
    let get = |host: &'static str, path: &'static str| {
        let client = client.clone();
        let addr = server.tls_addr();
        async move {
            let tls = try_tls_connect(addr, &client, "localhost").await.unwrap();
            http_get(tls, host, path, &[]).await
        }
    };
    let r = get("wssd.example.com", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    // On errors too (a 404 is still an https answer).
    let r = get("wssd.example.com", "/nope").await;
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    for host in ["localhost", "127.0.0.1", "box.lan"] {
        let r = get(host, "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("strict-transport-security"), None, "{host}");
    }
    // Never on plain listeners.
    let tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    let r = http_get(tcp, "wssd.example.com", "/", &[]).await;
    assert_eq!(r.header("strict-transport-security"), None);

    // A self-signed certificate (the default): no HSTS whatever the name,
    // as pinning https to a name whose certificate the browser does not
    // trust would lock the developer out.
    let server = Wssd::builder().spawn().await;
    let r = http_get(server.tls_connect().await, "wssd.example.com", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
}

#[tokio::test]
async fn bundled_page_has_a_content_security_policy() {
    let server = Wssd::builder().spawn().await;
    for path in ["/", "/app.js"] {
        let r = http_get(server.tls_connect().await, "localhost", path, &[]).await;
        assert_eq!(r.status, 200);
        let csp = r.header("content-security-policy").unwrap_or("");
        for part in [
            "default-src 'none'",
            "script-src 'self' blob:",
            "connect-src 'self' ws: wss:",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: `{part}` missing in `{csp}`");
        }
    }
    // The page has no inline script or style (which the policy forbids).
    let html = http_get(server.tls_connect().await, "localhost", "/", &[])
        .await
        .body_text();
    assert!(!html.contains("<script>") && !html.contains("<style"));
    assert!(!html.contains(" style=") && !html.contains(" onclick="));
}
