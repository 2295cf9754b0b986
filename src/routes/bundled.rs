//! The bundled browser client, embedded in the binary at build time (no
//! network fetches). `static_files` serves it when a static route has no
//! folder: with a strong `ETag` from the content (304 on `If-None-Match`),
//! `Cache-Control: no-cache` (always revalidated, so a new build is seen at
//! once), text compressed on the fly (`file_answer`), and its CSP.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    HeaderMap, HeaderValue, IF_NONE_MATCH,
};
use hyper::{Method, Response, StatusCode};
use tower::ServiceExt;

use super::file_answer::{self, SyncBody, file_request};
use crate::http::reply::Body;

/// Content-Security-Policy of the bundled page: its own script and style
/// files only (no inline code, no eval), the microphone's AudioWorklet from
/// a `blob:` URL it makes itself, WebSockets to any ws:// or wss:// URL (a
/// route field may name another server, e.g. a speech recognizer) but no
/// other fetches, no framing (the microphone panel must not be
/// clickjacked), no plugins, no form posts.
pub const CSP: &str = "default-src 'none'; script-src 'self' blob:; style-src 'self'; \
connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every embedded file, by path relative to the route.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/client/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/client/app.js"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/client/style.css"),
    },
];

/// Looks up an embedded file; the empty path is `index.html`.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// Answers a GET or HEAD for an embedded file.
pub async fn serve(asset: &'static Asset, head: bool, incoming: &HeaderMap) -> Response<Body> {
    let tag = etag(asset);
    if not_modified(incoming, &tag) {
        let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        decorate(r.headers_mut(), &tag);
        return r;
    }
    let plain = move || {
        let mut r = Response::new(Full::new(Bytes::from_static(asset.body)));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        h.insert(CONTENT_LENGTH, asset.body.len().into());
        r
    };
    if head {
        let (mut parts, _) = plain().into_parts();
        decorate(&mut parts.headers, &tag);
        return Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed());
    }
    let files = tower::ServiceBuilder::new()
        .layer(file_answer::compression())
        .service(tower::service_fn(move |_| async move {
            Ok::<_, Infallible>(plain())
        }));
    let Ok(resp) = files
        .oneshot(file_request(&Method::GET, "/", incoming))
        .await;
    let (mut parts, body) = resp.into_parts();
    // The compressed bytes are not the file's: a weak tag, as nginx does.
    let tag = if parts.headers.contains_key(CONTENT_ENCODING) {
        format!("W/{tag}")
    } else {
        tag
    };
    decorate(&mut parts.headers, &tag);
    let body = SyncBody::new(body.map_err(std::io::Error::other)).boxed();
    Response::from_parts(parts, body)
}

/// The bundled client's headers: its validator, always revalidated, its
/// Content-Security-Policy, no sniffing.
fn decorate(h: &mut HeaderMap, tag: &str) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
}

/// A strong tag from the content (FNV-1a, 64 bits) and length: the same
/// for the same build, new for a new client.
fn etag(asset: &Asset) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in asset.body {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{:x}-{hash:016x}\"", asset.body.len())
}

/// Whether `If-None-Match` names `tag` (weak comparison, RFC 9110 13.1.2)
/// or is `*`.
fn not_modified(incoming: &HeaderMap, tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let own = bare(tag);
    incoming
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_match_weakly_and_differ_by_content() {
        let a = find("app.js").unwrap();
        let tag = etag(a);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_ne!(tag, etag(find("").unwrap()));
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &tag));
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap(),
        );
        assert!(not_modified(&h, &tag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &tag));
    }
}
