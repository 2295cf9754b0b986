//! The bounded queue between [`crate::broker::Backend::forward`] and the
//! publisher task (see `transport.rs`).

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::settings::FORWARD_QUEUE;

/// The queue between [`crate::broker::Backend::forward`] and the publisher task.
pub(super) struct Outbox {
    pub(super) tx: mpsc::Sender<Vec<u8>>,
    /// The receiving end, until `start` hands it to the publisher task
    /// (taken once; the lock only guards that hand-over).
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
}

impl Outbox {
    pub(super) fn new() -> Outbox {
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        Outbox {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// The receiving end, the first time only.
    pub(super) fn take_receiver(&self) -> Option<mpsc::Receiver<Vec<u8>>> {
        self.rx.lock().ok().and_then(|mut r| r.take())
    }
}
