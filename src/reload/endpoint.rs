//! `POST /reload` on the admin listener: reloads the configuration like
//! SIGHUP and answers with what changed (200) or every problem of the
//! refused configuration (422), authenticated by a bearer token
//! (`--reload-token`) compared in constant time, wrong guesses bounded per
//! address and in total (`crate::backoff`) as for the publish token.

use std::net::IpAddr;
use std::time::Duration;

use hyper::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use super::{Outcome, Request as ReloadRequest, Requests, Trigger};
use crate::backoff::Backoff;
use crate::config::limits::SECRET_BACKOFF;
use crate::http::reply::{Body, text_response};
use crate::secret::constant_time_eq;

/// Longest a caller waits for its reload (loading the file, building routes
/// and binding listeners take far less).
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// The reload endpoint's settings.
pub struct Endpoint {
    token: String,
    requests: Requests,
    /// Wrong tokens per caller address and in total.
    backoff: Backoff,
}

impl Endpoint {
    pub fn new(token: String, requests: Requests) -> Endpoint {
        Endpoint {
            token,
            requests,
            backoff: Backoff::new(SECRET_BACKOFF),
        }
    }

    /// Answers `/reload` from `peer`.
    pub async fn handle<B>(&self, req: Request<B>, peer: IpAddr) -> Response<Body> {
        if req.method() != Method::POST {
            return text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "reload with POST /reload and `Authorization: Bearer <--reload-token>`\n",
            );
        }
        if let Some(refusal) = self.check_token(&req, peer) {
            crate::metrics::config_reload("unauthorized");
            return refusal;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = ReloadRequest {
            trigger: Trigger::Admin,
            reply: Some(tx),
        };
        if self.requests.try_send(request).is_err() {
            let mut r = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "reloads already queued; try again in a second\n",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        match tokio::time::timeout(ANSWER_DEADLINE, rx).await {
            Ok(Ok(outcome)) => {
                let status = match outcome {
                    Outcome::Applied { .. } => StatusCode::OK,
                    Outcome::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                };
                text_response(status, &outcome.describe())
            }
            Ok(Err(_)) => text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down; not reloaded\n",
            ),
            Err(_) => text_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the reload did not finish in time; see the server log\n",
            ),
        }
    }

    /// `None` when the bearer token is right; else the refusal (401, or
    /// 429 without looking at the token once guessing is throttled).
    fn check_token<B>(&self, req: &Request<B>, peer: IpAddr) -> Option<Response<Body>> {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        if given.is_some()
            && let Err(refused) = self.backoff.attempt(peer)
        {
            crate::metrics::guess_refused("reload_token");
            let mut r = text_response(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("{refused} (reload token not checked)\n"),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(refused.retry_after_secs()));
            return Some(r);
        }
        if given.is_some_and(|t| constant_time_eq(t.as_bytes(), self.token.as_bytes())) {
            self.backoff.succeeded(peer);
            return None;
        }
        let mut r = text_response(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer <--reload-token>`\n",
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(Method::POST).uri("/reload");
        if let Some(t) = token {
            b = b.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_and_a_right_one_queues_a_reload() {
        let (tx, mut rx) = super::super::queue();
        let e = Endpoint::new("0123456789abcdef".into(), tx);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let r = e.handle(request(None), peer).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = e.handle(request(Some("0123456789abcdeX")), peer).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(rx.try_recv().is_err(), "nothing queued for a wrong token");
        let answer = tokio::spawn(async move {
            let req = rx.recv().await.unwrap();
            assert_eq!(req.trigger, Trigger::Admin);
            let _ = req.reply.unwrap().send(Outcome::Refused {
                problems: vec!["bad".into()],
            });
        });
        let r = e.handle(request(Some("0123456789abcdef")), peer).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        answer.await.unwrap();
    }

    #[tokio::test]
    async fn guessing_is_throttled() {
        let (tx, _rx) = super::super::queue();
        let e = Endpoint::new("0123456789abcdef".into(), tx);
        let peer: IpAddr = "127.0.0.2".parse().unwrap();
        let mut throttled = false;
        for _ in 0..100 {
            if e.handle(request(Some("wrong-wrong-wrong")), peer)
                .await
                .status()
                == StatusCode::TOO_MANY_REQUESTS
            {
                throttled = true;
                break;
            }
        }
        assert!(throttled, "wrong guesses are throttled");
    }
}
