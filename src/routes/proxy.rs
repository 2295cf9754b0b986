//! The `proxy` route kind: forwards WebSocket upgrades and plain HTTP
//! requests to upstreams (ws/wss/http/https), with X-Forwarded-* headers,
//! round-robin or least-connections balancing, passive health (a refusing
//! upstream is skipped for a while) and optional active probes.
//!
//! WebSockets are relayed frame by frame by `routes::relay` once both
//! handshakes are done. Edge checks (Origin, connection limits) happened
//! before this module is called.
#![allow(
    clippy::disallowed_types,
    reason = "health timestamps are atomics counted from a wall-clock epoch shared across threads"
)]

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::route::{Balance, ProxySpec, Upstream};
use crate::http::router::Route;
use crate::http::{Body, ConnInfo, HttpContext, text_response};
use crate::metrics::{self, HandshakeFailure, SessionMetrics};
use crate::routes::relay;
use crate::server::stall::{Peer, StallGuard};

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
    /// Longest a write to an upstream may make no progress
    /// (`proxy_send_timeout`), and a request body may pause.
    send_timeout: Duration,
}

impl ProxyRoute {
    /// Builds the pool; loads the upstream CA when one is given.
    pub fn new(path: &str, spec: ProxySpec, send_timeout: Duration) -> Result<Self, String> {
        let roots = match &spec.ca {
            Some(ca) => {
                use crate::tls::CaPemError;
                let bytes =
                    std::fs::read(ca).map_err(|e| format!("upstream CA {}: {e}", ca.display()))?;
                crate::tls::ca_roots(&bytes).map_err(|e| match e {
                    CaPemError::Malformed(e) => {
                        format!("upstream CA {}: not a PEM certificate ({e})", ca.display())
                    }
                    CaPemError::Unusable(e) => format!("upstream CA {}: {e}", ca.display()),
                    CaPemError::Empty => {
                        format!("upstream CA {} holds no CERTIFICATE block", ca.display())
                    }
                })?
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                roots
            }
        };
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
            send_timeout,
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
            // Every write to the upstream (TLS records included) runs
            // under the send timeout.
            let tcp = StallGuard::new(tcp, self.send_timeout, Peer::Upstream);
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
/// trusted proxies; otherwise they are replaced. `Forwarded` (RFC 7239) is
/// treated the same: dropped from other peers, and from a trusted proxy
/// kept with this hop's element appended.
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
            || n == "forwarded"
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
    if trusted {
        let prior: Vec<&str> = incoming
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !prior.is_empty() {
            let own = forwarded_element(peer_ip, conn.tls, prior_host(incoming).as_deref());
            set("forwarded", format!("{}, {own}", prior.join(", ")));
        }
    }
    set("x-forwarded-for", xff);
    set("x-forwarded-proto", proto);
    set("x-real-ip", real_ip);
    if let Some(h) = host {
        set("x-forwarded-host", h);
    }
    out
}

fn prior_host(incoming: &HeaderMap) -> Option<String> {
    incoming
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// This hop's `Forwarded` element: `for=` the peer (IPv6 quoted and
/// bracketed), `proto=`, and `host=` (quoted) when the Host is sane.
fn forwarded_element(peer: IpAddr, tls: bool, host: Option<&str>) -> String {
    let mut e = match peer {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    e.push_str(if tls { ";proto=https" } else { ";proto=http" });
    if let Some(h) = host.filter(|h| !h.contains(['"', '\\'])) {
        e.push_str(&format!(";host=\"{h}\""));
    }
    e
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
    // A request body the client breaks (bad chunked framing, a cut
    // connection) fails the upstream exchange too; the flag tells the two
    // apart so the client gets 400, not 502.
    let client_body_failed = Arc::new(AtomicBool::new(false));
    let body = {
        let failed = client_body_failed.clone();
        body.map_err(move |e| {
            failed.store(true, Ordering::Relaxed);
            e
        })
    };
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
        let (body, paused) = crate::routes::body_timeout::Paced::new(body, proxy.send_timeout);
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
            Err(_) if paused.fired() => {
                // nginx's client_body_timeout: the client stopped sending
                // the body it announced.
                metrics::body_timeout();
                let mut r = text_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body stopped arriving (send timeout)\n",
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Err(e) if client_body_failed.load(Ordering::Relaxed) => {
                tracing::debug!(route = %proxy.path, error = %e, "client request body unreadable");
                text_response(
                    StatusCode::BAD_REQUEST,
                    "the request body is malformed (bad chunked encoding) or was cut off\n",
                )
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
        let target = proxy.target(
            i,
            req.uri().path(),
            rest_of(&route, req.uri().path()),
            req.uri().query(),
        );
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}:{}", up.host, up.port));
        match handshake_upstream(io, &host, &target, &headers).await {
            Ok(done) => {
                connected = Some((i, done));
                break;
            }
            Err(UpstreamRefusal::Status(status)) => {
                tracing::info!(route = %route.spec.path, upstream = %up.url, %status, "upstream refused the WebSocket upgrade");
                metrics::handshake_failed(HandshakeFailure::Http);
                metrics::http_response(status.as_u16());
                return text_response(
                    status,
                    &format!("the upstream refused the WebSocket upgrade ({status})\n"),
                );
            }
            Err(UpstreamRefusal::Broken(e)) => {
                proxy.mark_down(i, &format!("WebSocket handshake: {e}"))
            }
        }
    }
    let Some((index, upstream)) = connected else {
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
    let protocol = upstream.protocol.clone();
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
        let counters = SessionMetrics::open(&route.spec.path, &listener);
        let ending = relay::relay(
            TokioIo::new(upgraded),
            upstream.io,
            upstream.buffered,
            limits,
            shutdown,
            counters,
        )
        .await;
        tracing::debug!(%peer, route = %route.spec.path, upstream = %pool.members[index].upstream.url, ?ending, "proxied WebSocket closed");
        pool.members[index].active.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        drop(ticket);
    });

    let mut r = crate::http::edge::switching_protocols(&key);
    if let Some(p) = protocol {
        r.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    r
}

/// An upstream connection after its 101.
struct Upgraded {
    io: BoxIo,
    /// Bytes read past the response head (frames the upstream sent at once).
    buffered: Vec<u8>,
    /// The subprotocol the upstream chose.
    protocol: Option<HeaderValue>,
}

/// Why an upstream did not become a WebSocket.
enum UpstreamRefusal {
    /// It answered, but not with 101.
    Status(StatusCode),
    /// The connection or the answer was broken.
    Broken(String),
}

/// Largest upstream response head read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The client half of the opening handshake with an upstream, by hand, so
/// no byte the upstream sends after its 101 is lost to a library buffer.
async fn handshake_upstream(
    mut io: BoxIo,
    host: &str,
    target: &str,
    headers: &HeaderMap,
) -> Result<Upgraded, UpstreamRefusal> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broken = |e: String| UpstreamRefusal::Broken(e);
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    )
    .into_bytes();
    for (name, value) in headers {
        if name == header::HOST {
            continue;
        }
        request.extend_from_slice(name.as_str().as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let exchange = async {
        io.write_all(&request)
            .await
            .map_err(|e| broken(e.to_string()))?;
        io.flush().await.map_err(|e| broken(e.to_string()))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = io
                .read(&mut chunk)
                .await
                .map_err(|e| broken(e.to_string()))?;
            if n == 0 {
                return Err(broken(
                    "the upstream closed the connection during the handshake".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut parsed_headers);
            match response.parse(&buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let code = response.code.unwrap_or(0);
                    if code != 101 {
                        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
                        return Err(UpstreamRefusal::Status(status));
                    }
                    let get = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| h.value)
                    };
                    let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                        key.as_bytes(),
                    );
                    if get("sec-websocket-accept") != Some(expected.as_bytes()) {
                        return Err(broken(
                            "wrong Sec-WebSocket-Accept in the upstream's 101".into(),
                        ));
                    }
                    let protocol =
                        get("sec-websocket-protocol").and_then(|v| HeaderValue::from_bytes(v).ok());
                    let buffered = buf[head_len..].to_vec();
                    return Ok((buffered, protocol));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
                Ok(httparse::Status::Partial) => {
                    return Err(broken("the upstream's response head is too large".into()));
                }
                Err(e) => return Err(broken(format!("malformed upstream response: {e}"))),
            }
        }
    };
    let (buffered, protocol) = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
        .await
        .map_err(|_| broken("the upstream did not answer the upgrade in time".into()))??;
    Ok(Upgraded {
        io,
        buffered,
        protocol,
    })
}

fn rest_of<'a>(route: &Route, path: &'a str) -> &'a str {
    if route.spec.path == "/" {
        path
    } else {
        path.get(route.spec.path.len()..).unwrap_or("")
    }
}
