//! The reconnect loop: connect and subscribe, re-register this instance's
//! members before declaring the link up, deliver what other instances
//! publish, and reconnect with backoff when the link breaks.
#![allow(
    clippy::disallowed_types,
    reason = "a connection's lifetime is a wall-clock measurement for the backoff"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::RedisBackend;
use crate::broker::hub::Hub;

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

impl RedisBackend {
    /// Connects, subscribes, re-registers, delivers; reconnects with backoff.
    pub(super) async fn run_link(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        while !shutdown.is_cancelled() {
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = self.link.connect() => c,
            };
            match connected {
                Ok((conn, stream)) => {
                    let started = Instant::now();
                    self.serve_link(conn, stream, &hub, &shutdown).await;
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(reason) => self.link.mark_down(reason.to_string()),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connected period: register members, mark up, deliver until the
    /// link breaks or shutdown.
    async fn serve_link(
        &self,
        conn: MultiplexedConnection,
        mut stream: PubSubStream,
        hub: &Hub,
        shutdown: &CancellationToken,
    ) {
        let generation = self.link.attach(&conn);
        // Re-register before declaring the link up, so nothing is announced
        // as gone that is still here.
        self.replay_leaves(generation, &conn).await;
        if self.refresh_with(generation, &conn).await.is_err()
            || !self.link.set_up(generation, self.instance)
        {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.link.failed.notified() => {
                    if !self.link.is_current(generation) {
                        return;
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => self.deliver_remote(hub, msg.get_payload_bytes()),
                    None => {
                        self.link.fail(generation, format!("{}: connection lost", self.link.addr));
                        return;
                    }
                },
            }
        }
        self.link.detach();
    }
}
