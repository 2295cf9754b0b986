//! The admin listener's status page and its JSON: `GET /` (the page),
//! `GET /dashboard/*` (its script, style and icon) and `GET /status`. The
//! assets are compiled into the binary (`assets/dashboard/`), so the page
//! works without internet; it loads nothing from any other origin, and a
//! strict Content-Security-Policy says so to the browser.

use bytes::Bytes;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, HeaderValue,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Response, StatusCode};

use super::live;
use super::snapshot::{self, Inputs};
use crate::http::reply::{Body, full_body, text_response};

/// Only this origin's script, style, icon and `fetch`; no inline script,
/// no frames, no forms.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../assets/dashboard/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard/dashboard.css");
const ICON: &str = include_str!("../../assets/dashboard/favicon.svg");

/// Whether `path` is one of the page's; the admin listener sends those here.
pub fn is_page_path(path: &str) -> bool {
    path == "/" || path == "/status" || path.starts_with("/dashboard/")
}

/// Answers a request for one of the page's paths.
pub fn respond(method: &Method, path: &str, inputs: Inputs<'_>) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "the status page and /status answer GET (and HEAD) only\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (body, kind) = match path {
        "/" => (
            Bytes::from_static(INDEX.as_bytes()),
            "text/html; charset=utf-8",
        ),
        "/status" => {
            let status = snapshot::build(live::live(), inputs);
            match serde_json::to_vec(&status) {
                Ok(json) => (Bytes::from(json), "application/json"),
                Err(e) => {
                    return text_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("could not encode /status: {e}\n"),
                    );
                }
            }
        }
        "/dashboard/dashboard.js" => (
            Bytes::from_static(SCRIPT.as_bytes()),
            "text/javascript; charset=utf-8",
        ),
        "/dashboard/dashboard.css" => (
            Bytes::from_static(STYLE.as_bytes()),
            "text/css; charset=utf-8",
        ),
        "/dashboard/favicon.svg" => (Bytes::from_static(ICON.as_bytes()), "image/svg+xml"),
        _ => {
            return text_response(
                StatusCode::NOT_FOUND,
                "the status page's files are /dashboard/dashboard.js, /dashboard/dashboard.css and /dashboard/favicon.svg\n",
            );
        }
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    with_headers(Response::new(full_body(body)), kind)
}

fn with_headers(mut r: Response<Body>, kind: &'static str) -> Response<Body> {
    let h = r.headers_mut();
    let set: [(HeaderName, &'static str); 6] = [
        (CONTENT_TYPE, kind),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        (CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs<'static> {
        Inputs {
            ready: Ok(()),
            certs: None,
            broker: None,
        }
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        // Every src/href in the page is one of ours (no CDN, no other origin).
        for part in INDEX.split(['"', '\'']) {
            assert!(
                !part.starts_with("http:")
                    && !part.starts_with("https:")
                    && !part.starts_with("//"),
                "the page names another origin: {part}"
            );
        }
        for asset in [
            "/dashboard/dashboard.js",
            "/dashboard/dashboard.css",
            "/dashboard/favicon.svg",
        ] {
            assert!(INDEX.contains(asset), "{asset}");
            let r = respond(&Method::GET, asset, inputs());
            assert_eq!(r.status(), StatusCode::OK, "{asset}");
        }
        // The script writes server strings as text, never as markup.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }

    #[test]
    fn pages_carry_a_strict_policy() {
        let r = respond(&Method::GET, "/", inputs());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_SECURITY_POLICY], CSP);
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert_eq!(r.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let r = respond(&Method::GET, "/status", inputs());
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn other_methods_and_paths_are_refused() {
        let r = respond(&Method::POST, "/status", inputs());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = respond(&Method::GET, "/dashboard/../secret", inputs());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(is_page_path("/") && is_page_path("/status") && !is_page_path("/metrics"));
    }
}
