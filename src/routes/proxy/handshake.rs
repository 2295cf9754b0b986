//! The client half of the opening handshake with an upstream, by hand, so
//! no byte the upstream sends after its 101 is lost to a library buffer.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::connect::{BoxIo, CONNECT_TIMEOUT};

/// An upstream connection after its 101.
pub(super) struct Upgraded {
    pub(super) io: BoxIo,
    /// Bytes read past the response head (frames the upstream sent at once).
    pub(super) buffered: Vec<u8>,
    /// The subprotocol the upstream chose.
    pub(super) protocol: Option<HeaderValue>,
}

/// Why an upstream did not become a WebSocket.
pub(super) enum UpstreamRefusal {
    /// It answered, but not with 101.
    Status(StatusCode),
    /// The connection or the answer was broken.
    Broken(String),
}

/// Largest upstream response head read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The client half of the opening handshake with an upstream, by hand, so
/// no byte the upstream sends after its 101 is lost to a library buffer.
pub(super) async fn handshake_upstream(
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
                    let protocol = check_switching(&response, &key, headers)?;
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

/// RFC 6455 section 4.1: what a client checks in the server's 101 before
/// the connection is a WebSocket: the accept key, `Upgrade: websocket`,
/// `Connection: Upgrade`, no extension (wssd offers none) and no
/// subprotocol the client did not offer. Returns the chosen subprotocol.
fn check_switching(
    response: &httparse::Response<'_, '_>,
    key: &str,
    request_headers: &HeaderMap,
) -> Result<Option<HeaderValue>, UpstreamRefusal> {
    let refuse = |why: &str| Err(UpstreamRefusal::Broken(format!("the upstream's 101 {why}")));
    let values = |name: &'static str| {
        response
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &'static str, token: &str| {
        values(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    if values("sec-websocket-accept").next() != Some(expected.as_bytes()) {
        return refuse("has a wrong Sec-WebSocket-Accept");
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return refuse("lacks `Upgrade: websocket` or `Connection: Upgrade`");
    }
    if values("sec-websocket-extensions").any(|v| !v.trim_ascii().is_empty()) {
        return refuse("turns on an extension wssd did not offer");
    }
    let Some(chosen) = values("sec-websocket-protocol").next() else {
        return Ok(None);
    };
    let offered = request_headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|p| p.trim_ascii() == chosen.trim_ascii());
    if !offered {
        return refuse("chose a subprotocol the client did not offer");
    }
    Ok(HeaderValue::from_bytes(chosen).ok())
}
