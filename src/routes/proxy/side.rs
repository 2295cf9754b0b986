//! One leg of the WebSocket relay (`relay`): its writer under a lock and a
//! time limit, its liveness (pings, pongs, the idle clock) and the close
//! frame it is sent once. A write that fails or times out marks the leg
//! dead: nothing more, not even a close frame, is written to it.
#![allow(
    clippy::disallowed_types,
    reason = "last-heard times sit in a std Mutex shared across threads"
)]

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::config::SessionLimits;
use crate::keepalive::{Action, CloseReason, Keepalive};
use crate::metrics;

use super::frame::{close_frame, control_frame, new_mask};

/// One side's writer and liveness.
pub(super) struct Side<W> {
    pub(super) writer: Mutex<W>,
    /// Longest any write to this side (or wait for its writer) may take:
    /// twice the send timeout, so the socket's own stall timer (once the
    /// send timeout) fires first for a peer that reads nothing.
    pub(super) limit: Duration,
    /// Whether frames we write to this side must be masked (the upstream).
    pub(super) masks: bool,
    /// Pings to this side and its pongs; the idle clock.
    pub(super) keepalive: StdMutex<Keepalive>,
    /// `--idle-timeout` is set: data either way restarts both sides' clock.
    pub(super) idle: bool,
    /// A close frame was sent to this side.
    pub(super) close_sent: std::sync::atomic::AtomicBool,
    /// A write failed (maybe inside a frame): nothing more is written.
    pub(super) dead: std::sync::atomic::AtomicBool,
}

impl<W: AsyncWrite + Unpin> Side<W> {
    pub(super) fn new(writer: W, masks: bool, limits: &SessionLimits) -> Self {
        Side {
            writer: Mutex::new(writer),
            limit: limits.send_timeout.saturating_mul(2),
            masks,
            // The idle timeout (off by default) as on every route kind: a
            // data message either way restarts it (`activity`).
            keepalive: StdMutex::new(Keepalive::new(limits.ping_interval, limits.idle_timeout)),
            idle: limits.idle_timeout.is_some(),
            close_sent: std::sync::atomic::AtomicBool::new(false),
            dead: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This side answered a ping.
    pub(super) fn pong(&self) {
        if let Ok(mut k) = self.keepalive.lock() {
            k.on_pong();
        }
    }

    /// A data frame went through (either way): the idle clock restarts.
    pub(super) fn activity(&self) {
        if self.idle
            && let Ok(mut k) = self.keepalive.lock()
        {
            k.on_activity();
        }
    }

    pub(super) fn next_deadline(&self) -> Instant {
        self.keepalive
            .lock()
            .map(|k| k.next_deadline())
            .unwrap_or_else(|_| Instant::now())
    }

    pub(super) fn fire(&self) -> Option<Action> {
        self.keepalive.lock().ok().and_then(|mut k| k.fire())
    }

    pub(super) fn mask(&self) -> Option<[u8; 4]> {
        self.masks.then(new_mask)
    }

    /// The writer, unless another task holds it too long.
    pub(super) async fn lock(&self) -> Option<MutexGuard<'_, W>> {
        let guard = tokio::time::timeout(self.limit, self.writer.lock())
            .await
            .ok();
        if guard.is_none() {
            self.broken();
        }
        guard
    }

    /// A write to this side failed or timed out, maybe inside a frame:
    /// nothing more may be written to it (not even a close frame).
    pub(super) fn broken(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.dead.store(true, SeqCst);
        self.close_sent.store(true, SeqCst);
    }

    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Writes (and flushes) whole frames at a frame boundary, in time;
    /// false when that failed (the side is then dead).
    pub(super) async fn put(&self, bytes: &[u8]) -> bool {
        let write = async {
            let mut w = self.writer.lock().await;
            // Checked under the lock: a failed streamed write marks the
            // side dead before it lets go.
            !self.is_dead() && w.write_all(bytes).await.is_ok() && w.flush().await.is_ok()
        };
        let ok = tokio::time::timeout(self.limit, write)
            .await
            .unwrap_or(false);
        if !ok {
            self.broken();
        }
        ok
    }

    /// Writes one whole control frame at a frame boundary.
    pub(super) async fn send_control(&self, opcode: u8, payload: &[u8]) -> bool {
        let frame = control_frame(opcode, payload, self.mask());
        self.put(&frame).await
    }

    /// Sends a close frame unless one was sent already.
    pub(super) async fn send_close(&self, reason: CloseReason) {
        if self
            .close_sent
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let frame = close_frame(reason, self.mask());
        if self.put(&frame).await {
            metrics::close_code(reason.code());
        }
    }

    pub(super) async fn shutdown(&self) {
        let shutdown = async {
            let _ = self.writer.lock().await.shutdown().await;
        };
        let _ = tokio::time::timeout(self.limit, shutdown).await;
    }
}

/// One write under the lock a streamed frame holds, within `limit`.
pub(super) async fn put_locked<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> bool {
    tokio::time::timeout(limit, w.write_all(bytes))
        .await
        .is_ok_and(|r| r.is_ok())
}
