//! The access log's view of an HTTP request: what the handler found out
//! (route, identity) rides on the response's extensions, and the response
//! body is wrapped so the line is written when the body ends or is
//! dropped, with the bytes actually sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::{Request, Response, StatusCode, Version};
use tokio::time::Instant;

use super::reply::{Body, ConnInfo, WebSocketAccepted};
use crate::access_log::{HttpRequest, Who};
use crate::auth::Identity;

/// What the handler learnt about a request, for its access log line.
#[derive(Debug, Clone)]
pub struct Served {
    pub route: Arc<str>,
    pub identity: Option<Arc<str>>,
}

impl Served {
    /// Notes `route` and `identity` on `response` (only when the access
    /// log is on).
    pub fn note(response: &mut Response<Body>, route: &str, identity: Option<&Identity>) {
        if crate::access_log::enabled() {
            response.extensions_mut().insert(Served {
                route: route.into(),
                identity: identity.map(|i| i.name.clone()),
            });
        }
    }
}

/// The request's facts taken before it is handled (the handler consumes
/// it); `None` when the access log is off. The query is never kept: it
/// may carry tokens.
pub fn before<B>(req: &Request<B>) -> Option<(String, String, &'static str, Instant)> {
    crate::access_log::enabled().then(|| {
        (
            req.method().as_str().to_string(),
            req.uri().path().to_string(),
            version(req.version()),
            Instant::now(),
        )
    })
}

/// Wraps the response body so its line is logged when it ends. An
/// accepted WebSocket (101, or 200 on HTTP/2) is not logged here: the
/// WebSocket's own line comes when it ends.
pub fn after(
    response: Response<Body>,
    facts: Option<(String, String, &'static str, Instant)>,
    conn: &ConnInfo,
) -> Response<Body> {
    let Some((method, path, version, started)) = facts else {
        return response;
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        || response.extensions().get::<WebSocketAccepted>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let served = parts.extensions.remove::<Served>();
    let request = HttpRequest {
        who: Who {
            peer: conn.peer,
            identity: served.as_ref().and_then(|s| s.identity.clone()),
            listener: conn.listener.clone(),
        },
        method,
        path,
        version,
        status: parts.status.as_u16(),
        route: served.map(|s| s.route),
        started,
    };
    let body = LoggedBody {
        inner: body,
        bytes: 0,
        request: Some(request),
    };
    Response::from_parts(parts, body.boxed())
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// A response body that counts what it yields and logs its request when
/// dropped (hyper drops it once sent, or when the client goes away).
struct LoggedBody {
    inner: Body,
    bytes: u64,
    request: Option<HttpRequest>,
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            request.finish(self.bytes);
        }
    }
}
