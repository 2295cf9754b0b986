//! Echo over ws:// and wss:// (TLS verified against the generated certificate).

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::Wssd;

async fn roundtrip<S>(ws: &mut S, msg: Message) -> Message
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    ws.send(msg).await.expect("send");
    loop {
        match ws.next().await.expect("stream ended").expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

#[tokio::test]
async fn text_and_binary_over_wss_and_ws_at_once() {
    let server = Wssd::builder().with_http().spawn().await;
    let mut wss = server.wss("/ws/echo").await;
    let mut ws = server.ws("/ws/echo").await;
    for sock in 0..2 {
        let text = Message::text(format!("héllo {sock}"));
        let bin = Message::binary(vec![0u8, 1, 2, 255, sock]);
        let (t, b) = if sock == 0 {
            (
                roundtrip(&mut wss, text.clone()).await,
                roundtrip(&mut wss, bin.clone()).await,
            )
        } else {
            (
                roundtrip(&mut ws, text.clone()).await,
                roundtrip(&mut ws, bin.clone()).await,
            )
        };
        assert_eq!(t, text, "text stays text");
        assert_eq!(b, bin, "binary stays binary");
    }
}

#[tokio::test]
async fn three_mib_message_echoes_intact() {
    let server = Wssd::builder().spawn().await;
    let mut wss = server.wss("/ws/echo").await;
    let payload: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let back = roundtrip(&mut wss, Message::binary(payload.clone())).await;
    assert_eq!(back.into_data().as_ref(), payload.as_slice());
}

#[tokio::test]
async fn many_pipelined_messages_come_back_in_order() {
    let server = Wssd::builder().spawn().await;
    let mut wss = server.wss("/ws/echo").await;
    for i in 0..500 {
        wss.feed(Message::text(i.to_string())).await.unwrap();
    }
    wss.flush().await.unwrap();
    for i in 0..500 {
        let m = wss.next().await.unwrap().unwrap();
        assert_eq!(m, Message::text(i.to_string()));
    }
}

#[tokio::test]
async fn ipv4_and_ipv6_listeners_side_by_side() {
    let v6_port = crate::harness::free_port();
    let server = Wssd::builder()
        .args(["--listen", &format!("[::1]:{v6_port}")])
        .spawn()
        .await;
    let addr: std::net::SocketAddr = format!("[::1]:{v6_port}").parse().unwrap();
    let tls = crate::harness::tls_connect(addr, &server.client_tls()).await;
    let mut v6 = crate::harness::ws_over(tls, &format!("wss://localhost:{v6_port}/ws/echo")).await;
    let mut v4 = server.wss("/ws/echo").await;
    assert_eq!(
        roundtrip(&mut v6, Message::text("six")).await,
        Message::text("six")
    );
    assert_eq!(
        roundtrip(&mut v4, Message::text("four")).await,
        Message::text("four")
    );
}

/// `wssd bench echo --flush-each` (one flush, so one TLS record, per message,
/// as a browser sends) against a real echo route: every echo checked byte
/// for byte, none lost, and the JSON line says which pacing ran.
#[test]
fn bench_echo_flush_each_runs_and_reports_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Wssd::builder().spawn());
    let url = format!("wss://127.0.0.1:{}/ws/echo", server.tls_addr().port());
    let ca = server.cert_path();
    for flush_each in [true, false] {
        let mut cmd = std::process::Command::new(crate::harness::BIN);
        cmd.args(["bench", "echo", &url, "--ca"]).arg(&ca).args([
            "--conns",
            "2",
            "--inflight",
            "8",
            "--secs",
            "1",
        ]);
        if flush_each {
            cmd.arg("--flush-each");
        }
        let out = crate::harness::run_bounded(&mut cmd, std::time::Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        assert_eq!(json["flush_each"], flush_each, "{json}");
        assert_eq!(json["errors"], 0, "{json}");
        assert!(json["round_trips"].as_u64().unwrap() > 0, "{json}");
    }
}
