//! Per-listener connection caps (issue 13, the device console's HTTPS 4 /
//! HTTP 10): past its cap a listener closes new connections at accept,
//! counted with reason `listener`, while the other listener still accepts;
//! closing one frees its slot.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Wssd, try_tls_connect, ws_over};

/// Whether the server closed `stream` without a byte (EOF or reset)
/// within `limit`.
async fn closed_silently(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// An echo round trip on `ws`.
async fn echoes<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text("ping")).await.unwrap();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await,
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "ping"
    )
}

#[tokio::test]
async fn each_listener_refuses_past_its_own_cap_and_frees_on_close() {
    let server = Wssd::builder()
        .with_http()
        .args([
            "--listen-max-connections",
            "4",
            "--http-max-connections",
            "10",
        ])
        .spawn()
        .await;
    let tls = server.client_tls();
    // Four wss:// sockets fill the TLS listener.
    let mut wss = Vec::new();
    for _ in 0..4 {
        wss.push(server.wss("/ws/echo").await);
    }
    // The fifth is closed before TLS: the handshake fails.
    let fifth = try_tls_connect(server.tls_addr(), &tls, "localhost").await;
    assert!(fifth.is_err(), "the 5th TLS connection was served");
    // The plain listener still accepts, ten times.
    let mut ws = Vec::new();
    for _ in 0..10 {
        ws.push(server.ws("/ws/echo").await);
    }
    let mut eleventh = TcpStream::connect(server.http_addr()).await.unwrap();
    assert!(
        closed_silently(&mut eleventh, Duration::from_secs(5)).await,
        "the 11th plain connection was kept"
    );
    assert_eq!(
        server
            .metric("wssd_connections_refused_total{reason=\"listener\"}")
            .await,
        2.0
    );
    // Everyone admitted is served.
    assert!(echoes(&mut wss[3]).await && echoes(&mut ws[9]).await);

    // Closing one TLS socket frees its slot (the TCP close is the signal;
    // the server drops the slot right after it).
    let mut closing = wss.pop().unwrap();
    closing.close(None).await.unwrap();
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), closing.next()).await {}
    drop(closing);
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match try_tls_connect(server.tls_addr(), &tls, "localhost").await {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("no slot freed: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let url = format!("wss://localhost:{}/ws/echo", server.tls_addr().port());
    let mut again = ws_over(stream, &url).await;
    assert!(echoes(&mut again).await);
    // The plain listener is still full: its cap is its own.
    let mut still = TcpStream::connect(server.http_addr()).await.unwrap();
    assert!(closed_silently(&mut still, Duration::from_secs(5)).await);
    server
        .wait_for_log(
            "its listener's cap (--listen-max-connections or --http-max-connections) reached",
        )
        .await;
}
