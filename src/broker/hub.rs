//! In-process fan-out: topics to subscribers, each with a bounded queue.
//!
//! Publishing pushes a shared clone of the envelope's payload into every
//! subscriber's queue (`queue.rs`), under a read lock. Queues are bounded in messages
//! (`SUBSCRIBER_QUEUE`) and in the bytes of the payloads they hold
//! (`SUBSCRIBER_QUEUE_BYTES`; an empty queue always admits one message, so
//! one large message never cuts anyone by itself). Payloads are shared, not
//! copied. A subscriber whose queue is full gets a
//! short, bounded grace (the publisher waits for it: a publisher faster than
//! the fan-out is slowed to its pace) and is then removed and flagged, and
//! its session closes it with 1008. It does not own the WebSocket; `routes`
//! do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::envelope::{Envelope, Payload, Topic};
use super::queue::{Push, Queue, Taken};

/// One subscriber as the hub sees it.
struct Slot {
    queue: Arc<Queue>,
    route: Arc<str>,
}

impl Drop for Slot {
    /// Out of the hub (unsubscribed or cut): its reader learns it.
    fn drop(&mut self) {
        self.queue.end(false);
    }
}

/// Topics and their subscribers on this instance.
#[derive(Default)]
pub struct Hub {
    topics: RwLock<HashMap<Topic, HashMap<u64, Slot>>>,
    next_id: AtomicU64,
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Delivery {
    Message(Payload),
    /// The queue overflowed: this subscriber fell behind and was cut off.
    Lagged,
    /// The hub is gone (shutdown).
    Closed,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    topic: Topic,
    queue: Arc<Queue>,
    hub: Arc<Hub>,
}

impl Subscription {
    /// The id the hub uses to skip this subscriber's own messages.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The next delivery. Cancel-safe.
    pub async fn recv(&mut self) -> Delivery {
        match self.queue.take().await {
            Taken::Payload(payload) => Delivery::Message(payload),
            Taken::Lagged => Delivery::Lagged,
            Taken::Closed => Delivery::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(&self.topic, self.id);
    }
}

impl Hub {
    /// Adds a subscriber to `topic`; `route` labels its metrics.
    pub fn subscribe(self: &Arc<Self>, topic: Topic, route: &str) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let queue = Arc::new(Queue::default());
        let slot = Slot {
            queue: queue.clone(),
            route: route.into(),
        };
        if let Ok(mut topics) = self.topics.write() {
            topics.entry(topic.clone()).or_default().insert(id, slot);
        }
        Subscription {
            id,
            topic,
            queue,
            hub: self.clone(),
        }
    }

    /// Delivers to every subscriber of the envelope's topic but its sender,
    /// never waiting: subscribers with full queues are cut off. Returns how
    /// many got it. For deliveries that cannot wait (messages from other
    /// instances).
    pub fn deliver(&self, envelope: &Envelope) -> usize {
        let (delivered, full) = self.try_deliver(envelope);
        let full: Vec<u64> = full.into_iter().map(|(id, _)| id).collect();
        self.cut(&envelope.topic, &full);
        delivered
    }

    /// Delivers like [`Hub::deliver`], but gives subscribers whose queue is
    /// full up to `stall` (in all) to make room before cutting them off: a
    /// publisher faster than the fan-out is slowed to its pace, while a
    /// subscriber that stopped reading costs it at most `stall` once. `own`
    /// is the publishing connection's own subscription (0 for none): it is
    /// never waited for (it could not drain while publishing).
    pub async fn deliver_paced(&self, envelope: &Envelope, own: u64, stall: Duration) -> usize {
        let (mut delivered, full) = self.try_deliver(envelope);
        if full.is_empty() {
            return delivered;
        }
        let deadline = tokio::time::Instant::now() + stall;
        let mut cut = Vec::new();
        for (id, queue) in full {
            if id == own {
                cut.push(id);
                continue;
            }
            // Wait for the subscriber to take messages until both its
            // message count and its bytes leave room.
            loop {
                let drained = queue.drained();
                tokio::pin!(drained);
                drained.as_mut().enable();
                match queue.push(&envelope.payload, true) {
                    Push::Queued => {
                        delivered += 1;
                        break;
                    }
                    Push::Gone => break,
                    Push::Full => {}
                }
                if tokio::time::timeout_at(deadline, drained).await.is_err() {
                    cut.push(id);
                    break;
                }
            }
        }
        self.cut(&envelope.topic, &cut);
        delivered
    }

    /// One push per subscriber (a shared clone of the payload); returns
    /// the count delivered and the subscribers whose queues were full (in
    /// messages or bytes).
    fn try_deliver(&self, envelope: &Envelope) -> (usize, Vec<(u64, Arc<Queue>)>) {
        let mut delivered = 0;
        let mut full = Vec::new();
        let Ok(topics) = self.topics.read() else {
            return (0, full);
        };
        let Some(subs) = topics.get(&envelope.topic) else {
            return (0, full);
        };
        for (&id, slot) in subs {
            if id == envelope.sender {
                continue;
            }
            match slot.queue.push(&envelope.payload, false) {
                Push::Queued => delivered += 1,
                Push::Full => full.push((id, slot.queue.clone())),
                Push::Gone => {}
            }
        }
        (delivered, full)
    }

    /// Removes subscribers that fell behind and flags them, so their
    /// sessions close with 1008.
    fn cut(&self, topic: &Topic, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        if let Ok(mut topics) = self.topics.write()
            && let Some(subs) = topics.get_mut(topic)
        {
            for id in ids {
                if let Some(slot) = subs.remove(id) {
                    slot.queue.end(true);
                    crate::metrics::subscriber_dropped(&slot.route, "slow");
                    tracing::debug!(%topic, "subscriber fell behind; closing it");
                }
            }
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// How many subscribers a topic has here.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.topics
            .read()
            .map(|t| t.get(topic).map_or(0, HashMap::len))
            .unwrap_or(0)
    }

    /// Topics with at least one subscriber here whose name starts with `prefix`.
    pub fn topics_with_prefix(&self, prefix: &str) -> Vec<Topic> {
        self.topics
            .read()
            .map(|t| {
                t.keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn remove(&self, topic: &Topic, id: u64) {
        if let Ok(mut topics) = self.topics.write()
            && let Some(subs) = topics.get_mut(topic)
        {
            subs.remove(&id);
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::{SUBSCRIBER_QUEUE, SUBSCRIBER_QUEUE_BYTES};

    fn env(topic: &str, sender: u64, text: &str) -> Envelope {
        Envelope {
            topic: topic.into(),
            sender,
            payload: Payload::Text(text.into()),
        }
    }

    #[tokio::test]
    async fn delivers_to_others_not_sender() {
        let hub = Arc::new(Hub::default());
        let a = hub.subscribe("/t".into(), "/t");
        let mut b = hub.subscribe("/t".into(), "/t");
        let _other = hub.subscribe("/u".into(), "/u");
        assert_eq!(hub.deliver(&env("/t", a.id(), "hi")), 1);
        match b.recv().await {
            Delivery::Message(p) => assert_eq!(p, Payload::Text("hi".into())),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.queue.depth(), (0, 0));
        drop(b);
        assert_eq!(hub.subscribers("/t"), 1);
        drop(a);
        assert_eq!(hub.subscribers("/t"), 0);
    }

    #[tokio::test]
    async fn full_queue_cuts_off_only_the_slow_one() {
        let hub = Arc::new(Hub::default());
        let mut slow = hub.subscribe("/t".into(), "/t");
        let mut fast = hub.subscribe("/t".into(), "/t");
        for i in 0..SUBSCRIBER_QUEUE + 5 {
            hub.deliver(&env("/t", 0, &i.to_string()));
            // The fast one keeps up.
            assert!(matches!(fast.recv().await, Delivery::Message(_)));
        }
        assert!(matches!(slow.recv().await, Delivery::Lagged));
        assert_eq!(hub.subscribers("/t"), 1);
    }

    #[tokio::test]
    async fn queues_are_capped_in_bytes_but_always_take_one_message() {
        let hub = Arc::new(Hub::default());
        let mut slow = hub.subscribe("/t".into(), "/t");
        let mut fast = hub.subscribe("/t".into(), "/t");
        let big = |n: u8| Envelope {
            topic: "/t".into(),
            sender: 0,
            payload: Payload::Binary(bytes::Bytes::from(vec![n; SUBSCRIBER_QUEUE_BYTES])),
        };
        // An empty queue takes a message as large as the cap.
        assert_eq!(hub.deliver(&big(1)), 2);
        assert!(matches!(fast.recv().await, Delivery::Message(_)));
        // The slow one still holds it: the next one does not fit.
        assert_eq!(hub.deliver(&big(2)), 1);
        assert!(matches!(fast.recv().await, Delivery::Message(_)));
        assert!(matches!(slow.recv().await, Delivery::Lagged));
        assert_eq!(hub.subscribers("/t"), 1);
    }

    #[tokio::test]
    async fn a_cut_subscriber_releases_what_it_held_at_once() {
        let budget = Box::leak(Box::new(crate::budget::MemoryBudget::new(1 << 20)));
        let hub = Arc::new(Hub::default());
        let mut slow = hub.subscribe("/t".into(), "/t");
        for i in 0..=SUBSCRIBER_QUEUE {
            let charge = budget.try_charge(64, crate::budget::Kind::Queue).unwrap();
            let payload = crate::budget::charged_bytes(bytes::Bytes::from(vec![0u8; 64]), charge);
            let delivered = hub.deliver(&Envelope {
                topic: "/t".into(),
                sender: 0,
                payload: Payload::Binary(payload),
            });
            assert_eq!(delivered, usize::from(i < SUBSCRIBER_QUEUE));
        }
        // Cut, its session not yet told: the queued payloads are already
        // released, not held until the session ends.
        assert_eq!(budget.used(), 0);
        assert!(matches!(slow.recv().await, Delivery::Lagged));
    }

    #[tokio::test]
    async fn paced_delivery_waits_for_a_reader_and_cuts_a_stalled_one() {
        let hub = Arc::new(Hub::default());
        let mut reader = hub.subscribe("/t".into(), "/t");
        let stalled = hub.subscribe("/t".into(), "/t");
        let drain = tokio::spawn(async move {
            let mut got = 0;
            while let Delivery::Message(_) = reader.recv().await {
                got += 1;
                if got == 3 * SUBSCRIBER_QUEUE {
                    break;
                }
            }
            got
        });
        for i in 0..3 * SUBSCRIBER_QUEUE {
            hub.deliver_paced(&env("/t", 0, &i.to_string()), 0, Duration::from_millis(200))
                .await;
        }
        // The reader got everything (the publisher waited for it); the
        // stalled one was cut after its grace.
        assert_eq!(drain.await.unwrap(), 3 * SUBSCRIBER_QUEUE);
        assert!(stalled.queue.lagged());
    }
}
