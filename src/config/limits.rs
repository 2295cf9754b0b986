//! Every number that bounds a connection: sizes, counts and timeouts,
//! resolved once from configuration (`limits_section`; the defaults of the
//! options are in `defaults`), and the fixed ones beside them.

use std::num::NonZeroU32;
use std::time::Duration;

use super::error::SecondsError;
use super::rate::{Rate, RateOverride, RateSetting, resolve};

// The defaults of the global limit options live in `defaults` (one table);
// these names stay for the modules that read them.
pub use super::defaults::{
    DRAIN_TIMEOUT as DEFAULT_DRAIN_TIMEOUT, HANDSHAKE_TIMEOUT as DEFAULT_HANDSHAKE_TIMEOUT,
    MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP as DEFAULT_MAX_CONNECTIONS_PER_IP,
    MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE, MEMORY_BUDGET as DEFAULT_MEMORY_BUDGET,
    PING_INTERVAL as DEFAULT_PING_INTERVAL, SEND_TIMEOUT as DEFAULT_SEND_TIMEOUT,
};

/// Default largest message on `broadcast` and `chat` routes (and their HTTP
/// publish bodies): 1 MiB. Fan-out routes carry notifications, not files; a
/// route that needs more sets its own `max_message_size`.
pub const DEFAULT_FANOUT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// WebSocket read buffer per connection while it receives (tungstenite
/// allocates it with the codec; sessions drop the codec while idle:
/// `session::link`).
pub const READ_BUFFER_SIZE: usize = 4 * 1024;
/// Bytes tungstenite collects before writing to the socket.
/// Batches of small messages (fan-out bursts, pipelined echoes) go out in
/// one TLS record and one write; the buffer is only allocated once a
/// connection sends, so idle connections do not pay for it.
pub const WRITE_BUFFER_SIZE: usize = 4 * 1024;
/// Largest HTTP request head hyper buffers.
pub const MAX_HTTP_BUFFER: usize = 16 * 1024;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 64;
/// Ciphertext rustls may queue per connection before writes wait: one
/// full TLS record's plaintext (16 KiB) plus the largest WebSocket frame
/// header (14 bytes), so a frame of up to 16 KiB is taken in one write and
/// leaves in one `writev` (at exactly 16 KiB, rustls took the payload and
/// left the header's bytes for a second record, a second write and a
/// second segment).
pub const TLS_BUFFER_LIMIT: usize = 16 * 1024 + 14;
/// Time allowed for the closing handshake once a close frame was sent.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// TCP connections above `max_connections` that may be in their handshake
/// at once (they get a 503 if they ask for a WebSocket past the limit).
pub const HANDSHAKE_HEADROOM: usize = 256;
/// Messages queued for one chat/broadcast subscriber; a subscriber whose
/// queue is full when a message arrives is closed with 1008.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Bytes queued for one chat/broadcast subscriber (the shared payloads it
/// still holds). An empty queue always admits a message; past this a
/// subscriber is treated like one whose queue is full.
pub const SUBSCRIBER_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Longest a publisher waits for subscribers with full queues before they
/// are cut off (a subscriber that keeps up is never cut; one that stopped
/// reading delays the publisher at most this long, once).
pub const SUBSCRIBER_STALL: Duration = Duration::from_millis(500);
/// Default chat history kept per room and sent on join.
pub const DEFAULT_CHAT_HISTORY: usize = 50;
/// Default longest chat message text, in characters.
pub const DEFAULT_CHAT_MAX_TEXT: usize = 2000;
/// Default sustained chat messages per second per connection.
pub const DEFAULT_CHAT_RATE: f64 = 5.0;
/// Default chat message burst per connection.
pub const DEFAULT_CHAT_BURST: f64 = 10.0;
/// The room a chat `join` without `room` goes to (TinyChat's clients send none).
pub const DEFAULT_CHAT_ROOM: &str = "lobby";
/// Wrong moderator passwords before the connection is closed with 1008.
pub const MAX_BAD_PASSWORDS: u32 = 5;
/// Backoff on wrong moderator passwords and publish tokens (per secret):
/// 5 wrong guesses from one address, then one per 5 s; 20 from all
/// addresses together, then 2 per second; past either, attempts are
/// refused unchecked. At most 4096 addresses remembered.
pub const SECRET_BACKOFF: crate::backoff::BackoffPolicy = crate::backoff::BackoffPolicy {
    per_ip_burst: 5.0,
    per_ip_rate: 0.2,
    global_burst: 20.0,
    global_rate: 2.0,
    max_addresses: 4096,
};
/// Longest a chat request may wait for the shared room state (Redis).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Global limits, resolved from configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub handshake_timeout: Duration,
    /// `None` when pings are off.
    pub ping_interval: Option<Duration>,
    /// `None` when there is no idle timeout.
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    /// Global budget for received and queued message bytes.
    pub memory_budget: usize,
    /// Longest a write may make no progress (never off).
    pub send_timeout: Duration,
    /// `--message-rate`/`--message-burst` (off by default).
    pub message_rate: RateSetting,
    /// `--byte-rate`/`--byte-burst` (off by default).
    pub byte_rate: RateSetting,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            idle_timeout: super::defaults::IDLE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            message_rate: RateSetting {
                per_second: super::defaults::MESSAGE_RATE.and_then(NonZeroU32::new),
                burst: None,
            },
            byte_rate: RateSetting {
                per_second: super::defaults::BYTE_RATE.and_then(NonZeroU32::new),
                burst: None,
            },
        }
    }
}

/// Per-route overrides; `None` means "use the global value". For the two
/// timeouts, `Some(None)` means "off on this route".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteLimits {
    pub max_message_size: Option<usize>,
    pub ping_interval: Option<Option<Duration>>,
    pub idle_timeout: Option<Option<Duration>>,
    /// `message_rate`/`message_burst` of the route.
    pub message_rate: RateOverride,
    /// `byte_rate`/`byte_burst` of the route.
    pub byte_rate: RateOverride,
}

/// The limits one WebSocket session runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionLimits {
    pub max_message_size: usize,
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// Longest a write may make no progress before the peer is closed.
    pub send_timeout: Duration,
    /// Messages the client may send (`None`: no limit).
    pub message_rate: Option<Rate>,
    /// Message bytes the client may send (`None`: no limit).
    pub byte_rate: Option<Rate>,
}

impl Limits {
    /// Applies a route's overrides to the global limits. Fan-out routes
    /// (`broadcast`, `chat`) without their own `max_message_size` take the
    /// smaller of the global one and [`DEFAULT_FANOUT_MAX_MESSAGE_SIZE`].
    pub fn for_route(&self, route: &RouteLimits, fanout: bool) -> SessionLimits {
        let default_size = if fanout {
            self.max_message_size.min(DEFAULT_FANOUT_MAX_MESSAGE_SIZE)
        } else {
            self.max_message_size
        };
        let max_message_size = route.max_message_size.unwrap_or(default_size);
        SessionLimits {
            max_message_size,
            ping_interval: route.ping_interval.unwrap_or(self.ping_interval),
            idle_timeout: route.idle_timeout.unwrap_or(self.idle_timeout),
            send_timeout: self.send_timeout,
            message_rate: resolve(self.message_rate, route.message_rate, 1),
            byte_rate: resolve(self.byte_rate, route.byte_rate, max_message_size),
        }
    }
}

/// Converts a number of seconds from configuration; 0 means off (`None`).
pub fn seconds(value: f64, place: &str, key: &str) -> Result<Option<Duration>, SecondsError> {
    if !value.is_finite() || !(0.0..=31_536_000.0).contains(&value) {
        return Err(SecondsError {
            place: place.to_string(),
            key: key.to_string(),
            value,
        });
    }
    if value == 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs_f64(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_overrides_apply() {
        let global = Limits::default();
        let route = RouteLimits {
            max_message_size: Some(10),
            ping_interval: Some(None),
            idle_timeout: None,
            ..RouteLimits::default()
        };
        let s = global.for_route(&route, true);
        assert_eq!(s.max_message_size, 10);
        assert_eq!(s.ping_interval, None);
        assert_eq!(s.idle_timeout, None);
        let plain = RouteLimits::default();
        assert_eq!(
            global.for_route(&plain, true).max_message_size,
            DEFAULT_FANOUT_MAX_MESSAGE_SIZE
        );
        assert_eq!(
            global.for_route(&plain, false).max_message_size,
            DEFAULT_MAX_MESSAGE_SIZE
        );
    }

    #[test]
    fn rates_off_by_default_and_byte_burst_follows_the_route_size() {
        let mut global = Limits::default();
        let s = global.for_route(&RouteLimits::default(), false);
        assert_eq!((s.message_rate, s.byte_rate), (None, None));
        global.byte_rate.per_second = NonZeroU32::new(1000);
        let fanout = global.for_route(&RouteLimits::default(), true);
        assert_eq!(
            fanout.byte_rate.map(|r| r.burst.get() as usize),
            Some(DEFAULT_FANOUT_MAX_MESSAGE_SIZE)
        );
        let small = RouteLimits {
            max_message_size: Some(100),
            ..RouteLimits::default()
        };
        assert_eq!(
            global
                .for_route(&small, false)
                .byte_rate
                .map(|r| r.burst.get()),
            Some(2000)
        );
    }

    #[test]
    fn seconds_validates() {
        assert_eq!(seconds(0.0, "x", "k").unwrap(), None);
        assert_eq!(
            seconds(1.5, "x", "k").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert!(
            seconds(-1.0, "x", "k")
                .unwrap_err()
                .to_string()
                .contains("`k`")
        );
    }
}
