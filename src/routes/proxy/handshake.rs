//! The client half of the opening handshake with an upstream, by hand, so
//! no byte the upstream sends after its 101 is lost to a library buffer.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::pool::{BoxIo, CONNECT_TIMEOUT};

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
