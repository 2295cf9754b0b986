//! The `chat` route kind (docs/chat.md): rooms created on first join, names
//! unique per room, presence, history on join, a per-connection rate limit,
//! a text length limit and moderators (kick, mute, ban).
//!
//! Each connection is a [`ChatSession`], a session
//! [`Handler`](crate::session::Handler): it parses the
//! client's JSON, keeps the room state in the broker's backend (so it is
//! shared across instances with Redis) and subscribes to the room's topic;
//! deliveries from the room arrive through `next_outbound`. Socket limits,
//! pings and close handshakes stay in `crate::session`.

mod bounded;
mod bucket;
mod events;
mod identity;
mod route;
mod session;

pub use route::{ChatRoute, PostError};
pub use session::{CLOSE_BANNED, CLOSE_KICKED, ChatSession};

#[cfg(test)]
mod session_props;
