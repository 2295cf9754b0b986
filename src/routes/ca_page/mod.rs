//! The `ca` route kind: the local CA's install page, for phones and other
//! LAN devices that do not trust it yet (so it is served on plain listeners
//! too). Below the route's path:
//!
//! - `` (or `/`): the page: the CA's SHA-256 fingerprint, install steps per
//!   OS, download links and a QR code of the page's own URL;
//! - `/ca.pem` (PEM), `/ca.crt` (DER: Android, Windows),
//!   `/wssd-local-ca.mobileconfig` (iOS/macOS profile).
//!
//! Only the CA certificate is ever read (`ca.pem`, on each request: it is a
//! small file and a renewed CA shows at once), never its key.

use std::path::PathBuf;

use bytes::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Response, StatusCode};

use crate::certs::local_ca;
use crate::http::reply::{Body, ConnInfo, empty_body, full_body, text_response};

mod page;

/// The file name of the iOS profile below the route.
pub const PROFILE_FILE: &str = "wssd-local-ca.mobileconfig";

/// A `ca` route: where the CA lives and the route's path (for links).
#[derive(Debug)]
pub struct CaPage {
    state_dir: PathBuf,
    /// The route path without a trailing `/`.
    base: String,
}

impl CaPage {
    pub fn new(route_path: &str, state_dir: PathBuf) -> CaPage {
        CaPage {
            state_dir,
            base: route_path.trim_end_matches('/').to_string(),
        }
    }

    /// Answers a GET or HEAD below the route (`rest`: the path below it).
    pub fn serve(
        &self,
        method: &Method,
        headers: &HeaderMap,
        rest: &str,
        conn: &ConnInfo,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are allowed here\n",
            );
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            return r;
        }
        let ca = match local_ca::load_public(&local_ca::paths(&self.state_dir)) {
            Ok(Some(ca)) => ca,
            Ok(None) => {
                return text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the local CA does not exist yet; it is created when wssd starts with --tls local-ca\n",
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "install page: cannot read the local CA");
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the local CA certificate cannot be read; see the server log\n",
                );
            }
        };
        let head = method == Method::HEAD;
        match rest.trim_start_matches('/') {
            "" | "index.html" => {
                let url = page_url(headers, conn, &self.base);
                let html = page::render(&ca, &self.base, &url);
                respond(head, "text/html; charset=utf-8", None, html.into_bytes())
            }
            "ca.pem" => respond(
                head,
                "application/x-pem-file",
                Some("wssd-local-ca.pem"),
                ca.pem.into_bytes(),
            ),
            "ca.crt" => respond(
                head,
                "application/x-x509-ca-cert",
                Some("wssd-local-ca.crt"),
                ca.der,
            ),
            PROFILE_FILE => respond(
                head,
                "application/x-apple-aspen-config",
                Some(PROFILE_FILE),
                ca.mobileconfig().into_bytes(),
            ),
            _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// The page's URL as this client reached it: scheme from the listener,
/// host from `Host` when it is a plain host[:port] (else the listener's
/// address), path of the route.
fn page_url(headers: &HeaderMap, conn: &ConnInfo, base: &str) -> String {
    let scheme = if conn.tls { "https" } else { "http" };
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| plain_host(h))
        .map_or_else(|| conn.listener.to_string(), str::to_string);
    let path = if base.is_empty() { "/" } else { base };
    format!("{scheme}://{host}{path}")
}

/// A host[:port] or [v6]:port made only of the characters those use.
fn plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

fn respond(
    head: bool,
    content_type: &'static str,
    file: Option<&str>,
    body: Vec<u8>,
) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(if head {
        empty_body()
    } else {
        full_body(Bytes::from(body))
    });
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    h.insert(hyper::header::CONTENT_LENGTH, len.into());
    h.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    if let Some(name) = file
        && let Ok(v) =
            hyper::header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        h.insert(CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(plain_host("192.168.1.20:8080"));
        assert!(plain_host("[::1]:8443"));
        assert!(plain_host("web.lan"));
        assert!(!plain_host("evil\"><script>"));
        assert!(!plain_host(""));
        assert!(!plain_host("a/b"));
    }
}
