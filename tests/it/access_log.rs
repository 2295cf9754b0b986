//! The access log against the real binary: a line per HTTP request (no
//! query string, the bytes sent, the route, the identity of a token route)
//! and per WebSocket at its end (messages and bytes each way, the close,
//! who closed: client, server, program), in text and JSON; control
//! characters in client-chosen fields escaped; SIGUSR1 reopens the file
//! after logrotate renamed it; `off` writes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::{Wssd, http_get};

const ALICE: &str = "alice-0123456789abcdef0123";

/// A folder with a token file, a static site (`a.txt`, 11 bytes), the exit
/// program and `wssd.toml`; returns it and the config path.
fn setup() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tokens.txt"), format!("alice:{ALICE}\n")).unwrap();
    std::fs::create_dir(d.join("site")).unwrap();
    std::fs::write(d.join("site/a.txt"), "hello site\n").unwrap();
    let exit = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exec/exit.sh");
    let toml = format!(
        r#"
[[route]]
path = "/ws/echo"
kind = "echo"
auth = {{ kind = "token", tokens_file = "{dir}/tokens.txt" }}

[[route]]
path = "/open"
kind = "echo"

[[route]]
path = "/site"
kind = "static"
dir = "{dir}/site"

[[route]]
path = "/exit"
kind = "exec"
command = ["{exit}"]
"#,
        dir = d.display(),
        exit = exit.display()
    );
    let file = d.join("wssd.toml");
    std::fs::write(&file, toml).unwrap();
    (dir, file)
}

async fn start(config: &Path, access: &[&str]) -> Wssd {
    Wssd::builder()
        .plain_only()
        .args(["--config", config.to_str().unwrap()])
        .args(access.iter().copied())
        .spawn()
        .await
}

/// The file's lines once at least `n` are there (the writer runs behind
/// the connections; bounded at 5 s).
fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, want {n}:\n{text}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn get(server: &Wssd, target: &str) -> u16 {
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    http_get(tcp, "127.0.0.1", target, &[]).await.status
}

/// Opens the token route as alice, echoes `hi` and `there!`, then closes
/// with 1000 and a reason that tries to forge a log line.
async fn echo_as_alice(server: &Wssd) {
    let url = format!("ws://127.0.0.1:{}/ws/echo", server.http_addr().port());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {ALICE}").parse().unwrap());
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    for text in ["hi", "there!"] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: FORGED.into(),
    }))
    .await
    .unwrap();
    while ws.next().await.is_some() {}
}

/// A close reason with a newline and an escape sequence: an attempt to
/// start a second, forged line.
const FORGED: &str = "bye\n1.2.3.4:1 - [x] \"GET /admin HTTP/1.1\" 200\u{1b}[2J";

/// Opens `/exit`: the program writes `bye` and exits 0 (1000, closed by it).
async fn exit_program(server: &Wssd) {
    exit_program_at(server, "/exit").await;
}

async fn exit_program_at(server: &Wssd, path: &str) {
    let mut ws = server.ws(path).await;
    while let Some(Ok(m)) = ws.next().await {
        if m.is_close() {
            break;
        }
    }
}

#[tokio::test]
async fn text_lines_for_requests_and_websockets_escape_what_clients_choose() {
    let (dir, config) = setup();
    let log = dir.path().join("access.log");
    let server = start(&config, &["--access-log", log.to_str().unwrap()]).await;

    assert_eq!(
        get(&server, "/site/a.txt?access_token=secret-in-query").await,
        200
    );
    assert_eq!(get(&server, "/ws/echo").await, 401);
    echo_as_alice(&server).await;
    let lines = lines_of(&log, 3);
    assert_eq!(lines.len(), 3, "{lines:#?}");

    let file = &lines[0];
    assert!(file.starts_with("127.0.0.1:"), "{file}");
    assert!(file.contains(" - ["), "no identity: {file}");
    assert!(
        file.contains("\"GET /site/a.txt HTTP/1.1\" 200 11 route=\"/site\""),
        "{file}"
    );
    assert!(
        !file.contains("secret-in-query"),
        "the query reached the log: {file}"
    );
    assert!(file.contains("duration_ms="), "{file}");
    assert!(
        file.contains(&format!("listener=127.0.0.1:{}", server.http_addr().port())),
        "{file}"
    );

    let refused = &lines[1];
    assert!(
        refused.contains("\"GET /ws/echo HTTP/1.1\" 401 "),
        "{refused}"
    );
    assert!(refused.contains("route=\"/ws/echo\""), "{refused}");

    let ws = &lines[2];
    assert!(ws.contains(" \"alice\" ["), "identity: {ws}");
    for field in [
        "\"WEBSOCKET /ws/echo\" 1000 - route=\"/ws/echo\"",
        "messages_in=2 messages_out=2 bytes_in=8 bytes_out=8",
        "closed_by=client",
        // The forged line stays inside the quoted, escaped reason.
        "close_reason=\"bye\\n1.2.3.4:1 - [x] \\\"GET /admin HTTP/1.1\\\" 200\\u{1b}[2J\"",
    ] {
        assert!(ws.contains(field), "{field} missing in {ws}");
    }
    assert!(
        !server.stderr().contains("\"WEBSOCKET"),
        "file only, not stderr"
    );
}

#[tokio::test]
async fn json_lines_parse_and_name_who_closed() {
    let (dir, config) = setup();
    let log = dir.path().join("access.json");
    let server = start(
        &config,
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
    )
    .await;
    assert_eq!(get(&server, "/site/a.txt").await, 200);
    echo_as_alice(&server).await;
    exit_program(&server).await;
    let lines = lines_of(&log, 3);
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();

    let http = &parsed[0];
    assert_eq!(http["type"], "http");
    assert_eq!(http["method"], "GET");
    assert_eq!(http["path"], "/site/a.txt");
    assert_eq!(http["status"], 200);
    assert_eq!(http["bytes"], 11);
    assert_eq!(http["route"], "/site");
    assert_eq!(http["version"], "HTTP/1.1");
    assert_eq!(http["identity"], Value::Null);
    assert!(http["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(http["time"].as_str().unwrap().ends_with('Z'));

    let ws = &parsed[1];
    assert_eq!(ws["type"], "websocket");
    assert_eq!(ws["identity"], "alice");
    assert_eq!(ws["route"], "/ws/echo");
    assert_eq!(
        (
            &ws["messages_in"],
            &ws["messages_out"],
            &ws["bytes_in"],
            &ws["bytes_out"]
        ),
        (&2.into(), &2.into(), &8.into(), &8.into())
    );
    assert_eq!(ws["close_code"], 1000);
    assert_eq!(ws["close_reason"], FORGED);
    assert_eq!(ws["closed_by"], "client");

    let exec = &parsed[2];
    assert_eq!(exec["route"], "/exit");
    assert_eq!(exec["closed_by"], "program");
    assert_eq!(exec["close_code"], 1000);
    assert_eq!(exec["close_reason"], "process exited with status 0");
    assert_eq!(exec["messages_out"], 1);
}

#[tokio::test]
async fn sigusr1_reopens_the_file_after_logrotate_renamed_it() {
    let (dir, config) = setup();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let server = start(&config, &["--access-log", log.to_str().unwrap()]).await;
    assert_eq!(get(&server, "/site/a.txt?before").await, 200);
    lines_of(&log, 1);
    std::fs::rename(&log, &rotated).unwrap();
    server.signal(libc::SIGUSR1);
    server.wait_for_log("reopening the access log").await;
    assert_eq!(get(&server, "/site/missing.txt").await, 404);
    let fresh = lines_of(&log, 1);
    assert_eq!(fresh.len(), 1, "{fresh:#?}");
    assert!(
        fresh[0].contains("\"GET /site/missing.txt HTTP/1.1\" 404"),
        "{fresh:?}"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("\"GET /site/a.txt HTTP/1.1\" 200"), "{old}");
}

#[tokio::test]
async fn stderr_gets_the_lines_and_off_writes_none() {
    let (_dir, config) = setup();
    let on = start(&config, &["--access-log", "stderr"]).await;
    assert_eq!(get(&on, "/site/a.txt").await, 200);
    on.wait_for_log("\"GET /site/a.txt HTTP/1.1\" 200 11").await;

    // The default is off: same requests, no line (the server's own log
    // line after them proves the log was read past them).
    let off = start(&config, &[]).await;
    assert_eq!(get(&off, "/site/a.txt").await, 200);
    echo_as_alice(&off).await;
    off.signal(libc::SIGTERM);
    off.wait_for_log("SIGTERM received").await;
    let log = off.stderr();
    assert!(!log.contains("HTTP/1.1\" 200"), "{log}");
    assert!(!log.contains("WEBSOCKET"), "{log}");
}

#[tokio::test]
async fn a_proxied_socket_closed_by_its_upstream_says_so() {
    // The upstream is a second wssd whose exec program says bye and exits:
    // it closes 1000, which the front relays and logs as the upstream's.
    let (dir, config) = setup();
    let back = start(&config, &[]).await;
    let log = dir.path().join("front.log");
    let front = Wssd::builder()
        .plain_only()
        .args([
            "--route",
            &format!("/p=proxy:ws://127.0.0.1:{}/exit", back.http_addr().port()),
            "--access-log",
            log.to_str().unwrap(),
            "--access-log-format",
            "json",
        ])
        .spawn()
        .await;
    exit_program_at(&front, "/p").await;
    let lines = lines_of(&log, 1);
    let ws: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(ws["route"], "/p");
    assert_eq!(ws["closed_by"], "upstream", "{ws}");
    assert_eq!(ws["close_code"], 1000);
    assert_eq!(ws["messages_out"], 1);
    assert_eq!(ws["bytes_out"], 3);
}

#[tokio::test]
async fn a_stuck_log_drops_and_counts_lines_and_never_holds_up_requests() {
    // The log is a FIFO whose reader never reads: the pipe fills, the
    // writer thread blocks, the queue fills. Requests keep being answered;
    // the lines past the queue are dropped and counted.
    use std::os::unix::fs::OpenOptionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (dir, config) = setup();
    let fifo = dir.path().join("stuck.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let server = start(&config, &["--access-log", fifo.to_str().unwrap()]).await;
    const CONNS: usize = 4;
    const EACH: usize = 3000;
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let addr = server.http_addr();
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let reqs = "GET /none HTTP/1.1\r\nHost: a\r\n\r\n".repeat(EACH);
            let (mut r, mut w) = tcp.split();
            let write = async { w.write_all(reqs.as_bytes()).await.unwrap() };
            let read = async {
                // Status lines seen; the last 11 bytes carry over so a
                // line split between reads is counted once.
                let (mut seen, mut tail, mut buf) = (0, Vec::new(), vec![0u8; 65536]);
                while seen < EACH {
                    let n = r.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed after {seen} responses");
                    tail.extend_from_slice(&buf[..n]);
                    seen += tail.windows(12).filter(|w| *w == b"HTTP/1.1 404").count();
                    tail.drain(..tail.len() - tail.len().min(11));
                }
            };
            tokio::join!(write, read);
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("requests held up by the stuck log")
            .unwrap();
    }
    let dropped = server.metric("wssd_access_log_dropped_total").await;
    let total = (CONNS * EACH) as f64;
    assert!(dropped > 0.0, "nothing dropped");
    assert!(dropped < total, "{dropped} dropped of {total}");
}

#[tokio::test]
async fn sockets_closed_by_shutdown_are_logged_before_exit() {
    let (dir, config) = setup();
    let log = dir.path().join("access.log");
    let mut server = start(&config, &["--access-log", log.to_str().unwrap()]).await;
    let mut ws = server.ws("/open").await;
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("x"));
    server.signal(libc::SIGTERM);
    // The client answers the 1001 (tungstenite does) and goes.
    while ws.next().await.is_some() {}
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\"WEBSOCKET /open\" 1001 - route=\"/open\""),
        "{text}"
    );
    assert!(
        text.contains("close_reason=\"server shutting down\" closed_by=server"),
        "{text}"
    );
}
