//! A chat route's shared state: its settings, the broker, the message ids;
//! posts from the publish endpoint, and the sweep of dead instances' members.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::bounded::bounded;
use super::events::{check_room, now_ms, presence};
use crate::backoff::Backoff;
use crate::broker::{Broker, BrokerError, Envelope, Payload, room_topic};
use crate::config::ChatSpec;
use crate::config::limits::{BROKER_TIMEOUT, SECRET_BACKOFF};
use crate::names;

/// How often rooms are checked for members of instances that died.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3);

/// One chat route: its settings, the broker and the message id counter.
#[derive(Debug)]
pub struct ChatRoute {
    pub(super) path: Arc<str>,
    pub(super) spec: ChatSpec,
    pub(super) broker: Broker,
    next_id: AtomicU64,
    /// Wrong moderator passwords per client address and in total.
    pub(super) backoff: Backoff,
}

/// Why an HTTP publish to a chat room was refused.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl ChatRoute {
    pub fn new(path: &str, spec: ChatSpec, broker: Broker) -> ChatRoute {
        ChatRoute {
            path: path.into(),
            spec,
            broker,
            next_id: AtomicU64::new(0),
            backoff: Backoff::new(SECRET_BACKOFF),
        }
    }

    /// Posts `text` into `room` as `from` (the HTTP publish endpoint): kept
    /// in history and delivered like a member's message. Returns how many
    /// local subscribers got it.
    pub async fn post(&self, room: &str, from: &str, text: &str) -> Result<usize, PostError> {
        check_room(room).map_err(|e| PostError::Invalid(e.to_string()))?;
        // Reserved names are allowed here: the caller holds the token.
        let from = names::visible(from)
            .map_err(|e| PostError::Invalid(format!("from: {e}")))?
            .display;
        let from = from.as_str();
        if text.chars().count() > self.spec.max_text {
            return Err(PostError::Invalid(format!(
                "text is longer than this route's max_text ({} characters)",
                self.spec.max_text
            )));
        }
        let topic = room_topic(&self.path, room);
        let message = self.message_json(room, from, text);
        bounded(
            self.broker
                .backend()
                .record(&topic, message.clone(), self.spec.history),
        )
        .await;
        Ok(self
            .broker
            .publish_paced(
                Envelope {
                    topic,
                    sender: 0,
                    payload: Payload::Text(message),
                },
                0,
            )
            .await)
    }

    /// Announces members of dead instances as gone, and presence changes
    /// other instances missed during a broker outage (shared backends
    /// only), until shutdown.
    pub async fn sweep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let prefix = format!("{}#", self.path);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            for topic in self.broker.hub().topics_with_prefix(&prefix) {
                let room = &topic[prefix.len()..];
                let gone =
                    match tokio::time::timeout(BROKER_TIMEOUT, self.broker.backend().sweep(&topic))
                        .await
                    {
                        Ok(gone) => gone,
                        Err(_) => continue,
                    };
                for username in gone {
                    tracing::info!(room, %username, "member of a stopped instance left the room");
                    let envelope = Envelope {
                        topic: topic.clone(),
                        sender: 0,
                        payload: Payload::Text(presence(room, "leave", &username)),
                    };
                    self.broker.publish_paced(envelope, 0).await;
                }
            }
            // Comings and goings missed during a broker outage: this
            // instance's to everyone in the room, the other instances' to
            // this instance's clients only (presence events are set updates,
            // so a member who already knew loses nothing).
            for change in self.broker.backend().presence_changes(&prefix) {
                let room = &change.topic[prefix.len()..];
                let event = if change.joined { "join" } else { "leave" };
                tracing::info!(room, username = %change.username, event, local_only = change.local_only, "announcing a presence change missed while the broker was unreachable");
                let envelope = Envelope {
                    topic: change.topic.as_str().into(),
                    sender: 0,
                    payload: Payload::Text(presence(room, event, &change.username)),
                };
                if change.local_only {
                    self.broker.hub().deliver(&envelope);
                } else {
                    self.broker.publish_paced(envelope, 0).await;
                }
            }
        }
    }

    /// A `message` event with a fresh id and the current time.
    pub(super) fn message_json(&self, room: &str, from: &str, text: &str) -> Utf8Bytes {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{:08x}-{n}", self.broker.instance().0 as u32);
        json!({
            "type": "message",
            "room": room,
            "from": from,
            "text": text,
            "id": id,
            "ts": now_ms(),
        })
        .to_string()
        .into()
    }
}
