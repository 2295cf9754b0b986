//! `POST /publish/<route path>[?room=NAME][&from=NAME]` on the admin
//! listener: lets any backend (cron job, webhook) deliver a message to a
//! broadcast route or a chat room with one HTTP request, authenticated by a
//! bearer token (`--publish-token`). Contract: docs/chat.md. The admin
//! listener routes here; delivery itself is the route kind's business.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;

use crate::backoff::Backoff;
use crate::config::limits::SECRET_BACKOFF;
use crate::http::HttpContext;
use crate::http::reply::{Body, full_body, text_response};
use crate::routes::PublishError;
use crate::secret::constant_time_eq;

/// The publish endpoint's settings.
pub struct Publish {
    /// The bearer token callers must present.
    pub token: String,
    /// Routes (and through them the broker).
    pub http: Arc<HttpContext>,
    /// Wrong tokens per caller address and in total.
    backoff: Backoff,
}

impl Publish {
    pub fn new(token: String, http: Arc<HttpContext>) -> Publish {
        Publish {
            token,
            http,
            backoff: Backoff::new(SECRET_BACKOFF),
        }
    }

    /// Answers one request to a path under `/publish/` from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
        if req.method() != Method::POST {
            return text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "publish with POST /publish/<route path>[?room=NAME]\n",
            );
        }
        // A request without a bearer token guesses nothing; one with a
        // token past the backoff bound is refused without comparing it.
        let given = bearer(req.headers().get(AUTHORIZATION));
        if given.is_some()
            && let Err(refused) = self.backoff.attempt(peer)
        {
            crate::metrics::guess_refused("publish_token");
            let mut r = text_response(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("{refused} (publish token not checked)\n"),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(refused.retry_after_secs()));
            return r;
        }
        if given.is_some_and(|t| constant_time_eq(t.as_bytes(), self.token.as_bytes())) {
            self.backoff.succeeded(peer);
        } else {
            let mut r = text_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token: send `Authorization: Bearer <--publish-token>`\n",
            );
            r.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
            return r;
        }
        let path = req
            .uri()
            .path()
            .strip_prefix("/publish")
            .unwrap_or_default()
            .to_string();
        let query = Query::parse(req.uri().query().unwrap_or_default());
        let Some(route) = self
            .http
            .router
            .load()
            .routes()
            .iter()
            .find(|r| r.spec.path == path)
            .cloned()
        else {
            return not_found(&path);
        };
        let binary = req
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
        let max = route.limits.max_message_size;
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return text_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("body larger than the route's max_message_size ({max} bytes)\n"),
                );
            }
            Err(e) => {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    &format!("could not read the body: {e}\n"),
                );
            }
        };
        let room = query.room.as_deref();
        let from = query.from.as_deref().unwrap_or("server");
        match route.publish(body, binary, room, from).await {
            Ok(n) => delivered(n),
            Err(PublishError::NotPublishable) => not_found(&path),
            Err(PublishError::NeedsRoom) => text_response(
                StatusCode::BAD_REQUEST,
                &format!("{path} is a chat route: say which room with ?room=NAME\n"),
            ),
            Err(e @ (PublishError::NotText | PublishError::Invalid(_))) => {
                text_response(StatusCode::BAD_REQUEST, &format!("{e}\n"))
            }
            Err(e @ (PublishError::Busy | PublishError::Broker(_))) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"))
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`, if the header is one.
fn bearer(header: Option<&HeaderValue>) -> Option<&str> {
    header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

fn delivered(n: usize) -> Response<Body> {
    let mut r = Response::new(full_body(Bytes::from(format!("{{\"delivered\":{n}}}\n"))));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn not_found(path: &str) -> Response<Body> {
    text_response(
        StatusCode::NOT_FOUND,
        &format!("no chat or broadcast route at {path}; publish to POST /publish<route path>\n"),
    )
}

/// The query parameters the endpoint reads.
#[derive(Default)]
struct Query {
    room: Option<String>,
    from: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "room" => q.room = Some(v),
                "from" => q.from = Some(v),
                _ => {}
            }
        }
        q
    }
}
