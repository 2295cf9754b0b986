//! The HTTP layer: serves one connection (TLS or plain) with hyper, and for
//! each request goes path cleaning (`path`) -> router -> the route's auth
//! (`gate`) -> route kind, with the edge checks for upgrades; HSTS is
//! added on the way out. WebSocket upgrades are checked in `edge` and
//! handed to the route kind
//! (`crate::routes`), which also answers the plain requests of HTTP kinds.
//! With `--redirect-http`, plain listeners send requests to https://
//! (`redirect`) right after the ACME HTTP-01 answers.
//! `reply` holds what both sides speak (bodies, connection facts, the 101).
//!
//! Sockets, TLS and connection limits are `crate::server`'s business.

pub mod context;
pub mod edge;
pub mod gate;
pub mod host;
pub mod http2;
pub mod logged;
pub mod path;
pub mod redirect;
pub mod reply;
pub mod router;
pub mod upgraded;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, STRICT_TRANSPORT_SECURITY, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::auth::Identity;
use crate::config::limits::{MAX_HEADERS, MAX_HTTP_BUFFER};
use crate::metrics::{self, HandshakeFailure};
use crate::routes::Route;
pub use context::HttpContext;
pub use http2::Negotiated;
pub use reply::{Body, ConnInfo, empty_body, full_body, text_response};
use router::Router;

/// Serves one connection until it closes, is upgraded, or the server shuts
/// down: HTTP/2 when its TLS handshake negotiated `h2` (ALPN), HTTP/1.1
/// otherwise (plain listeners speak HTTP/1.1 only: no h2c).
/// `header_timeout` bounds the wait for request headers (on HTTP/2: for the
/// first request, then how long the connection may stay idle).
pub async fn serve_connection<IO>(
    io: IO,
    ctx: Arc<HttpContext>,
    conn: ConnInfo,
    header_timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Negotiated + Unpin + Send + 'static,
{
    let negotiated_h2 = io.http2();
    let shutdown = ctx.shutdown.clone();
    let service = service_fn(move |mut req| {
        let ctx = ctx.clone();
        let conn = conn.clone();
        async move {
            if let Err(refusal) = http2::authority_as_host(&mut req) {
                return Ok::<_, Infallible>(counted(*refusal));
            }
            let host = (conn.tls && ctx.hsts)
                .then(|| req.headers().get(hyper::header::HOST).cloned())
                .flatten();
            let facts = logged::before(&req);
            let mut response = handle(req, &ctx, &conn).await;
            if let Some(host) = host {
                strict_transport(&mut response, &host);
            }
            let response = logged::after(response, facts, &conn);
            Ok::<_, Infallible>(response)
        }
    });
    if negotiated_h2 {
        http2::serve(io, service, shutdown, header_timeout).await;
        return;
    }
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HTTP_BUFFER)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics::handshake_failed(HandshakeFailure::Timeout);
        } else if e.is_parse() || e.is_parse_too_large() {
            metrics::handshake_failed(HandshakeFailure::Http);
        }
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

async fn handle(mut req: Request<Incoming>, ctx: &HttpContext, conn: &ConnInfo) -> Response<Body> {
    // One clean path for routing and for every route kind (the proxy
    // builds its upstream target from it).
    let path = match path::clean(req.uri().path()) {
        Ok(clean) => clean.into_owned(),
        Err(e) => {
            if wants_websocket(&req) {
                metrics::handshake_failed(HandshakeFailure::Http);
            }
            return counted(text_response(
                StatusCode::BAD_REQUEST,
                &format!("bad request path: {e}\n"),
            ));
        }
    };
    if path != req.uri().path() && set_path(&mut req, &path).is_err() {
        return counted(text_response(
            StatusCode::BAD_REQUEST,
            "bad request path: it cannot be cleaned into a valid path\n",
        ));
    }
    if !conn.tls
        && let Some(token) = path.strip_prefix(crate::tls::challenge::HTTP01_PREFIX)
    {
        // ACME HTTP-01: answered before routing, on plain listeners only.
        return counted(acme_http01(ctx, token));
    }
    let router = ctx.router.load();
    if !conn.tls
        && let Some(port) = ctx.redirect_https
        && !router.find(&path).is_some_and(|m| m.route.spec.plain)
    {
        // --redirect-http: everything but `plain = true` routes goes to https.
        return counted(redirect::to_https(&req, port, wants_websocket(&req)));
    }
    let upgrade = wants_websocket(&req);
    let Some(matched) = router.find(&path) else {
        if upgrade {
            metrics::handshake_failed(HandshakeFailure::Http);
        }
        return counted(text_response(StatusCode::NOT_FOUND, "not found\n"));
    };
    let route = matched.route.clone();
    let rest = matched.rest.to_string();
    dispatch(req, route, &rest, &path, upgrade, ctx, conn).await
}

/// Hands a matched request to its route: first the route's auth (`gate`:
/// a refusal ends it here, before any upgrade check or forwarding), then
/// [`serve`] under a log span that carries the identity.
async fn dispatch(
    mut req: Request<Incoming>,
    route: Arc<Route>,
    rest: &str,
    path: &str,
    upgrade: bool,
    ctx: &HttpContext,
    conn: &ConnInfo,
) -> Response<Body> {
    let identity = match gate::authenticate(&mut req, &route, upgrade, ctx, conn).await {
        Ok(identity) => identity,
        Err(mut refusal) => {
            logged::Served::note(&mut refusal, &route.spec.path, None);
            return counted(refusal);
        }
    };
    let span = match &identity {
        Some(id) => tracing::info_span!("request", identity = %id.name),
        None => tracing::Span::none(),
    };
    let mut response = serve(req, route.clone(), rest, path, ctx, conn, identity.as_ref())
        .instrument(span)
        .await;
    logged::Served::note(&mut response, &route.spec.path, identity.as_ref());
    response
}

/// Upgrades go through the edge checks to WebSocket kinds, plain requests
/// to HTTP kinds; the wrong one of the two gets an error that names the
/// right one. `identity` is who the gate said the caller is.
async fn serve(
    req: Request<Incoming>,
    route: Arc<Route>,
    rest: &str,
    path: &str,
    ctx: &HttpContext,
    conn: &ConnInfo,
    identity: Option<&Identity>,
) -> Response<Body> {
    // The gate takes out credentials only, never the upgrade headers.
    let upgrade = wants_websocket(&req);
    let kind = &route.spec.kind;
    match (upgrade, kind.is_websocket(), kind.is_http()) {
        (true, true, _) => edge::accept_websocket(req, route, ctx, conn, identity).await,
        (true, false, _) => {
            metrics::handshake_failed(HandshakeFailure::Http);
            counted(text_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "{} serves files, not WebSockets; WebSocket routes: {}\n",
                    route.spec.path,
                    websocket_paths(&ctx.router.load())
                ),
            ))
        }
        (false, _, true) => counted(
            route
                .serve_http(req, rest, path, &ctx.env(conn, identity))
                .await,
        ),
        (false, _, false) => {
            let mut r = text_response(
                StatusCode::UPGRADE_REQUIRED,
                &format!(
                    "{} is a WebSocket endpoint ({}): connect with {}://HOST{}\n",
                    route.spec.path,
                    kind.name(),
                    if conn.tls { "wss" } else { "ws" },
                    path
                ),
            );
            r.headers_mut()
                .insert(UPGRADE, HeaderValue::from_static("websocket"));
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                HeaderValue::from_static("Upgrade"),
            );
            counted(r)
        }
    }
}

/// The answer to an ACME HTTP-01 challenge request for `token`.
fn acme_http01(ctx: &HttpContext, token: &str) -> Response<Body> {
    match ctx.challenges.http01(token) {
        Some(key_auth) => {
            tracing::debug!(%token, "answering ACME HTTP-01 challenge");
            let mut r = text_response(StatusCode::OK, &key_auth);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        None => text_response(StatusCode::NOT_FOUND, "no such ACME challenge\n"),
    }
}

/// Replaces the request's path (the query is kept); `path` is a cleaned
/// form of the original, so this fails only if the URI library disagrees.
fn set_path<B>(req: &mut Request<B>, path: &str) -> Result<(), hyper::http::Error> {
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(hyper::http::Error::from)?);
    *req.uri_mut() = hyper::Uri::from_parts(parts).map_err(hyper::http::Error::from)?;
    Ok(())
}

fn websocket_paths(router: &Router) -> String {
    let list: Vec<&str> = router
        .routes()
        .iter()
        .filter(|r| r.spec.kind.is_websocket())
        .map(|r| r.spec.path.as_str())
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Whether the request asks for a WebSocket: an HTTP/1.1 Upgrade, or on
/// HTTP/2 a CONNECT (RFC 8441's extended CONNECT; `edge` refuses other
/// CONNECTs with a clear 400).
fn wants_websocket<B>(req: &Request<B>) -> bool {
    if req.version() == hyper::Version::HTTP_2 {
        return req.method() == hyper::Method::CONNECT;
    }
    let has_token = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(UPGRADE, "websocket") && has_token(hyper::header::CONNECTION, "upgrade")
}

/// HSTS max-age: one year, the usual production value (and the minimum
/// for browsers' preload lists); no includeSubDomains, as this server does
/// not know its neighbours.
pub const HSTS: &str = "max-age=31536000";

/// Adds Strict-Transport-Security to a response over TLS when the Host is
/// a public-looking DNS name: never for IP literals (browsers ignore it
/// there), `localhost`, single-label names or private-use suffixes (.lan,
/// .local, .internal, .home.arpa, .test, ...), where a pinned https-only
/// rule would follow a developer to every other port of that name. An
/// upstream's own header (proxy routes) is kept.
fn strict_transport(response: &mut Response<Body>, host: &HeaderValue) {
    const PRIVATE: &[&str] = &[
        "localhost",
        "local",
        "lan",
        "home",
        "corp",
        "internal",
        "intranet",
        "private",
        "home.arpa",
        "test",
        "example",
        "invalid",
    ];
    let name = host::host_name(host.to_str().unwrap_or(""));
    let public = name.contains('.')
        && name.parse::<std::net::IpAddr>().is_err()
        && !PRIVATE
            .iter()
            .any(|p| name == *p || name.ends_with(&format!(".{p}")));
    if public
        && response.status() != StatusCode::SWITCHING_PROTOCOLS
        && !response.headers().contains_key(STRICT_TRANSPORT_SECURITY)
    {
        response
            .headers_mut()
            .insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}

fn counted(response: Response<Body>) -> Response<Body> {
    metrics::http_response(response.status().as_u16());
    response
}

#[cfg(test)]
mod host_props;
#[cfg(test)]
mod path_props;
