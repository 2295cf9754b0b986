//! One subscriber's queue: the payloads the hub handed it and its session has
//! not taken yet, bounded in messages (`SUBSCRIBER_QUEUE`) and in payload
//! bytes (`SUBSCRIBER_QUEUE_BYTES`; an empty queue always takes one message,
//! so one large message never cuts anyone by itself).
//!
//! Everything one delivery touches (the payloads, their byte count, the
//! reader's waker, the flags) sits behind one uncontended lock: a push is one
//! lock, a store and at most one wake; a take is one lock. It replaced a tokio
//! `mpsc` channel plus a separate atomic byte count and a `Notify` signalled at
//! every take, which cost several shared atomic operations per delivery on
//! both sides (fan-out profile in bench/README.md). The publisher is signalled
//! (`drained`) only when one waits for room.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

use super::envelope::Payload;
use crate::config::limits::{SUBSCRIBER_QUEUE, SUBSCRIBER_QUEUE_BYTES};

/// A subscriber's queue, shared by the hub's slot and the subscription.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// Signalled when a take makes room while a publisher waits for it.
    drained: Notify,
}

#[derive(Default)]
struct State {
    items: VecDeque<Payload>,
    /// Payload bytes in `items`.
    bytes: usize,
    /// The subscription's task, waiting for a payload.
    reader: Option<Waker>,
    /// A publisher found the queue full and waits for `drained`.
    publisher_waiting: bool,
    /// Cut off for falling behind: the reader gets `Lagged` at once.
    lagged: bool,
    /// No longer in the hub: once empty, the reader gets `Closed`.
    detached: bool,
}

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Push {
    Queued,
    /// No room (messages or bytes); the payload was not queued.
    Full,
    /// The subscriber is gone.
    Gone,
}

/// What [`Queue::take`] got.
#[derive(Debug)]
pub(super) enum Taken {
    Payload(Payload),
    Lagged,
    Closed,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `payload` if it fits, waking the reader. `waiting`: the caller
    /// will wait for `drained` when it is full (so a take signals it).
    pub(super) fn push(&self, payload: &Payload, waiting: bool) -> Push {
        let len = payload.len();
        let reader = {
            let mut state = self.lock();
            if state.detached || state.lagged {
                return Push::Gone;
            }
            let fits = state.items.is_empty()
                || (state.items.len() < SUBSCRIBER_QUEUE
                    && state.bytes.saturating_add(len) <= SUBSCRIBER_QUEUE_BYTES);
            if !fits {
                state.publisher_waiting |= waiting;
                return Push::Full;
            }
            state.items.push_back(payload.clone());
            state.bytes = state.bytes.saturating_add(len);
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        Push::Queued
    }

    /// The next payload, or why there is none. Cancel-safe: a payload is
    /// taken only by the poll that returns it.
    pub(super) async fn take(&self) -> Taken {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.lagged {
                return Poll::Ready(Taken::Lagged);
            }
            if let Some(payload) = state.items.pop_front() {
                state.bytes = state.bytes.saturating_sub(payload.len());
                let signal = std::mem::take(&mut state.publisher_waiting);
                drop(state);
                if signal {
                    self.drained.notify_waiters();
                }
                return Poll::Ready(Taken::Payload(payload));
            }
            if state.detached {
                return Poll::Ready(Taken::Closed);
            }
            match &mut state.reader {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Waits until a take may have made room (call `enable` on the result
    /// before [`Queue::push`] with `waiting`, then await it).
    pub(super) fn drained(&self) -> tokio::sync::futures::Notified<'_> {
        self.drained.notified()
    }

    /// Cuts the subscriber off (`lagged`) or detaches it from the hub; the
    /// queued payloads go at once when cut, and the reader is woken.
    pub(super) fn end(&self, lagged: bool) {
        let (reader, _dropped) = {
            let mut state = self.lock();
            state.detached = true;
            let mut dropped = VecDeque::new();
            if lagged {
                state.lagged = true;
                state.bytes = 0;
                dropped = std::mem::take(&mut state.items);
            }
            (state.reader.take(), dropped)
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        self.drained.notify_waiters();
    }

    /// Whether it was cut off for falling behind (for tests).
    #[cfg(test)]
    pub(super) fn lagged(&self) -> bool {
        self.lock().lagged
    }

    /// Payloads and bytes queued (for tests).
    #[cfg(test)]
    pub(super) fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.items.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn text(s: &str) -> Payload {
        Payload::Text(s.into())
    }

    #[test]
    fn bounded_in_messages_and_bytes() {
        let q = Queue::default();
        for i in 0..SUBSCRIBER_QUEUE {
            assert_eq!(q.push(&text(&i.to_string()), false), Push::Queued);
        }
        assert_eq!(q.push(&text("x"), false), Push::Full);
        assert_eq!(q.depth().0, SUBSCRIBER_QUEUE);
        let big = Payload::Binary(bytes::Bytes::from(vec![0u8; SUBSCRIBER_QUEUE_BYTES]));
        let q = Queue::default();
        // An empty queue takes a message as large as the cap, then nothing.
        assert_eq!(q.push(&big, false), Push::Queued);
        assert_eq!(q.push(&text("x"), false), Push::Full);
        assert!(matches!(q.take().now_or_never(), Some(Taken::Payload(_))));
        assert_eq!(q.depth(), (0, 0));
        assert_eq!(q.push(&text("x"), false), Push::Queued);
    }

    #[test]
    fn cut_drops_what_was_queued_and_reports_lagged() {
        let q = Queue::default();
        assert_eq!(q.push(&text("a"), false), Push::Queued);
        q.end(true);
        assert_eq!(q.depth(), (0, 0));
        assert!(matches!(q.take().now_or_never(), Some(Taken::Lagged)));
        assert_eq!(q.push(&text("b"), false), Push::Gone);
    }

    #[test]
    fn detached_queue_drains_then_closes() {
        let q = Queue::default();
        assert!(q.take().now_or_never().is_none());
        assert_eq!(q.push(&text("a"), false), Push::Queued);
        q.end(false);
        assert!(matches!(q.take().now_or_never(), Some(Taken::Payload(_))));
        assert!(matches!(q.take().now_or_never(), Some(Taken::Closed)));
    }

    #[tokio::test]
    async fn a_take_signals_a_waiting_publisher_only() {
        let q = Queue::default();
        for i in 0..SUBSCRIBER_QUEUE {
            q.push(&text(&i.to_string()), false);
        }
        let drained = q.drained();
        tokio::pin!(drained);
        drained.as_mut().enable();
        assert_eq!(q.push(&text("late"), true), Push::Full);
        assert!(matches!(q.take().await, Taken::Payload(_)));
        assert!(drained.now_or_never().is_some());
        assert_eq!(q.push(&text("late"), true), Push::Queued);
    }
}
