//! The `static` route kind: files from a folder (or the bundled client) with
//! correct content types, `index.html` for folders, no listing and no escape
//! from the folder (symlinks pointing outside are refused too), and never a
//! private key (by content, see `key_guard`).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, LOCATION,
};
use hyper::{Method, Response, StatusCode};
use tower::ServiceExt;
use tower_http::compression::CompressionBody;
use tower_http::services::ServeDir;
use tower_http::services::fs::ServeFileSystemResponseBody;

use super::file_answer::{self, SyncBody, file_request, with_charset};
use super::static_fs::Confined;
use super::{bundled, key_guard};
use crate::http::reply::{Body, text_response};

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
                Some(asset) => bundled::serve(asset, head, headers).await,
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
        .layer(file_answer::compression())
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

/// 301 to the folder with a trailing slash (relative links in its index
/// need it), as nginx answers.
fn moved(location: Option<&HeaderValue>) -> Response<Body> {
    let mut r = text_response(StatusCode::MOVED_PERMANENTLY, "moved\n");
    if let Some(v) = location {
        r.headers_mut().insert(LOCATION, v.clone());
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
