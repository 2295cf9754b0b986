//! The link to Redis: the two connections (commands, and the subscription
//! to [`CHANNEL`]), where the link stands, every Redis call bounded and
//! watched for a broken link ([`Link::guarded`]); the reconnect loop that
//! drives it is in `reconnect.rs`.
#![allow(
    clippy::disallowed_types,
    reason = "uptime and round-trip times are wall-clock measurements for readiness and metrics"
)]

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};
use tokio::sync::Notify;

use super::settings::CHANNEL;
use crate::broker::backend::Health;
use crate::broker::envelope::InstanceId;
use crate::config::limits::BROKER_TIMEOUT;
use crate::metrics;

/// Bound of one Redis call: inside `BROKER_TIMEOUT`, so a caller that
/// bounds a backend call by `BROKER_TIMEOUT` gets the local fallback rather
/// than its own timeout when Redis stops answering.
const CALL_TIMEOUT: Duration = Duration::from_millis(BROKER_TIMEOUT.as_millis() as u64 * 3 / 4);

/// Where the link to Redis stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// Never connected yet.
    Connecting,
    /// Connected, subscribed, members registered.
    Up,
    /// Lost or never reached; the reason.
    Down(String),
}

/// What changes together when the link comes up or goes down: one lock.
struct Status {
    state: LinkState,
    /// The command connection and its generation, once connected (set just
    /// before `Up`, so re-registration can use it; cleared on failure).
    conn: Option<(u64, MultiplexedConnection)>,
    /// When the link last came up (`None` while down).
    up_since: Option<Instant>,
}

/// Why a guarded call did not return a value.
pub(super) enum CallError {
    /// Redis is unreachable (now marked down): fall back to local state.
    Down,
    /// Redis answered with an error.
    Redis(RedisError),
}

/// Why (re)connecting failed; its text becomes the outage's reason in
/// `health()` and the logs.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error(
        "{addr}: TLS: {source} (a server certificate from a private CA needs --broker-ca FILE)"
    )]
    Certificate { addr: String, source: RedisError },
    #[error("{addr}: {source}")]
    Redis { addr: String, source: RedisError },
    #[error("{addr}: no connection within {ms} ms")]
    Timeout { addr: String, ms: u128 },
}

/// The connection to one Redis server and where it stands.
pub(super) struct Link {
    client: Client,
    /// `HOST:PORT` (never the password), for logs and health.
    pub(super) addr: String,
    /// `rediss://`: TLS to Redis.
    tls: bool,
    /// State, command connection and up-time, always written together.
    status: Mutex<Status>,
    /// `status.state == Up`, readable without the lock (`forward`, `current`).
    up: AtomicBool,
    next_gen: AtomicU64,
    /// Wakes the subscriber task when a command found the link broken.
    pub(super) failed: Notify,
    /// The link went down since the presence catch-up last compared what
    /// this instance's clients were told with Redis (set with the outage).
    pub(super) reconcile: AtomicBool,
}

impl Link {
    pub(super) fn new(client: Client, tls: bool) -> Link {
        let addr = client.get_connection_info().addr().to_string();
        Link {
            client,
            addr,
            tls,
            status: Mutex::new(Status {
                state: LinkState::Connecting,
                conn: None,
                up_since: None,
            }),
            up: AtomicBool::new(false),
            next_gen: AtomicU64::new(0),
            failed: Notify::new(),
            reconcile: AtomicBool::new(false),
        }
    }

    /// Whether the link is up (without taking the lock).
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Up for at least `settle` (see [`super::settings::SETTLE`]).
    pub(super) fn settled(&self, settle: Duration) -> bool {
        self.status
            .lock()
            .ok()
            .and_then(|s| s.up_since)
            .is_some_and(|t| t.elapsed() >= settle)
    }

    /// The command connection, only while the link is up.
    pub(super) fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        if !self.is_up() {
            return None;
        }
        let status = self.status.lock().ok()?;
        match (&status.state, &status.conn) {
            (LinkState::Up, Some((generation, conn))) => Some((*generation, conn.clone())),
            _ => None,
        }
    }

    pub(super) fn is_current(&self, generation: u64) -> bool {
        self.status
            .lock()
            .map(|s| s.conn.as_ref().is_some_and(|(g, _)| *g == generation))
            .unwrap_or(false)
    }

    /// Runs one Redis call bounded by `CALL_TIMEOUT`; a timeout or a
    /// broken connection marks the link down.
    pub(super) async fn guarded<T>(
        &self,
        generation: u64,
        what: &str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_link_error(&e) => {
                self.fail(generation, format!("{}: {what}: {e}", self.addr));
                Err(CallError::Down)
            }
            Ok(Err(e)) => {
                tracing::warn!(redis = %self.addr, error = %e, "redis {what} failed");
                Err(CallError::Redis(e))
            }
            Err(_) => {
                self.fail(
                    generation,
                    format!(
                        "{}: {what}: no answer within {} ms",
                        self.addr,
                        CALL_TIMEOUT.as_millis()
                    ),
                );
                Err(CallError::Down)
            }
        }
    }

    /// A command found the link of `generation` broken: mark down (once)
    /// and wake the subscriber task to reconnect.
    pub(super) fn fail(&self, generation: u64, reason: String) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        if status.conn.as_ref().is_none_or(|(g, _)| *g != generation) {
            return;
        }
        status.conn = None;
        self.set_down(&mut status, reason);
        drop(status);
        self.failed.notify_one();
    }

    /// Records an outage (a connection attempt failed).
    pub(super) fn mark_down(&self, reason: String) {
        if let Ok(mut status) = self.status.lock() {
            self.set_down(&mut status, reason);
        }
    }

    /// Records an outage; logs only when one starts.
    fn set_down(&self, status: &mut Status, reason: String) {
        self.up.store(false, Ordering::Release);
        self.reconcile.store(true, Ordering::Release);
        status.up_since = None;
        metrics::broker_up(false);
        match &status.state {
            LinkState::Down(_) => {
                tracing::debug!(error = %reason, "redis still unreachable");
            }
            LinkState::Connecting => tracing::warn!(
                redis = %self.addr,
                error = %reason,
                "redis unreachable; chat and broadcast work on this instance only until it is back (retrying)"
            ),
            LinkState::Up => tracing::warn!(
                redis = %self.addr,
                error = %reason,
                "lost redis; chat and broadcast work on this instance only until it is back (retrying)"
            ),
        }
        status.state = LinkState::Down(reason);
    }

    /// Declares the link of `generation` up (unless it failed meanwhile).
    pub(super) fn set_up(&self, generation: u64, instance: InstanceId) -> bool {
        let Ok(mut status) = self.status.lock() else {
            return false;
        };
        if status.conn.as_ref().is_none_or(|(g, _)| *g != generation) {
            return false;
        }
        match &status.state {
            LinkState::Connecting => {
                tracing::info!(redis = %self.addr, instance = %instance, "connected to redis")
            }
            LinkState::Down(_) => tracing::info!(
                redis = %self.addr,
                "reconnected to redis; sharing with other instances resumed"
            ),
            LinkState::Up => {}
        }
        status.state = LinkState::Up;
        status.up_since.get_or_insert_with(Instant::now);
        self.up.store(true, Ordering::Release);
        metrics::broker_up(true);
        true
    }

    /// Makes `conn` the command connection of a new generation.
    pub(super) fn attach(&self, conn: &MultiplexedConnection) -> u64 {
        let generation = self.next_gen.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut status) = self.status.lock() {
            status.conn = Some((generation, conn.clone()));
        }
        generation
    }

    /// Drops the command connection at shutdown.
    pub(super) fn detach(&self) {
        if let Ok(mut status) = self.status.lock() {
            status.conn = None;
        }
        self.up.store(false, Ordering::Release);
    }

    /// Opens both connections and subscribes (bounded).
    pub(super) async fn connect(
        &self,
    ) -> Result<(MultiplexedConnection, PubSubStream), ConnectError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(BROKER_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let attempt = async {
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            let (_sink, stream) = pubsub.split();
            Ok::<_, RedisError>((conn, stream))
        };
        let addr = || self.addr.clone();
        match tokio::time::timeout(BROKER_TIMEOUT * 2, attempt).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(source)) if self.tls && source.to_string().contains("certificate") => {
                Err(ConnectError::Certificate {
                    addr: addr(),
                    source,
                })
            }
            Ok(Err(source)) => Err(ConnectError::Redis {
                addr: addr(),
                source,
            }),
            Err(_) => Err(ConnectError::Timeout {
                addr: addr(),
                ms: (BROKER_TIMEOUT * 2).as_millis(),
            }),
        }
    }

    /// `Ok`, or why sharing with other instances does not work now.
    pub(super) fn health(&self) -> Health {
        let state = self
            .status
            .lock()
            .map(|s| s.state.clone())
            .unwrap_or_else(|_| LinkState::Down("internal lock poisoned".into()));
        match state {
            LinkState::Up => Health::Ok,
            LinkState::Connecting => {
                Health::Degraded(format!("redis unreachable: connecting to {}", self.addr))
            }
            LinkState::Down(reason) => Health::Degraded(format!("redis unreachable: {reason}")),
        }
    }
}

/// Errors that mean the connection is unusable (as opposed to Redis
/// answering with an error).
fn is_link_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Io
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("LOADING" | "MASTERDOWN" | "READONLY"))
}
