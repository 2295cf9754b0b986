//! The edge of the WebSocket path: checks an upgrade request once (method,
//! version, key on HTTP/1.1 or RFC 8441's extended CONNECT on HTTP/2,
//! Origin and Host, connection limits) and hands it to the route kind
//! (`Route::upgrade`), which answers 101 (200 on HTTP/2) and starts the
//! session.
//! Every refusal is a clear HTTP error before the upgrade.
//!
//! A WebSocket over HTTP/1.1 has its TCP connection's per-IP slot, taken
//! at accept; one carried as an HTTP/2 stream takes a per-IP slot (and a
//! token of the per-IP rate) of its own here, as it would on its own
//! connection (`server::admission`), and holds it until its session ends.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::header::{
    HOST, HeaderMap, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::context::HttpContext;
pub use super::host::HostAllow;
use super::host::host_name;
use super::reply::{Body, ConnInfo, Handshake, refused, text_response};
use crate::auth::Identity;
use crate::metrics::{self, HandshakeFailure};
use crate::routes::Route;
use crate::server::admission::Refusal;

/// Validates the upgrade request and, if it passes, hands it with its
/// connection slot and the caller's `identity` (from `gate`) to the route.
/// HTTP/1.1 Upgrade and HTTP/2 extended CONNECT (RFC 8441) go through the
/// same checks after their own (`handshake`).
pub async fn accept_websocket(
    req: Request<Incoming>,
    route: Arc<Route>,
    ctx: &HttpContext,
    conn: &ConnInfo,
    identity: Option<&Identity>,
) -> Response<Body> {
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(refusal) => return *refusal,
    };
    if let Some(origin) = req.headers().get(ORIGIN)
        && let Err(refusal) = browser_allowed(origin, req.headers(), ctx, conn)
    {
        return refused(StatusCode::FORBIDDEN, HandshakeFailure::Http, &refusal.0);
    }
    if ctx.shutdown.is_cancelled() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            HandshakeFailure::Limit,
            "server is shutting down\n",
        );
    }
    // An HTTP/2 WebSocket's own per-IP slot, in the ticket its session
    // keeps (with the connection's) until it ends.
    let stream_conn;
    let conn = match handshake {
        Handshake::Http2 => match stream_admitted(conn) {
            Ok(c) => {
                stream_conn = c;
                &stream_conn
            }
            Err(refusal) => return *refusal,
        },
        Handshake::Http1 { .. } => conn,
    };
    let Ok(permit) = ctx.sessions.clone().try_acquire_owned() else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            HandshakeFailure::Limit,
            "too many connections (--max-connections reached); try again later\n",
        );
    };

    // The kind's own admission, the 101 (or 200) and the session.
    route
        .upgrade(req, handshake, permit, &ctx.env(conn, identity))
        .await
}

/// A WebSocket carried as an HTTP/2 stream of `conn`, admitted per client
/// address as a connection of its own: `conn` with the stream's ticket, or
/// 503 naming the limit reached (counted as a refused connection and as a
/// failed handshake, as it would be at accept).
fn stream_admitted(conn: &ConnInfo) -> Result<ConnInfo, Box<Response<Body>>> {
    match conn.ticket.admit_stream() {
        Ok(ticket) => Ok(ConnInfo {
            ticket: Arc::new(ticket),
            ..conn.clone()
        }),
        Err(reason) => {
            let why = conn.ticket.admission().why(reason);
            let text = match reason {
                Refusal::Rate => format!(
                    "too many new connections from your address ({why}; each WebSocket over HTTP/2 counts as a connection); try again later\n"
                ),
                _ => format!(
                    "too many connections from your address ({why}; each WebSocket over HTTP/2 counts as a connection, and so does the HTTP/2 connection itself); try again later\n"
                ),
            };
            Err(Box::new(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                HandshakeFailure::Limit,
                &text,
            )))
        }
    }
}

/// The version-specific checks: RFC 6455 section 4.2.1 on HTTP/1.1,
/// RFC 8441 section 4-5 on HTTP/2. A refusal is a clear 400 (426 for a
/// wrong `Sec-WebSocket-Version`).
pub fn handshake<B>(req: &Request<B>) -> Result<Handshake, Box<Response<Body>>> {
    let handshake = if req.version() == Version::HTTP_2 {
        extended_connect(req)?
    } else {
        upgrade_request(req)?
    };
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
        return Err(Box::new(r));
    }
    if let Handshake::Http1 { key } = &handshake
        && !valid_key(key)
    {
        return Err(bad_handshake(
            "missing or malformed Sec-WebSocket-Key header: it must be 16 random bytes in base64 (24 characters ending in ==)\n",
        ));
    }
    Ok(handshake)
}

fn bad_handshake(text: &str) -> Box<Response<Body>> {
    Box::new(refused(
        StatusCode::BAD_REQUEST,
        HandshakeFailure::Http,
        text,
    ))
}

/// HTTP/1.1: `GET` with `Upgrade: websocket` (checked by the caller) and a
/// key (checked once the version is known to be 13).
fn upgrade_request<B>(req: &Request<B>) -> Result<Handshake, Box<Response<Body>>> {
    if req.method() != Method::GET {
        return Err(bad_handshake("a WebSocket upgrade must use GET\n"));
    }
    if req.version() != Version::HTTP_11 {
        return Err(bad_handshake(
            "a WebSocket upgrade needs HTTP/1.1 (or HTTP/2 extended CONNECT)\n",
        ));
    }
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    Ok(Handshake::Http1 { key })
}

/// HTTP/2 (RFC 8441): `CONNECT` with `:protocol websocket`, `:scheme` and
/// `:path`, and none of HTTP/1.1's key exchange.
fn extended_connect<B>(req: &Request<B>) -> Result<Handshake, Box<Response<Body>>> {
    if req.method() != Method::CONNECT {
        return Err(bad_handshake(
            "a WebSocket over HTTP/2 is an extended CONNECT with :protocol websocket (RFC 8441)\n",
        ));
    }
    match req.extensions().get::<Protocol>() {
        None => {
            return Err(bad_handshake(
                "a plain CONNECT (a tunnel) is not served here; a WebSocket over HTTP/2 sends :protocol websocket (RFC 8441)\n",
            ));
        }
        Some(p) if !p.as_str().eq_ignore_ascii_case("websocket") => {
            return Err(bad_handshake(&format!(
                "unsupported :protocol `{}`; this server speaks websocket (RFC 8441)\n",
                p.as_str().escape_debug()
            )));
        }
        Some(_) => {}
    }
    if req.uri().scheme().is_none() || req.uri().path_and_query().is_none() {
        return Err(bad_handshake(
            "an extended CONNECT needs :scheme and :path (RFC 8441 section 4)\n",
        ));
    }
    if req.headers().contains_key(SEC_WEBSOCKET_KEY)
        || req.headers().contains_key(SEC_WEBSOCKET_ACCEPT)
    {
        return Err(bad_handshake(
            "Sec-WebSocket-Key and Sec-WebSocket-Accept are not used over HTTP/2 (RFC 8441 section 5); remove them\n",
        ));
    }
    Ok(Handshake::Http2)
}

/// RFC 6455 section 4.2.1: the key is base64 that decodes to 16 bytes,
/// i.e. 22 base64 characters then `==`.
pub(crate) fn valid_key(key: &[u8]) -> bool {
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
/// plain listener).
pub fn browser_allowed(
    origin: &HeaderValue,
    headers: &HeaderMap,
    ctx: &HttpContext,
    conn: &ConnInfo,
) -> Result<(), BrowserRefused> {
    let origin = origin.to_str().unwrap_or("");
    let allow_origin = ctx.allow_origin.load();
    if allow_origin
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
    if !conn.tls && !ctx.allow_host.load().allows(host) {
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
        return Err(BrowserRefused(text));
    }
    if allow_origin.iter().any(|a| a == "*") {
        return Ok(());
    }
    let scheme = if https { "https" } else { "http" };
    match origin.split_once("://") {
        Some((s, h)) if s.eq_ignore_ascii_case(scheme) && h.eq_ignore_ascii_case(host) => Ok(()),
        Some((s, h)) if h.eq_ignore_ascii_case(host) => Err(BrowserRefused(format!(
            "Origin `{origin}` is an {s}:// page but this listener serves {scheme}: pages of one scheme use their own (wss:// from https, ws:// from http); allow it with --allow-origin {origin}\n"
        ))),
        _ => Err(BrowserRefused(format!(
            "Origin `{origin}` not allowed: this page's origin is not the server's host; add it with --allow-origin ORIGIN\n"
        ))),
    }
}

/// A browser request refused by [`browser_allowed`]; the text says why and
/// what to change, and is the 403's body.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BrowserRefused(pub String);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> hyper::http::request::Builder {
        let mut b = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/ws")
            .header(SEC_WEBSOCKET_VERSION, "13");
        if let Some(p) = protocol {
            b = b.extension(Protocol::from_static(p));
        }
        b
    }

    fn refusal(req: Request<()>) -> (StatusCode, String) {
        let r = *handshake(&req).unwrap_err();
        let status = r.status();
        let body =
            futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(r.into_body()))
                .unwrap()
                .unwrap()
                .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn rfc8441_extended_connect_is_accepted() {
        let req = connect(Some("websocket")).body(()).unwrap();
        assert_eq!(handshake(&req).unwrap(), Handshake::Http2);
    }

    #[test]
    fn rfc8441_refusals_name_the_problem() {
        let (s, t) = refusal(connect(None).body(()).unwrap());
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(t.contains("plain CONNECT"), "{t}");
        let (s, t) = refusal(connect(Some("webtransport")).body(()).unwrap());
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(t.contains("unsupported :protocol `webtransport`"), "{t}");
        let get = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://example.com/ws")
            .body(())
            .unwrap();
        assert!(refusal(get).1.contains("extended CONNECT"));
        let keyed = connect(Some("websocket"))
            .header(SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        assert!(refusal(keyed).1.contains("not used over HTTP/2"));
        let no_path = connect(Some("websocket"))
            .uri("example.com:443")
            .body(())
            .unwrap();
        assert!(refusal(no_path).1.contains(":scheme and :path"));
        let mut old = connect(Some("websocket")).body(()).unwrap();
        old.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(refusal(old).0, StatusCode::UPGRADE_REQUIRED);
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
