//! A proxy route's upstream pool: balancing (round robin, least
//! connections), passive health (an upstream that refused is skipped for a
//! while), active probes, and connecting (TCP, then TLS) to one upstream.
#![allow(
    clippy::disallowed_types,
    reason = "health timestamps are atomics counted from a wall-clock epoch shared across threads"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use hyper::header::{self};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_util::sync::CancellationToken;

use super::client::{self, PoolSettings, Pooled};
use super::connect::{BoxIo, CONNECT_TIMEOUT, ConnectError, connect_io};
use crate::config::route::{Balance, ProxySpec, Upstream};
use crate::tls::CaPemError;

/// How long an upstream that refused a connection is skipped.
const DOWN_FOR: Duration = Duration::from_secs(10);

/// Interval of active health probes (`health_path`).
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Why a proxy route could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("upstream CA {}: {source}", .file.display())]
    ReadCa {
        file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("upstream CA {}: not a PEM certificate ({reason})", .file.display())]
    MalformedCa {
        file: std::path::PathBuf,
        reason: String,
    },
    #[error("upstream CA {}: {reason}", .file.display())]
    UnusableCa {
        file: std::path::PathBuf,
        reason: String,
    },
    #[error("upstream CA {} holds no CERTIFICATE block", .file.display())]
    EmptyCa { file: std::path::PathBuf },
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

/// One upstream and its health.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) upstream: Upstream,
    /// Milliseconds since `epoch` until which the upstream is skipped.
    down_until: AtomicU64,
    /// Connections open or opening: proxied WebSockets and plain requests
    /// in flight, each a `cap::Hold` (the cap, least-connections).
    pub(super) active: AtomicUsize,
    /// Keep-alive connections for plain HTTP requests.
    pub(super) client: Pooled,
}

/// A proxy route's upstream pool.
#[derive(Debug)]
pub struct ProxyRoute {
    pub spec: ProxySpec,
    pub(super) path: String,
    pub(super) members: Vec<Member>,
    next: AtomicUsize,
    epoch: StdInstant,
    tls: Arc<rustls::ClientConfig>,
    /// Longest a write to an upstream may make no progress
    /// (`proxy_send_timeout`), and a request body may pause.
    pub(super) send_timeout: Duration,
    /// Refusals because every upstream was full, summarised in the log.
    pub(super) full: super::full_log::FullLog,
}

impl ProxyRoute {
    /// Builds the pool; loads the upstream CA when one is given.
    pub fn new(path: &str, spec: ProxySpec, send_timeout: Duration) -> Result<Self, SetupError> {
        let roots = match &spec.ca {
            Some(ca) => {
                let file = ca.clone();
                let bytes = std::fs::read(ca).map_err(|source| SetupError::ReadCa {
                    file: file.clone(),
                    source,
                })?;
                crate::tls::ca_roots(&bytes).map_err(|e| match e {
                    CaPemError::Malformed(reason) => SetupError::MalformedCa { file, reason },
                    CaPemError::Unusable(reason) => SetupError::UnusableCa { file, reason },
                    CaPemError::Empty => SetupError::EmptyCa { file },
                })?
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                roots
            }
        };
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = Arc::new(tls);
        let settings = PoolSettings {
            http2: spec.http2,
            keepalive: spec.keepalive,
            idle_timeout: spec.idle_timeout,
        };
        Ok(ProxyRoute {
            members: spec
                .upstreams
                .iter()
                .map(|u| Member {
                    upstream: u.clone(),
                    down_until: AtomicU64::new(0),
                    active: AtomicUsize::new(0),
                    client: client::pooled(
                        settings,
                        u.scheme.is_tls().then(|| tls.clone()),
                        send_timeout,
                        Arc::from(path),
                    ),
                })
                .collect(),
            spec,
            path: path.to_string(),
            next: AtomicUsize::new(0),
            epoch: StdInstant::now(),
            tls,
            send_timeout,
            full: super::full_log::FullLog::default(),
        })
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_up(&self, i: usize) -> bool {
        self.members[i].down_until.load(Ordering::Relaxed) <= self.now_ms()
    }

    pub(super) fn mark_down(&self, i: usize, why: impl std::fmt::Display) {
        let until = self.now_ms() + DOWN_FOR.as_millis() as u64;
        let was_up = self.is_up(i);
        self.members[i].down_until.store(until, Ordering::Relaxed);
        if was_up {
            tracing::warn!(
                route = %self.path,
                upstream = %self.members[i].upstream.url,
                "upstream marked down for {DOWN_FOR:?}: {why}"
            );
        }
    }

    fn mark_up(&self, i: usize) {
        if !self.is_up(i) {
            tracing::info!(route = %self.path, upstream = %self.members[i].upstream.url, "upstream is up again");
        }
        self.members[i].down_until.store(0, Ordering::Relaxed);
    }

    /// Healthy upstreams in the order they should be tried.
    pub(super) fn candidates(&self) -> Vec<usize> {
        let n = self.members.len();
        let mut order: Vec<usize> = match self.spec.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).collect()
            }
            Balance::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let mut v: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
                v.sort_by_key(|i| self.members[*i].active.load(Ordering::Relaxed));
                v
            }
        };
        order.retain(|i| self.is_up(*i));
        order
    }

    /// Connects (TCP, then TLS for wss/https) to upstream `i`.
    async fn connect(&self, i: usize) -> Result<BoxIo, ConnectError> {
        let up = &self.members[i].upstream;
        let tls = up.scheme.is_tls().then(|| self.tls.clone());
        connect_io(&up.host, up.port, tls, &up.url, self.send_timeout)
            .await
            .map(|(io, _)| io)
    }

    /// Connects to upstream `i`, or marks it down and says `None`.
    pub(super) async fn connect_or_mark_down(&self, i: usize) -> Option<BoxIo> {
        let connected = self.connect(i).await;
        crate::status::live::live().upstream_connect(&self.path, connected.is_ok());
        match connected {
            Ok(io) => Some(io),
            Err(e) => {
                self.mark_down(i, e);
                None
            }
        }
    }

    /// The upstream path for a request: nginx-style, the whole original path
    /// when the upstream URL has no path, else its path plus the part below
    /// the route prefix.
    pub(super) fn target(
        &self,
        i: usize,
        full_path: &str,
        rest: &str,
        query: Option<&str>,
    ) -> String {
        let up = &self.members[i].upstream;
        let mut path = if up.base_path.is_empty() {
            full_path.to_string()
        } else {
            format!("{}{}", up.base_path, rest)
        };
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        path
    }
}

impl ProxyRoute {
    /// The absolute URI of a plain HTTP request to upstream `i` (the pool
    /// is keyed by its scheme and authority).
    pub(super) fn http_uri(
        &self,
        i: usize,
        full_path: &str,
        rest: &str,
        query: Option<&str>,
    ) -> Result<hyper::Uri, hyper::http::uri::InvalidUri> {
        let up = &self.members[i].upstream;
        let scheme = if up.scheme.is_tls() { "https" } else { "http" };
        let host = if up.host.contains(':') {
            format!("[{}]", up.host)
        } else {
            up.host.clone()
        };
        let target = self.target(i, full_path, rest, query);
        format!("{scheme}://{host}:{}{target}", up.port).parse()
    }
}

/// Runs active health probes (GET `health_path`) until shutdown.
pub async fn probe_loop(route: Arc<ProxyRoute>, shutdown: CancellationToken) {
    let Some(path) = route.spec.health_path.clone() else {
        return;
    };
    loop {
        for i in 0..route.members.len() {
            let ok = probe(&route, i, &path).await;
            match ok {
                Ok(()) => route.mark_up(i),
                Err(e) => route.mark_down(i, format!("health probe {path}: {e}")),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

async fn probe(route: &ProxyRoute, i: usize, path: &str) -> Result<(), ProbeError> {
    let io = route.connect(i).await?;
    let up = &route.members[i].upstream;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, format!("{}:{}", up.host, up.port))
        .header(header::USER_AGENT, "wssd-health-probe")
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| ProbeError::TimedOut)??;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status(resp.status()))
    }
}

/// Why a health probe failed.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    #[error("timed out")]
    TimedOut,
    #[error("status {0}")]
    Status(StatusCode),
}
