//! Property tests of the chat protocol (`session`): whatever a client
//! sends, in whatever order, every message gets at most one reply, each a
//! JSON object that is either a valid action's answer or an `error` with a
//! known code and a message, and the connection only ever closes with
//! 1008 and a reason; never a panic.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::ChatRoute;
use crate::broker::Broker;
use crate::config::ChatSpec;
use crate::names;
use crate::session::{Flow, Handler};

/// Every error code the protocol documents (docs/chat.md).
const ERROR_CODES: &[&str] = &[
    "bad_request",
    "bad_json",
    "rate_limited",
    "unknown_type",
    "already_joined",
    "invalid_room",
    "bad_name",
    "name_reserved",
    "name_taken",
    "banned",
    "not_joined",
    "muted",
    "too_long",
    "moderation_disabled",
    "bad_password",
    "not_moderator",
    "no_such_user",
    "unavailable",
];

/// Replies that answer a valid action.
const ANSWERS: &[&str] = &["joined", "left", "authenticated"];

/// JSON values of every type, small and large, valid and hostile.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(
            &[
                "lobby",
                "alice",
                "Alice",
                "ALICE",
                "server",
                "pw",
                "",
                " a",
                "a\u{200B}",
                "..",
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A request: a `type` (known, unknown or not a string) and fields.
fn request() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        6 => prop::sample::select(&["join", "message", "leave", "auth", "kick", "mute", "ban", "JOIN", "nope"][..])
            .prop_map(|s| Value::String(s.into())),
        1 => json_value(),
    ];
    let field =
        |name: &'static str| prop::option::weighted(0.7, json_value()).prop_map(move |v| (name, v));
    let known = |name: &'static str, values: &'static [&'static str]| {
        prop::option::weighted(
            0.7,
            prop::sample::select(values).prop_map(|s| Value::String(s.into())),
        )
        .prop_map(move |v| (name, v))
    };
    (
        prop::option::weighted(0.95, kind),
        known("room", &["lobby", "room-2", "bad room"]),
        known(
            "username",
            &["alice", "bob", "Alice", "server", "\u{202E}x"],
        ),
        known("password", &["pw", "wrong"]),
        field("text"),
        field("secs"),
        field("room"),
    )
        .prop_map(|(kind, room, user, password, text, secs, junk_room)| {
            let mut m = Map::new();
            if let Some(k) = kind {
                m.insert("type".into(), k);
            }
            for (name, v) in [room, user, password, text, secs] {
                if let Some(v) = v {
                    m.insert(name.into(), v);
                }
            }
            // Sometimes the room is any JSON value instead.
            if let (_, Some(v)) = junk_room
                && m.get("type").and_then(Value::as_str) == Some("message")
            {
                m.insert("room".into(), v);
            }
            Value::Object(m)
        })
}

/// What a client sends: requests, other JSON, JSON-like text, any text,
/// binary.
fn client_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        8 => request().prop_map(|v| Message::Text(v.to_string().into())),
        1 => json_value().prop_map(|v| Message::Text(v.to_string().into())),
        1 => prop::collection::vec(prop::sample::select(&["{", "}", "[", "]", "\"type\"", ":", ",", "\"join\"", "null", "1e999", "\"\\ud800\"", "-"][..]), 0..12)
            .prop_map(|v| Message::Text(v.concat().into())),
        1 => any::<String>().prop_map(|s| Message::Text(s.into())),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| Message::Binary(b.into())),
    ]
}

fn route() -> Arc<ChatRoute> {
    let spec = ChatSpec {
        // No rate limit in the way of the requests under test.
        rate: 1e9,
        burst: 1e9,
        max_text: 40,
        moderator_password: Some("pw".into()),
        ..ChatSpec::default()
    };
    Arc::new(ChatRoute::new("/chat", spec, Broker::memory()))
}

proptest! {
    #![proptest_config(crate::props::config(256))]

    /// Catches: a panic on any message or sequence of messages; a reply
    /// that is not JSON or has no known `type`; an error without a known
    /// code or a message; more than one reply to one message; a close
    /// other than 1008 with a reason; a `joined` name that is not the
    /// accepted form of the name asked for.
    #[test]
    fn every_message_gets_a_valid_answer(messages in prop::collection::vec(client_message(), 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let route = route();
            let mut session = route.session(IpAddr::V4(Ipv4Addr::LOCALHOST), None);
            for message in messages {
                let asked = match &message {
                    Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).ok(),
                    _ => None,
                };
                let mut replies = Vec::new();
                let flow = session.on_message(message, &mut replies).await;
                prop_assert!(replies.len() <= 1, "{replies:?}");
                for reply in &replies {
                    let Message::Text(text) = reply else {
                        return Err(TestCaseError::fail(format!("non-text reply {reply:?}")));
                    };
                    let v: Value = serde_json::from_str(text.as_str())
                        .map_err(|e| TestCaseError::fail(format!("reply not JSON ({e}): {text}")))?;
                    let kind = v["type"].as_str().unwrap_or_default();
                    if kind == "error" {
                        let code = v["code"].as_str().unwrap_or_default();
                        prop_assert!(ERROR_CODES.contains(&code), "unknown code: {text}");
                        prop_assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
                    } else {
                        prop_assert!(ANSWERS.contains(&kind), "unknown reply: {text}");
                    }
                    if kind == "joined" {
                        let asked_name = asked.as_ref().and_then(|a| a["username"].as_str()).unwrap_or_default();
                        let name = names::member(asked_name).map(|n| n.display);
                        prop_assert_eq!(Ok(v["username"].as_str().unwrap_or_default().to_string()), name);
                    }
                }
                if let Flow::Close(code, reason) = flow {
                    prop_assert_eq!(code, CloseCode::Policy);
                    prop_assert!(!reason.is_empty() && reason.len() <= 123, "{reason:?}");
                    break;
                }
            }
            session.finish().await;
            Ok(())
        })?;
    }
}

/// A binary message is answered with an error, not dropped.
#[test]
fn binary_messages_are_answered() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut session = route().session(IpAddr::V4(Ipv4Addr::LOCALHOST), None);
        let mut replies = Vec::new();
        let flow = session
            .on_message(Message::Binary(vec![1, 2].into()), &mut replies)
            .await;
        assert_eq!(flow, Flow::Continue);
        let v: Value = match &replies[..] {
            [Message::Text(t)] => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(v["code"], json!("bad_request"));
    });
}
