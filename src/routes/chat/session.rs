//! One chat connection: the session [`Handler`] that parses the client's
//! JSON requests (join, message, leave, auth, kick, mute, ban) and relays
//! the room's deliveries.
#![allow(
    clippy::disallowed_types,
    reason = "rate and password-guess timing measure wall-clock time between a client's messages"
)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::bounded::bounded;
use super::bucket::Bucket;
use super::events::{check_room, error, now_ms, presence};
use super::identity;
use super::route::ChatRoute;
use crate::auth::Identity;
use crate::broker::{
    BrokerError, Control, Delivery, Envelope, JoinOutcome, Payload, Subscription, Topic, room_topic,
};
use crate::config::limits::{BROKER_TIMEOUT, MAX_BAD_PASSWORDS};
use crate::names;
use crate::secret::constant_time_eq;
use crate::session::{Flow, Handler, Outbound};

/// Close code for a kicked connection.
pub const CLOSE_KICKED: u16 = 4001;
/// Close code for a banned connection.
pub const CLOSE_BANNED: u16 = 4003;
/// Messages over the rate limit in a row (each answered with an error)
/// before the connection is closed with 1008.
const RATE_STRIKES: u32 = 3;
/// Least time between two moderator password attempts.
const AUTH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest mute.
const MAX_MUTE_SECS: u64 = 86_400;
/// Mute length when `secs` is not given.
const DEFAULT_MUTE_SECS: u64 = 60;

impl ChatRoute {
    /// A handler for one new connection from `ip`, authenticated as
    /// `identity` when the edge says so (a moderator from the start when
    /// the route's `moderators` or `moderator_claim` name it).
    pub fn session(self: &Arc<Self>, ip: IpAddr, identity: Option<&Identity>) -> ChatSession {
        ChatSession {
            route: self.clone(),
            ip,
            joined: None,
            moderator: identity::is_moderator(&self.spec, identity),
            identity: identity.cloned(),
            bucket: Bucket::new(self.spec.rate, self.spec.burst),
            strikes: 0,
            bad_passwords: 0,
            last_auth: None,
            muted_until_ms: 0,
        }
    }
}

/// The room a connection is in.
struct Joined {
    room: String,
    topic: Topic,
    /// As shown (NFC).
    username: String,
    /// As compared (`names::key`).
    key: String,
    sub: Subscription,
}

/// One chat connection.
pub struct ChatSession {
    route: Arc<ChatRoute>,
    /// The client's address, for the password backoff.
    ip: IpAddr,
    joined: Option<Joined>,
    moderator: bool,
    /// Who the edge says this connection is.
    identity: Option<Identity>,
    bucket: Bucket,
    strikes: u32,
    bad_passwords: u32,
    last_auth: Option<Instant>,
    muted_until_ms: u64,
}

impl Handler for ChatSession {
    async fn on_message(&mut self, message: Message, replies: &mut Vec<Message>) -> Flow {
        let text = match message {
            Message::Text(t) => t,
            Message::Binary(_) => {
                replies.push(error(
                    "bad_request",
                    "chat messages are JSON text; binary messages are not accepted",
                ));
                return Flow::Continue;
            }
            _ => return Flow::Continue,
        };
        if !self.bucket.take() {
            self.strikes += 1;
            if self.strikes >= RATE_STRIKES {
                return Flow::Close(CloseCode::Policy, "message rate limit exceeded".into());
            }
            replies.push(error(
                "rate_limited",
                &format!(
                    "too many messages: at most {} per second (bursts of {}); slow down or the connection will be closed",
                    self.route.spec.rate, self.route.spec.burst
                ),
            ));
            return Flow::Continue;
        }
        self.strikes = 0;
        let request = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                replies.push(error(
                    "bad_json",
                    r#"expected a JSON object, like {"type":"join","room":"lobby","username":"alice"}"#,
                ));
                return Flow::Continue;
            }
            Err(e) => {
                replies.push(error("bad_json", &format!("not valid JSON: {e}")));
                return Flow::Continue;
            }
        };
        let Some(kind) = request.get("type").and_then(Value::as_str) else {
            replies.push(error(
                "bad_request",
                r#"missing "type" (one of join, message, leave, auth, kick, mute, ban)"#,
            ));
            return Flow::Continue;
        };
        let reply = match kind {
            "join" => self.join(&request).await,
            "message" => self.message(&request).await,
            "leave" => self.leave_request().await,
            "auth" => match self.auth(&request) {
                Ok(reply) => Ok(reply),
                Err(Refusal::Close(reason)) => return Flow::Close(CloseCode::Policy, reason),
                Err(other) => Err(other),
            },
            "kick" | "mute" | "ban" => self.moderate(kind, &request).await,
            other => Err(Refusal::error(
                "unknown_type",
                format!(
                    "unknown type `{other}`; expected join, message, leave, auth, kick, mute or ban"
                ),
            )),
        };
        match reply {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => {}
            Err(Refusal::Error(code, message)) => replies.push(error(code, &message)),
            Err(Refusal::Close(reason)) => return Flow::Close(CloseCode::Policy, reason),
        }
        Flow::Continue
    }

    async fn next_outbound(&mut self) -> Outbound {
        loop {
            let Some(joined) = &mut self.joined else {
                return std::future::pending().await;
            };
            match joined.sub.recv().await {
                Delivery::Message(payload) => match payload {
                    Payload::Text(t) => return Outbound::Send(Message::Text(t)),
                    Payload::Binary(b) => return Outbound::Send(Message::Binary(b)),
                    Payload::Control(c) => {
                        if let Some(out) = self.apply(c) {
                            return out;
                        }
                    }
                },
                Delivery::Lagged => {
                    return Outbound::Close(CloseCode::Policy, "too slow: fell behind".into());
                }
                Delivery::Closed => return std::future::pending().await,
            }
        }
    }
}

/// A refused request: an error reply, or a reason to close with 1008.
enum Refusal {
    Error(&'static str, String),
    Close(String),
}

impl Refusal {
    fn error(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Error(code, message.into())
    }
}

impl From<BrokerError> for Refusal {
    fn from(e: BrokerError) -> Refusal {
        Refusal::error("unavailable", format!("{e}; try again"))
    }
}

type Reply = Result<Option<Message>, Refusal>;

impl ChatSession {
    async fn join(&mut self, request: &Map<String, Value>) -> Reply {
        if let Some(j) = &self.joined {
            return Err(Refusal::error(
                "already_joined",
                format!(
                    "already in room {} as {}; send {{\"type\":\"leave\"}} first",
                    j.room, j.username
                ),
            ));
        }
        // TinyChat's clients send no room: the route's `default_room`.
        let room = match request.get("room") {
            None => self.route.spec.default_room.as_str(),
            Some(_) => string_field(request, "room", "join")?,
        };
        let name = if self.route.spec.identity_username {
            check_room(room).map_err(|e| Refusal::error("invalid_room", e.to_string()))?;
            // The identity is the name; a `username` in the join is ignored
            // (the `joined` reply says which name is used).
            identity::username(self.identity.as_ref())
                .map_err(|(code, message)| Refusal::error(code, message))?
        } else {
            let username = string_field(request, "username", "join")?;
            check_room(room).map_err(|e| Refusal::error("invalid_room", e.to_string()))?;
            names::member(username).map_err(|e| Refusal::error(e.code(), e.to_string()))?
        };
        let username = name.display.as_str();
        let route = &self.route;
        let topic = room_topic(&route.path, room);
        // Subscribe before joining, so nothing sent after the join is missed.
        let sub = route.broker.subscribe(topic.clone(), &route.path);
        let (members, history) =
            match bounded(route.broker.backend().join(&topic, username)).await? {
                JoinOutcome::Joined { members, history } => (members, history),
                JoinOutcome::NameTaken => {
                    return Err(Refusal::error(
                        "name_taken",
                        format!("the name {username} is in use in room {room}; pick another"),
                    ));
                }
                JoinOutcome::Banned => {
                    return Err(Refusal::error(
                        "banned",
                        format!("the name {username} is banned from room {room}"),
                    ));
                }
            };
        let history: Vec<Value> = history
            .iter()
            .filter_map(|m| serde_json::from_str(m.as_str()).ok())
            .collect();
        let envelope = Envelope {
            topic: topic.clone(),
            sender: sub.id(),
            payload: Payload::Text(presence(room, "join", username)),
        };
        route.broker.publish_paced(envelope, sub.id()).await;
        let reply = json!({
            "type": "joined",
            "room": room,
            "username": username,
            "members": members,
            "history": history,
            "moderator": self.moderator,
        });
        self.joined = Some(Joined {
            room: room.to_string(),
            topic,
            username: username.to_string(),
            key: name.key.clone(),
            sub,
        });
        Ok(Some(Message::Text(reply.to_string().into())))
    }

    async fn message(&mut self, request: &Map<String, Value>) -> Reply {
        let Some(j) = &self.joined else {
            return Err(not_joined());
        };
        let now = now_ms();
        if self.muted_until_ms > now {
            let secs = (self.muted_until_ms - now).div_ceil(1000);
            return Err(Refusal::error(
                "muted",
                format!("a moderator muted you; you can write again in {secs} s"),
            ));
        }
        let text = string_field(request, "text", "message")?;
        let max = self.route.spec.max_text;
        if text.chars().count() > max {
            return Err(Refusal::error(
                "too_long",
                format!("text is longer than {max} characters; split it"),
            ));
        }
        let route = &self.route;
        let message = route.message_json(&j.room, &j.username, text);
        bounded(
            route
                .broker
                .backend()
                .record(&j.topic, message.clone(), route.spec.history),
        )
        .await;
        // The sender gets it too: that is its confirmation, with id and time.
        let envelope = Envelope {
            topic: j.topic.clone(),
            sender: 0,
            payload: Payload::Text(message),
        };
        route.broker.publish_paced(envelope, j.sub.id()).await;
        Ok(None)
    }

    async fn leave_request(&mut self) -> Reply {
        let Some(room) = self.joined.as_ref().map(|j| j.room.clone()) else {
            return Err(not_joined());
        };
        self.finish().await;
        Ok(Some(Message::Text(
            json!({"type": "left", "room": room}).to_string().into(),
        )))
    }

    fn auth(&mut self, request: &Map<String, Value>) -> Reply {
        let Some(expected) = &self.route.spec.moderator_password else {
            return Err(Refusal::error(
                "moderation_disabled",
                format!(
                    "no moderator password is configured; set {} for the server",
                    self.route.spec.moderator_password_env
                ),
            ));
        };
        let now = Instant::now();
        if self
            .last_auth
            .is_some_and(|t| now.duration_since(t) < AUTH_INTERVAL)
        {
            return Err(Refusal::error(
                "rate_limited",
                "one moderator password attempt per second",
            ));
        }
        self.last_auth = Some(now);
        let password = string_field(request, "password", "auth")?;
        // Past the per-address or global bound, the password is not even
        // compared: guessing speed does not grow with connections.
        if let Err(refused) = self.route.backoff.attempt(self.ip) {
            crate::metrics::guess_refused("moderator_password");
            return Err(Refusal::error(
                "rate_limited",
                format!("{refused} (moderator password not checked)"),
            ));
        }
        if constant_time_eq(password.as_bytes(), expected.as_bytes()) {
            self.route.backoff.succeeded(self.ip);
            self.moderator = true;
            return Ok(Some(Message::Text(
                json!({"type": "authenticated", "moderator": true})
                    .to_string()
                    .into(),
            )));
        }
        self.bad_passwords += 1;
        if self.bad_passwords >= MAX_BAD_PASSWORDS {
            return Err(Refusal::Close("too many wrong moderator passwords".into()));
        }
        Err(Refusal::error(
            "bad_password",
            format!(
                "wrong moderator password ({} of {MAX_BAD_PASSWORDS} attempts)",
                self.bad_passwords
            ),
        ))
    }

    async fn moderate(&mut self, action: &str, request: &Map<String, Value>) -> Reply {
        if !self.moderator {
            return Err(Refusal::error(
                "not_moderator",
                format!(
                    "{action} needs a moderator; send {{\"type\":\"auth\",\"password\":\"...\"}} first"
                ),
            ));
        }
        let Some(j) = &self.joined else {
            return Err(not_joined());
        };
        let target = string_field(request, "username", action)?;
        let target_key = names::key(target);
        if target_key == j.key {
            return Err(Refusal::error(
                "bad_request",
                format!("a moderator cannot {action} themself"),
            ));
        }
        let secs = match request.get("secs") {
            None | Some(Value::Null) => DEFAULT_MUTE_SECS,
            Some(v) => match v.as_u64() {
                Some(s) if (1..=MAX_MUTE_SECS).contains(&s) => s,
                _ => {
                    return Err(Refusal::error(
                        "bad_request",
                        format!("secs must be a whole number from 1 to {MAX_MUTE_SECS}"),
                    ));
                }
            },
        };
        let route = &self.route;
        let backend = route.broker.backend();
        // Kick and mute need the target present; a ban may come first.
        // Names are matched by key: `Alice` finds `alice`.
        let members = match bounded(backend.members(&j.topic)).await {
            Ok(members) => members,
            Err(e) if action != "ban" => return Err(e.into()),
            Err(_) => Vec::new(),
        };
        let present = members.into_iter().find(|m| names::key(m) == target_key);
        let target = match present {
            Some(member) => member,
            None if action == "ban" => target.to_string(),
            None => {
                return Err(Refusal::error(
                    "no_such_user",
                    format!("{target} is not in room {}", j.room),
                ));
            }
        };
        let target = target.as_str();
        let mut event = json!({
            "type": "moderation",
            "room": j.room,
            "action": action,
            "username": target,
            "by": j.username,
        });
        let control = match action {
            "kick" => Control::Kick {
                username: target.into(),
            },
            "ban" => {
                bounded(backend.ban(&j.topic, target)).await;
                Control::Ban {
                    username: target.into(),
                }
            }
            _ => {
                event["secs"] = secs.into();
                Control::Mute {
                    username: target.into(),
                    until_ms: now_ms() + secs * 1000,
                }
            }
        };
        tracing::info!(room = %j.room, by = %j.username, %target, action, "moderation");
        for payload in [
            Payload::Text(event.to_string().into()),
            Payload::Control(control),
        ] {
            let envelope = Envelope {
                topic: j.topic.clone(),
                sender: 0,
                payload,
            };
            route.broker.publish_paced(envelope, j.sub.id()).await;
        }
        Ok(None)
    }

    /// Carries out a moderation order if it names this connection.
    fn apply(&mut self, control: Control) -> Option<Outbound> {
        let me = &self.joined.as_ref()?.key;
        let is_me = |username: &str| names::key(username) == *me;
        match control {
            Control::Kick { username } if is_me(&username) => Some(Outbound::Close(
                CloseCode::from(CLOSE_KICKED),
                "kicked by a moderator".into(),
            )),
            Control::Ban { username } if is_me(&username) => Some(Outbound::Close(
                CloseCode::from(CLOSE_BANNED),
                "banned from this room".into(),
            )),
            Control::Mute { username, until_ms } if is_me(&username) => {
                self.muted_until_ms = until_ms;
                None
            }
            _ => None,
        }
    }

    /// Leaves the room, if in one: frees the name and tells the others.
    /// Called on `leave` and when the connection ends, however it ends.
    pub async fn finish(&mut self) {
        let Some(j) = self.joined.take() else {
            return;
        };
        let broker = &self.route.broker;
        let _ = tokio::time::timeout(
            BROKER_TIMEOUT,
            broker.backend().leave(&j.topic, &j.username),
        )
        .await;
        let envelope = Envelope {
            topic: j.topic.clone(),
            sender: j.sub.id(),
            payload: Payload::Text(presence(&j.room, "leave", &j.username)),
        };
        broker.publish_paced(envelope, j.sub.id()).await;
    }
}

fn string_field<'a>(
    request: &'a Map<String, Value>,
    field: &str,
    kind: &str,
) -> Result<&'a str, Refusal> {
    request.get(field).and_then(Value::as_str).ok_or_else(|| {
        Refusal::error(
            "bad_request",
            format!("{kind} needs \"{field}\" (a string)"),
        )
    })
}

fn not_joined() -> Refusal {
    Refusal::error(
        "not_joined",
        r#"not in a room; send {"type":"join","room":"...","username":"..."} first"#,
    )
}
