//! The auth gate of the edge: for a matched route with `auth`, checks the
//! request's credential (`crate::auth::check`) before anything else looks
//! at the request, refuses with 401 (`WWW-Authenticate`) or 429
//! (`Retry-After`), and on success takes the credential out of the
//! request so the route kind never sees it: the `access_token` query
//! parameter always, the `Authorization` header or the cookie when that
//! is where the credential was. Without route `auth` the identity is the
//! verified client certificate's subject, if any.

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};

use super::context::{HttpContext, conn_identity};
use super::reply::{Body, ConnInfo, text_response};
use crate::auth::extract::{self, Place};
use crate::auth::{self, AuthSpec, Identity, Reason, Refusal};
use crate::metrics::{self, HandshakeFailure};
use crate::routes::Route;

/// The identity of a request on `route`, or the refusal to send instead.
pub async fn authenticate(
    req: &mut Request<Incoming>,
    route: &Route,
    upgrade: bool,
    ctx: &HttpContext,
    conn: &ConnInfo,
) -> Result<Option<Identity>, Response<Body>> {
    let Some(spec) = &route.spec.auth else {
        return Ok(conn_identity(conn));
    };
    let checked = auth::check(
        spec,
        req.headers(),
        req.uri().query(),
        conn.peer.ip(),
        &ctx.auth_backoff,
    )
    .await;
    match checked {
        Ok(accepted) => {
            metrics::auth_success(&route.spec.path, accepted.identity.source.label());
            tracing::debug!(
                peer = %conn.peer,
                route = %route.spec.path,
                identity = %accepted.identity.name,
                source = accepted.identity.source.label(),
                "authenticated"
            );
            if strip_credential(req, spec, accepted.place).is_err() {
                // Never forward a request that still carries the token.
                return Err(text_response(
                    StatusCode::BAD_REQUEST,
                    "bad request target: the access_token parameter could not be taken out of it; send the token in an Authorization: Bearer header instead\n",
                ));
            }
            Ok(Some(accepted.identity))
        }
        Err(refusal) => {
            metrics::auth_failure(&route.spec.path, refusal.reason.label());
            tracing::debug!(
                peer = %conn.peer,
                route = %route.spec.path,
                reason = refusal.reason.label(),
                "authentication refused"
            );
            if upgrade {
                metrics::handshake_failed(HandshakeFailure::Auth);
            }
            Err(refused(&refusal))
        }
    }
}

/// The request target could not be rebuilt without its `access_token`.
#[derive(Debug)]
struct Unstrippable;

/// Takes the credential out of an accepted request; fails (and the request
/// is refused) rather than let a token through to the route kind.
fn strip_credential(
    req: &mut Request<Incoming>,
    spec: &AuthSpec,
    place: Place,
) -> Result<(), Unstrippable> {
    if let Some(query) = req.uri().query()
        && extract::query_has_token(query)
    {
        let rest = extract::strip_query_token(query);
        let target = match rest {
            Some(q) => format!("{}?{q}", req.uri().path()),
            None => req.uri().path().to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(target.parse().map_err(|_| Unstrippable)?);
        *req.uri_mut() = hyper::Uri::from_parts(parts).map_err(|_| Unstrippable)?;
    }
    match place {
        Place::Header => {
            req.headers_mut().remove(AUTHORIZATION);
        }
        Place::Cookie => {
            if let Some(name) = &spec.cookie {
                strip_cookie(req, name);
            }
        }
        Place::Query => {}
    }
    Ok(())
}

/// Removes the cookie `name` from every `Cookie` header.
fn strip_cookie(req: &mut Request<Incoming>, name: &str) {
    let kept: Vec<String> = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| extract::strip_cookie(v, name))
        .collect();
    let headers = req.headers_mut();
    headers.remove(COOKIE);
    for value in kept {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(COOKIE, v);
        }
    }
}

/// The response for a refusal: 401 with the challenge, or 429 with
/// `Retry-After` when the caller is throttled.
fn refused(refusal: &Refusal) -> Response<Body> {
    let status = match refusal.reason {
        Reason::Throttled => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut r = text_response(
        status,
        &format!("{}: {}; {}\n", status, refusal.reason.text(), refusal.hint),
    );
    if let Some(challenge) = &refusal.challenge
        && let Ok(v) = HeaderValue::from_str(challenge)
    {
        r.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    if let Some(secs) = refusal.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
