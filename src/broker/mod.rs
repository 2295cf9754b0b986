//! The broker: how chat and broadcast messages reach their subscribers, on
//! this instance and on the others, and where room state that instances must
//! share (names in use, history, bans) lives.
//!
//! Two layers, always in this order:
//! - the [`Hub`] (in-process fan-out): every subscriber has a bounded queue;
//!   a message's payload is shared (reference-counted) into each queue;
//!   a subscriber whose queue is full is cut off after a short, bounded
//!   grace;
//! - a [`Backend`] (the one small trait): `memory` keeps room state in this
//!   process and forwards nothing; `redis` forwards envelopes to the other
//!   instances over pub/sub and keeps room state in Redis, with expiring
//!   presence (see `redis/mod.rs` for the delivery guarantee).
//!
//! Files: `envelope.rs` (what is carried), `backend.rs` (the trait and its
//! answers), `hub.rs` (local fan-out), `queue.rs` (one
//! subscriber's bounded queue), `wire.rs` (the envelope between
//! instances), `memory.rs` and `redis/` (the backends); this file re-exports
//! them and holds the [`Broker`] that puts the hub and a backend together.
//!
//! What a chat message *means* (JSON, moderation) is `routes::chat`'s
//! business; the broker moves bytes and keeps sets and lists.

mod backend;
mod envelope;
pub mod hub;
pub mod memory;
mod queue;
pub mod redis;
pub mod wire;

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use backend::{Backend, BoxFuture, BrokerError, Health, JoinOutcome, PresenceChange};
pub use envelope::{Control, Envelope, InstanceId, Payload, Topic, room_topic};
pub use hub::{Delivery, Hub, Subscription};

/// The broker a server runs with: the local hub plus a backend.
#[derive(Clone)]
pub struct Broker {
    hub: Arc<Hub>,
    backend: Arc<dyn Backend>,
    instance: InstanceId,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("backend", &self.backend.name())
            .field("instance", &self.instance)
            .finish()
    }
}

impl Broker {
    /// An in-process broker (the default).
    pub fn memory() -> Broker {
        Broker::with_backend(
            Arc::new(memory::MemoryBackend::default()),
            InstanceId::random(),
        )
    }

    /// A broker over any backend.
    pub fn with_backend(backend: Arc<dyn Backend>, instance: InstanceId) -> Broker {
        Broker {
            hub: Arc::new(Hub::default()),
            backend,
            instance,
        }
    }

    /// Starts the backend's background work.
    pub fn start(&self, shutdown: CancellationToken) {
        self.backend.clone().start(self.hub.clone(), shutdown);
    }

    /// Delivers to local subscribers now and forwards to other instances.
    /// Returns how many local subscribers got it.
    pub fn publish(&self, envelope: Envelope) -> usize {
        self.backend.forward(&envelope);
        self.hub.deliver(&envelope)
    }

    /// Like [`Broker::publish`], but waits (bounded by `SUBSCRIBER_STALL`)
    /// for local subscribers whose queues are full instead of cutting them
    /// at once: the publishing connection is slowed to the fan-out's pace.
    /// `own` is the publisher's own subscription id (0 for none).
    pub async fn publish_paced(&self, envelope: Envelope, own: u64) -> usize {
        self.backend.forward(&envelope);
        self.hub
            .deliver_paced(&envelope, own, crate::config::limits::SUBSCRIBER_STALL)
            .await
    }

    /// Subscribes to a topic on this instance.
    pub fn subscribe(&self, topic: Topic, route: &str) -> Subscription {
        self.hub.subscribe(topic, route)
    }

    /// The backend, for room state.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The local fan-out.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// This process's id among instances.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// Backend health.
    pub fn health(&self) -> Health {
        self.backend.health()
    }
}
