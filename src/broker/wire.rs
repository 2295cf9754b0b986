//! Wire format of an envelope between instances:
//! `b"W1"`, instance (8 bytes LE), kind (1 byte: 0 text, 1 binary, 2 control),
//! topic length (2 bytes LE), topic, payload. Control payloads are JSON.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::backend::BrokerError;
use super::envelope::{Control, Envelope, InstanceId, Payload};

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
    let topic = std::str::from_utf8(&rest[..topic_len]).map_err(|_| bad("topic is not UTF-8"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::envelope::room_topic;

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
            let (got_id, got) = decode(&encode(id, &env)).unwrap();
            assert_eq!(got_id, id);
            assert_eq!(got.topic, env.topic);
            assert_eq!(got.sender, 0);
            assert_eq!(got.payload, env.payload);
        }
    }

    #[test]
    fn wire_rejects_garbage() {
        assert!(decode(b"").is_err());
        assert!(decode(b"XX0123456789abc").is_err());
        let mut ok = encode(
            InstanceId(1),
            &Envelope {
                topic: "/t".into(),
                sender: 0,
                payload: Payload::Text("x".into()),
            },
        );
        ok[10] = 9;
        assert!(decode(&ok).is_err());
    }
}
