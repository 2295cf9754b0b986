//! Per-WebSocket message and byte rates (`--message-rate`, `--byte-rate`,
//! the routes' own): on every route kind a flooding client is closed with
//! 1008 and a reason naming the limit, while a client under the rate on the
//! same server is not; route overrides beat the global; bad settings are
//! refused at startup.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::harness::Wssd;

type Ws = WebSocketStream<TcpStream>;

/// A plain-listener server with these flags.
async fn server(args: &[&str]) -> Wssd {
    Wssd::builder()
        .plain_only()
        .args(args.iter().copied())
        .spawn()
        .await
}

/// Reads until the server's close frame: (data messages received, the frame).
async fn until_close(ws: &mut Ws) -> (usize, Option<CloseFrame>) {
    let mut data = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answered within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => return (data, frame),
            Some(Ok(Message::Text(_) | Message::Binary(_))) => data += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("read error before the close frame: {e}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

/// Sends `n` copies of `message` as fast as the socket takes them, then
/// reads until the server closes.
async fn flood(ws: &mut Ws, n: usize, message: Message) -> (usize, Option<CloseFrame>) {
    for _ in 0..n {
        if ws.feed(message.clone()).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    until_close(ws).await
}

/// Asserts a 1008 close with exactly this reason.
fn assert_rate_close(frame: Option<CloseFrame>, reason: &str) {
    let frame = frame.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
    assert_eq!(frame.reason.as_str(), reason);
}

/// Sends `n` messages `gap` apart, reading `replies_each` data messages
/// after each, then closes: the server must answer the close with 1000
/// (it never closed the socket itself).
async fn polite(ws: &mut Ws, n: usize, gap: Duration, replies_each: usize) {
    for i in 0..n {
        ws.send(Message::text(format!("polite {i}")))
            .await
            .expect("send");
        for _ in 0..replies_each {
            next_data(ws).await;
        }
        tokio::time::sleep(gap).await;
    }
    ws.close(None).await.expect("close");
    let (_, frame) = until_close(ws).await;
    let code = frame.map(|f| u16::from(f.code));
    assert!(
        matches!(code, None | Some(1000) | Some(1005)),
        "a client under the rate was closed: {code:?}"
    );
}

/// The next data message (pings and pongs skipped), within 10 s.
async fn next_data(ws: &mut Ws) -> Message {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s");
        match next.expect("open").expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(f) => panic!("closed: {f:?}"),
            m => return m,
        }
    }
}

const MESSAGE_100_10: &str = "message rate exceeded: 100/s, burst 10 (--message-rate)";

#[tokio::test]
async fn echo_flood_is_closed_and_a_polite_client_is_not() {
    let s = server(&[
        "--route",
        "/e=echo",
        "--message-rate",
        "100",
        "--message-burst",
        "10",
    ])
    .await;
    let mut calm = s.ws("/e").await;
    let mut flooder = s.ws("/e").await;
    let (polite_done, (echoed, frame)) = tokio::join!(
        polite(&mut calm, 25, Duration::from_millis(40), 1),
        flood(&mut flooder, 500, Message::text("x"))
    );
    let () = polite_done;
    assert_rate_close(frame, MESSAGE_100_10);
    assert!(
        (10..100).contains(&echoed),
        "{echoed} echoed before the close"
    );
    assert_eq!(
        s.metric("wssd_rate_limited_total{route=\"/e\",limit=\"messages\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn pings_count_as_messages() {
    let s = server(&[
        "--route",
        "/e=echo",
        "--message-rate",
        "1",
        "--message-burst",
        "3",
    ])
    .await;
    let mut ws = s.ws("/e").await;
    let (_, frame) = flood(&mut ws, 50, Message::Ping(Vec::new().into())).await;
    assert_rate_close(
        frame,
        "message rate exceeded: 1/s, burst 3 (--message-rate)",
    );
}

#[tokio::test]
async fn broadcast_flood_is_closed_and_a_polite_sender_is_not() {
    let s = server(&[
        "--route",
        "/b=broadcast",
        "--message-rate",
        "100",
        "--message-burst",
        "10",
    ])
    .await;
    let mut listener = s.ws("/b").await;
    let mut calm = s.ws("/b").await;
    let mut flooder = s.ws("/b").await;
    let (_, frame) = flood(&mut flooder, 500, Message::text("flood")).await;
    assert_rate_close(frame, MESSAGE_100_10);
    polite(&mut calm, 20, Duration::from_millis(40), 0).await;
    // The listener got every polite message and no more than the flooder's
    // burst plus what the rate refilled during the flood.
    let mut polite_seen = 0;
    let mut flood_seen = 0;
    while polite_seen < 20 {
        match next_data(&mut listener).await {
            Message::Text(t) if t.as_str() == "flood" => flood_seen += 1,
            Message::Text(_) => polite_seen += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((10..100).contains(&flood_seen), "{flood_seen}");
}

#[tokio::test]
async fn chat_flood_hits_the_edge_limit_before_chats_own() {
    // Chat's own rule (5/s, burst 10) answers errors first; the edge limit
    // below it closes at once.
    let s = server(&[
        "--route",
        "/c=chat",
        "--message-rate",
        "2",
        "--message-burst",
        "4",
    ])
    .await;
    let join = |name: &str| {
        Message::text(format!(
            r#"{{"type":"join","room":"lobby","username":"{name}"}}"#
        ))
    };
    let say = Message::text(r#"{"type":"message","text":"hi"}"#);

    let mut calm = s.ws("/c").await;
    calm.send(join("calm")).await.unwrap();
    let joined = next_data(&mut calm).await.into_text().unwrap();
    assert!(joined.contains("\"joined\""), "{joined}");

    let mut flooder = s.ws("/c").await;
    flooder.send(join("flood")).await.unwrap();
    let (_, frame) = flood(&mut flooder, 30, say.clone()).await;
    assert_rate_close(
        frame,
        "message rate exceeded: 2/s, burst 4 (--message-rate)",
    );

    // Under the rate: two messages 600 ms apart, each delivered back.
    for _ in 0..2 {
        calm.send(say.clone()).await.unwrap();
        loop {
            let m = next_data(&mut calm).await.into_text().unwrap();
            if m.contains("\"from\":\"calm\"") {
                break;
            }
            assert!(!m.contains("\"error\""), "{m}");
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    calm.close(None).await.unwrap();
    let (_, frame) = until_close(&mut calm).await;
    assert!(
        frame.is_none_or(|f| u16::from(f.code) == 1000),
        "calm closed"
    );
}

#[tokio::test]
async fn exec_flood_is_closed_and_a_polite_client_is_not() {
    let s = server(&[
        "--route",
        "/x=exec:cat",
        "--message-rate",
        "100",
        "--message-burst",
        "10",
    ])
    .await;
    let mut calm = s.ws("/x").await;
    let mut flooder = s.ws("/x").await;
    let (_, frame) = flood(&mut flooder, 500, Message::text("line")).await;
    assert_rate_close(frame, MESSAGE_100_10);
    polite(&mut calm, 20, Duration::from_millis(40), 1).await;
    assert_eq!(
        s.metric("wssd_rate_limited_total{route=\"/x\",limit=\"messages\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn proxy_flood_is_closed_by_messages_or_bytes_and_a_polite_client_is_not() {
    let back = server(&["--route", "/ws/echo=echo"]).await;
    let upstream = format!("ws://127.0.0.1:{}", back.http_addr().port());
    let front = server(&[
        "--route",
        &format!("/=proxy:{upstream}"),
        "--message-rate",
        "100",
        "--message-burst",
        "10",
        "--byte-rate",
        "20000",
        "--byte-burst",
        "200000",
        "--max-message-size",
        "150000",
    ])
    .await;
    let mut calm = front.ws("/ws/echo").await;
    let mut flooder = front.ws("/ws/echo").await;
    let (polite_done, (_, frame)) = tokio::join!(
        polite(&mut calm, 25, Duration::from_millis(40), 1),
        flood(&mut flooder, 500, Message::text("x"))
    );
    let () = polite_done;
    assert_rate_close(frame, MESSAGE_100_10);
    // The upstream was told the client is gone (after the frames it was
    // sent before); it got the polite client's 25 messages and the burst.
    let mut tries = 0;
    while back.metric("wssd_close_codes_total{code=\"1001\"}").await < 1.0 {
        tries += 1;
        assert!(tries < 100, "the upstream never got 1001");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let upstream_in = "wssd_messages_total{route=\"/ws/echo\",direction=\"in\"}";
    let forwarded = back.metric(upstream_in).await - 25.0;
    assert!(
        (10.0..100.0).contains(&forwarded),
        "{forwarded} flood messages forwarded"
    );

    // Big messages under the message rate: the byte rate closes.
    let before = back.metric(upstream_in).await;
    let mut big = front.ws("/ws/echo").await;
    let (_, frame) = flood(&mut big, 4, Message::binary(vec![1u8; 150_000])).await;
    assert_rate_close(
        frame,
        "byte rate exceeded: 20000 B/s, burst 200000 B (--byte-rate)",
    );
    let mut tries = 0;
    while back.metric("wssd_close_codes_total{code=\"1001\"}").await < 2.0 {
        tries += 1;
        assert!(tries < 100, "the upstream never got 1001");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only the first big message reached the upstream.
    assert_eq!(back.metric(upstream_in).await, before + 1.0);
    assert_eq!(
        front
            .metric("wssd_rate_limited_total{route=\"/\",limit=\"bytes\"}")
            .await,
        1.0
    );
}

/// Sends one text message as one frame per part (then continuations).
async fn send_fragmented(ws: &mut Ws, parts: &[String]) {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = i + 1 == parts.len();
        let frame = Frame::message(part.clone(), opcode, last);
        ws.feed(Message::Frame(frame)).await.expect("send a frame");
    }
    ws.flush().await.expect("flush");
}

#[tokio::test]
async fn a_fragmented_message_counts_once_through_the_proxy() {
    let back = server(&["--route", "/ws/echo=echo"]).await;
    let upstream = format!("ws://127.0.0.1:{}", back.http_addr().port());
    let front = server(&[
        "--route",
        &format!("/=proxy:{upstream}"),
        "--message-rate",
        "1",
        "--message-burst",
        "3",
    ])
    .await;
    let mut ws = front.ws("/ws/echo").await;
    let parts = |i: usize| -> Vec<String> {
        ["a", "b", "c"]
            .map(String::from)
            .into_iter()
            .chain([i.to_string()])
            .collect()
    };
    // Three messages of four frames each: within a burst of three.
    for i in 0..3 {
        send_fragmented(&mut ws, &parts(i)).await;
        assert_eq!(next_data(&mut ws).await, Message::text(format!("abc{i}")));
    }
    // Five more at once: past the burst whatever the rate refilled.
    for i in 3..8 {
        send_fragmented(&mut ws, &parts(i)).await;
    }
    let (_, frame) = until_close(&mut ws).await;
    assert_rate_close(
        frame,
        "message rate exceeded: 1/s, burst 3 (--message-rate)",
    );
}

#[tokio::test]
async fn byte_rate_closes_big_messages_under_the_message_rate() {
    let s = server(&[
        "--route",
        "/e=echo",
        "--max-message-size",
        "65536",
        "--byte-rate",
        "10000",
        "--byte-burst",
        "70000",
    ])
    .await;
    let mut small = s.ws("/e").await;
    let mut big = s.ws("/e").await;
    let (echoed, frame) = flood(&mut big, 4, Message::binary(vec![0u8; 65_536])).await;
    assert_rate_close(
        frame,
        "byte rate exceeded: 10000 B/s, burst 70000 B (--byte-rate)",
    );
    assert_eq!(echoed, 1);
    // 20 x 100 bytes in 0.4 s stays far below 10,000 B/s plus the burst.
    polite(&mut small, 20, Duration::from_millis(20), 1).await;
}

#[tokio::test]
async fn route_overrides_beat_the_global_rate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wssd.toml");
    std::fs::write(
        &config,
        r#"
message_rate = 5
message_burst = 5

[[route]]
path = "/global"
kind = "echo"

[[route]]
path = "/higher"
kind = "echo"
message_rate = 1000

[[route]]
path = "/off"
kind = "echo"
message_rate = 0

[[route]]
path = "/burst"
kind = "echo"
message_burst = 300
"#,
    )
    .unwrap();
    let s = server(&["--config", config.to_str().unwrap()]).await;

    let mut global = s.ws("/global").await;
    let (_, frame) = flood(&mut global, 200, Message::text("g")).await;
    assert_rate_close(
        frame,
        "message rate exceeded: 5/s, burst 5 (--message-rate)",
    );

    for path in ["/higher", "/off", "/burst"] {
        let mut ws = s.ws(path).await;
        for _ in 0..200 {
            ws.feed(Message::text("o")).await.unwrap();
        }
        ws.flush().await.unwrap();
        for _ in 0..200 {
            next_data(&mut ws).await;
        }
        ws.close(None).await.unwrap();
        let (_, frame) = until_close(&mut ws).await;
        assert!(
            frame.is_none_or(|f| u16::from(f.code) == 1000),
            "{path} closed the socket"
        );
    }

    // The burst-only override keeps the global rate.
    let mut burst = s.ws("/burst").await;
    let (_, frame) = flood(&mut burst, 1000, Message::text("b")).await;
    assert_rate_close(
        frame,
        "message rate exceeded: 5/s, burst 300 (route message_rate)",
    );
}

#[tokio::test]
async fn bad_rate_settings_are_refused_at_startup() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--message-burst", "10"],
            "--message-burst is given without --message-rate",
        ),
        (
            &["--message-rate", "10", "--message-burst", "0"],
            "--message-burst must be at least 1",
        ),
        (
            &["--byte-rate", "1000", "--byte-burst", "1000"],
            "the byte burst (1000 bytes, --byte-burst) is smaller than the route's largest message (4194304 bytes",
        ),
        (&["--message-rate", "lots"], "--message-rate"),
    ];
    for (args, needle) in cases {
        let (out, _state) = Wssd::builder()
            .plain_only()
            .args(["--route", "/e=echo"])
            .args(args.iter().copied())
            .run_to_exit();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
