//! The check itself, one orchestrator over named steps: read the
//! credential (`extract`), refuse unchecked while the caller is over the
//! guessing backoff, verify it (`token`, `jwt`, `basic`), and say who it
//! is ([`Accepted`]) or why not ([`Refusal`]). The HTTP layer turns a
//! refusal into a 401/429 and counts it.
//!
//! One [`Backoff`] serves every route with `auth` (kept by the HTTP
//! layer): a client guessing on one route is slowed on all of them, and
//! adding routes that share a tokens file does not multiply the guessing
//! rate. Every credential that reaches verification is charged to it; a
//! success refunds the charge and clears the address. Missing and
//! unparseable credentials are refused without charge (nothing secret was
//! looked at).

use std::net::IpAddr;

use hyper::header::HeaderMap;

use super::extract::{self, Place};
use super::identity::{Identity, IdentitySource};
use super::reason::Reason;
use super::spec::{AuthSpec, Method};
use crate::backoff::{Backoff, BackoffPolicy};

/// Wrong credentials checked before an address is slowed, and how fast
/// they are checked after: 10 at once, then one every 2 s per address
/// (IPv6 per /64); 200 at once, then 50 per second for all addresses
/// together. Past either, attempts get 429 without being checked.
pub const BACKOFF: BackoffPolicy = BackoffPolicy {
    per_ip_burst: 10.0,
    per_ip_rate: 0.5,
    global_burst: 200.0,
    global_rate: 50.0,
    max_addresses: 16384,
};

/// A request that passed: who it is and where its credential was.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub identity: Identity,
    pub place: Place,
}

/// A request that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// `WWW-Authenticate` (none for a throttled attempt).
    pub challenge: Option<String>,
    /// Seconds until an attempt would be checked again (throttled only).
    pub retry_after: Option<u64>,
    /// What the caller should send, for the response body.
    pub hint: String,
}

/// Checks a request's credential against the route's `spec`; `ip` is the
/// caller's address for the backoff.
pub async fn check(
    spec: &AuthSpec,
    headers: &HeaderMap,
    query: Option<&str>,
    ip: IpAddr,
    backoff: &Backoff,
) -> Result<Accepted, Refusal> {
    let refuse = |reason| Err(refusal(spec, reason, None));
    let credential = match read(spec, headers, query) {
        Ok(Some(c)) => c,
        Ok(None) => return refuse(Reason::Missing),
        Err(_) => return refuse(Reason::Malformed),
    };
    if let Err(over) = backoff.attempt(ip) {
        return Err(refusal(
            spec,
            Reason::Throttled,
            Some(over.retry_after_secs()),
        ));
    }
    match verify(spec, credential).await {
        Ok(accepted) => {
            backoff.succeeded(ip);
            Ok(accepted)
        }
        Err(reason) => refuse(reason),
    }
}

/// A credential as read from the request, before verification.
enum Credential {
    Bearer(extract::Presented),
    Basic(extract::BasicPair),
}

fn read(
    spec: &AuthSpec,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Credential>, extract::Malformed> {
    Ok(match &*spec.method {
        Method::Token(_) | Method::Jwt(_) => {
            extract::token(headers, query, spec.cookie.as_deref())?.map(Credential::Bearer)
        }
        Method::Basic(_) => extract::basic(headers)?.map(Credential::Basic),
    })
}

async fn verify(spec: &AuthSpec, credential: Credential) -> Result<Accepted, Reason> {
    match (&*spec.method, credential) {
        (Method::Token(set), Credential::Bearer(p)) => {
            let name = set
                .verify(p.secret.as_bytes())
                .ok_or(Reason::UnknownToken)?;
            Ok(Accepted {
                identity: Identity::new(name, IdentitySource::Token),
                place: p.place,
            })
        }
        (Method::Jwt(jwt), Credential::Bearer(p)) => {
            let verified = jwt.verify(&p.secret)?;
            Ok(Accepted {
                identity: Identity {
                    name: verified.name,
                    source: IdentitySource::Jwt,
                    claims: Some(verified.claims),
                },
                place: p.place,
            })
        }
        (Method::Basic(users), Credential::Basic(pair)) => {
            users.verify(&pair.user, &pair.password).await?;
            Ok(Accepted {
                identity: Identity::new(pair.user, IdentitySource::Basic),
                place: Place::Header,
            })
        }
        // `read` reads the credential of the spec's own method.
        _ => Err(Reason::Malformed),
    }
}

/// The refusal for `reason` on this route: the challenge and the hint.
fn refusal(spec: &AuthSpec, reason: Reason, retry_after: Option<u64>) -> Refusal {
    // Throttled by the password checks' queue rather than the backoff.
    let retry_after = retry_after.or((reason == Reason::Throttled).then_some(1));
    let realm = &spec.realm;
    let challenge = match (&*spec.method, reason) {
        (_, Reason::Throttled) => None,
        (Method::Basic(_), _) => Some(format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")),
        (_, Reason::Missing) => Some(format!("Bearer realm=\"{realm}\"")),
        (_, Reason::Malformed) => Some(format!(
            "Bearer realm=\"{realm}\", error=\"invalid_request\""
        )),
        (_, _) => Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")),
    };
    let hint = match (&*spec.method, reason) {
        (_, Reason::Throttled) => format!("try again in {} s", retry_after.unwrap_or(1)),
        (Method::Basic(_), _) => "send a user name and password (HTTP basic auth)".to_string(),
        (_, _) => match &spec.cookie {
            Some(c) => format!(
                "send the token as Authorization: Bearer TOKEN, the access_token query parameter or the cookie `{c}`"
            ),
            None => {
                "send the token as Authorization: Bearer TOKEN or the access_token query parameter"
                    .to_string()
            }
        },
    };
    Refusal {
        reason,
        challenge,
        retry_after,
        hint,
    }
}
