//! What every connection of the HTTP layer shares.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::host::HostAllow;
use super::reply::ConnInfo;
use super::router::Router;
use crate::auth::{Identity, IdentitySource};
use crate::backoff::Backoff;
use crate::config::cidr::Cidr;
use crate::routes::Env;
use crate::tls::challenge::Challenges;

/// What every connection shares: routes, limits and the shutdown signal.
/// The router and the browser allowlists are swapped whole by a
/// configuration reload (`crate::server::reload`); a request loads each
/// once and keeps what it loaded.
pub struct HttpContext {
    pub router: ArcSwap<Router>,
    /// Browser Origins allowed besides the request's own host.
    pub allow_origin: ArcSwap<Vec<String>>,
    /// Host names browser pages may use on plain listeners (DNS rebinding).
    pub allow_host: ArcSwap<HostAllow>,
    /// Send Strict-Transport-Security on TLS listeners (publicly trusted
    /// certificates only: `--tls acme` or `files`).
    pub hsts: bool,
    /// One permit per open WebSocket (`--max-connections`).
    pub sessions: Arc<Semaphore>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Tracks sessions so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Peers whose X-Forwarded-* headers are kept.
    pub trusted_proxies: Vec<Cidr>,
    /// Pending ACME HTTP-01 answers (served on plain listeners).
    pub challenges: Arc<Challenges>,
    /// `--redirect-http`: plain listeners answer 308 to https:// on this
    /// port (the first TLS listener's).
    pub redirect_https: Option<u16>,
    /// Wrong credentials on routes with `auth`, per address and in total
    /// (one for all routes: see `crate::auth::check`).
    pub auth_backoff: Backoff,
}

impl HttpContext {
    /// What a route kind gets for a request on `conn` by `identity`.
    pub fn env<'a>(&'a self, conn: &'a ConnInfo, identity: Option<&'a Identity>) -> Env<'a> {
        Env {
            conn,
            tracker: &self.tracker,
            trusted_proxies: &self.trusted_proxies,
            identity,
        }
    }
}

/// The identity a connection carries by itself, whatever the route: the
/// subject of its verified client certificate (mTLS), if it sent one. The
/// edge passes it to routes without `auth` (and a route's `auth` may use it
/// as its fallback).
pub fn conn_identity(conn: &ConnInfo) -> Option<Identity> {
    conn.client_subject
        .as_ref()
        .map(|subject| Identity::new(subject.clone(), IdentitySource::ClientCert))
}
