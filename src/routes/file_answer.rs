//! What static folders and the bundled client share to answer a file:
//! the request the file services see, on-the-fly compression of text types
//! (tower-http's `CompressionLayer`: brotli at quality 4 or gzip, as the
//! client accepts), UTF-8 for text types, and a `Sync` wrapper for
//! tower-http's bodies.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::SizeHint;
use hyper::header::{
    ACCEPT_ENCODING, CONTENT_TYPE, HeaderMap, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_UNMODIFIED_SINCE, RANGE,
};
use hyper::{Method, Request, Response};
use sync_wrapper::SyncWrapper;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};

/// The compression pass, for text types only.
pub fn compression() -> CompressionLayer<TextTypes> {
    CompressionLayer::new()
        .br(true)
        .gzip(true)
        .compress_when(TextTypes)
}

/// The request ServeDir (and the compression pass) sees: the path below
/// the route and the headers that matter for files.
pub fn file_request(method: &Method, uri: &str, incoming: &HeaderMap) -> Request<Empty<Bytes>> {
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
pub struct TextTypes;

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

/// tower-http's bodies are `Send` but not `Sync`; wssd's `Body` is both.
/// `SyncWrapper` gives `Sync` by allowing only pinned mutable access, so
/// the size hint (hyper's Content-Length when no header says it) is taken
/// once up front.
pub struct SyncBody<B> {
    inner: SyncWrapper<B>,
    hint: SizeHint,
    done: bool,
}

impl<B: hyper::body::Body> SyncBody<B> {
    pub fn new(inner: B) -> Self {
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

/// `mime` with `charset=utf-8` added to text types that do not say.
pub fn with_charset(mime: &mime_guess::Mime) -> String {
    if is_text(mime) && mime.get_param("charset").is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// Text types: `text/*`, JavaScript, JSON and `+xml` (SVG included).
pub fn is_text(mime: &mime_guess::Mime) -> bool {
    mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON
        || mime.suffix() == Some(mime_guess::mime::XML)
}
