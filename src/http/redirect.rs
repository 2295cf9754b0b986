//! `--redirect-http`: a plain listener answers `308 Permanent Redirect` to
//! `https://HOST:PORT/PATH?QUERY` (HOST from the request without its port,
//! PORT the first TLS listener's, left out when 443; IPv6 in brackets). 308
//! keeps the method and body, unlike 301. WebSocket upgrades get the 308
//! too, to the `wss://` URL: clients that follow redirects (Python
//! `websockets`, for one) go on over TLS; browsers do not follow them for
//! WebSockets and see the failure instead of talking in clear. ACME HTTP-01
//! requests are answered before this, and routes with `plain = true` are
//! served.

use std::net::IpAddr;

use hyper::header::{HOST, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};

use super::host::host_name;
use super::reply::{Body, text_response};

/// The 308 to the https:// URL of `req` (wss:// for a WebSocket upgrade),
/// or 400 when the request names no usable host.
pub fn to_https<B>(req: &Request<B>, tls_port: u16, upgrade: bool) -> Response<Body> {
    let scheme = if upgrade { "wss" } else { "https" };
    match location(req, scheme, tls_port) {
        Some(url) => match HeaderValue::from_str(&url) {
            Ok(value) => {
                let mut r = text_response(
                    StatusCode::PERMANENT_REDIRECT,
                    &format!("This server is served over HTTPS: {url}\n"),
                );
                r.headers_mut().insert(LOCATION, value);
                r
            }
            Err(_) => no_host(),
        },
        None => no_host(),
    }
}

fn no_host() -> Response<Body> {
    text_response(
        StatusCode::BAD_REQUEST,
        "this plain listener redirects to https://, but the request has no valid Host header to redirect to\n",
    )
}

/// `SCHEME://HOST[:PORT]/PATH?QUERY` for `req`, or `None` without a valid
/// host (from the Host header, or the request target's authority).
pub fn location<B>(req: &Request<B>, scheme: &str, tls_port: u16) -> Option<String> {
    let raw = match req.headers().get(HOST) {
        Some(v) => v.to_str().ok()?.trim().to_string(),
        None => req.uri().authority()?.as_str().to_string(),
    };
    let name = host_name(&raw);
    let host = match name.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        Ok(v4) => v4.to_string(),
        Err(_) if crate::config::tls::is_hostname(&name) && !name.starts_with('*') => name,
        Err(_) => return None,
    };
    let port = if tls_port == 443 {
        String::new()
    } else {
        format!(":{tls_port}")
    };
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    Some(format!("{scheme}://{host}{port}{target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, target: &str) -> Request<()> {
        let mut b = Request::builder().uri(target);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn locations() {
        let cases = [
            (
                Some("example.com"),
                "/a/b?x=1&y",
                8443,
                "https://example.com:8443/a/b?x=1&y",
            ),
            (Some("Example.COM:80"), "/", 443, "https://example.com/"),
            (Some("[::1]:8080"), "/ws", 8443, "https://[::1]:8443/ws"),
            (Some("127.0.0.1:8080"), "/?q", 443, "https://127.0.0.1/?q"),
        ];
        for (host, target, port, want) in cases {
            assert_eq!(
                location(&req(host, target), "https", port).as_deref(),
                Some(want)
            );
        }
        assert_eq!(location(&req(None, "/"), "https", 443), None);
        assert_eq!(location(&req(Some("a b"), "/"), "https", 443), None);
        assert_eq!(location(&req(Some("x/y"), "/"), "https", 443), None);
        assert_eq!(
            location(&req(None, "http://box.lan:8080/p?q"), "https", 8443).as_deref(),
            Some("https://box.lan:8443/p?q")
        );
        let r = to_https(&req(None, "/"), 443, false);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = to_https(&req(Some("box.lan"), "/x"), 8443, false);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[LOCATION], "https://box.lan:8443/x");
        let r = to_https(&req(Some("box.lan"), "/ws"), 8443, true);
        assert_eq!(r.headers()[LOCATION], "wss://box.lan:8443/ws");
    }
}
