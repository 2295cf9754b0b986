//! The Redis backend's fixed names, sizes and timings, and the timing
//! knobs tests shorten. A leaf: every other file of `redis` may use it.

use std::time::Duration;

/// The pub/sub channel every instance publishes to and subscribes on.
pub const CHANNEL: &str = "wssd:bus";
/// Encoded envelopes waiting for the publisher task; past this, `forward`
/// drops (and counts) instead of waiting.
pub const FORWARD_QUEUE: usize = 8192;
/// How long a member entry lives without a refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How often this instance rewrites its members' entries.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Lifetime of a room's keys after the last write (garbage collection of
/// rooms whose instances all died).
pub(super) const KEY_TTL: Duration = Duration::from_secs(3600);
/// How long after (re)connecting this instance waits before sweeping and
/// before announcing presence catch-up: long enough for the other
/// instances, which lost Redis at the same moment, to be back (their retry
/// is at most 5 s away) and hear it, and to re-register their
/// members before they could be swept as dead.
pub(super) const SETTLE: Duration = Duration::from_secs(6);

/// Timing knobs (the defaults are the constants above; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub(super) presence_ttl: Duration,
    pub(super) refresh_every: Duration,
    pub(super) settle: Duration,
}
