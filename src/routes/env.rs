//! What every route kind gets from the server for one request: a leaf, so
//! the kinds need nothing from `routes/mod.rs` (which dispatches to them).

use tokio_util::task::TaskTracker;

use crate::auth::Identity;
use crate::config::cidr::Cidr;
use crate::http::reply::ConnInfo;

/// What a route kind gets from the server for one request.
pub struct Env<'a> {
    pub conn: &'a ConnInfo,
    /// Sessions are spawned here, so shutdown can wait for them.
    pub tracker: &'a TaskTracker,
    /// Peers whose X-Forwarded-* headers are kept.
    pub trusted_proxies: &'a [Cidr],
    /// Who the request is, when the edge authenticated it (route `auth`,
    /// or a verified client certificate).
    pub identity: Option<&'a Identity>,
}
