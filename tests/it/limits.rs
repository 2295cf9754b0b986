//! Limits at the edge and in the session: message size (1009), the
//! connection limit (503 before the upgrade), the handshake timeout
//! (slowloris), pings, and the metrics that count all of it.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Wssd, http_get};

#[tokio::test]
async fn five_mib_message_is_closed_with_1009() {
    let server = Wssd::builder().spawn().await;
    let mut wss = server.wss("/ws/echo").await;
    wss.send(Message::binary(vec![7u8; 5 * 1024 * 1024]))
        .await
        .expect("send");
    let code = loop {
        match wss.next().await {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(Message::Close(None))) => panic!("close without code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("read error before close frame: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    };
    assert_eq!(code, 1009);
    let closes = server.metric("wssd_close_codes_total{code=\"1009\"}").await;
    assert_eq!(closes, 1.0);
}

#[tokio::test]
async fn connection_limit_answers_503_before_upgrade() {
    let server = Wssd::builder()
        .args(["--max-connections", "2"])
        .spawn()
        .await;
    let _a = server.wss("/ws/echo").await;
    let _b = server.wss("/ws/echo").await;
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let r = http_get(
        server.tls_connect().await,
        "localhost",
        "/ws/echo",
        &upgrade,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert!(r.body_text().contains("--max-connections"));
    assert_eq!(
        server
            .metric("wssd_handshake_failures_total{reason=\"limit\"}")
            .await,
        1.0
    );
    // Plain HTTP still works at the limit.
    let r = http_get(server.tls_connect().await, "localhost", "/", &[]).await;
    assert_eq!(r.status, 200);
    // A slot frees when a client leaves.
    drop(_a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http_get(
            server.tls_connect().await,
            "localhost",
            "/ws/echo",
            &upgrade,
        )
        .await;
        if r.status == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn handshake_timeout_frees_a_silent_socket() {
    let server = Wssd::builder()
        .args(["--handshake-timeout", "1"])
        .with_http()
        .spawn()
        .await;
    // TLS listener: never send a ClientHello.
    let start = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(server.tls_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("server kept the silent socket open past 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected EOF");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    // Plain listener: a connection that sends half a request head.
    let mut slow = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("server kept the slow socket open past 5 s")
        .ok();
    assert_eq!(
        server
            .metric("wssd_handshake_failures_total{reason=\"timeout\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn server_pings_and_closes_when_pongs_stop() {
    let server = Wssd::builder()
        .args(["--ping-interval", "0.3"])
        .spawn()
        .await;
    // A reading client answers pings (tungstenite does it) and stays open.
    let mut wss = server.wss("/ws/echo").await;
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_millis(200), wss.next()).await
        {
            pings += 1;
            wss.flush().await.unwrap();
        }
    }
    assert!(pings >= 2, "expected pings, got {pings}");
    wss.send(Message::text("still here")).await.unwrap();
    // A client that never reads never answers: the server closes it.
    let silent = server.tls_connect().await;
    let url = format!("wss://localhost:{}/ws/echo", server.tls_addr().port());
    let ws = crate::harness::ws_over(silent, &url).await;
    let (_sink, _stream) = ws.split();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let closes = server.metric("wssd_close_codes_total{code=\"1001\"}").await;
        if closes >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "silent client was not closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let server = Wssd::builder().spawn().await;
    let mut wss = server.wss("/ws/echo").await;
    for _ in 0..3 {
        wss.send(Message::text("12345")).await.unwrap();
        wss.next().await.unwrap().unwrap();
    }
    let port = server.tls_addr().port();
    let labels = format!("route=\"/ws/echo\",listener=\"127.0.0.1:{port}\"");
    assert_eq!(
        server
            .metric(&format!("wssd_connections_open{{{labels}}}"))
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric(&format!("wssd_connections_total{{{labels}}}"))
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("wssd_messages_total{route=\"/ws/echo\",direction=\"in\"}")
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric("wssd_bytes_total{route=\"/ws/echo\",direction=\"out\"}")
            .await,
        15.0
    );
    let body = server.admin_get("/metrics").await.body_text();
    assert!(
        body.contains("wssd_certificate_not_after_seconds{name="),
        "{body}"
    );
    wss.close(None).await.unwrap();
    while wss.next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .metric(&format!("wssd_connections_open{{{labels}}}"))
        .await
        != 0.0
    {
        assert!(Instant::now() < deadline, "open gauge did not go down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client that does not trust the certificate fails the TLS handshake.
    let roots = rustls::RootCertStore::empty();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let r = crate::harness::try_tls_connect(
        server.tls_addr(),
        &std::sync::Arc::new(config),
        "localhost",
    )
    .await;
    assert!(r.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .metric("wssd_handshake_failures_total{reason=\"tls\"}")
        .await
        != 1.0
    {
        assert!(Instant::now() < deadline, "tls failure not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A soft open-file limit of 256 (like a shell's 1024, smaller) does not
/// cap a server: wssd raises it to the hard limit at start, so 300
/// WebSockets open at once (before, accepts failed with "Too many open
/// files" at about 250).
#[tokio::test]
async fn soft_open_file_limit_is_raised_to_the_hard_one() {
    let server = Wssd::builder()
        .plain_only()
        .soft_open_files(256)
        .spawn()
        .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id()))
        .expect("/proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "soft limit not raised: {line}");
    let Ok(hard) = hard.parse::<u64>() else {
        return; // unlimited
    };
    if hard < 512 {
        return; // nothing to raise to on this machine
    }
    server
        .wait_for_log(&format!("open-file limit raised from 256 to {hard}"))
        .await;
    let mut sockets = Vec::new();
    for i in 0..300 {
        let mut ws = server.ws("/ws/echo").await;
        ws.send(Message::text(format!("socket {i}")))
            .await
            .expect("send");
        match ws.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("socket {i}")),
            other => panic!("socket {i}: {other:?}"),
        }
        sockets.push(ws);
    }
}
