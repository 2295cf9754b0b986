//! The `static` route kind: files from a folder (or the bundled client) with
//! correct content types, `index.html` for folders, no listing and no escape
//! from the folder (symlinks pointing outside are refused too), and never a
//! private key (by content, see `key_guard`).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::SizeHint;
use hyper::header::{
    ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    HeaderMap, HeaderValue, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE,
    LOCATION, RANGE,
};
use hyper::{Method, Request, Response, StatusCode};
use sync_wrapper::SyncWrapper;
use tower::ServiceExt;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionBody, CompressionLayer};
use tower_http::services::ServeDir;
use tower_http::services::fs::ServeFileSystemResponseBody;

use super::static_fs::Confined;
use super::{bundled, key_guard};
use crate::http::reply::{Body, empty_body, text_response};

/// Where a static route's files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The client embedded in the binary.
    Bundled,
    /// A folder, canonicalized at start.
    Dir(PathBuf),
}

/// Answers a GET or HEAD for `rest`, the request path below the route prefix
/// (still percent-encoded, starting with `/` or empty). `full_path` is the
/// whole request path, used for redirects.
pub async fn serve(
    source: &Source,
    method: &Method,
    headers: &HeaderMap,
    rest: &str,
    full_path: &str,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed here\n",
        );
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(relative) = clean_path(rest) else {
        return not_found();
    };
    let head = method == Method::HEAD;
    match source {
        Source::Bundled => {
            let key = relative.to_string_lossy().replace('\\', "/");
            let key = key.strip_suffix("/index.html").unwrap_or(&key);
            match bundled::find(if key == "index.html" { "" } else { key }) {
                Some(asset) => respond(
                    asset.content_type,
                    asset.body.len() as u64,
                    head,
                    Full::new(Bytes::from_static(asset.body))
                        .map_err(|never| match never {})
                        .boxed(),
                    true,
                ),
                None => not_found(),
            }
        }
        Source::Dir(root) => {
            // `rest` was checked above (clean_path); ServeDir cleans it
            // again and the backend confines what it resolves to.
            serve_dir(root, headers, head, rest, full_path).await
        }
    }
}

/// Serves a file of the folder through tower-http's `ServeDir` (Range,
/// ETag / Last-Modified and 304, precompressed `.br`/`.gz` siblings), whose
/// every file access goes through [`Confined`] (no escape, no private
/// key), then compresses text types on the fly.
async fn serve_dir(
    root: &Path,
    incoming: &HeaderMap,
    head: bool,
    rest: &str,
    full_path: &str,
) -> Response<Body> {
    let fs = Confined::new(Arc::new(root.to_path_buf()), head);
    let prefix = full_path.strip_suffix(rest).unwrap_or("");
    let dir = ServeDir::with_backend(root, fs.clone())
        .precompressed_br()
        .precompressed_gzip()
        .redirect_path_prefix(prefix);
    let uri = if rest.is_empty() { "/" } else { rest };
    let method = if head { Method::HEAD } else { Method::GET };
    let files = tower::ServiceBuilder::new()
        .layer(
            CompressionLayer::new()
                .br(true)
                .gzip(true)
                .compress_when(TextTypes),
        )
        .map_response(mark_precompressed)
        .service(dir);
    let Ok(resp) = files.oneshot(file_request(&method, uri, incoming)).await;
    if let Some(file) = fs.refused() {
        key_guard::refused(&file, full_path);
        return text_response(
            StatusCode::FORBIDDEN,
            "forbidden: this file holds a private key, which wssd never serves\n",
        );
    }
    match resp.status() {
        StatusCode::NOT_FOUND => not_found(),
        StatusCode::TEMPORARY_REDIRECT => moved(resp.headers().get(LOCATION)),
        s if s.is_server_error() => text_response(s, "the file could not be read\n"),
        _ => finish(resp),
    }
}

/// Marks a `.br`/`.gz` sibling's answer (already encoded by ServeDir, not
/// by the compression pass).
fn mark_precompressed<B>(mut resp: Response<B>) -> Response<B> {
    if resp.headers().contains_key(CONTENT_ENCODING) {
        resp.extensions_mut().insert(Precompressed);
    }
    resp
}

#[derive(Clone, Copy, Debug)]
struct Precompressed;

/// The request ServeDir (and the compression pass) sees: the path below
/// the route and the headers that matter for files.
fn file_request(method: &Method, uri: &str, incoming: &HeaderMap) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.method_mut() = method.clone();
    if let Ok(u) = uri.parse() {
        *req.uri_mut() = u;
    }
    for name in [
        ACCEPT_ENCODING,
        RANGE,
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ] {
        for v in incoming.get_all(&name) {
            req.headers_mut().append(name.clone(), v.clone());
        }
    }
    req
}

/// Which answers are compressed on the fly: text types (HTML, CSS,
/// JavaScript, JSON, XML, SVG) of at least [`COMPRESS_MIN`] bytes, like
/// Caddy's `encode` defaults.
#[derive(Clone, Copy, Debug)]
struct TextTypes;

/// Smaller answers are sent as they are (Caddy's `minimum_length`).
const COMPRESS_MIN: u64 = 512;

impl Predicate for TextTypes {
    fn should_compress<B: hyper::body::Body>(&self, response: &Response<B>) -> bool {
        let text = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_guess::Mime>().ok())
            .is_some_and(|m| is_text(&m) || m.suffix() == Some(mime_guess::mime::XML));
        text && SizeAbove::new(COMPRESS_MIN).should_compress(response)
    }
}

/// wssd's headers on a file answer: UTF-8 for text types, cache for a
/// minute then revalidate (ETag / Last-Modified), no sniffing. An ETag of
/// an answer compressed here is made weak, as nginx does: the bytes differ
/// from the file's.
fn finish(resp: Response<CompressionBody<ServeFileSystemResponseBody>>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let precompressed = parts.extensions.get::<Precompressed>().is_some();
    let h = &mut parts.headers;
    if let Some(ct) = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && let Ok(m) = ct.parse::<mime_guess::Mime>()
        && let Ok(v) = HeaderValue::from_str(&with_charset(&m))
    {
        h.insert(CONTENT_TYPE, v);
    }
    if !precompressed
        && h.contains_key(CONTENT_ENCODING)
        && let Some(tag) = h.get(ETAG).and_then(|v| v.to_str().ok())
        && !tag.starts_with("W/")
        && let Ok(v) = HeaderValue::from_str(&format!("W/{tag}"))
    {
        h.insert(ETAG, v);
    }
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    let body = SyncBody::new(body.map_err(std::io::Error::other)).boxed();
    Response::from_parts(parts, body)
}

/// tower-http's bodies are `Send` but not `Sync`; wssd's `Body` is both.
/// `SyncWrapper` gives `Sync` by allowing only pinned mutable access, so
/// the size hint (hyper's Content-Length when no header says it) is taken
/// once up front.
struct SyncBody<B> {
    inner: SyncWrapper<B>,
    hint: SizeHint,
    done: bool,
}

impl<B: hyper::body::Body> SyncBody<B> {
    fn new(inner: B) -> Self {
        SyncBody {
            hint: inner.size_hint(),
            done: inner.is_end_stream(),
            inner: SyncWrapper::new(inner),
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let polled = std::pin::Pin::new(self.inner.get_mut()).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// 301 to the folder with a trailing slash (relative links in its index
/// need it), as nginx answers.
fn moved(location: Option<&HeaderValue>) -> Response<Body> {
    let mut r = text_response(StatusCode::MOVED_PERMANENTLY, "moved\n");
    if let Some(v) = location {
        r.headers_mut().insert(LOCATION, v.clone());
    }
    r
}

fn respond(content_type: &str, len: u64, head: bool, body: Body, bundled: bool) -> Response<Body> {
    let body = if head { empty_body() } else { body };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, len.into());
    h.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static(if bundled {
            "no-cache"
        } else {
            "public, max-age=60"
        }),
    );
    h.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    if bundled {
        h.insert(
            hyper::header::CONTENT_SECURITY_POLICY,
            hyper::header::HeaderValue::from_static(bundled::CSP),
        );
    }
    r
}

fn not_found() -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, "not found\n")
}

/// Content type by extension; text types say UTF-8.
#[cfg(test)]
fn content_type_of(path: &Path) -> String {
    with_charset(&mime_guess::from_path(path).first_or_octet_stream())
}

/// `mime` with `charset=utf-8` added to text types that do not say.
fn with_charset(mime: &mime_guess::Mime) -> String {
    if is_text(mime) && mime.get_param("charset").is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// Text types: `text/*`, JavaScript, JSON and `+xml` (SVG included).
fn is_text(mime: &mime_guess::Mime) -> bool {
    mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON
        || mime.suffix() == Some(mime_guess::mime::XML)
}

/// Percent-decodes and normalizes a request path below the route; `None`
/// for anything that tries to leave the folder or is not valid UTF-8.
fn clean_path(rest: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for component in Path::new(decoded.as_ref()).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path("/a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(clean_path(""), Some(PathBuf::new()));
        assert_eq!(clean_path("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(clean_path("/../etc/passwd"), None);
        assert_eq!(clean_path("/a/%2e%2e/%2e%2e/x"), None);
        assert_eq!(clean_path("/a%00b"), None);
        assert_eq!(clean_path("/a%5c..%5cb"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type_of(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type_of(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type_of(Path::new("a.png")), "image/png");
        assert_eq!(content_type_of(Path::new("a.wasm")), "application/wasm");
        assert_eq!(
            content_type_of(Path::new("noext")),
            "application/octet-stream"
        );
    }
}
