//! Stalled peers are closed within the send timeout: WebSocket clients that
//! send but never read (big messages, or only pings), proxied clients and
//! upstreams that stop reading, exec clients and programs that stop reading,
//! a static download never read, a proxied request body that stops coming,
//! and SIGTERM with stalled clients.
//!
//! The timeout is set with `WSSD_SEND_TIMEOUT=1` (an environment variable,
//! so the same tests run against a build without the option and fail there
//! by timing, not by an unknown flag).

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Wssd, free_port};

/// The send timeout the servers under test run with.
const SEND_TIMEOUT: &str = "1";
/// How long after the stall starts the connection must be gone: the send
/// timeout plus room for a slow debug build and the closing handshake.
const CLOSED_WITHIN: Duration = Duration::from_secs(6);

fn server() -> crate::harness::Builder {
    Wssd::builder()
        .plain_only()
        .env("WSSD_SEND_TIMEOUT", SEND_TIMEOUT)
}

/// A TCP connection with a small receive buffer, so a client that does not
/// read stalls the server quickly.
async fn small_connect(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// Sends a request head and reads the response head (nothing more is ever read).
async fn request_head(stream: &mut TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.expect("request");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(n > 0, "closed during the handshake");
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A raw WebSocket (handshake done by hand) that the test never reads.
async fn raw_ws(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut stream = small_connect(addr).await;
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        addr.port()
    );
    let response = request_head(&mut stream, &head).await;
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    stream
}

/// One masked client frame with `len` zero bytes of payload.
fn frame(opcode: u8, len: usize) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend((0..len).map(|i| mask[i % 4]));
    out
}

/// The kernel's TCP state of a socket (1 = established).
fn tcp_state(fd: RawFd) -> u8 {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO");
    info.tcpi_state
}

/// Waits until the server has closed (reset or FIN) the connection `fd`
/// belongs to; panics after `limit`. Returns how long it took.
async fn closed_by_server(fd: RawFd, limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    while tcp_state(fd) == 1 {
        assert!(
            start.elapsed() < limit,
            "{what}: still open {limit:?} after the stall"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}

/// Writes `frame` over and over (without reading) until the write fails;
/// `stalled` is notified once a write makes no progress for 300 ms (the
/// server stopped reading).
fn flood(
    mut stream: tokio::net::tcp::OwnedWriteHalf,
    frame: Vec<u8>,
) -> (
    tokio::task::JoinHandle<tokio::net::tcp::OwnedWriteHalf>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let give_up = Instant::now() + Duration::from_secs(30);
        while Instant::now() < give_up {
            let write = stream.write_all(&frame);
            tokio::pin!(write);
            let done = tokio::select! {
                r = &mut write => r,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    write.await
                }
            };
            if done.is_err() {
                break;
            }
        }
        stream
    });
    (task, rx)
}

/// Floods a raw WebSocket with `frame` and checks the server closes it
/// within [`CLOSED_WITHIN`] of the stall.
async fn assert_non_reader_closed(addr: std::net::SocketAddr, path: &str, frame: Vec<u8>) {
    let stream = raw_ws(addr, path).await;
    let fd = stream.as_raw_fd();
    let (read_half, write_half) = stream.into_split();
    let (writer, stalled) = flood(write_half, frame);
    tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the server never stopped reading")
        .expect("flood task");
    closed_by_server(fd, CLOSED_WITHIN, path).await;
    writer.abort();
    drop(read_half);
}

#[tokio::test]
async fn echo_client_that_never_reads_is_closed() {
    let server = server().spawn().await;
    assert_non_reader_closed(server.http_addr(), "/ws/echo", frame(0x2, 1 << 20)).await;
    // Whichever fires first, the session's batch deadline (close 1008) or
    // the socket's stall timer (reset, counted as a write timeout and 1008),
    // the stall is counted.
    let timeouts = server
        .metric("wssd_write_timeouts_total{peer=\"client\"}")
        .await;
    let policy = server.metric("wssd_close_codes_total{code=\"1008\"}").await;
    assert!(timeouts + policy >= 1.0, "stall not counted");
}

#[tokio::test]
async fn ping_flooding_client_that_never_reads_is_closed() {
    // Pings keep the socket "alive" for the idle timeout and ping checks.
    let server = server()
        .args(["--idle-timeout", "60", "--ping-interval", "30"])
        .spawn()
        .await;
    assert_non_reader_closed(server.http_addr(), "/ws/echo", frame(0x9, 125)).await;
}

#[tokio::test]
async fn echo_client_over_tls_that_never_reads_is_closed() {
    let server = Wssd::builder()
        .env("WSSD_SEND_TIMEOUT", SEND_TIMEOUT)
        .spawn()
        .await;
    let tls = server.tls_connect().await;
    let fd = tls.get_ref().0.as_raw_fd();
    let url = format!("wss://localhost:{}/ws/echo", server.tls_addr().port());
    let ws = crate::harness::ws_over(tls, &url).await;
    let (mut sink, stream) = ws.split();
    let (tx, stalled) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut tx = Some(tx);
        let payload = vec![0u8; 1 << 20];
        loop {
            let send = sink.send(Message::binary(payload.clone()));
            tokio::pin!(send);
            let done = tokio::select! {
                r = &mut send => r,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    send.await
                }
            };
            if done.is_err() {
                return sink;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the server never stopped reading")
        .expect("flood task");
    closed_by_server(fd, CLOSED_WITHIN, "wss echo").await;
    writer.abort();
    drop(stream);
}

#[tokio::test]
async fn static_download_never_read_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::create(dir.path().join("big.bin")).expect("create");
    file.set_len(64 << 20).expect("sparse file");
    let server = server()
        .args([
            "--route",
            &format!("/files=static:{}", dir.path().display()),
        ])
        .spawn()
        .await;
    let mut stream = small_connect(server.http_addr()).await;
    let head = request_head(
        &mut stream,
        "GET /files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Never read the body: the server's writes stall.
    let limit = CLOSED_WITHIN + Duration::from_secs(2);
    closed_by_server(stream.as_raw_fd(), limit, "static download").await;
}

#[tokio::test]
async fn exec_client_that_never_reads_is_closed() {
    let server = server().args(["--route", "/yes=exec:yes"]).spawn().await;
    let stream = raw_ws(server.http_addr(), "/yes").await;
    // `yes` writes without end; the client reads nothing.
    let limit = CLOSED_WITHIN + Duration::from_secs(2);
    closed_by_server(stream.as_raw_fd(), limit, "exec").await;
}

/// Reads until a close frame; its code and how long it took.
async fn close_code<S>(ws: &mut S, limit: Duration) -> (u16, Duration)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let start = Instant::now();
    let code = tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(1005, |f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame in time");
    (code, start.elapsed())
}

/// Sends big messages until sending fails (in the background).
fn keep_sending<S>(mut sink: S, text: bool) -> tokio::task::JoinHandle<()>
where
    S: futures_util::Sink<Message> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let payload = "x".repeat(256 * 1024);
        loop {
            let m = if text {
                Message::text(payload.clone())
            } else {
                Message::binary(payload.clone().into_bytes())
            };
            if sink.send(m).await.is_err() {
                return;
            }
        }
    })
}

#[tokio::test]
async fn exec_program_that_stops_reading_stdin_ends_with_1011() {
    let server = server()
        .args(["--route", "/sleep=exec:sleep 60"])
        .spawn()
        .await;
    let ws = server.ws("/sleep").await;
    let (sink, mut stream) = ws.split();
    let sender = keep_sending(sink, true);
    let (code, _) = close_code(&mut stream, CLOSED_WITHIN + Duration::from_secs(2)).await;
    assert_eq!(code, 1011);
    sender.abort();
}

#[tokio::test]
async fn proxied_client_that_never_reads_is_closed() {
    // The backend is patient: only the front's send timeout can act.
    let backend = Wssd::builder()
        .plain_only()
        .env("WSSD_SEND_TIMEOUT", "60")
        .spawn()
        .await;
    let front = server()
        .args([
            "--route",
            &format!("/p=proxy:ws://{}/ws/echo", backend.http_addr()),
        ])
        .spawn()
        .await;
    assert_non_reader_closed(front.http_addr(), "/p", frame(0x2, 1 << 20)).await;
}

/// A WebSocket upstream that completes the handshake and then reads nothing.
async fn deaf_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let port = free_port();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("bind");
    let listener: TcpListener = socket.listen(16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let key = text
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default();
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            let _ = s.write_all(reply.as_bytes()).await;
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn proxied_upstream_that_stops_reading_ends_with_1014() {
    let (upstream, task) = deaf_upstream().await;
    let front = server()
        .args(["--route", &format!("/p=proxy:ws://{upstream}/")])
        .spawn()
        .await;
    let ws = front.ws("/p").await;
    let (sink, mut stream) = ws.split();
    let sender = keep_sending(sink, false);
    let (code, _) = close_code(&mut stream, CLOSED_WITHIN + Duration::from_secs(2)).await;
    // tungstenite (this client) reports 1014 as 1002 (see tests/it/proxy.rs);
    // what the server sent is in its metrics.
    assert!([1014, 1002].contains(&code), "{code}");
    assert_eq!(
        front.metric("wssd_close_codes_total{code=\"1014\"}").await,
        1.0
    );

    sender.abort();
    task.abort();
}

/// An HTTP upstream that reads requests forever and never answers.
async fn silent_http_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn proxied_request_body_that_stops_coming_gets_408() {
    let (upstream, task) = silent_http_upstream().await;
    let front = server()
        .args(["--route", &format!("/h=proxy:http://{upstream}")])
        .spawn()
        .await;
    let mut stream = TcpStream::connect(front.http_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"POST /h/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n0123456789")
        .await
        .expect("request");
    // ... and the other 99990 bytes never come.
    let mut response = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, stream.read_to_end(&mut response)).await;
    assert!(
        read.is_ok(),
        "the server waited for the body for {CLOSED_WITHIN:?}"
    );
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    task.abort();
}

#[tokio::test]
async fn sigterm_does_not_wait_the_drain_for_stalled_clients() {
    let mut server = server().args(["--drain-timeout", "30"]).spawn().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let stream = raw_ws(server.http_addr(), "/ws/echo").await;
        let (read_half, write_half) = stream.into_split();
        let (writer, stalled) = flood(write_half, frame(0x2, 1 << 20));
        tokio::time::timeout(Duration::from_secs(10), stalled)
            .await
            .expect("the server never stopped reading")
            .expect("flood task");
        held.push((read_half, writer));
    }
    server.signal(libc::SIGTERM);
    let start = Instant::now();
    let status = server.wait_exit(CLOSED_WITHIN + Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(start.elapsed() < Duration::from_secs(8));
    for (_, writer) in held {
        writer.abort();
    }
}

#[tokio::test]
async fn send_timeout_zero_is_refused_with_a_clear_error() {
    let (output, _state) = Wssd::builder()
        .plain_only()
        .args(["--send-timeout", "0"])
        .run_to_exit();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--send-timeout cannot be 0"), "{stderr}");
}
