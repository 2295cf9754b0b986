//! The one WebSocket keepalive and the one close-reason table, shared by the
//! three drivers: `session::run` (echo, chat, broadcast), the exec relay and
//! the proxy relay (one keepalive per leg).
//!
//! `--ping-interval` means the same everywhere: a ping goes out every
//! interval, and a peer that sends no pong within one interval of the first
//! unanswered ping is closed with 1001 "ping timeout". `--idle-timeout`
//! closes with 1000 "idle timeout" after that long without a data message.
//! The drivers own the sockets; this type only keeps the clock.

use std::borrow::Cow;
use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::config::rate::Exceeded;

/// Far enough to mean "never" without overflowing `Instant`.
const NEVER: Duration = Duration::from_secs(86_400 * 365);

/// What a driver must do when [`Keepalive::next_deadline`] has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write a ping now.
    SendPing,
    /// Close the socket for this reason.
    Close(CloseReason),
}

/// The ping, pong and idle clocks of one WebSocket (or one proxy leg).
#[derive(Debug, Clone)]
pub struct Keepalive {
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    next_ping: Instant,
    /// Set while a ping waits for its pong.
    pong_deadline: Option<Instant>,
    idle_deadline: Instant,
}

impl Keepalive {
    /// Starts the clocks now; `None` turns a clock off.
    pub fn new(ping_interval: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        Self::starting_at(Instant::now(), ping_interval, idle_timeout)
    }

    fn starting_at(
        now: Instant,
        ping_interval: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Keepalive {
            ping_interval,
            idle_timeout,
            next_ping: now + ping_interval.unwrap_or(NEVER),
            pong_deadline: None,
            idle_deadline: now + idle_timeout.unwrap_or(NEVER),
        }
    }

    /// A pong arrived (any pong answers the outstanding ping).
    pub fn on_pong(&mut self) {
        self.pong_deadline = None;
    }

    /// A data message went through: the idle clock starts again.
    pub fn on_activity(&mut self) {
        // Per message on the hot path: read the clock only when it matters.
        if self.idle_timeout.is_some() {
            self.on_activity_at(Instant::now());
        }
    }

    fn on_activity_at(&mut self, now: Instant) {
        if let Some(d) = self.idle_timeout {
            self.idle_deadline = now + d;
        }
    }

    /// When [`fire`](Self::fire) next has something to say.
    pub fn next_deadline(&self) -> Instant {
        let ping = self
            .pong_deadline
            .map_or(self.next_ping, |p| p.min(self.next_ping));
        ping.min(self.idle_deadline)
    }

    /// What is due now, if anything: a missed pong first, then a ping, then
    /// the idle close. A ping is scheduled as sent when returned.
    pub fn fire(&mut self) -> Option<Action> {
        self.fire_while(true)
    }

    /// [`fire`](Self::fire) for a driver that may not be reading the socket
    /// (`reading` false: exec while the program's stdin is full), so a pong
    /// may wait unread: a missed pong then restarts its wait instead of
    /// closing.
    pub fn fire_while(&mut self, reading: bool) -> Option<Action> {
        self.fire_at(Instant::now(), reading)
    }

    fn fire_at(&mut self, now: Instant, reading: bool) -> Option<Action> {
        let Some(interval) = self.ping_interval else {
            return self.idle_due(now);
        };
        if self.pong_deadline.is_some_and(|p| now >= p) {
            if reading {
                return Some(Action::Close(CloseReason::PingTimeout));
            }
            self.pong_deadline = Some(now + interval);
            self.next_ping = now;
        }
        if now >= self.next_ping {
            if self.pong_deadline.is_none() {
                self.pong_deadline = Some(now + interval);
            }
            self.next_ping = now + interval;
            return Some(Action::SendPing);
        }
        self.idle_due(now)
    }

    fn idle_due(&self, now: Instant) -> Option<Action> {
        (now >= self.idle_deadline).then_some(Action::Close(CloseReason::Idle))
    }
}

/// Every close wssd itself starts, with its code and text in one table.
/// (Closes a route kind decides, such as chat's kicks, carry their own.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down (its route's stop signal, `stop`).
    Shutdown,
    /// A configuration reload changed the session's route, or removed it,
    /// and the grace ended (`stop`).
    RouteChanged,
    RouteRemoved,
    PingTimeout,
    Idle,
    /// The client accepted nothing for the send timeout.
    NotReading,
    /// Protocol errors and limits found while reading.
    ProtocolError,
    MessageTooBig,
    FrameTooBig,
    InvalidUtf8,
    MemoryBudget,
    Internal,
    // exec
    ProgramNotStarted,
    ProgramNotReading,
    TextOnly,
    OutputTooLong,
    ProgramLost,
    // proxy: what one leg is told about the other
    PeerProtocolError,
    PeerMessageTooBig,
    ClientGone,
    UpstreamNotReading,
    UpstreamLost,
    /// The client was closed for exceeding its rate (told to the upstream).
    PeerRateExceeded,
    /// The client sent faster than `--message-rate` or `--byte-rate` (or
    /// the route's own) allow; the text names the limit.
    RateExceeded(Exceeded),
}

impl CloseReason {
    /// The close code and reason text sent for this reason.
    pub fn frame(self) -> (CloseCode, &'static str) {
        use CloseCode::*;
        // 1014 (RFC 6455 registry: Bad Gateway) has no name in tungstenite.
        const BAD_GATEWAY: CloseCode = CloseCode::Bad(1014);
        match self {
            CloseReason::Shutdown => (Away, "server shutting down"),
            CloseReason::RouteChanged => (Away, "route changed by reload"),
            CloseReason::RouteRemoved => (Away, "route removed by reload"),
            CloseReason::PingTimeout => (Away, "ping timeout"),
            CloseReason::Idle => (Normal, "idle timeout"),
            CloseReason::NotReading => (Policy, "not reading"),
            CloseReason::ProtocolError => (Protocol, "protocol error"),
            CloseReason::MessageTooBig => (Size, "message too big"),
            CloseReason::FrameTooBig => (Size, "frame too big"),
            CloseReason::InvalidUtf8 => (Invalid, "invalid UTF-8 in text message"),
            CloseReason::MemoryBudget => (Again, "server busy: memory budget"),
            CloseReason::Internal => (Error, "internal error"),
            CloseReason::ProgramNotStarted => (Error, "could not start the program"),
            CloseReason::ProgramNotReading => (Error, "program not reading its input"),
            CloseReason::TextOnly => (Unsupported, "this route takes text messages"),
            CloseReason::OutputTooLong => {
                (Size, "program output line longer than max_message_size")
            }
            CloseReason::ProgramLost => (Error, "lost track of the program"),
            CloseReason::PeerProtocolError => (Away, "peer protocol error"),
            CloseReason::PeerMessageTooBig => (Size, "peer sent a message too big"),
            CloseReason::ClientGone => (Away, "client went away"),
            CloseReason::UpstreamNotReading => {
                (BAD_GATEWAY, "bad gateway: upstream not reading or lost")
            }
            CloseReason::UpstreamLost => (BAD_GATEWAY, "bad gateway: upstream connection lost"),
            CloseReason::PeerRateExceeded => (Away, "client closed: rate exceeded"),
            CloseReason::RateExceeded(_) => (Policy, "rate exceeded"),
        }
    }

    /// The numeric close code.
    pub fn code(self) -> u16 {
        u16::from(self.frame().0)
    }

    /// The reason text sent in the close frame (at most 123 bytes): the
    /// table's, or for a rate the limit with its numbers.
    pub fn text(self) -> Cow<'static, str> {
        match self {
            CloseReason::RateExceeded(exceeded) => Cow::Owned(exceeded.to_string()),
            other => Cow::Borrowed(other.frame().1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn ping_then_pong_deadline() {
        let t = Instant::now();
        let mut k = Keepalive::starting_at(t, Some(D), None);
        assert_eq!(k.fire_at(t, true), None);
        assert_eq!(k.next_deadline(), t + D);
        assert_eq!(k.fire_at(t + D, true), Some(Action::SendPing));
        assert_eq!(k.fire_at(t + D + D / 2, true), None);
        assert_eq!(k.next_deadline(), t + 2 * D);
        assert_eq!(
            k.fire_at(t + 2 * D, true),
            Some(Action::Close(CloseReason::PingTimeout))
        );
    }

    #[test]
    fn pong_clears_and_unread_pong_is_excused() {
        let t = Instant::now();
        let mut k = Keepalive::starting_at(t, Some(D), None);
        assert_eq!(k.fire_at(t + D, true), Some(Action::SendPing));
        k.on_pong();
        assert_eq!(k.fire_at(t + 2 * D, true), Some(Action::SendPing));
        // Not reading: the missed pong restarts its wait, with a new ping.
        assert_eq!(k.fire_at(t + 3 * D, false), Some(Action::SendPing));
        assert_eq!(
            k.fire_at(t + 4 * D, true),
            Some(Action::Close(CloseReason::PingTimeout))
        );
    }

    #[test]
    fn idle_restarts_on_activity() {
        let t = Instant::now();
        let mut k = Keepalive::starting_at(t, None, Some(D));
        k.on_activity_at(t + D / 2);
        assert_eq!(k.fire_at(t + D, true), None);
        assert_eq!(
            k.fire_at(t + D + D / 2, true),
            Some(Action::Close(CloseReason::Idle))
        );
    }

    #[test]
    fn close_table() {
        assert_eq!(CloseReason::UpstreamLost.code(), 1014);
        assert_eq!(CloseReason::PingTimeout.code(), 1001);
        assert_eq!(CloseReason::Idle.code(), 1000);
        assert_eq!(CloseReason::PeerMessageTooBig.code(), 1009);
        assert_eq!(CloseReason::NotReading.text(), "not reading");
        let rate = crate::config::rate::Rate {
            per_second: std::num::NonZeroU32::MIN,
            burst: std::num::NonZeroU32::MIN,
            set_by: crate::config::rate::SetBy::Route,
        };
        let exceeded = CloseReason::RateExceeded(Exceeded {
            unit: crate::config::rate::Unit::Bytes,
            rate,
        });
        assert_eq!(exceeded.code(), 1008);
        assert_eq!(
            exceeded.text(),
            "byte rate exceeded: 1 B/s, burst 1 B (route byte_rate)"
        );
    }
}
