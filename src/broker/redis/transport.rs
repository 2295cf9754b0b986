//! Pub/sub delivery: envelopes published here go out through a bounded
//! queue (`outbox.rs`) to a publisher task that `PUBLISH`es them in pipelines, in order;
//! envelopes from the other instances (read by the reconnect loop's
//! subscription) go to the local [`Hub`].

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RedisBackend;
use super::settings::CHANNEL;
use crate::broker::envelope::Envelope;
use crate::broker::hub::Hub;
use crate::broker::wire;
use crate::metrics;

/// Most envelopes sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 256;

impl RedisBackend {
    /// Queues an envelope for the other instances; drops (and counts) it
    /// while the link is down or the queue is full.
    pub(super) fn queue_forward(&self, envelope: &Envelope) {
        if !self.link.is_up() {
            metrics::broker_forward_error();
            return;
        }
        if self
            .outbox
            .tx
            .try_send(wire::encode(self.instance, envelope))
            .is_err()
        {
            metrics::broker_forward_error();
        }
    }

    /// Hands an envelope from another instance to the local hub (ours are
    /// dropped: they were delivered here when published).
    pub(super) fn deliver_remote(&self, hub: &Hub, bytes: &[u8]) {
        match wire::decode(bytes) {
            Ok((from, _)) if from == self.instance => {}
            Ok((_, envelope)) => {
                hub.deliver(&envelope);
            }
            Err(e) => tracing::debug!(error = %e, "ignoring a message on {CHANNEL}"),
        }
    }

    /// Sends queued envelopes to Redis in pipelines, in order.
    pub(super) async fn run_publisher(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            batch.clear();
            let n = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = rx.recv_many(&mut batch, PUBLISH_BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let Some((generation, mut conn)) = self.link.current() else {
                (0..n).for_each(|_| metrics::broker_forward_error());
                continue;
            };
            let mut pipe = redis::pipe();
            for msg in &batch {
                pipe.cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(msg.as_slice())
                    .ignore();
            }
            if self
                .link
                .guarded(generation, "PUBLISH", pipe.exec_async(&mut conn))
                .await
                .is_err()
            {
                (0..n).for_each(|_| metrics::broker_forward_error());
            }
        }
    }
}
