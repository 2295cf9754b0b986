//! Starts the real `wssd` binary on loopback (free ports, a temporary state
//! folder, readiness through `/readyz`) and gives tests real clients: TLS
//! that verifies the server's certificate, WebSocket and raw HTTP.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub const BIN: &str = env!("CARGO_BIN_EXE_wssd");

/// A port that was free a moment ago, chosen *below* the kernel's
/// ephemeral range: ports from `bind(:0)` come from the same range as the
/// local ports of outgoing connections, so with many tests connecting in
/// parallel one of their client sockets could take the port before the
/// server binds it. Each call moves on to the next port (starting from a
/// pid-dependent offset, so concurrent test processes rarely meet).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = 10_000;
    let high: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .filter(|&h: &u32| h > low + 1_000)
        .unwrap_or(32_768);
    let span = high - low;
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// Builds a `wssd` command line.
pub struct Builder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    tls: bool,
    http: bool,
    cwd: Option<PathBuf>,
    /// A state folder to use instead of a new temporary one.
    state_dir: Option<PathBuf>,
    /// Fixed ports instead of free ones.
    tls_port: Option<u16>,
    http_port: Option<u16>,
    /// A lower soft open-file limit for the process (the hard one stays).
    soft_open_files: Option<u64>,
}

/// A running `wssd`; killed (by PID) when dropped.
pub struct Wssd {
    pub child: Child,
    pub tls_port: Option<u16>,
    pub http_port: Option<u16>,
    pub admin_port: u16,
    pub state: TempDir,
    /// Just before the process was spawned.
    pub started: Instant,
    stderr: Arc<Mutex<String>>,
}

impl Wssd {
    pub fn builder() -> Builder {
        Builder {
            args: Vec::new(),
            env: Vec::new(),
            tls: true,
            http: false,
            cwd: None,
            state_dir: None,
            tls_port: None,
            http_port: None,
            soft_open_files: None,
        }
    }

    /// The self-signed certificate the server generated.
    pub fn cert_path(&self) -> PathBuf {
        self.state.path().join("self-signed").join("cert.pem")
    }

    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls_port.expect("no TLS listener")))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port.expect("no plain listener")))
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to 5 s) until the server's log contains `needle`; the log
    /// is read by a background thread, so it may lag behind events.
    pub async fn wait_for_log(&self, needle: &str) {
        self.wait_for_log_within(needle, Duration::from_secs(5))
            .await;
    }

    /// [`Wssd::wait_for_log`] with another time limit.
    pub async fn wait_for_log_within(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never contained {needle:?} within {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit (bounded).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "wssd did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> HttpResponse {
        let stream = TcpStream::connect(("127.0.0.1", self.admin_port))
            .await
            .expect("admin connect");
        http_get(stream, "127.0.0.1", path, &[]).await
    }

    /// The value of one metric line (exact name and labels as rendered).
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let body = self.admin_get("/metrics").await.body_text();
        metric_value(&body, name_and_labels)
    }

    /// TLS client config trusting only the server's generated certificate.
    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        client_tls_trusting(&self.cert_path())
    }

    /// Opens a verified TLS connection to the TLS listener (SNI localhost).
    pub async fn tls_connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        tls_connect(self.tls_addr(), &self.client_tls()).await
    }

    /// wss:// WebSocket with certificate verification.
    pub async fn wss(
        &self,
        path: &str,
    ) -> WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
        let tls = self.tls_connect().await;
        let url = format!("wss://localhost:{}{path}", self.tls_addr().port());
        ws_over(tls, &url).await
    }

    /// ws:// WebSocket on the plain listener.
    pub async fn ws(&self, path: &str) -> WebSocketStream<TcpStream> {
        let tcp = TcpStream::connect(self.http_addr()).await.expect("connect");
        let url = format!("ws://127.0.0.1:{}{path}", self.http_addr().port());
        ws_over(tcp, &url).await
    }
}

impl Drop for Wssd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Builder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, list: I) -> Self {
        self.args.extend(list.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Adds a plain listener beside the TLS one.
    pub fn with_http(mut self) -> Self {
        self.http = true;
        self
    }

    /// No TLS listener: `--tls off` with a plain listener.
    pub fn plain_only(mut self) -> Self {
        self.tls = false;
        self.http = true;
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Uses `dir` as the state folder (and working folder), e.g. to restart
    /// on the same state; `Wssd::state` is then an unused temporary folder.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// The TLS listener on `port` instead of a free one.
    pub fn tls_port(mut self, port: u16) -> Self {
        self.tls_port = Some(port);
        self
    }

    /// Adds a plain listener on `port`.
    pub fn http_port(mut self, port: u16) -> Self {
        self.http = true;
        self.http_port = Some(port);
        self
    }

    /// Starts the process with the soft open-file limit `n` (a shell's
    /// `ulimit -Sn n`; the hard limit is left as it is).
    pub fn soft_open_files(mut self, n: u64) -> Self {
        self.soft_open_files = Some(n);
        self
    }

    /// The listener ports: the fixed ones, else free ones.
    fn ports(&self) -> (Option<u16>, Option<u16>) {
        (
            self.tls.then(|| self.tls_port.unwrap_or_else(free_port)),
            self.http.then(|| self.http_port.unwrap_or_else(free_port)),
        )
    }

    /// The state folder: the one given, else `temp`.
    fn state_path(&self, temp: &TempDir) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf())
    }

    fn command(&self, state: &Path, admin: u16, tls: Option<u16>, http: Option<u16>) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--admin")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--state-dir")
            .arg(state);
        if let Some(p) = tls {
            cmd.arg("--listen").arg(format!("127.0.0.1:{p}"));
        } else {
            cmd.arg("--tls").arg("off");
        }
        if let Some(p) = http {
            cmd.arg("--http").arg(format!("127.0.0.1:{p}"));
        }
        cmd.args(&self.args);
        cmd.current_dir(self.cwd.clone().unwrap_or_else(|| state.to_path_buf()));
        for (k, _) in std::env::vars() {
            if k.starts_with("WSSD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(n) = self.soft_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls
            // (getrlimit, setrlimit) on a struct owned by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    let mut l = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    l.rlim_cur = n.min(l.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Starts the server and waits until `/readyz` answers 200.
    pub async fn spawn(self) -> Wssd {
        let state = tempfile::tempdir().expect("tempdir");
        let admin = free_port();
        let (tls, http) = self.ports();
        let mut cmd = self.command(&self.state_path(&state), admin, tls, http);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn wssd");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let mut server = Wssd {
            child,
            tls_port: tls,
            http_port: http,
            admin_port: admin,
            state,
            started,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!(
                    "wssd exited early with {status}; stderr:\n{}",
                    server.stderr()
                );
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", admin)).await {
                let r = http_get(stream, "127.0.0.1", "/readyz", &[]).await;
                if r.status == 200 {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "wssd not ready after 30 s; stderr:\n{}",
                server.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Runs `wssd` expecting it to exit by itself (startup errors, check).
    pub fn run_to_exit(self) -> (Output, TempDir) {
        let state = tempfile::tempdir().expect("tempdir");
        let admin = free_port();
        let (tls, http) = self.ports();
        let mut cmd = self.command(&self.state_path(&state), admin, tls, http);
        let output = run_bounded(&mut cmd, Duration::from_secs(30));
        (output, state)
    }
}

/// Runs a command with a time limit, killing it past the limit.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client config that trusts exactly the certificates in `pem_file`.
pub fn client_tls_trusting(pem_file: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem_file).expect("read cert") {
        roots.add(cert.expect("pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// TLS to `addr` with SNI `localhost`, verifying against `config`'s roots.
pub async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    try_tls_connect(addr, config, "localhost")
        .await
        .expect("TLS handshake")
}

pub async fn try_tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).expect("server name");
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// WebSocket client handshake over any stream, with room for big messages.
pub async fn ws_over<S>(stream: S, url: &str) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .expect("WebSocket handshake");
    ws
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one GET with `Connection: close` and reads the whole response.
pub async fn http_get<S>(
    mut stream: S,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> HttpResponse
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Finds `name{labels} value` in Prometheus text; 0 when absent.
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key == name_and_labels).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Reads one request head (request line and headers, through the blank
/// line; at most 64 KiB); `None` when the peer goes away first.
pub async fn read_request_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        s.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    Some(head)
}

/// A plain HTTP upstream on 127.0.0.1 that answers every request with its
/// request head (request line and headers) as the body, so a test sees
/// what arrived. Returns its port.
pub async fn recording_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_request_head(&mut s).await else {
                    return;
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.write_all(&head).await;
            });
        }
    });
    port
}
