//! Plain HTTP requests through a proxy route: over the upstream's pooled
//! keep-alive client (`client`), with both bodies streamed, this hop's
//! headers (`headers`), the request body paced (`body_timeout`), and the
//! response headers awaited at most `upstream_header_timeout`. An upstream
//! that cannot be connected to is marked down and the next one tried with
//! the same request, as long as no byte of its body was read. Each request
//! holds a slot of its upstream's `upstream_max_conns` (`cap`) until its
//! response body is sent; an upstream at its cap is skipped, and 503 comes
//! when every healthy one is.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use tracing::Instrument;

use super::cap::{self, HeldBody, Hold};
use super::client::{Reclaim, Reclaimable};
use super::headers::{HOP_BY_HOP, forwarded_headers};
use super::pool::ProxyRoute;
use crate::http::reply::{Body, text_response};
use crate::metrics;
use crate::routes::body_timeout::{Paced, Paused};
use crate::routes::env::Env;
use crate::routes::identity::session_span;

/// Forwards a plain HTTP request, streaming both bodies; its log lines
/// carry the caller's identity.
pub async fn forward_http(
    req: Request<Incoming>,
    proxy: Arc<ProxyRoute>,
    env: &Env<'_>,
    rest: &str,
) -> Response<Body> {
    let span = session_span(env.identity);
    forward(req, proxy, env, rest).instrument(span).await
}

/// 502, counted.
pub(super) fn bad_gateway(text: &str) -> Response<Body> {
    metrics::http_response(502);
    text_response(StatusCode::BAD_GATEWAY, text)
}

/// How one attempt at an upstream ended, when it did not answer.
enum Failed {
    /// No connection (the upstream is marked down; the next one may take
    /// the request if its body is untouched).
    Connect(String),
    /// The request went out but no answer came.
    Request(hyper_util::client::legacy::Error),
    /// No response headers within the header timeout.
    TimedOut(Duration),
}

async fn forward(
    req: Request<Incoming>,
    proxy: Arc<ProxyRoute>,
    env: &Env<'_>,
    rest: &str,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // A request body the client breaks (bad chunked framing, a cut
    // connection) fails the upstream exchange too; the flag tells the two
    // apart so the client gets 400, not 502.
    let client_body_failed = Arc::new(AtomicBool::new(false));
    let body = {
        let failed = client_body_failed.clone();
        body.map_err(move |e| {
            failed.store(true, Ordering::Relaxed);
            e
        })
    };
    let (body, paused) = Paced::new(body, proxy.send_timeout);
    let reclaim = Reclaim::new(body.boxed());
    let mut headers = forwarded_headers(&parts.headers, env, false);
    if proxy.spec.http2 {
        // HTTP/2 carries the upstream's authority in `:authority`; a
        // different Host would make the request malformed (RFC 9113
        // 8.3.1). The client's host is in X-Forwarded-Host.
        headers.remove(header::HOST);
    }
    let mut full = false;
    for i in proxy.candidates() {
        if !reclaim.untouched() {
            break;
        }
        let Some(hold) = Hold::take(&proxy, i) else {
            full = true;
            continue;
        };
        let uri = match proxy.http_uri(i, parts.uri.path(), rest, parts.uri.query()) {
            Ok(u) => u,
            Err(e) => return bad_gateway(&format!("cannot build the upstream request: {e}\n")),
        };
        let upstream_req = match build(&parts.method, uri, &headers, &reclaim) {
            Ok(r) => r,
            Err(e) => return bad_gateway(&format!("cannot build the upstream request: {e}\n")),
        };
        let sent = proxy.members[i].client.request(upstream_req);
        let result = await_headers(sent, &reclaim, proxy.spec.header_timeout).await;
        let failed = match result {
            Ok(resp) => return relay(resp, hold),
            Err(f) => f,
        };
        drop(hold);
        match failed {
            Failed::Connect(why) if reclaim.untouched() => {
                proxy.mark_down(i, why);
                continue;
            }
            Failed::Connect(ref why) => proxy.mark_down(i, why),
            _ => {}
        }
        return refusal(&proxy, i, failed, &paused, &client_body_failed);
    }
    if full {
        return cap::all_full(&proxy, "http");
    }
    bad_gateway("no upstream is available (all refused connections or are marked down)\n")
}

fn build(
    method: &hyper::Method,
    uri: hyper::Uri,
    headers: &HeaderMap,
    reclaim: &Reclaim,
) -> Result<Request<Reclaimable>, hyper::http::Error> {
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    if let Some(h) = builder.headers_mut() {
        *h = headers.clone();
    }
    builder.body(reclaim.body())
}

/// Waits for the response headers. The header timeout runs from the start
/// and is extended while the request body is still streaming upstream (a
/// body that pauses is stopped by its own pacing instead).
async fn await_headers<F>(
    sent: F,
    reclaim: &Reclaim,
    limit: Option<Duration>,
) -> Result<Response<Incoming>, Failed>
where
    F: Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>>,
{
    let classify = |r: Result<Response<Incoming>, hyper_util::client::legacy::Error>| {
        r.map_err(|e| {
            if e.is_connect() {
                let why = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.to_string());
                Failed::Connect(why)
            } else {
                Failed::Request(e)
            }
        })
    };
    let Some(limit) = limit else {
        return classify(sent.await);
    };
    tokio::pin!(sent);
    loop {
        match tokio::time::timeout(limit, &mut sent).await {
            Ok(r) => return classify(r),
            Err(_) if reclaim.uploading() => continue,
            Err(_) => return Err(Failed::TimedOut(limit)),
        }
    }
}

/// The upstream's answer, without hop-by-hop headers; its body keeps the
/// upstream's slot until it is done.
fn relay(resp: Response<Incoming>, hold: Hold) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    // An HTTP/2 upstream's answer goes to the client in the client's own
    // version (hyper picks it from the connection).
    parts.version = Version::default();
    let body = HeldBody::new(body.map_err(std::io::Error::other), hold).boxed();
    Response::from_parts(parts, body)
}

/// What the client is told when the upstream did not answer.
fn refusal(
    proxy: &ProxyRoute,
    i: usize,
    failed: Failed,
    paused: &Paused,
    client_body_failed: &AtomicBool,
) -> Response<Body> {
    let upstream = &proxy.members[i].upstream.url;
    if paused.fired() {
        // nginx's client_body_timeout: the client stopped sending the body
        // it announced.
        metrics::body_timeout();
        let mut r = text_response(
            StatusCode::REQUEST_TIMEOUT,
            "the request body stopped arriving (send timeout)\n",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    match failed {
        Failed::Request(e) if client_body_failed.load(Ordering::Relaxed) => {
            tracing::debug!(route = %proxy.path, error = %e, "client request body unreadable");
            text_response(
                StatusCode::BAD_REQUEST,
                "the request body is malformed (bad chunked encoding) or was cut off\n",
            )
        }
        Failed::Request(e) => {
            let detail = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::warn!(route = %proxy.path, %upstream, error = %e, %detail, "upstream request failed");
            bad_gateway("the upstream failed to answer\n")
        }
        Failed::Connect(why) => {
            tracing::warn!(route = %proxy.path, %upstream, error = %why, "upstream connection failed after the request body was read");
            bad_gateway("the upstream failed to answer\n")
        }
        Failed::TimedOut(limit) => {
            tracing::warn!(route = %proxy.path, %upstream, "no response headers from the upstream within {limit:?} (upstream_header_timeout)");
            metrics::http_response(504);
            text_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream did not answer in time (upstream_header_timeout)\n",
            )
        }
    }
}
