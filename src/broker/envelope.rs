//! What the broker carries: an [`Envelope`] (topic, sender, payload), its
//! [`Payload`] and moderation [`Control`] orders, and the [`InstanceId`] that
//! tells instances apart. Plain data, used by every other file of `broker`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

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
