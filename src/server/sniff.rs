//! Plain HTTP sent to a TLS port: instead of a TLS alert (which curl shows
//! as "Received HTTP/0.9 when not allowed"), a readable `400` saying to use
//! https:// (what Caddy and Go's net/http do). The first bytes are read
//! (up to [`FIRST_READ`], a whole ClientHello as a rule) and classified: a
//! TLS record starts with 0x16 and goes to rustls, which gets the bytes read
//! ([`feed`]) before it reads the socket itself, so telling TLS from HTTP
//! costs no system call of its own (a `MSG_PEEK` before: one more per
//! connection); a request line (an upper-case method and a space) gets the
//! answer; anything else goes to rustls too, which refuses it as before.

use std::net::IpAddr;
use std::time::Duration;

use rustls::ServerConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::stall::StallGuard;
use crate::metrics::{self, HandshakeFailure};

/// Bytes looked at to tell TLS from HTTP.
const PEEK: usize = 8;
/// Most bytes read before the handshake: a ClientHello (1.3-2 KiB with a
/// post-quantum key share) in one read; the rest is rustls's to read.
pub const FIRST_READ: usize = 4096;
/// Most bytes of the request head read (and dropped) before answering.
const MAX_HEAD: usize = 8 * 1024;
/// How long the rest of the request may take to arrive and be drained
/// after the answer, so closing does not reset the answer away.
const LINGER: Duration = Duration::from_secs(1);

/// What the first bytes of a connection on a TLS port look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record, or anything that is not HTTP: rustls decides.
    Tls,
    /// An HTTP request line.
    Http,
}

/// Tells an HTTP request line (`GET `, `POST `, ...) from everything else,
/// given the first bytes.
pub fn classify(first: &[u8]) -> FirstBytes {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let http = match first.get(method_len) {
        Some(b' ') => method_len >= 3,
        // All of what arrived so far is an upper-case word.
        None => method_len >= 3,
        Some(_) => false,
    };
    if http {
        FirstBytes::Http
    } else {
        FirstBytes::Tls
    }
}

/// Reads the first bytes (until `deadline`, at most [`FIRST_READ`]): `None`
/// when the peer sent nothing in time, closed or failed (the caller counts
/// the timeout as before). Reads through the stall guard, which bounds
/// writes only. A read that finds less than it asked for tells tokio the
/// socket is drained, so rustls's read right after writing the server's
/// flight waits for the next readiness event instead of making a system
/// call that finds nothing (`try_read` keeps the readiness: one `recvfrom`
/// returning `EAGAIN` per handshake).
pub async fn read_first(stream: &mut StallGuard<TcpStream>, deadline: Instant) -> Option<Vec<u8>> {
    let read = async {
        let mut first = Vec::with_capacity(FIRST_READ);
        match stream.read_buf(&mut first).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(first),
        }
    };
    tokio::time::timeout_at(deadline, read).await.ok().flatten()
}

/// What the first bytes read look like.
pub fn kind(first: &[u8]) -> FirstBytes {
    classify(&first[..first.len().min(PEEK)])
}

/// A handshake refused on the bytes read first: rustls's error and the
/// alert it wants sent (the TLS records, ready to write).
#[derive(Debug)]
pub struct Refused {
    pub error: rustls::Error,
    pub alert: Vec<u8>,
}

/// Hands the bytes read first to rustls and lets it process them, as if
/// it had read them from the socket (the handshake then reads on from
/// there). Fails as rustls would have on those bytes.
pub fn feed(conn: &mut ServerConnection, mut first: &[u8]) -> Result<(), Refused> {
    while !first.is_empty() {
        let fed = conn.read_tls(&mut first);
        let processed = match fed {
            Ok(0) => return Ok(()),
            Ok(_) => conn.process_new_packets().map(|_| ()),
            // Its buffer refused more (cannot happen for FIRST_READ bytes).
            Err(_) => Err(rustls::Error::General("ClientHello too large".into())),
        };
        if let Err(error) = processed {
            let mut alert = Vec::new();
            while conn.wants_write() {
                if conn.write_tls(&mut alert).is_err() {
                    break;
                }
            }
            return Err(Refused { error, alert });
        }
    }
    Ok(())
}

/// Answers an HTTP request on a TLS port with `400` and the https:// URL,
/// then closes; `first` is what was read of the request already. Writes
/// run under the stall guard's send timeout.
pub async fn answer_plain_http(
    mut stream: StallGuard<TcpStream>,
    first: Vec<u8>,
    deadline: Instant,
) {
    metrics::handshake_failed(HandshakeFailure::PlainHttp);
    metrics::http_response(400);
    let local = stream.get_ref().local_addr().ok();
    let head = read_head(&mut stream, first, deadline).await;
    let host = host_of(&head).or_else(|| local.map(|a| url_host(a.ip())));
    let port = local.map(|a| a.port()).unwrap_or(443);
    let response = response(host.as_deref().unwrap_or("HOST"), port);
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Drain what the client still sends, briefly, so the close is a FIN
    // and not a reset that could destroy the answer in flight.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        while drained < MAX_HEAD {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Reads the request head on from `head` (up to the blank line,
/// [`MAX_HEAD`] bytes or the deadline, whichever comes first).
async fn read_head(
    stream: &mut StallGuard<TcpStream>,
    mut head: Vec<u8>,
    deadline: Instant,
) -> Vec<u8> {
    head.truncate(MAX_HEAD);
    let mut chunk = [0u8; 1024];
    let _ = tokio::time::timeout_at(deadline, async {
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n.min(MAX_HEAD - head.len())]),
            }
        }
    })
    .await;
    head
}

/// The host name of the request's Host header, if it is a plain name or
/// IP literal (nothing that could inject text or markup).
fn host_of(head: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(head);
    let value = req
        .headers
        .iter()
        .take_while(|h| !h.name.is_empty())
        .find(|h| h.name.eq_ignore_ascii_case("host"))?
        .value;
    let value = std::str::from_utf8(value).ok()?;
    let name = crate::http::host::host_name(value.trim());
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(url_host(ip));
    }
    (crate::config::tls::is_hostname(&name) && !name.starts_with('*')).then_some(name)
}

/// An IP address as written in a URL (IPv6 in brackets).
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// The whole response: status, headers and a short text that reads the
/// same as plain text or when a browser sniffs it as HTML.
fn response(host: &str, port: u16) -> String {
    let url = if port == 443 {
        format!("https://{host}/")
    } else {
        format!("https://{host}:{port}/")
    };
    let body =
        format!("This port speaks HTTPS. Use {url} instead of http:// (wss:// for WebSockets).\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_http_from_tls() {
        assert_eq!(classify(b"\x16\x03\x01\x02\x00\x01"), FirstBytes::Tls);
        assert_eq!(classify(b"GET / HT"), FirstBytes::Http);
        assert_eq!(classify(b"POST /x "), FirstBytes::Http);
        assert_eq!(classify(b"OPTIONS "), FirstBytes::Http);
        assert_eq!(classify(b"HEA"), FirstBytes::Http);
        assert_eq!(classify(b"GE"), FirstBytes::Tls);
        assert_eq!(classify(b"\x80\x2e\x01"), FirstBytes::Tls);
        assert_eq!(classify(b"get / "), FirstBytes::Tls);
    }

    #[test]
    fn host_is_taken_only_when_harmless() {
        let head = b"GET / HTTP/1.1\r\nHost: Example.com:8443\r\n\r\n";
        assert_eq!(host_of(head).as_deref(), Some("example.com"));
        let head = b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n";
        assert_eq!(host_of(head).as_deref(), Some("[::1]"));
        let head = b"GET / HTTP/1.1\r\nHost: <script>x</script>\r\n\r\n";
        assert_eq!(host_of(head), None);
        assert_eq!(host_of(b"GET / HTTP/1.1\r\n\r\n"), None);
        let r = response("example.com", 8443);
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(r.ends_with(
            "Use https://example.com:8443/ instead of http:// (wss:// for WebSockets).\n"
        ));
        assert!(response("example.com", 443).contains("https://example.com/ "));
    }
}
