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
    assert_eq!(get("/site/%2e%2e/%2e%2e/etc/passwd").await.status, 404);
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
