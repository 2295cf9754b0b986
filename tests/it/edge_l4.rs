//! The listener edge (issue 12): PROXY protocol v1/v2 from trusted peers,
//! the per-IP connection rate and cap with summarised refusals, the
//! redirect of plain listeners to https, and plain HTTP on a TLS port.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Wssd, http_get, parse_response, recording_upstream, run_bounded, ws_over};

fn env_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exec/env.sh")
        .to_string_lossy()
        .into_owned()
}

/// A PROXY v2 header carrying `src` (to a made-up destination).
fn proxy_v2(src: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let dst: SocketAddr = match src {
        SocketAddr::V4(_) => "10.0.0.1:443".parse().unwrap(),
        SocketAddr::V6(_) => "[2001:db8::443]:443".parse().unwrap(),
    };
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
        .build()
        .unwrap()
}

/// A PROXY v2 LOCAL header (a balancer's own health check).
fn proxy_v2_local() -> Vec<u8> {
    use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Local,
        Protocol::Unspecified,
        Addresses::Unspecified,
    )
    .build()
    .unwrap()
}

/// The environment the `env.sh` exec route printed, as `VAR=value` lines.
async fn exec_env<S>(stream: S, url: &str) -> Vec<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ws = ws_over(stream, url).await;
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(deadline - Instant::now(), ws.next()).await {
        match msg {
            Message::Text(t) => lines.push(t.to_string()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    lines
}

fn var<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

/// Whether the server closed `stream` without answering (EOF or reset)
/// within `limit`.
async fn closed_silently(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// The status of `GET /` on `tcp`; 0 when the server closed it unanswered
/// (write errors included: the server may close before the request).
async fn status_of(mut tcp: TcpStream) -> u16 {
    let _ = tcp
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    parse_response(&raw).status
}

/// A TCP connection to `to` from the local address `from` (127/8 all
/// routes to lo on Linux).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test]
async fn proxy_protocol_carries_the_client_address_on_both_listeners() {
    let server = Wssd::builder()
        .with_http()
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
        .args(["--route", "/=static"])
        .args(["--route", &format!("/env=exec:{}", env_script())])
        .spawn()
        .await;
    // v1 on the plain listener.
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\r\n")
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/env", server.http_addr().port());
    let env = exec_env(tcp, &url).await;
    assert_eq!(var(&env, "REMOTE_ADDR"), Some("192.0.2.7"), "{env:?}");
    assert_eq!(var(&env, "REMOTE_PORT"), Some("40000"));
    // v2 (IPv6 client) on the TLS listener: TLS starts right after it.
    let mut tcp = TcpStream::connect(server.tls_addr()).await.unwrap();
    tcp.write_all(&proxy_v2("[2001:db8::5]:1234".parse().unwrap()))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(server.client_tls())
        .connect(name, tcp)
        .await
        .expect("TLS after the PROXY header");
    let url = format!("wss://localhost:{}/env", server.tls_addr().port());
    let env = exec_env(tls, &url).await;
    assert_eq!(var(&env, "REMOTE_ADDR"), Some("2001:db8::5"), "{env:?}");
    assert_eq!(var(&env, "HTTPS"), Some("on"));
    // v2 LOCAL: the balancer's own address stands.
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(&proxy_v2_local()).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/env", server.http_addr().port());
    let env = exec_env(tcp, &url).await;
    assert_eq!(var(&env, "REMOTE_ADDR"), Some("127.0.0.1"), "{env:?}");
    // curl's own PROXY v1 header, then TLS and HTTP.
    let out = run_bounded(
        Command::new("curl")
            .args(["-sS", "--haproxy-protocol", "--cacert"])
            .arg(server.cert_path())
            .arg(format!("https://localhost:{}/", server.tls_addr().port())),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<html"));
}

#[tokio::test]
async fn per_ip_cap_counts_the_carried_address() {
    let server = Wssd::builder()
        .plain_only()
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.0/8"])
        .args(["--max-connections-per-ip", "1"])
        .spawn()
        .await;
    let url = format!("ws://127.0.0.1:{}/ws/echo", server.http_addr().port());
    let open = |header: &'static [u8]| {
        let addr = server.http_addr();
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(header).await.unwrap();
            tcp
        }
    };
    let _a = ws_over(
        open(b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 80\r\n").await,
        &url,
    )
    .await;
    // Same balancer, another client: not counted with the first.
    let _b = ws_over(
        open(b"PROXY TCP4 192.0.2.2 10.0.0.1 1000 80\r\n").await,
        &url,
    )
    .await;
    // The first client again: past its cap, closed without an answer.
    let mut c = open(b"PROXY TCP4 192.0.2.1 10.0.0.1 1001 80\r\n").await;
    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(closed_silently(&mut c, Duration::from_secs(5)).await);
    assert_eq!(
        server
            .metric("wssd_connections_refused_total{reason=\"per_ip\"}")
            .await,
        1.0
    );
    server
        .wait_for_log("refused a connection from 192.0.2.1: --max-connections-per-ip 1 reached")
        .await;
}

#[tokio::test]
async fn untrusted_peers_and_bad_headers_are_refused_within_the_deadline() {
    // 127.0.0.1 is not a trusted proxy here.
    let server = Wssd::builder()
        .plain_only()
        .args(["--proxy-protocol", "--trusted-proxy", "10.0.0.0/8"])
        .spawn()
        .await;
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let _ = tcp
        .write_all(b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(closed_silently(&mut tcp, Duration::from_secs(5)).await);
    // Trusted, but garbage, a partial header, or a slow one.
    let server = Wssd::builder()
        .plain_only()
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
        .args(["--handshake-timeout", "1"])
        .spawn()
        .await;
    let inputs: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1000",
        b"",
    ];
    for input in inputs {
        let start = Instant::now();
        let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
        tcp.write_all(input).await.unwrap();
        assert!(
            closed_silently(&mut tcp, Duration::from_secs(5)).await,
            "{input:?} was answered"
        );
        assert!(start.elapsed() < Duration::from_secs(3), "{input:?}");
    }
    assert_eq!(
        server
            .metric("wssd_connections_refused_total{reason=\"proxy_protocol\"}")
            .await,
        3.0
    );
    // A valid header still works after all that.
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
    let r = http_get(tcp, "127.0.0.1", "/", &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn connection_rate_refuses_past_the_burst_and_summarises() {
    let server = Wssd::builder()
        .plain_only()
        .args(["--connection-rate-per-ip", "5"])
        .spawn()
        .await;
    let (mut served, mut refused) = (0, 0);
    let start = Instant::now();
    for _ in 0..40 {
        let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
        match status_of(tcp).await {
            200 => served += 1,
            0 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    // Burst 10, plus at most 5 per second that passed.
    let refill = (start.elapsed().as_secs_f64() * 5.0).ceil() as i32;
    assert!(
        (10..=10 + refill).contains(&served),
        "{served} served, {refused} refused"
    );
    // Another address is not affected.
    let other = connect_from([127, 0, 0, 2], server.http_addr()).await;
    assert_eq!(status_of(other).await, 200);
    assert_eq!(
        server
            .metric("wssd_connections_refused_total{reason=\"rate\"}")
            .await,
        f64::from(refused)
    );
    // One line at once, one summary after the interval: O(1) lines.
    server
        .wait_for_log("refused a connection from 127.0.0.1: --connection-rate-per-ip 5 exceeded")
        .await;
    let summary = format!(
        "refused {} connections in the last 10 s: rate {} (top 127.0.0.1: {})",
        refused - 1,
        refused - 1,
        refused - 1
    );
    server
        .wait_for_log_within(&summary, Duration::from_secs(15))
        .await;
    let lines = server
        .stderr()
        .lines()
        .filter(|l| l.contains("refused"))
        .count();
    assert_eq!(lines, 2, "{}", server.stderr());
}

#[tokio::test]
async fn per_ip_refusals_do_not_flood_the_log_and_the_default_cap_is_roomy() {
    let server = Wssd::builder()
        .plain_only()
        .args(["--max-connections-per-ip", "2"])
        .spawn()
        .await;
    let _a = server.ws("/ws/echo").await;
    let _b = server.ws("/ws/echo").await;
    for _ in 0..200 {
        let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(closed_silently(&mut tcp, Duration::from_secs(5)).await);
    }
    assert_eq!(
        server
            .metric("wssd_connections_refused_total{reason=\"per_ip\"}")
            .await,
        200.0
    );
    let lines = server
        .stderr()
        .lines()
        .filter(|l| l.contains("refused"))
        .count();
    assert_eq!(lines, 1, "{}", server.stderr());
    // The default cap holds a 300-connection test from one address (the old
    // default, 256, did not).
    let server = Wssd::builder().plain_only().spawn().await;
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(server.http_addr()).await.unwrap());
    }
    for tcp in held.iter_mut() {
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
    }
    for tcp in held.iter_mut() {
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await;
        assert_eq!(parse_response(&raw).status, 200);
    }
}

#[tokio::test]
async fn redirect_http_sends_plain_listeners_to_https() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("open")).unwrap();
    std::fs::write(dir.path().join("open/hello.txt"), "hello\n").unwrap();
    let config = dir.path().join("wssd.toml");
    std::fs::write(
        &config,
        format!(
            "redirect_http = true\n\
             [[route]]\npath = \"/\"\nkind = \"static\"\n\
             [[route]]\npath = \"/ws/echo\"\nkind = \"echo\"\n\
             [[route]]\npath = \"/open\"\nkind = \"static\"\ndir = \"{}\"\nplain = true\n",
            dir.path().join("open").display()
        ),
    )
    .unwrap();
    let server = Wssd::builder()
        .with_http()
        .arg("--config")
        .arg(config.to_str().unwrap())
        .spawn()
        .await;
    let (http, tls) = (server.http_addr().port(), server.tls_addr().port());
    let out = run_bounded(
        Command::new("curl")
            .args(["-sS", "-i"])
            .arg(format!("http://localhost:{http}/a/b?x=1&y=2")),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 308"), "{text}");
    assert!(
        text.contains(&format!("location: https://localhost:{tls}/a/b?x=1&y=2")),
        "{text}"
    );
    // WebSocket upgrades are redirected too, to wss://; IPv4 Host kept.
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let r = http_get(tcp, &format!("127.0.0.1:{http}"), "/ws/echo", &upgrade).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("wss://127.0.0.1:{tls}/ws/echo").as_str())
    );
    // `plain = true` is served; ACME HTTP-01 is answered (404: none pending).
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let r = http_get(tcp, "localhost", "/open/hello.txt", &[]).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "hello\n"));
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let r = http_get(tcp, "localhost", "/.well-known/acme-challenge/tok", &[]).await;
    assert_eq!(r.status, 404, "{}", r.body_text());
    // No Host: nothing to redirect to.
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    assert_eq!(parse_response(&raw).status, 400);
    // The TLS listener is not redirected.
    let r = http_get(server.tls_connect().await, "localhost", "/", &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400() {
    let server = Wssd::builder().spawn().await;
    let port = server.tls_addr().port();
    let out = run_bounded(
        Command::new("curl")
            .args(["-sS", "-i"])
            .arg(format!("http://127.0.0.1:{port}/ws/echo")),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "This port speaks HTTPS. Use https://127.0.0.1:{port}/"
        )),
        "{text}"
    );
    // A hostile Host is not echoed.
    let mut tcp = TcpStream::connect(server.tls_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: <b>x</b>\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    let r = parse_response(&raw);
    assert_eq!(r.status, 400);
    assert!(!r.body_text().contains('<'), "{}", r.body_text());
    assert_eq!(
        server
            .metric("wssd_handshake_failures_total{reason=\"plain_http\"}")
            .await,
        2.0
    );
    // TLS on the same port is untouched; garbage still just closes.
    let r = http_get(server.tls_connect().await, "localhost", "/", &[]).await;
    assert_eq!(r.status, 200);
    let mut tcp = TcpStream::connect(server.tls_addr()).await.unwrap();
    tcp.write_all(&[0x00, 0x01, 0x02, 0x03]).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    assert!(!raw.starts_with(b"HTTP/"));
}

#[tokio::test]
async fn proxy_upstreams_see_the_carried_address_not_the_clients_claim() {
    let up = recording_upstream().await;
    let server = Wssd::builder()
        .plain_only()
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
        .args(["--route", &format!("/=proxy:http://127.0.0.1:{up}")])
        .spawn()
        .await;
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\r\n")
        .await
        .unwrap();
    // The client's own X-Forwarded-For is not believed: its peer (the
    // carried address) is not a trusted proxy.
    let r = http_get(tcp, "box.lan", "/x", &[("X-Forwarded-For", "6.6.6.6")]).await;
    let head = r.body_text().to_ascii_lowercase();
    assert_eq!(r.status, 200, "{head}");
    assert!(head.contains("x-forwarded-for: 192.0.2.7\r\n"), "{head}");
    assert!(head.contains("x-real-ip: 192.0.2.7\r\n"), "{head}");
    assert!(!head.contains("6.6.6.6"), "{head}");
}
