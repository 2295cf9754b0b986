//! `exec` routes: the CGI-style environment a program sees (and what it must
//! not see), line and binary relaying, the process group killed and reaped
//! when the client leaves, exit statuses as close codes, the process cap and
//! backpressure against a program that floods stdout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::harness::{Wssd, http_get};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exec")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Writes `toml` as wssd.toml in a new folder; returns the folder and file.
fn config(toml: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wssd.toml");
    std::fs::write(&file, toml).expect("write config");
    (dir, file)
}

/// Reads data messages until the server's close frame (bounded).
async fn until_close<S>(ws: &mut S) -> (Vec<Message>, Option<CloseFrame>)
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut messages = Vec::new();
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => messages.push(m),
                Some(Err(e)) => panic!("read error before close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    };
    let frame = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no close frame within 10 s");
    (messages, frame)
}

/// The next data message (bounded).
async fn next_data<S>(ws: &mut S) -> Message
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let read = async {
        loop {
            match ws.next().await.expect("stream ended").expect("read") {
                Message::Ping(_) | Message::Pong(_) => continue,
                m => return m,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no message within 10 s")
}

async fn send<S>(ws: &mut S, m: Message)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    ws.send(m).await.expect("send");
}

/// `VAR=value` lines as a map.
fn env_map(messages: &[Message]) -> BTreeMap<String, String> {
    messages
        .iter()
        .filter_map(|m| m.to_text().ok())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Variables a shell may add on its own when it runs `env`.
const SHELL_ADDS: &[&str] = &["PWD", "OLDPWD", "SHLVL", "_"];
/// Every CGI variable wssd sets.
const CGI: &[&str] = &[
    "GATEWAY_INTERFACE",
    "SERVER_SOFTWARE",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "HTTPS",
    "SSL_CLIENT_S_DN",
    "SSL_CLIENT_VERIFY",
];

#[tokio::test]
async fn environment_is_cgi_style_and_nothing_else_leaks() {
    let env_sh = fixture("env.sh");
    let (_dir, file) = config(&format!(
        "[[route]]\npath = \"/env\"\nkind = \"exec\"\ncommand = \"{env_sh}\"\n\
         pass_env = [\"WSSD_TEST_PASSED\"]\n\n\
         [[route]]\npath = \"/bare\"\nkind = \"exec\"\ncommand = [\"{env_sh}\"]\n"
    ));
    let server = Wssd::builder()
        .with_http()
        .args(["--config", file.to_str().unwrap()])
        .env("WSSD_TEST_SECRET", "hunter2")
        .env("WSSD_TEST_PASSED", "yes")
        .spawn()
        .await;

    // ws:// with request headers, a path below the route and a query.
    let port = server.http_addr().port();
    let url = format!("ws://127.0.0.1:{port}/env/sub/path?x=1&y=two");
    let mut request = url.into_client_request().unwrap();
    let h = request.headers_mut();
    h.insert("X-Custom", "hello there".parse().unwrap());
    h.append("X-Multi", "a".parse().unwrap());
    h.append("X-Multi", "b".parse().unwrap());
    h.insert("X_Sneaky", "spoof".parse().unwrap());
    h.insert("Authorization", "Bearer s3cret".parse().unwrap());
    h.insert("Proxy", "http://evil:1".parse().unwrap());
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("handshake");
    let (messages, close) = until_close(&mut ws).await;
    let env = env_map(&messages);
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("REMOTE_ADDR"), Some("127.0.0.1"), "{env:#?}");
    assert_eq!(get("REMOTE_PORT"), Some(local.port().to_string().as_str()));
    assert_eq!(get("REQUEST_URI"), Some("/env/sub/path?x=1&y=two"));
    assert_eq!(get("QUERY_STRING"), Some("x=1&y=two"));
    assert_eq!(get("SCRIPT_NAME"), Some("/env"));
    assert_eq!(get("PATH_INFO"), Some("/sub/path"));
    assert_eq!(get("SERVER_NAME"), Some("127.0.0.1"));
    assert_eq!(get("SERVER_PORT"), Some(port.to_string().as_str()));
    assert_eq!(get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
    assert_eq!(get("REQUEST_METHOD"), Some("GET"));
    assert_eq!(get("HTTP_X_CUSTOM"), Some("hello there"));
    assert_eq!(get("HTTP_X_MULTI"), Some("a, b"));
    assert_eq!(get("HTTP_HOST"), Some(format!("127.0.0.1:{port}").as_str()));
    assert!(get("HTTP_UPGRADE").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin:/bin"));
    assert_eq!(get("WSSD_TEST_PASSED"), Some("yes"), "listed in pass_env");
    assert_eq!(get("WSSD_TEST_SECRET"), None, "not listed: must not leak");
    assert_eq!(get("HTTP_AUTHORIZATION"), None, "credentials withheld");
    assert_eq!(get("HTTP_PROXY"), None, "httpoxy");
    assert_eq!(get("HTTP_X_SNEAKY"), None, "underscore names dropped");
    assert_eq!(get("HTTPS"), None, "plain connection");
    for name in env.keys() {
        assert!(
            name.starts_with("HTTP_")
                || CGI.contains(&name.as_str())
                || SHELL_ADDS.contains(&name.as_str())
                || name == "PATH"
                || name == "WSSD_TEST_PASSED",
            "unexpected variable {name} in {env:#?}"
        );
    }
    let close = close.expect("close code");
    assert_eq!(u16::from(close.code), 1000);

    // wss:// on a route without pass_env.
    let tls = server.tls_connect().await;
    let local = tls.get_ref().0.local_addr().unwrap();
    let tls_port = server.tls_addr().port();
    let url = format!("wss://localhost:{tls_port}/bare");
    let (mut wss, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("handshake");
    let (messages, _) = until_close(&mut wss).await;
    let env = env_map(&messages);
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("HTTPS"), Some("on"), "{env:#?}");
    assert_eq!(get("SERVER_PORT"), Some(tls_port.to_string().as_str()));
    assert_eq!(get("SERVER_NAME"), Some("localhost"));
    assert_eq!(get("REMOTE_PORT"), Some(local.port().to_string().as_str()));
    assert_eq!(get("SCRIPT_NAME"), Some("/bare"));
    assert_eq!(get("PATH_INFO"), Some(""));
    assert_eq!(get("QUERY_STRING"), Some(""));
    assert_eq!(
        get("WSSD_TEST_PASSED"),
        None,
        "not in this route's pass_env"
    );
    assert_eq!(get("WSSD_TEST_SECRET"), None);
}

#[tokio::test]
async fn text_lines_round_trip_and_binary_is_refused() {
    let server = Wssd::builder()
        .plain_only()
        .args([
            "--route",
            &format!("/echo=exec:{}", fixture("line-echo.py")),
        ])
        .spawn()
        .await;
    let mut ws = server.ws("/echo").await;
    for line in ["hello", "", "ünïcödé ✓", &"x".repeat(100_000)] {
        send(&mut ws, Message::text(line)).await;
        assert_eq!(next_data(&mut ws).await, Message::text(line));
    }
    // A message with a newline reaches the program as two lines.
    send(&mut ws, Message::text("a\nb")).await;
    assert_eq!(next_data(&mut ws).await, Message::text("a"));
    assert_eq!(next_data(&mut ws).await, Message::text("b"));
    // Pipelined messages come back in order.
    for i in 0..200 {
        send(&mut ws, Message::text(format!("line {i}"))).await;
    }
    for i in 0..200 {
        assert_eq!(next_data(&mut ws).await, Message::text(format!("line {i}")));
    }
    ws.close(None).await.expect("close");
    let (_, close) = until_close(&mut ws).await;
    assert!(close.is_none_or(|c| u16::from(c.code) == 1005 || u16::from(c.code) == 1000));

    // A text route takes text only.
    let mut ws = server.ws("/echo").await;
    send(&mut ws, Message::binary(vec![1u8, 2, 3])).await;
    let (_, close) = until_close(&mut ws).await;
    assert_eq!(u16::from(close.expect("close code").code), 1003);
}

#[tokio::test]
async fn binary_mode_round_trips_raw_bytes() {
    let (_dir, file) =
        config("[[route]]\npath = \"/cat\"\nkind = \"exec\"\ncommand = \"cat\"\nbinary = true\n");
    let server = Wssd::builder()
        .plain_only()
        .args(["--config", file.to_str().unwrap()])
        .spawn()
        .await;
    let mut ws = server.ws("/cat").await;
    let all: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    for payload in [all, big] {
        send(&mut ws, Message::binary(payload.clone())).await;
        // Stdout chunks arrive as binary messages of at most 16 KiB.
        let mut back = Vec::new();
        while back.len() < payload.len() {
            match next_data(&mut ws).await {
                Message::Binary(b) => {
                    assert!(b.len() <= 16 * 1024);
                    back.extend_from_slice(&b);
                }
                other => panic!("binary mode sent {other:?}"),
            }
        }
        assert_eq!(back, payload);
    }
    ws.close(None).await.expect("close");
    until_close(&mut ws).await;
}

/// The state letter and parent of a process, `None` when it does not exist.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn exists(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Children of `parent` (any state, zombies included).
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// Waits for the PIDs file the fixture writes.
async fn read_pids(file: &Path) -> (i32, i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let mut it = text.split_whitespace().map(|p| p.parse().unwrap());
            if let (Some(a), Some(b)) = (it.next(), it.next()) {
                return (a, b);
            }
        }
        assert!(Instant::now() < deadline, "no pid file {}", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the program (wssd's child) is gone, reaped, and its
/// background child is dead (gone, or a zombie waiting for init).
async fn assert_group_gone(wssd: i32, program: i32, background: i32, limit: Duration) {
    let start = Instant::now();
    loop {
        let program_gone = !exists(program);
        let background_dead = match proc_stat(background) {
            None => true,
            Some((state, ppid)) => state == 'Z' && ppid != wssd,
        };
        if program_gone && background_dead {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "after {limit:?}: program {program} {:?}, background {background} {:?}",
            proc_stat(program),
            proc_stat(background)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn client_leaving_kills_and_reaps_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let polite = dir.path().join("polite");
    let stubborn = dir.path().join("stubborn");
    let script = fixture("pid-sleep.sh");
    let server = Wssd::builder()
        .plain_only()
        .args([
            "--route",
            &format!("/polite=exec:{script} {}", polite.display()),
        ])
        .args([
            "--route",
            &format!("/stubborn=exec:{script} {} stubborn", stubborn.display()),
        ])
        .spawn()
        .await;
    let wssd = server.child.id() as i32;

    let mut a = server.ws("/polite").await;
    let mut b = server.ws("/stubborn").await;
    assert_eq!(next_data(&mut a).await, Message::text("ready"));
    assert_eq!(next_data(&mut b).await, Message::text("ready"));
    let (a_pid, a_bg) = read_pids(&polite).await;
    let (b_pid, b_bg) = read_pids(&stubborn).await;
    for pid in [a_pid, a_bg, b_pid, b_bg] {
        assert!(exists(pid), "{pid} should run while the client is there");
    }
    assert_eq!(
        proc_stat(a_pid).unwrap().1,
        wssd,
        "the program is wssd's child"
    );

    // One client closes properly, the other just drops the TCP connection.
    a.close(None).await.expect("close");
    until_close(&mut a).await;
    drop(b);

    // SIGTERM ends the polite group at once; the stubborn one ignores it and
    // needs the SIGKILL after the 2 s grace.
    let started = Instant::now();
    assert_group_gone(wssd, a_pid, a_bg, Duration::from_secs(5)).await;
    assert_group_gone(wssd, b_pid, b_bg, Duration::from_secs(6)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the stubborn group ended before the grace period: SIGTERM was not ignored?"
    );
    assert_eq!(
        children_of(wssd),
        Vec::<i32>::new(),
        "no child (or zombie) left"
    );
}

#[tokio::test]
async fn exit_status_becomes_the_close_code_and_stderr_is_logged() {
    // A program that disappears after startup checks: 1011 at connect time.
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.sh");
    std::fs::copy(fixture("exit.sh"), &gone).unwrap();
    let server = Wssd::builder()
        .plain_only()
        .args(["--route", &format!("/exit=exec:{}", fixture("exit.sh"))])
        .args(["--route", &format!("/gone=exec:{}", gone.display())])
        .spawn()
        .await;
    let wssd = server.child.id() as i32;
    std::fs::remove_file(&gone).unwrap();
    let mut ws = server.ws("/gone").await;
    let (_, close) = until_close(&mut ws).await;
    let close = close.expect("close code");
    assert_eq!(u16::from(close.code), 1011);
    assert_eq!(close.reason.as_str(), "could not start the program");

    let mut ws = server.ws("/exit").await;
    let (messages, close) = until_close(&mut ws).await;
    assert_eq!(messages, [Message::text("bye")]);
    let close = close.expect("close code");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "process exited with status 0");

    let mut ws = server.ws("/exit?3").await;
    let (messages, close) = until_close(&mut ws).await;
    assert_eq!(messages, [Message::text("bye")]);
    let close = close.expect("close code");
    assert_eq!(u16::from(close.code), 1011);
    assert_eq!(close.reason.as_str(), "process exited with status 3");

    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains("stderr: leaving with 3") {
        assert!(
            Instant::now() < deadline,
            "stderr line not logged:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("stderr: leaving with 3"))
        .unwrap();
    assert!(
        line.contains("conn"),
        "connection id in the log line: {line}"
    );
    assert_eq!(children_of(wssd), Vec::<i32>::new(), "programs are reaped");
}

#[tokio::test]
async fn process_cap_answers_503_until_a_slot_frees() {
    let (_dir, file) = config(&format!(
        "[[route]]\npath = \"/one\"\nkind = \"exec\"\ncommand = \"{}\"\nmax_processes = 1\n",
        fixture("line-echo.py")
    ));
    let server = Wssd::builder()
        .plain_only()
        .args(["--config", file.to_str().unwrap()])
        .spawn()
        .await;
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let mut first = server.ws("/one").await;
    send(&mut first, Message::text("hi")).await;
    assert_eq!(next_data(&mut first).await, Message::text("hi"));
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let r = http_get(tcp, "127.0.0.1", "/one", &upgrade).await;
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert!(r.body_text().contains("max_processes"), "{}", r.body_text());

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
        let r = http_get(tcp, "127.0.0.1", "/one", &upgrade).await;
        if r.status == 101 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "the slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn flooding_program_is_backpressured() {
    let server = Wssd::builder()
        .plain_only()
        .args(["--route", &format!("/flood=exec:{}", fixture("flood.sh"))])
        .spawn()
        .await;
    let pid = server.child.id();
    let mut ws: WebSocketStream<TcpStream> = server.ws("/flood").await;
    let expected = Message::text("0".repeat(1024));
    // Let buffers fill, then read slowly for a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let start = Instant::now();
    let mut read = 0u32;
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(next_data(&mut ws).await, expected);
        read += 1;
        if read.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 50 * 1024,
        "wssd grew from {before} KiB to {after} KiB while the client read {read} messages"
    );
    // The client leaves properly: wssd answers the close even mid-flood.
    ws.close(None).await.expect("close");
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("no close reply: {other:?}"),
            }
        }
    })
    .await
    .expect("close reply within 10 s");
    assert!(reply.is_none_or(|f| u16::from(f.code) == 1005 || u16::from(f.code) == 1000));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !children_of(pid as i32).is_empty() {
        assert!(Instant::now() < deadline, "flood program not reaped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn idle_timeout_and_shutdown_end_the_program_too() {
    let dir = tempfile::tempdir().unwrap();
    let script = fixture("pid-sleep.sh");
    let idle_pids = dir.path().join("idle");
    let idle = Wssd::builder()
        .plain_only()
        .args(["--idle-timeout", "1"])
        .args([
            "--route",
            &format!("/p=exec:{script} {}", idle_pids.display()),
        ])
        .spawn()
        .await;
    let stop_pids = dir.path().join("stop");
    let mut stopping = Wssd::builder()
        .plain_only()
        .args([
            "--route",
            &format!("/p=exec:{script} {}", stop_pids.display()),
        ])
        .spawn()
        .await;

    let mut a = idle.ws("/p").await;
    let mut b = stopping.ws("/p").await;
    assert_eq!(next_data(&mut b).await, Message::text("ready"));
    let (b_pid, b_bg) = read_pids(&stop_pids).await;
    stopping.signal(libc::SIGTERM);

    // Idle: output counts as activity; then a second of silence closes 1000.
    let (messages, close) = until_close(&mut a).await;
    assert_eq!(messages, [Message::text("ready")]);
    let close = close.expect("close code");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1000, "idle timeout")
    );
    let (a_pid, a_bg) = read_pids(&idle_pids).await;
    let idle_pid = idle.child.id() as i32;
    assert_group_gone(idle_pid, a_pid, a_bg, Duration::from_secs(5)).await;

    // Shutdown: 1001, the group is ended, wssd exits 0.
    let (_, close) = until_close(&mut b).await;
    assert_eq!(u16::from(close.expect("close code").code), 1001);
    drop(b);
    let stopping_pid = stopping.child.id() as i32;
    let status = stopping.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", stopping.stderr());
    assert_group_gone(stopping_pid, b_pid, b_bg, Duration::from_secs(5)).await;
}
