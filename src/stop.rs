//! A route's stop signal and what it means to a WebSocket: every session
//! driver (`session::run`, the exec relay, the proxy relay) watches its
//! route's [`StopSignal`] and, when it fires, closes with 1001 and the
//! reason [`StopSignal::reason`] gives: "server shutting down" when the
//! server's shutdown fired it (SIGTERM's drain, the end of an upgrade's
//! handover), "route changed by reload" or "route removed by reload" when a
//! configuration reload retired the route and its grace ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use crate::keepalive::CloseReason;

/// A route's stop signal: a child of the server's shutdown that a reload
/// can also fire on its own, saying so. Cloned into every session (one
/// pointer, as the token it replaces).
#[derive(Debug, Clone)]
pub struct StopSignal(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    token: CancellationToken,
    /// Set by [`StopSignal::retire`] before it cancels `token`: a
    /// [`Retired`] as `u8` (0: not retired).
    retired: AtomicU8,
}

/// How a reload retired a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// Its definition changed (the new one serves new requests).
    Changed = 1,
    /// It is no longer in the configuration.
    Removed = 2,
}

impl Retired {
    /// The close this retirement means.
    pub fn reason(self) -> CloseReason {
        match self {
            Retired::Changed => CloseReason::RouteChanged,
            Retired::Removed => CloseReason::RouteRemoved,
        }
    }
}

impl StopSignal {
    /// A signal fired when `shutdown` is (or by [`Self::retire`]).
    pub fn child_of(shutdown: &CancellationToken) -> Self {
        StopSignal(Arc::new(Inner {
            token: shutdown.child_token(),
            retired: AtomicU8::new(0),
        }))
    }

    /// The token: cancelled when the signal fires.
    pub fn token(&self) -> &CancellationToken {
        &self.0.token
    }

    /// Fires the signal for a route a reload retired (unless the server's
    /// shutdown fired it first: then its sessions say that).
    pub fn retire(&self, how: Retired) {
        if !self.0.token.is_cancelled() {
            self.0.retired.store(how as u8, Ordering::Release);
        }
        self.0.token.cancel();
    }

    /// The close a session stopped by this signal sends.
    pub fn reason(&self) -> CloseReason {
        match self.0.retired.load(Ordering::Acquire) {
            r if r == Retired::Changed as u8 => CloseReason::RouteChanged,
            r if r == Retired::Removed as u8 => CloseReason::RouteRemoved,
            _ => CloseReason::Shutdown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_retirement_say_different_things() {
        let shutdown = CancellationToken::new();
        let changed = StopSignal::child_of(&shutdown);
        let removed = StopSignal::child_of(&shutdown);
        let kept = StopSignal::child_of(&shutdown);
        changed.retire(Retired::Changed);
        removed.retire(Retired::Removed);
        assert!(changed.token().is_cancelled() && !kept.token().is_cancelled());
        assert_eq!(changed.reason(), CloseReason::RouteChanged);
        assert_eq!(removed.reason(), CloseReason::RouteRemoved);
        shutdown.cancel();
        assert!(kept.token().is_cancelled());
        assert_eq!(kept.reason(), CloseReason::Shutdown);
        // Retired after the shutdown fired it: still the shutdown.
        kept.retire(Retired::Removed);
        assert_eq!(kept.reason(), CloseReason::Shutdown);
        for (reason, said) in [
            (CloseReason::RouteChanged, "route changed by reload"),
            (CloseReason::RouteRemoved, "route removed by reload"),
        ] {
            assert_eq!(reason.code(), 1001);
            assert_eq!(reason.text(), said);
        }
        assert_eq!(CloseReason::Shutdown.frame().1, "server shutting down");
    }
}
