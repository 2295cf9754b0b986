//! The `exec` route kind (placeholder: the exec helper replaces this file).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::config::SessionLimits;
use crate::config::route::ExecSpec;
use crate::http::ConnInfo;
use crate::metrics::SessionMetrics;
use crate::session::Ending;

/// An exec route: its command and its process cap.
#[derive(Debug)]
pub struct ExecRoute {
    pub spec: ExecSpec,
    processes: Arc<Semaphore>,
}

impl ExecRoute {
    pub fn new(spec: ExecSpec) -> Self {
        ExecRoute {
            processes: Arc::new(Semaphore::new(spec.max_processes)),
            spec,
        }
    }

    /// A process slot, or `None` when `max_processes` run already.
    pub fn try_reserve(&self) -> Option<OwnedSemaphorePermit> {
        self.processes.clone().try_acquire_owned().ok()
    }
}

/// What the program learns about the request (CGI-style environment).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub conn: ConnInfo,
    /// The route's path prefix (PATH_INFO is what follows it).
    pub route_path: String,
}

/// Runs the program for one WebSocket until either side ends.
pub async fn run<S>(
    _ws: WebSocketStream<S>,
    _route: Arc<ExecRoute>,
    _request: ExecRequest,
    _process: OwnedSemaphorePermit,
    _limits: SessionLimits,
    _shutdown: CancellationToken,
    _counters: SessionMetrics,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Ending::Dropped
}
