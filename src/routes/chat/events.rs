//! The chat protocol's small pieces: JSON events (errors, presence), field
//! access, room names, the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Room names: 1–64 of `A-Z a-z 0-9 _ - .` (the rule is in `crate::names`).
pub(super) use crate::names::room as check_room;

pub(super) fn error(code: &str, message: &str) -> Message {
    Message::Text(
        json!({"type": "error", "code": code, "message": message})
            .to_string()
            .into(),
    )
}

pub(super) fn presence(room: &str, event: &str, username: &str) -> Utf8Bytes {
    json!({"type": "presence", "room": room, "event": event, "username": username})
        .to_string()
        .into()
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms() {
        assert!(check_room("lobby-1.a_b").is_ok());
        assert!(check_room("").is_err());
        assert!(check_room("a b").is_err());
        assert!(check_room(&"x".repeat(65)).is_err());
    }
}
