//! The `proxy` route kind (being written).

use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use crate::config::route::ProxySpec;
use crate::http::router::Route;
use crate::http::{Body, ConnInfo, HttpContext, text_response};

/// A proxy route's upstream pool.
#[derive(Debug)]
pub struct ProxyRoute {
    pub spec: ProxySpec,
}

impl ProxyRoute {
    pub fn new(_path: &str, spec: ProxySpec) -> Result<Self, String> {
        Ok(ProxyRoute { spec })
    }
}

/// Connects upstream, then answers the client's upgrade.
pub async fn upgrade(
    _req: Request<Incoming>,
    _proxy: Arc<ProxyRoute>,
    _route: Arc<Route>,
    _ctx: &HttpContext,
    _conn: &ConnInfo,
    _key: Vec<u8>,
    _permit: OwnedSemaphorePermit,
) -> Response<Body> {
    text_response(StatusCode::BAD_GATEWAY, "not yet\n")
}

/// Forwards a plain HTTP request.
pub async fn forward_http(
    _req: Request<Incoming>,
    _proxy: Arc<ProxyRoute>,
    _conn: &ConnInfo,
    _rest: &str,
) -> Response<Body> {
    text_response(StatusCode::BAD_GATEWAY, "not yet\n")
}
