//! The edge of the WebSocket path: checks an upgrade request once (method,
//! version, key, Origin, connection limit), answers 101 and starts the
//! session. Every refusal is a clear HTTP error before the upgrade.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HOST, HeaderMap, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::router::{Route, RouteRuntime};
use super::{Body, ConnInfo, HttpContext, empty_body, text_response};
use crate::budget::BudgetedIo;
use crate::metrics::{self, HandshakeFailure, SessionMetrics};
use crate::routes::broadcast::BroadcastSession;
use crate::routes::chat::ChatRoute;
use crate::routes::echo::Echo;
use crate::routes::exec::{self, ExecRequest};
use crate::routes::proxy;
use crate::session;

/// Validates the upgrade request and, if it passes, answers 101 and spawns
/// the WebSocket session on the upgraded connection.
pub async fn accept_websocket(
    mut req: Request<Incoming>,
    route: Arc<Route>,
    ctx: &HttpContext,
    conn: &ConnInfo,
) -> Response<Body> {
    let refuse = |status: StatusCode, reason: HandshakeFailure, text: &str| {
        metrics::handshake_failed(reason);
        metrics::http_response(status.as_u16());
        text_response(status, text)
    };
    if req.method() != Method::GET {
        return refuse(
            StatusCode::BAD_REQUEST,
            HandshakeFailure::Http,
            "a WebSocket upgrade must use GET\n",
        );
    }
    if req.version() != Version::HTTP_11 {
        return refuse(
            StatusCode::BAD_REQUEST,
            HandshakeFailure::Http,
            "a WebSocket upgrade needs HTTP/1.1\n",
        );
    }
    if req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        metrics::handshake_failed(HandshakeFailure::Http);
        metrics::http_response(426);
        let mut r = text_response(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version; this server speaks version 13 (RFC 6455)\n",
        );
        r.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k.as_bytes()))
        .map(|k| k.as_bytes().to_vec())
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            HandshakeFailure::Http,
            "missing or malformed Sec-WebSocket-Key header: it must be 16 random bytes in base64 (24 characters ending in ==)\n",
        );
    };
    if let Some(origin) = req.headers().get(ORIGIN)
        && let Err(text) = browser_allowed(origin, req.headers(), ctx, conn)
    {
        return refuse(StatusCode::FORBIDDEN, HandshakeFailure::Http, &text);
    }
    if ctx.shutdown.is_cancelled() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            HandshakeFailure::Limit,
            "server is shutting down\n",
        );
    }
    let Ok(permit) = ctx.sessions.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            HandshakeFailure::Limit,
            "too many connections (--max-connections reached); try again later\n",
        );
    };

    // Kind-specific admission before the 101: process cap for exec; the
    // proxy connects to its upstream first (502 when none answers).
    let kind = match &route.runtime {
        RouteRuntime::Proxy(proxy) => {
            return proxy::upgrade(req, proxy.clone(), route.clone(), ctx, conn, key, permit).await;
        }
        RouteRuntime::Exec(exec) => match exec.try_reserve() {
            Some(process) => Kind::Exec(exec.clone(), process),
            None => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    HandshakeFailure::Limit,
                    "too many processes on this route (max_processes reached); try again later\n",
                );
            }
        },
        RouteRuntime::Chat(chat) => Kind::Chat(chat.clone()),
        // Subscribed before the 101, so nothing published once the client
        // sees the upgrade is missed.
        RouteRuntime::Broadcast(b) => Kind::Broadcast(b.session()),
        RouteRuntime::None => Kind::Echo,
    };
    let exec_request = ExecRequest {
        uri: req.uri().clone(),
        headers: req.headers().clone(),
        conn: conn.clone(),
        route_path: route.spec.path.clone(),
    };

    let limits = route.limits;
    let shutdown = ctx.shutdown.clone();
    let listener = conn.listener.clone();
    let peer = conn.peer;
    let ticket = conn.ticket.clone();
    let upgrade = hyper::upgrade::on(&mut req);
    ctx.tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "upgrade failed");
                return;
            }
        };
        // Bytes of messages being received are charged to the memory budget.
        let ws = WebSocketStream::from_raw_socket(
            BudgetedIo::new(TokioIo::new(upgraded)),
            Role::Server,
            Some(session::websocket_config(&limits)),
        )
        .await;
        let counters = SessionMetrics::open(&route.spec.path, &listener);
        tracing::debug!(%peer, route = %route.spec.path, "WebSocket opened");
        // Kinds other than echo run boxed: a spawned task is as big as its
        // largest branch, and every idle echo connection would pay for it.
        let ending = match kind {
            Kind::Echo => session::run(ws, limits, shutdown, counters, &mut Echo).await,
            Kind::Chat(chat) => {
                Box::pin(async move {
                    let mut handler = chat.session(peer.ip());
                    let ending = session::run(ws, limits, shutdown, counters, &mut handler).await;
                    handler.finish().await;
                    ending
                })
                .await
            }
            Kind::Broadcast(mut handler) => {
                Box::pin(
                    async move { session::run(ws, limits, shutdown, counters, &mut handler).await },
                )
                .await
            }
            Kind::Exec(exec, process) => {
                Box::pin(exec::run(
                    ws,
                    exec,
                    exec_request,
                    process,
                    limits,
                    shutdown,
                    counters,
                ))
                .await
            }
        };
        tracing::debug!(%peer, route = %route.spec.path, ?ending, "WebSocket closed");
        drop(permit);
        drop(ticket);
    });
    switching_protocols(&key)
}

/// What runs after the upgrade.
enum Kind {
    Echo,
    Chat(Arc<ChatRoute>),
    Broadcast(BroadcastSession),
    Exec(Arc<exec::ExecRoute>, tokio::sync::OwnedSemaphorePermit),
}

/// The 101 response for a validated key.
pub fn switching_protocols(key: &[u8]) -> Response<Body> {
    let mut r = Response::new(empty_body());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key)) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// RFC 6455 section 4.2.1: the key is base64 that decodes to 16 bytes,
/// i.e. 22 base64 characters then `==`.
fn valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The checks on a request that carries a browser `Origin`, in one place:
///
/// 1. The Origin is listed exactly in `--allow-origin`: allowed (the
///    operator vouches for that page, whatever Host or scheme it uses).
/// 2. On plain listeners, the Host must be one the server answers browsers
///    on (DNS rebinding: an attacker's name resolved to this address gives
///    its page the same origin as the server). See [`HostAllow`].
/// 3. The Origin must be the request's own host with the listener's scheme
///    (`https` page on a TLS listener, `http` page on a plain one), or
///    `--allow-origin *`.
///
/// Behind a `--trusted-proxy`, its X-Forwarded-Proto and X-Forwarded-Host
/// stand for the scheme and the Host (a TLS-terminating proxy in front of a
/// plain listener). The error is the refusal's text.
pub fn browser_allowed(
    origin: &HeaderValue,
    headers: &HeaderMap,
    ctx: &HttpContext,
    conn: &ConnInfo,
) -> Result<(), String> {
    let origin = origin.to_str().unwrap_or("");
    if ctx
        .allow_origin
        .iter()
        .any(|a| a != "*" && a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let trusted = peer_trusted(ctx, conn);
    let forwarded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim())
            .filter(|v| trusted && !v.is_empty())
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let https = match forwarded("x-forwarded-proto") {
        Some(p) => p.eq_ignore_ascii_case("https"),
        None => conn.tls,
    };
    if !conn.tls && !ctx.allow_host.allows(host) {
        let name = host_name(host);
        let text = format!(
            "Host `{host}` is not a name this server answers browser pages on (a DNS-rebinding guard on plain listeners); if {name} is yours, add --allow-host {name} (or list it in --hostname)\n"
        );
        // A browser hides the refusal's text from the page: say it once in
        // the log (not per request: a hostile page could repeat it).
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(peer = %conn.peer, "WebSocket refused (further ones are logged at debug level): {}", text.trim_end());
        } else {
            tracing::debug!(peer = %conn.peer, "WebSocket refused: {}", text.trim_end());
        }
        return Err(text);
    }
    if ctx.allow_origin.iter().any(|a| a == "*") {
        return Ok(());
    }
    let scheme = if https { "https" } else { "http" };
    match origin.split_once("://") {
        Some((s, h)) if s.eq_ignore_ascii_case(scheme) && h.eq_ignore_ascii_case(host) => Ok(()),
        Some((s, h)) if h.eq_ignore_ascii_case(host) => Err(format!(
            "Origin `{origin}` is an {s}:// page but this listener serves {scheme}: pages of one scheme use their own (wss:// from https, ws:// from http); allow it with --allow-origin {origin}\n"
        )),
        _ => Err(format!(
            "Origin `{origin}` not allowed: this page's origin is not the server's host; add it with --allow-origin ORIGIN\n"
        )),
    }
}

/// Whether the peer is a `--trusted-proxy`.
fn peer_trusted(ctx: &HttpContext, conn: &ConnInfo) -> bool {
    if ctx.trusted_proxies.is_empty() {
        return false;
    }
    let ip = match conn.peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        ip => ip,
    };
    ctx.trusted_proxies.iter().any(|c| c.contains(ip))
}

/// The name part of a Host value: no port, no IPv6 brackets, lower case,
/// no trailing dot.
pub(crate) fn host_name(host: &str) -> String {
    let name = if host.parse::<IpAddr>().is_ok() {
        host
    } else if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.to_ascii_lowercase();
    name.strip_suffix('.').map(str::to_string).unwrap_or(name)
}

/// Host names a browser page may reach plain listeners by (`--allow-host`
/// plus the `--hostname` names). Always allowed whatever the list: IP
/// literals and `localhost` (and `*.localhost`): DNS rebinding needs a
/// name the attacker's DNS answers for, and these never go to DNS, so
/// `--http 0.0.0.0:8080` stays reachable by IP from a phone.
#[derive(Debug, Clone, Default)]
pub struct HostAllow {
    any: bool,
    /// Lower case, no trailing dot; `*.x` entries kept as `.x` suffixes.
    names: Vec<String>,
}

impl HostAllow {
    /// From `--allow-host` entries and the TLS hostnames.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a String>) -> Self {
        let mut allow = HostAllow::default();
        for e in entries {
            if e == "*" {
                allow.any = true;
            } else {
                let e = host_name(e);
                allow
                    .names
                    .push(e.strip_prefix('*').map(str::to_string).unwrap_or(e));
            }
        }
        allow
    }

    /// Whether a Host header value is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        if self.any
            || name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
        {
            return true;
        }
        !name.is_empty()
            && self.names.iter().any(|n| {
                if n.starts_with('.') {
                    name.ends_with(n.as_str())
                } else {
                    *n == name
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_allow_rules() {
        let a = HostAllow::new(&["box.lan".to_string(), "*.home.arpa".to_string()]);
        for ok in [
            "box.lan",
            "BOX.lan:8080",
            "box.lan.",
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "localhost:8080",
            "app.localhost",
            "pi.home.arpa",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "box.lan.evil",
            "",
            "home.arpa",
            "127.0.0.1.nip.io",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        assert!(HostAllow::new(&["*".to_string()]).allows("anything.example"));
    }

    #[test]
    fn key_must_be_base64_of_16_bytes() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key(b"AAAAAAAAAAAAAAAAAAAA+/=="));
        assert!(!valid_key(b"!!!!!!!!!!!!!!!!!!!!!!=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQAA"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZ==="));
    }
}
