//! The edge of the WebSocket path: checks an upgrade request once (method,
//! version, key, Origin, connection limit), answers 101 and starts the
//! session. Every refusal is a clear HTTP error before the upgrade.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HOST, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
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
        .filter(|k| k.len() == 24)
        .map(|k| k.as_bytes().to_vec())
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            HandshakeFailure::Http,
            "missing or malformed Sec-WebSocket-Key header\n",
        );
    };
    if let Some(origin) = req.headers().get(ORIGIN)
        && !origin_allowed(origin, req.headers().get(HOST), &ctx.allow_origin)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            HandshakeFailure::Http,
            "Origin not allowed: this page's origin is not the server's host; add it with --allow-origin ORIGIN\n",
        );
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
                    let mut handler = chat.session();
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

/// Same host as the request (any scheme), or listed in `--allow-origin`.
fn origin_allowed(origin: &HeaderValue, host: Option<&HeaderValue>, allowed: &[String]) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    host.and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let hv = |s: &'static str| HeaderValue::from_static(s);
        let host = hv("localhost:8443");
        assert!(origin_allowed(
            &hv("https://localhost:8443"),
            Some(&host),
            &[]
        ));
        assert!(!origin_allowed(
            &hv("https://evil.example"),
            Some(&host),
            &[]
        ));
        assert!(origin_allowed(
            &hv("https://app.example"),
            Some(&host),
            &["https://app.example".into()]
        ));
        assert!(origin_allowed(&hv("https://x"), Some(&host), &["*".into()]));
        assert!(!origin_allowed(&hv("null"), Some(&host), &[]));
    }
}
