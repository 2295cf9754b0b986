//! Graceful shutdown: SIGTERM closes every WebSocket with 1001 and the
//! process exits 0.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::Wssd;

#[tokio::test]
async fn sigterm_sends_1001_and_exits_zero() {
    let mut server = Wssd::builder().with_http().spawn().await;
    let mut wss = server.wss("/ws/echo").await;
    let mut ws = server.ws("/ws/echo").await;
    server.signal(libc::SIGTERM);
    for label in ["wss", "ws"] {
        let next = if label == "wss" {
            tokio::time::timeout(Duration::from_secs(5), wss.next()).await
        } else {
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        };
        match next.expect("no close frame within 5 s") {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001, "{label}");
            }
            other => panic!("{label}: expected close 1001, got {other:?}"),
        }
    }
    // Answering the close lets the server finish its drain quickly.
    drop(wss);
    drop(ws);
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    server.wait_for_log("shutting down").await;
}

#[tokio::test]
async fn sigint_with_no_clients_exits_zero_quickly() {
    let mut server = Wssd::builder().spawn().await;
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}
