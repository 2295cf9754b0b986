//! The `proxy` route kind: forwards WebSocket upgrades and plain HTTP
//! requests to upstreams (ws/wss/http/https), with X-Forwarded-* headers,
//! round-robin or least-connections balancing, passive health (a refusing
//! upstream is skipped for a while) and optional active probes.
//!
//! WebSockets are relayed frame by frame by `relay` (each leg a `side`:
//! its writer, liveness and close) once both handshakes are done (each on
//! its own HTTP/1.1 connection, `connect`); plain HTTP goes through `http`
//! over the pooled client of `client`. Edge checks (Origin, connection
//! limits) happened before this module is called.

mod cap;
mod client;
mod connect;
mod flag;
mod frame;
mod full_log;
mod handshake;
mod headers;
mod http;
mod pool;
pub mod relay;
mod side;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::http::reply::{Body, Handshake, switching_protocols, text_response};
use crate::http::upgraded::H2Conn;
use crate::metrics::{self, HandshakeFailure, SessionMetrics};
use crate::routes::env::Env;
use crate::routes::identity::session_span;
use crate::routes::open::SessionSlot;
use crate::server::stall::StallGuard;
use crate::stop::StopSignal;
use cap::Hold;
use handshake::{Upgraded, UpstreamRefusal, handshake_upstream};
use headers::forwarded_headers;
use http::bad_gateway;
pub use http::forward_http;
pub use pool::{ProxyRoute, SetupError, probe_loop};

/// Connects a WebSocket to an upstream, then answers the client's upgrade
/// (101 with the upstream's subprotocol, 502 when no upstream answers, 503
/// when every upstream is at `upstream_max_conns`, or the upstream's own
/// refusal status) and relays until either side closes or `stop` (the
/// route's) fires.
pub async fn upgrade(
    req: Request<Incoming>,
    proxy: Arc<ProxyRoute>,
    slot: SessionSlot,
    stop: StopSignal,
    env: &Env<'_>,
    handshake: Handshake,
) -> Response<Body> {
    // The identity goes on every log line of this socket.
    let span = session_span(env.identity);
    let (hold, upstream) = match connect_upstream(&req, &proxy, &slot.route, env)
        .instrument(span.clone())
        .await
    {
        Ok(connected) => connected,
        Err(refusal) => return refusal,
    };
    let protocol = upstream.protocol.clone();
    spawn_relay(req, hold, upstream, slot, stop, env, span);
    let mut r = switching_protocols(&handshake);
    if let Some(p) = protocol {
        r.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    r
}

/// Tries the healthy upstreams below their cap in order until one
/// completes the WebSocket handshake (its slot held from before the dial);
/// the refusal to answer the client with otherwise: 503 when every healthy
/// upstream was at `upstream_max_conns`.
async fn connect_upstream(
    req: &Request<Incoming>,
    proxy: &Arc<ProxyRoute>,
    route: &str,
    env: &Env<'_>,
) -> Result<(Hold, Upgraded), Response<Body>> {
    let headers = forwarded_headers(req.headers(), env, true);
    let mut full = false;
    for i in proxy.candidates() {
        let Some(hold) = Hold::take(proxy, i) else {
            full = true;
            continue;
        };
        let Some(io) = proxy.connect_or_mark_down(i).await else {
            continue;
        };
        let up = &proxy.members[i].upstream;
        let target = proxy.target(
            i,
            req.uri().path(),
            rest_of(route, req.uri().path()),
            req.uri().query(),
        );
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}:{}", up.host, up.port));
        match handshake_upstream(io, &host, &target, &headers).await {
            Ok(done) => return Ok((hold, done)),
            Err(UpstreamRefusal::Status(status)) => {
                tracing::info!(%route, upstream = %up.url, %status, "upstream refused the WebSocket upgrade");
                metrics::handshake_failed(HandshakeFailure::Http);
                metrics::http_response(status.as_u16());
                return Err(text_response(
                    status,
                    &format!("the upstream refused the WebSocket upgrade ({status})\n"),
                ));
            }
            Err(UpstreamRefusal::Broken(e)) => {
                proxy.mark_down(i, format!("WebSocket handshake: {e}"))
            }
        }
    }
    if full {
        metrics::handshake_failed(HandshakeFailure::Limit);
        return Err(cap::all_full(proxy, "websocket"));
    }
    metrics::handshake_failed(HandshakeFailure::Http);
    Err(bad_gateway(
        "no upstream is available (all refused connections or are marked down)\n",
    ))
}

/// Spawns the relay between the client (once hyper hands over its
/// upgraded connection) and the upstream `hold` is a slot of, holding the
/// session's slot and the upstream's until it ends.
fn spawn_relay(
    mut req: Request<Incoming>,
    hold: Hold,
    upstream: Upgraded,
    slot: SessionSlot,
    stop: StopSignal,
    env: &Env<'_>,
    span: tracing::Span,
) {
    let listener = env.conn.listener.clone();
    let peer = env.conn.peer;
    let ticket = env.conn.ticket.clone();
    let who = super::open::who(env);
    let client_upgrade = hyper::upgrade::on(&mut req);
    let abort = req.extensions().get::<H2Conn>().cloned();
    let task = async move {
        let upgraded = match client_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "client upgrade failed");
                return;
            }
        };
        let route = slot.route.clone();
        let started = tokio::time::Instant::now();
        let counters = SessionMetrics::open(&route, &listener);
        let client =
            StallGuard::over_upgraded(TokioIo::new(upgraded), slot.limits.send_timeout, abort);
        let ending = relay::relay(
            client,
            upstream.io,
            upstream.buffered,
            slot.limits,
            stop,
            &counters,
        )
        .await;
        super::open::log_end(&who, &route, started, &counters, &ending);
        tracing::debug!(%peer, %route, upstream = %hold.url(), ?ending, "proxied WebSocket closed");
        drop(hold);
        slot.release();
        drop(ticket);
    };
    env.tracker.spawn(task.instrument(span));
}

/// The part of `path` below the route prefix `route`.
fn rest_of<'a>(route: &str, path: &'a str) -> &'a str {
    if route == "/" {
        path
    } else {
        path.get(route.len()..).unwrap_or("")
    }
}

#[cfg(test)]
mod frame_props;
#[cfg(test)]
mod handshake_props;
#[cfg(test)]
mod relay_props;
