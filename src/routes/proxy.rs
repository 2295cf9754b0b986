//! The `proxy` route kind: forwards WebSocket upgrades and plain HTTP
//! requests to upstreams (ws/wss/http/https), with X-Forwarded-* headers,
//! round-robin or least-connections balancing, passive health (a refusing
//! upstream is skipped for a while) and optional active probes.
//!
//! WebSockets are relayed message by message with wssd's limits on both
//! legs: max message size, keepalive pings per leg (no idle kill), close
//! codes relayed, 1014 when the upstream drops after the upgrade. Edge
//! checks (Origin, connection limits) happened before this module is called.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant as StdInstant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::config::SessionLimits;
use crate::config::limits::CLOSE_TIMEOUT;
use crate::config::route::{Balance, ProxySpec, Upstream, UpstreamScheme};
use crate::http::router::Route;
use crate::http::{Body, ConnInfo, HttpContext, text_response};
use crate::metrics::{self, HandshakeFailure, SessionMetrics};
use crate::session::{self, Ending};

/// How long an upstream that refused a connection is skipped.
const DOWN_FOR: Duration = Duration::from_secs(10);
/// Time allowed to connect (TCP and TLS) to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Interval of active health probes (`health_path`).
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Anything the proxy can talk to an upstream over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// One upstream and its health.
#[derive(Debug)]
struct Member {
    upstream: Upstream,
    /// Milliseconds since `epoch` until which the upstream is skipped.
    down_until: AtomicU64,
    /// Open connections (least-connections balancing).
    active: AtomicUsize,
}

/// A proxy route's upstream pool.
#[derive(Debug)]
pub struct ProxyRoute {
    pub spec: ProxySpec,
    path: String,
    members: Vec<Member>,
    next: AtomicUsize,
    epoch: StdInstant,
    tls: Arc<rustls::ClientConfig>,
}

impl ProxyRoute {
    /// Builds the pool; loads the upstream CA when one is given.
    pub fn new(path: &str, spec: ProxySpec) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &spec.ca {
            Some(ca) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let bytes =
                    std::fs::read(ca).map_err(|e| format!("upstream CA {}: {e}", ca.display()))?;
                for cert in CertificateDer::pem_slice_iter(&bytes) {
                    let cert = cert.map_err(|e| {
                        format!("upstream CA {}: not a PEM certificate ({e})", ca.display())
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("upstream CA {}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "upstream CA {} holds no CERTIFICATE block",
                        ca.display()
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ProxyRoute {
            members: spec
                .upstreams
                .iter()
                .map(|u| Member {
                    upstream: u.clone(),
                    down_until: AtomicU64::new(0),
                    active: AtomicUsize::new(0),
                })
                .collect(),
            spec,
            path: path.to_string(),
            next: AtomicUsize::new(0),
            epoch: StdInstant::now(),
            tls: Arc::new(tls),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_up(&self, i: usize) -> bool {
        self.members[i].down_until.load(Ordering::Relaxed) <= self.now_ms()
    }

    fn mark_down(&self, i: usize, why: &str) {
        let until = self.now_ms() + DOWN_FOR.as_millis() as u64;
        let was_up = self.is_up(i);
        self.members[i].down_until.store(until, Ordering::Relaxed);
        if was_up {
            tracing::warn!(
                route = %self.path,
                upstream = %self.members[i].upstream.url,
                "upstream marked down for {DOWN_FOR:?}: {why}"
            );
        }
    }

    fn mark_up(&self, i: usize) {
        if !self.is_up(i) {
            tracing::info!(route = %self.path, upstream = %self.members[i].upstream.url, "upstream is up again");
        }
        self.members[i].down_until.store(0, Ordering::Relaxed);
    }

    /// Healthy upstreams in the order they should be tried.
    fn candidates(&self) -> Vec<usize> {
        let n = self.members.len();
        let mut order: Vec<usize> = match self.spec.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).collect()
            }
            Balance::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let mut v: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
                v.sort_by_key(|i| self.members[*i].active.load(Ordering::Relaxed));
                v
            }
        };
        order.retain(|i| self.is_up(*i));
        order
    }

    /// Connects (TCP, then TLS for wss/https) to upstream `i`.
    async fn connect(&self, i: usize) -> Result<BoxIo, String> {
        let up = &self.members[i].upstream;
        let attempt = async {
            let tcp = TcpStream::connect((up.host.as_str(), up.port))
                .await
                .map_err(|e| format!("connect {}:{}: {e}", up.host, up.port))?;
            let _ = tcp.set_nodelay(true);
            if !up.scheme.is_tls() {
                return Ok(Box::new(tcp) as BoxIo);
            }
            let name = ServerName::try_from(up.host.clone())
                .map_err(|e| format!("bad upstream host name {}: {e}", up.host))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {}: {e}", up.url))?;
            Ok(Box::new(tls) as BoxIo)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("connect to {} timed out", up.url)),
        }
    }

    /// The upstream path for a request: nginx-style, the whole original path
    /// when the upstream URL has no path, else its path plus the part below
    /// the route prefix.
    fn target(&self, i: usize, full_path: &str, rest: &str, query: Option<&str>) -> String {
        let up = &self.members[i].upstream;
        let mut path = if up.base_path.is_empty() {
            full_path.to_string()
        } else {
            format!("{}{}", up.base_path, rest)
        };
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        path
    }
}

/// Runs active health probes (GET `health_path`) until shutdown.
pub async fn probe_loop(route: Arc<ProxyRoute>, shutdown: CancellationToken) {
    let Some(path) = route.spec.health_path.clone() else {
        return;
    };
    loop {
        for i in 0..route.members.len() {
            let ok = probe(&route, i, &path).await;
            match ok {
                Ok(()) => route.mark_up(i),
                Err(e) => route.mark_down(i, &format!("health probe {path}: {e}")),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

async fn probe(route: &ProxyRoute, i: usize, path: &str) -> Result<(), String> {
    let io = route.connect(i).await?;
    let up = &route.members[i].upstream;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, format!("{}:{}", up.host, up.port))
        .header(header::USER_AGENT, "wssd-health-probe")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", resp.status()))
    }
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies end-to-end headers and sets X-Forwarded-For/Proto/Host and
/// X-Real-IP. Incoming X-Forwarded-* are kept (appended to) only from
/// trusted proxies; otherwise they are replaced.
fn forwarded_headers(
    incoming: &HeaderMap,
    ctx: &HttpContext,
    conn: &ConnInfo,
    websocket: bool,
) -> HeaderMap {
    let mut listed: Vec<String> = Vec::new();
    for v in incoming.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            listed.extend(s.split(',').map(|t| t.trim().to_ascii_lowercase()));
        }
    }
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || listed.iter().any(|l| l == n)
            || n.starts_with("x-forwarded-")
            || n == "x-real-ip"
            || (websocket && n.starts_with("sec-websocket-") && n != "sec-websocket-protocol")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let peer_ip = match conn.peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    };
    let trusted = ctx.trusted_proxies.iter().any(|c| c.contains(peer_ip));
    let prior = |name: &str| {
        incoming
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let xff = match (trusted, prior("x-forwarded-for")) {
        (true, Some(list)) => format!("{list}, {peer_ip}"),
        _ => peer_ip.to_string(),
    };
    let real_ip = if trusted {
        prior("x-real-ip")
            .or_else(|| xff.split(',').next().map(|s| s.trim().to_string()))
            .unwrap_or_else(|| peer_ip.to_string())
    } else {
        peer_ip.to_string()
    };
    let proto = match (trusted, prior("x-forwarded-proto")) {
        (true, Some(p)) => p,
        _ => if conn.tls { "https" } else { "http" }.to_string(),
    };
    let host = match (trusted, prior("x-forwarded-host")) {
        (true, Some(h)) => Some(h),
        _ => prior("host"),
    };
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-forwarded-for", xff);
    set("x-forwarded-proto", proto);
    set("x-real-ip", real_ip);
    if let Some(h) = host {
        set("x-forwarded-host", h);
    }
    out
}

fn bad_gateway(text: &str) -> Response<Body> {
    metrics::http_response(502);
    text_response(StatusCode::BAD_GATEWAY, text)
}

/// Forwards a plain HTTP request, streaming both bodies.
pub async fn forward_http(
    req: Request<Incoming>,
    proxy: Arc<ProxyRoute>,
    ctx: &HttpContext,
    conn: &ConnInfo,
    rest: &str,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers = forwarded_headers(&parts.headers, ctx, conn, false);
    for i in proxy.candidates() {
        let io = match proxy.connect(i).await {
            Ok(io) => io,
            Err(e) => {
                proxy.mark_down(i, &e);
                continue;
            }
        };
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
                Ok(pair) => pair,
                Err(e) => {
                    proxy.mark_down(i, &e.to_string());
                    continue;
                }
            };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP connection ended");
            }
        });
        let target = proxy.target(i, parts.uri.path(), rest, parts.uri.query());
        let mut builder = Request::builder().method(parts.method.clone()).uri(target);
        if let Some(h) = builder.headers_mut() {
            *h = headers.clone();
        }
        let upstream_req = match builder.body(body) {
            Ok(r) => r,
            Err(e) => return bad_gateway(&format!("cannot build the upstream request: {e}\n")),
        };
        proxy.members[i].active.fetch_add(1, Ordering::Relaxed);
        let result = sender.send_request(upstream_req).await;
        proxy.members[i].active.fetch_sub(1, Ordering::Relaxed);
        return match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                for h in HOP_BY_HOP {
                    parts.headers.remove(*h);
                }
                let body = body.map_err(std::io::Error::other).boxed();
                Response::from_parts(parts, body)
            }
            Err(e) => {
                tracing::warn!(route = %proxy.path, upstream = %proxy.members[i].upstream.url, error = %e, "upstream request failed");
                bad_gateway("the upstream failed to answer\n")
            }
        };
    }
    bad_gateway("no upstream is available (all refused connections or are marked down)\n")
}

/// Connects a WebSocket to an upstream, then answers the client's upgrade
/// (101 with the upstream's subprotocol, 502 when no upstream answers, or
/// the upstream's own refusal status) and relays until either side closes.
pub async fn upgrade(
    mut req: Request<Incoming>,
    proxy: Arc<ProxyRoute>,
    route: Arc<Route>,
    ctx: &HttpContext,
    conn: &ConnInfo,
    key: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    let headers = forwarded_headers(req.headers(), ctx, conn, true);
    let limits = route.limits;
    let config = session::websocket_config(&limits);
    let mut connected = None;
    for i in proxy.candidates() {
        let io = match proxy.connect(i).await {
            Ok(io) => io,
            Err(e) => {
                proxy.mark_down(i, &e);
                continue;
            }
        };
        let up = &proxy.members[i].upstream;
        let scheme = if up.scheme == UpstreamScheme::Wss || up.scheme == UpstreamScheme::Https {
            "wss"
        } else {
            "ws"
        };
        let host = if up.host.contains(':') {
            format!("[{}]", up.host)
        } else {
            up.host.clone()
        };
        let target = proxy.target(
            i,
            req.uri().path(),
            rest_of(&route, req.uri().path()),
            req.uri().query(),
        );
        let url = format!("{scheme}://{host}:{}{target}", up.port);
        let mut upstream_req = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return bad_gateway(&format!("bad upstream URL {url}: {e}\n")),
        };
        for (name, value) in &headers {
            if name == header::HOST {
                continue;
            }
            upstream_req
                .headers_mut()
                .append(name.clone(), value.clone());
        }
        match tokio_tungstenite::client_async_with_config(upstream_req, io, Some(config)).await {
            Ok((ws, response)) => {
                connected = Some((i, ws, response));
                break;
            }
            Err(WsError::Http(resp)) => {
                let status = resp.status();
                tracing::info!(route = %route.spec.path, upstream = %up.url, %status, "upstream refused the WebSocket upgrade");
                metrics::handshake_failed(HandshakeFailure::Http);
                metrics::http_response(status.as_u16());
                return text_response(
                    status,
                    &format!("the upstream refused the WebSocket upgrade ({status})\n"),
                );
            }
            Err(e) => proxy.mark_down(i, &format!("WebSocket handshake: {e}")),
        }
    }
    let Some((index, upstream_ws, upstream_resp)) = connected else {
        metrics::handshake_failed(HandshakeFailure::Http);
        return bad_gateway(
            "no upstream is available (all refused connections or are marked down)\n",
        );
    };

    let shutdown = ctx.shutdown.clone();
    let listener = conn.listener.clone();
    let peer = conn.peer;
    let ticket = conn.ticket.clone();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let pool = proxy.clone();
    pool.members[index].active.fetch_add(1, Ordering::Relaxed);
    ctx.tracker.spawn(async move {
        let upgraded = match client_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "client upgrade failed");
                pool.members[index].active.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        let client_ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let counters = SessionMetrics::open(&route.spec.path, &listener);
        let ending = relay(client_ws, upstream_ws, limits, shutdown, counters).await;
        tracing::debug!(%peer, route = %route.spec.path, upstream = %pool.members[index].upstream.url, ?ending, "proxied WebSocket closed");
        pool.members[index].active.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        drop(ticket);
    });

    let mut r = crate::http::edge::switching_protocols(&key);
    if let Some(p) = upstream_resp.headers().get(header::SEC_WEBSOCKET_PROTOCOL) {
        r.headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
    }
    r
}

fn rest_of<'a>(route: &Route, path: &'a str) -> &'a str {
    if route.spec.path == "/" {
        path
    } else {
        path.get(route.spec.path.len()..).unwrap_or("")
    }
}

type Sink<S> = Mutex<SplitSink<WebSocketStream<S>, Message>>;

/// One leg's liveness for keepalive pings.
struct Leg {
    last_pong: StdMutex<StdInstant>,
}

impl Leg {
    fn new() -> Self {
        Leg {
            last_pong: StdMutex::new(StdInstant::now()),
        }
    }
    fn pong(&self) {
        if let Ok(mut t) = self.last_pong.lock() {
            *t = StdInstant::now();
        }
    }
    fn silent_for(&self) -> Duration {
        self.last_pong
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

/// Relays messages both ways until the closing handshake (or a failure).
async fn relay<C, U>(
    client: WebSocketStream<C>,
    upstream: WebSocketStream<U>,
    limits: SessionLimits,
    shutdown: CancellationToken,
    counters: SessionMetrics,
) -> Ending
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    U: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (c_sink, mut c_stream) = client.split();
    let (u_sink, mut u_stream) = upstream.split();
    let c_sink: Sink<C> = Mutex::new(c_sink);
    let u_sink: Sink<U> = Mutex::new(u_sink);
    let (c_leg, u_leg) = (Leg::new(), Leg::new());
    // Cancelled when the relay is over (after a bounded closing handshake).
    let done = CancellationToken::new();
    let ending: StdMutex<Option<Ending>> = StdMutex::new(None);
    let finish = |e: Ending| {
        if let Ok(mut slot) = ending.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
    };
    // Starts closing both legs; the relay ends when both finished or after
    // CLOSE_TIMEOUT.
    let closing = CancellationToken::new();
    let close_both = |code: CloseCode, reason: &'static str| {
        let c_sink = &c_sink;
        let u_sink = &u_sink;
        let closing = &closing;
        async move {
            metrics::close_code(u16::from(code));
            let frame = || {
                Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })
            };
            let _ = c_sink.lock().await.send(Message::Close(frame())).await;
            let _ = u_sink.lock().await.send(Message::Close(frame())).await;
            closing.cancel();
        }
    };

    // Client -> upstream.
    let up = async {
        loop {
            let next = tokio::select! {
                _ = done.cancelled() => break,
                next = c_stream.next() => next,
            };
            match next {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    counters.messages_in.increment(1);
                    counters.bytes_in.increment(m.len() as u64);
                    if u_sink.lock().await.send(m).await.is_err() {
                        finish(Ending::Dropped);
                        close_both(
                            CloseCode::from(1014),
                            "bad gateway: upstream connection lost",
                        )
                        .await;
                        break;
                    }
                }
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong; push it out.
                    let _ = c_sink.lock().await.flush().await;
                }
                Some(Ok(Message::Pong(_))) => c_leg.pong(),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    metrics::close_code(code);
                    finish(Ending::ClosedByPeer(code));
                    // Relay the client's close (code and reason) upstream.
                    let _ = u_sink.lock().await.send(Message::Close(frame)).await;
                    let _ = c_sink.lock().await.flush().await;
                    closing.cancel();
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(e)) => {
                    let (code, reason) = error_close(&e);
                    finish(Ending::ClosedByUs(u16::from(code)));
                    close_both(code, reason).await;
                    break;
                }
                None => {
                    finish(Ending::Dropped);
                    if !closing.is_cancelled() {
                        close_both(CloseCode::Away, "client went away").await;
                    }
                    break;
                }
            }
        }
    };

    // Upstream -> client.
    let down = async {
        loop {
            let next = tokio::select! {
                _ = done.cancelled() => break,
                next = u_stream.next() => next,
            };
            match next {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    counters.messages_out.increment(1);
                    counters.bytes_out.increment(m.len() as u64);
                    if c_sink.lock().await.send(m).await.is_err() {
                        finish(Ending::Dropped);
                        close_both(CloseCode::Away, "client went away").await;
                        break;
                    }
                }
                Some(Ok(Message::Ping(_))) => {
                    let _ = u_sink.lock().await.flush().await;
                }
                Some(Ok(Message::Pong(_))) => u_leg.pong(),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    finish(Ending::ClosedByUs(code));
                    // Relay the upstream's close (code and reason) to the client.
                    let _ = c_sink.lock().await.send(Message::Close(frame)).await;
                    let _ = u_sink.lock().await.flush().await;
                    closing.cancel();
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(WsError::Capacity(_))) => {
                    finish(Ending::ClosedByUs(1009));
                    close_both(CloseCode::Size, "upstream message too big").await;
                    break;
                }
                Some(Err(_)) | None => {
                    if !closing.is_cancelled() {
                        // The upstream vanished without a closing handshake.
                        finish(Ending::ClosedByUs(1014));
                        close_both(
                            CloseCode::from(1014),
                            "bad gateway: upstream connection lost",
                        )
                        .await;
                    }
                    break;
                }
            }
        }
    };

    // Keepalive pings on both legs, shutdown, and the closing deadline.
    let control = async {
        let interval = limits.ping_interval;
        let mut next_ping = interval.map(|d| Instant::now() + d);
        loop {
            let ping_at = next_ping.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = done.cancelled() => break,
                _ = closing.cancelled() => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, done.cancelled()).await;
                    done.cancel();
                    break;
                }
                _ = shutdown.cancelled() => {
                    finish(Ending::ClosedByUs(1001));
                    close_both(CloseCode::Away, "server shutting down").await;
                }
                _ = tokio::time::sleep_until(ping_at) => {
                    let Some(d) = interval else { continue };
                    if c_leg.silent_for() > d * 2 || u_leg.silent_for() > d * 2 {
                        finish(Ending::ClosedByUs(1001));
                        close_both(CloseCode::Away, "ping timeout").await;
                        continue;
                    }
                    let _ = c_sink.lock().await.send(Message::Ping(Bytes::from_static(b"wssd"))).await;
                    let _ = u_sink.lock().await.send(Message::Ping(Bytes::from_static(b"wssd"))).await;
                    next_ping = Some(Instant::now() + d);
                }
            }
        }
    };

    let both = async {
        tokio::join!(up, down);
        done.cancel();
    };
    tokio::join!(both, control);
    ending
        .lock()
        .ok()
        .and_then(|mut e| e.take())
        .unwrap_or(Ending::Dropped)
}

fn error_close(e: &WsError) -> (CloseCode, &'static str) {
    match e {
        WsError::Capacity(_) => (CloseCode::Size, "message too big"),
        WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in text message"),
        WsError::Protocol(_) => (CloseCode::Protocol, "protocol error"),
        _ => (CloseCode::Away, "connection error"),
    }
}
