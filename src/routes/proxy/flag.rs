//! A one-way signal between the three branches of one relay (its two pumps
//! and its control loop, `relay::relay`). It replaces a `CancellationToken`
//! there because the relay waits on its signals around every read: a
//! token's wait takes two locks at each poll (its tree node's and its
//! `Notify`'s); callgrind put those waits at 11.7% of the proxy front's
//! instructions per 64 B message. Here a wait is an atomic load and a
//! waker registration, in the waiting branch's own slot, so that raising
//! the flag wakes each branch that waits.
//!
//! A signal from outside the relay (the server's shutdown) stays a
//! `CancellationToken`.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Which branch of the relay waits: each has its own waker slot.
#[derive(Clone, Copy, Debug)]
pub enum Slot {
    Up = 0,
    Down = 1,
    Control = 2,
}

/// Lowered until [`Flag::raise`]; never lowered again.
#[derive(Default)]
pub struct Flag {
    raised: AtomicBool,
    wakers: [AtomicWaker; 3],
}

impl Flag {
    /// Raises the flag and wakes every branch waiting on it.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        for waker in &self.wakers {
            waker.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// The handle branch `slot` waits with.
    pub fn waiter(&self, slot: Slot) -> Waiter<'_> {
        Waiter { flag: self, slot }
    }
}

/// One branch's view of a [`Flag`].
#[derive(Clone, Copy)]
pub struct Waiter<'a> {
    flag: &'a Flag,
    slot: Slot,
}

impl Waiter<'_> {
    /// Completes once the flag is raised (at once if it already is).
    pub async fn raised(self) {
        let waker = &self.flag.wakers[self.slot as usize];
        poll_fn(|cx| {
            if self.flag.is_raised() {
                return Poll::Ready(());
            }
            waker.register(cx.waker());
            // Raised between the check and the registration: its wake may
            // have found no waker.
            if self.flag.is_raised() {
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
    async fn raising_wakes_every_branch_that_waits_in_its_own_task() {
        let flag = std::sync::Arc::new(Flag::default());
        let waits: Vec<_> = [Slot::Up, Slot::Down, Slot::Control]
            .into_iter()
            .map(|slot| {
                let flag = flag.clone();
                tokio::spawn(async move { flag.waiter(slot).raised().await })
            })
            .collect();
        tokio::task::yield_now().await;
        flag.raise();
        for wait in waits {
            tokio::time::timeout(std::time::Duration::from_secs(5), wait)
                .await
                .expect("every waiter was woken")
                .expect("no panic");
        }
        assert!(flag.is_raised());
    }

    #[tokio::test]
    async fn a_raised_flag_completes_every_later_wait_at_once() {
        let flag = Flag::default();
        flag.raise();
        flag.waiter(Slot::Up).raised().await;
        flag.waiter(Slot::Up).raised().await;
    }
}
