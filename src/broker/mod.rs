//! The broker: how chat and broadcast messages reach their subscribers, on
//! this instance and on the others, and where room state that instances must
//! share (names in use, history, bans) lives.
//!
//! Two layers, always in this order:
//! - the [`Hub`] (in-process fan-out): every subscriber has a bounded queue;
//!   a message is one reference-counted [`Envelope`] cloned into each queue;
//!   a subscriber whose queue is full is cut off, never waited for;
//! - a [`Backend`] (the one small trait): `memory` keeps room state in this
//!   process and forwards nothing; `redis` forwards envelopes to the other
//!   instances over pub/sub and keeps room state in Redis, with expiring
//!   presence (see `redis/mod.rs` for the delivery guarantee).
//!
//! What a chat message *means* (JSON, moderation) is `routes::chat`'s
//! business; the broker moves bytes and keeps sets and lists.

pub mod hub;
pub mod memory;
pub mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

pub use hub::{Delivery, Hub, Subscription};

/// A boxed future, so [`Backend`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a message goes: a broadcast route's path, or `route#room` for chat.
pub type Topic = Arc<str>;

/// The chat topic of one room.
pub fn room_topic(route: &str, room: &str) -> Topic {
    format!("{route}#{room}").into()
}

/// A message on its way to subscribers. Cloning shares the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub topic: Topic,
    /// The subscription that sent it on this instance (it does not get its
    /// own message back); 0 for none, and always 0 once it crossed instances.
    pub sender: u64,
    pub payload: Payload,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// A moderation order, carried out by the instance that holds the target.
    Control(Control),
}

impl Payload {
    /// Bytes of message data it carries (0 for control orders).
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
            Payload::Control(_) => 0,
        }
    }

    /// Whether it carries no message data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same payload with `charge` released only when its last clone is
    /// dropped (every subscriber wrote or dropped it). No copy, except that
    /// text is checked for UTF-8 again.
    pub fn with_charge(self, charge: crate::budget::Charge) -> Payload {
        match self {
            Payload::Text(t) => {
                match Utf8Bytes::try_from(crate::budget::charged_bytes(
                    Bytes::from(t.clone()),
                    charge,
                )) {
                    Ok(text) => Payload::Text(text),
                    Err(_) => Payload::Text(t),
                }
            }
            Payload::Binary(b) => Payload::Binary(crate::budget::charged_bytes(b, charge)),
            Payload::Control(c) => Payload::Control(c),
        }
    }
}

/// Moderation orders that must reach the target's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Kick {
        username: String,
    },
    Ban {
        username: String,
    },
    /// Muted until this Unix time in milliseconds.
    Mute {
        username: String,
        until_ms: u64,
    },
}

/// Identifies this process among instances sharing a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId(pub u64);

impl InstanceId {
    /// A fresh random id (from the TLS provider's secure random source,
    /// falling back to time and pid, which is unique enough for this).
    pub fn random() -> InstanceId {
        let mut bytes = [0u8; 8];
        if crate::tls::provider()
            .secure_random
            .fill(&mut bytes)
            .is_err()
        {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = (nanos ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
        }
        InstanceId(u64::from_le_bytes(bytes))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("malformed message from the broker: {0}")]
    Malformed(String),
}

/// The outcome of asking to join a room under a name.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOutcome {
    /// Joined; the room's members (the joiner included) and its history,
    /// oldest first.
    Joined {
        members: Vec<String>,
        history: Vec<Utf8Bytes>,
    },
    /// Someone in the room already has the name.
    NameTaken,
    /// The name is banned from the room.
    Banned,
}

/// A member who came or went without the other instances being told (see
/// [`Backend::presence_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub topic: String,
    pub username: String,
    /// `true`: announce a join; `false`: a leave.
    pub joined: bool,
    /// `true`: for this instance's own clients only (what they missed of
    /// the other instances); `false`: for everyone in the room (what the
    /// other instances missed of this one).
    pub local_only: bool,
}

/// Health of the backend, for `/readyz` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Local delivery works; sharing with other instances does not.
    Degraded(String),
}

/// Shared room state and cross-instance forwarding. Room keys are chat
/// [`Topic`]s. Every method is bounded in time: a backend that cannot reach
/// its store answers `Err(Unavailable)` (or degrades to local state) rather
/// than hanging.
pub trait Backend: Send + Sync + 'static {
    /// `memory` or `redis`, for logs.
    fn name(&self) -> &'static str;
    /// Starts background work (subscriber loop, presence refresh) that
    /// delivers envelopes from other instances into `hub` until shutdown.
    fn start(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken);
    /// Sends an envelope published on this instance to the other instances.
    /// Never blocks; may drop when the backend is down.
    fn forward(&self, envelope: &Envelope);
    /// Claims `username` in `room` (atomically: no two members, on any
    /// instance, get the same name) and returns members and history.
    fn join<'a>(
        &'a self,
        room: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<JoinOutcome, BrokerError>>;
    /// The names in a room now, on every instance.
    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>>;
    /// Frees the name. Idempotent.
    fn leave<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()>;
    /// Appends a message (already-encoded JSON) to the room's history,
    /// keeping the last `cap`.
    fn record<'a>(&'a self, room: &'a str, message: Utf8Bytes, cap: usize) -> BoxFuture<'a, ()>;
    /// Bans the name from the room for the room's life.
    fn ban<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()>;
    /// Members of a room whose instance stopped refreshing them (it died):
    /// removes them and returns their names, each to exactly one caller
    /// across instances. `memory` never has any.
    fn sweep<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Vec<String>>;
    /// Presence changes that other instances could not hear of when they
    /// happened (made during an outage, or members re-registered after
    /// being swept), in topics starting with `prefix`: taken out, for the
    /// chat route to announce now. `memory` never has any.
    fn presence_changes(&self, prefix: &str) -> Vec<PresenceChange> {
        let _ = prefix;
        Vec::new()
    }
    /// Current health.
    fn health(&self) -> Health;
}

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

/// Wire format of an envelope between instances:
/// `b"W1"`, instance (8 bytes LE), kind (1 byte: 0 text, 1 binary, 2 control),
/// topic length (2 bytes LE), topic, payload. Control payloads are JSON.
pub mod wire {
    use super::*;

    const MAGIC: &[u8; 2] = b"W1";

    /// Encodes an envelope published by `instance`.
    pub fn encode(instance: InstanceId, envelope: &Envelope) -> Vec<u8> {
        let (kind, body): (u8, std::borrow::Cow<'_, [u8]>) = match &envelope.payload {
            Payload::Text(t) => (0, t.as_bytes().into()),
            Payload::Binary(b) => (1, b.as_ref().into()),
            Payload::Control(c) => (2, control_json(c).into_bytes().into()),
        };
        let topic = envelope.topic.as_bytes();
        let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(13 + topic.len() + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&instance.0.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&topic_len.to_le_bytes());
        out.extend_from_slice(&topic[..usize::from(topic_len)]);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes an envelope; its `sender` is 0 (senders are local ids).
    pub fn decode(bytes: &[u8]) -> Result<(InstanceId, Envelope), BrokerError> {
        let bad = |why: &str| BrokerError::Malformed(why.to_string());
        if bytes.len() < 13 || &bytes[..2] != MAGIC {
            return Err(bad("not a wssd envelope"));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..10]);
        let kind = bytes[10];
        let topic_len = usize::from(u16::from_le_bytes([bytes[11], bytes[12]]));
        let rest = &bytes[13..];
        if rest.len() < topic_len {
            return Err(bad("truncated topic"));
        }
        let topic =
            std::str::from_utf8(&rest[..topic_len]).map_err(|_| bad("topic is not UTF-8"))?;
        let body = &rest[topic_len..];
        let payload = match kind {
            0 => Payload::Text(
                Utf8Bytes::try_from(Bytes::copy_from_slice(body))
                    .map_err(|_| bad("text is not UTF-8"))?,
            ),
            1 => Payload::Binary(Bytes::copy_from_slice(body)),
            2 => Payload::Control(parse_control(body).ok_or_else(|| bad("bad control"))?),
            _ => return Err(bad("unknown kind")),
        };
        Ok((
            InstanceId(u64::from_le_bytes(id)),
            Envelope {
                topic: topic.into(),
                sender: 0,
                payload,
            },
        ))
    }

    fn control_json(c: &Control) -> String {
        let v = match c {
            Control::Kick { username } => serde_json::json!({"op":"kick","username":username}),
            Control::Ban { username } => serde_json::json!({"op":"ban","username":username}),
            Control::Mute { username, until_ms } => {
                serde_json::json!({"op":"mute","username":username,"until_ms":until_ms})
            }
        };
        v.to_string()
    }

    fn parse_control(body: &[u8]) -> Option<Control> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let username = v.get("username")?.as_str()?.to_string();
        match v.get("op")?.as_str()? {
            "kick" => Some(Control::Kick { username }),
            "ban" => Some(Control::Ban { username }),
            "mute" => Some(Control::Mute {
                username,
                until_ms: v.get("until_ms")?.as_u64()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip() {
        let id = InstanceId(0x1234_5678_9abc_def0);
        for payload in [
            Payload::Text("héllo".into()),
            Payload::Binary(Bytes::from_static(&[0, 1, 2, 255])),
            Payload::Control(Control::Mute {
                username: "bob".into(),
                until_ms: 42,
            }),
            Payload::Control(Control::Kick {
                username: "eve".into(),
            }),
        ] {
            let env = Envelope {
                topic: room_topic("/ws/chat", "lobby"),
                sender: 7,
                payload,
            };
            let (got_id, got) = wire::decode(&wire::encode(id, &env)).unwrap();
            assert_eq!(got_id, id);
            assert_eq!(got.topic, env.topic);
            assert_eq!(got.sender, 0);
            assert_eq!(got.payload, env.payload);
        }
    }

    #[test]
    fn wire_rejects_garbage() {
        assert!(wire::decode(b"").is_err());
        assert!(wire::decode(b"XX0123456789abc").is_err());
        let mut ok = wire::encode(
            InstanceId(1),
            &Envelope {
                topic: "/t".into(),
                sender: 0,
                payload: Payload::Text("x".into()),
            },
        );
        ok[10] = 9;
        assert!(wire::decode(&ok).is_err());
    }
}
