//! A one-way signal between the futures of one relay: its two pumps and its
//! control loop, joined in one task (`relay::relay`). It replaces a
//! `CancellationToken` there because the relay waits on its signals around
//! every read: a token's wait takes two locks at each poll (its tree node's
//! and its `Notify`'s), and the joined task polls every waiting branch at
//! every wake-up (callgrind, 64 B through the proxy: 11.7% of the front's
//! instructions were those waits). Here a wait is an atomic load and a waker
//! registration.
//!
//! It holds one waker: every waiter must be part of the same task, which is
//! what the relay's join gives. A signal from outside the task (the server's
//! shutdown) stays a `CancellationToken`.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Lowered until [`Flag::raise`]; never lowered again.
#[derive(Default)]
pub struct Flag {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Flag {
    /// Raises the flag and wakes the task waiting on it.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Completes once the flag is raised (at once if it already is).
    pub async fn raised(&self) {
        poll_fn(|cx| {
            if self.is_raised() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // Raised between the check and the registration: its wake may
            // have found no waker.
            if self.is_raised() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raise_from_another_branch_of_the_same_task_ends_the_wait() {
        let flag = Flag::default();
        let wait = async {
            flag.raised().await;
            "waited"
        };
        let raise = async {
            tokio::task::yield_now().await;
            flag.raise();
            "raised"
        };
        let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(wait, raise)
        })
        .await
        .expect("the wait ended");
        assert_eq!((a, b), ("waited", "raised"));
        assert!(flag.is_raised());
    }

    #[tokio::test]
    async fn a_raised_flag_completes_every_later_wait_at_once() {
        let flag = Flag::default();
        flag.raise();
        flag.raised().await;
        flag.raised().await;
    }
}
