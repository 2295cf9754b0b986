//! The `static` route kind: files from a folder (or the bundled client) with
//! correct content types, `index.html` for folders, no listing and no escape
//! from the folder (symlinks pointing outside are refused too), and never a
//! private key (by content, see `key_guard`).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use hyper::{Method, Response, StatusCode};
use tokio::io::AsyncSeekExt;
use tokio_util::io::ReaderStream;

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
            serve_dir(
                root,
                &relative,
                head,
                rest.ends_with('/') || rest.is_empty(),
                full_path,
            )
            .await
        }
    }
}

async fn serve_dir(
    root: &Path,
    relative: &Path,
    head: bool,
    trailing_slash: bool,
    full_path: &str,
) -> Response<Body> {
    let candidate = root.join(relative);
    let Ok(real) = tokio::fs::canonicalize(&candidate).await else {
        return not_found();
    };
    if !real.starts_with(root) {
        return not_found();
    }
    let Ok(meta) = tokio::fs::metadata(&real).await else {
        return not_found();
    };
    let file = if meta.is_dir() {
        let index = real.join("index.html");
        match tokio::fs::metadata(&index).await {
            Ok(m) if m.is_file() => {
                if !trailing_slash {
                    // Relative links in the index need the trailing slash.
                    let mut r = text_response(StatusCode::MOVED_PERMANENTLY, "moved\n");
                    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("{full_path}/")) {
                        r.headers_mut().insert(LOCATION, v);
                    }
                    return r;
                }
                index
            }
            _ => return not_found(),
        }
    } else if meta.is_file() {
        real
    } else {
        return not_found();
    };
    let Ok(mut handle) = tokio::fs::File::open(&file).await else {
        return not_found();
    };
    // Never a private key, whatever the file is called: look at its content.
    match key_guard::read_head(&mut handle).await {
        Ok(head) if key_guard::holds_private_key(&head) => {
            key_guard::refused(&file, full_path);
            return text_response(
                StatusCode::FORBIDDEN,
                "forbidden: this file holds a private key, which wssd never serves\n",
            );
        }
        Ok(_) => {}
        Err(_) => return not_found(),
    }
    if handle.seek(std::io::SeekFrom::Start(0)).await.is_err() {
        return not_found();
    }
    let len = match handle.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return not_found(),
    };
    let content_type = content_type_of(&file);
    let stream = ReaderStream::with_capacity(handle, 16 * 1024);
    let body = StreamBody::new(futures_util::StreamExt::map(stream, |chunk| {
        chunk.map(Frame::data)
    }));
    respond(&content_type, len, head, BodyExt::boxed(body), false)
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
fn content_type_of(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let is_text = mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON
        || mime.suffix() == Some(mime_guess::mime::XML);
    if is_text && mime.get_param("charset").is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
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
