//! What the HTTP layer and the route kinds both speak, kept in a leaf so
//! neither imports the other for it: the response [`Body`], the facts about
//! a connection ([`ConnInfo`]), text responses and the reply that accepts
//! a WebSocket (101 on HTTP/1.1, 200 on HTTP/2).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use hyper::{Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::metrics::{self, HandshakeFailure};
use crate::server::admission::Ticket;

/// Response body type used everywhere.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Facts about one client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The listener's address, as a metrics label.
    pub listener: Arc<str>,
    pub tls: bool,
    /// The connection's admission slot; released when the last holder
    /// (the HTTP connection or the WebSocket session) lets go. A WebSocket
    /// over HTTP/2 gets a ticket of its own (its per-IP slot, holding the
    /// connection's) from `edge`.
    pub ticket: Arc<Ticket>,
    /// Subject of the verified client certificate (mTLS), if one was sent.
    pub client_subject: Option<Arc<str>>,
}

/// A short plain-text response.
pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full_body(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A refused WebSocket upgrade: counted as a failed handshake and as a
/// response, answered with `text`.
pub fn refused(status: StatusCode, reason: HandshakeFailure, text: &str) -> Response<Body> {
    metrics::handshake_failed(reason);
    metrics::http_response(status.as_u16());
    text_response(status, text)
}

/// How a client asked for a WebSocket, as validated by `http::edge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// HTTP/1.1 Upgrade (RFC 6455) with its `Sec-WebSocket-Key`.
    Http1 { key: Vec<u8> },
    /// HTTP/2 extended CONNECT with `:protocol websocket` (RFC 8441): one
    /// stream of a multiplexed connection, no key.
    Http2,
}

impl Handshake {
    /// The HTTP version as a metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Handshake::Http1 { .. } => "1.1",
            Handshake::Http2 => "2",
        }
    }
}

/// Marks the response that accepted a WebSocket (the access log writes the
/// socket's line when it ends, not one for the handshake).
#[derive(Debug, Clone, Copy)]
pub struct WebSocketAccepted;

/// The response that accepts a validated WebSocket handshake: 101 with the
/// accept key on HTTP/1.1, 200 with no body on HTTP/2 (RFC 8441 section
/// 5; hyper then hands over the stream). Counted by HTTP version.
pub fn switching_protocols(handshake: &Handshake) -> Response<Body> {
    metrics::websocket_accepted(handshake.label());
    let mut r = Response::new(empty_body());
    r.extensions_mut().insert(WebSocketAccepted);
    let Handshake::Http1 { key } = handshake else {
        return r;
    };
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key)) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// A body holding these bytes.
pub fn full_body(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}
