//! The per-WebSocket rate limits (`--message-rate`, `--byte-rate` and the
//! routes' own, resolved in `config::rate`), one rule for the three drivers:
//! `session::run` (echo, chat, broadcast), the exec relay and the proxy
//! relay. Every data message the client sends, and every ping (wssd must
//! answer it), is charged before it is handled or forwarded; past the rate
//! and its burst the socket is closed at once with 1008 and a reason naming
//! the limit (`keepalive::CloseReason::RateExceeded`), and
//! `wssd_rate_limited_total{route,limit}` counts it. Only what the client
//! sends is limited: what the server, a program or an upstream sends is
//! bounded by backpressure and the send timeout instead.
//!
//! Each limit is a GCRA limiter from `governor` (a direct rate limiter, its
//! state one `AtomicU64`) on tokio's clock ([`TokioClock`], so it follows
//! the paused clock in tests like every other timer here); bytes are
//! charged with `check_n`. A session without limits holds an empty
//! [`Meter`]: one null pointer, nothing allocated.

use std::num::NonZeroU32;
use std::ops::Add;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::SessionLimits;
use crate::config::rate::{Exceeded, Rate, Unit};

/// The rate limiters of one WebSocket (none when its route has no limit).
pub struct Meter(Option<Box<Limiters>>);

/// The limits that are on, each with its numbers for the close reason.
struct Limiters {
    messages: Option<Limited>,
    bytes: Option<Limited>,
}

/// governor's clock on tokio's (a unit struct: nothing per limiter).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

/// A `tokio::time::Instant` as governor's time reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(Instant);

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, other: Nanos) -> TokioInstant {
        // Sums stay within centuries (a burst of u32::MAX at 1/s), so this
        // cannot overflow; if it did, it must not panic.
        let far = self.0.checked_add(std::time::Duration::from(other));
        TokioInstant(far.unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

struct Limited {
    limiter: Limiter,
    rate: Rate,
    unit: Unit,
}

impl Limited {
    fn new(rate: Rate, unit: Unit) -> Limited {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Limited {
            limiter: RateLimiter::direct_with_clock(quota, TokioClock),
            rate,
            unit,
        }
    }

    /// Charges `n` cells; a charge larger than the burst can never pass.
    fn charge(&self, n: u64) -> Result<(), Exceeded> {
        let exceeded = Exceeded {
            unit: self.unit,
            rate: self.rate,
        };
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 { Ok(()) } else { Err(exceeded) };
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(exceeded),
        }
    }
}

impl Meter {
    /// The limiters `limits` asks for; allocates only when one is on.
    pub fn new(limits: &SessionLimits) -> Meter {
        if limits.message_rate.is_none() && limits.byte_rate.is_none() {
            return Meter(None);
        }
        Meter(Some(Box::new(Limiters {
            messages: limits.message_rate.map(|r| Limited::new(r, Unit::Messages)),
            bytes: limits.byte_rate.map(|r| Limited::new(r, Unit::Bytes)),
        })))
    }

    /// No limits (the proxy's upstream leg).
    pub fn unlimited() -> Meter {
        Meter(None)
    }

    /// One whole message (or ping) of `len` bytes arrived.
    pub fn message(&self, len: usize) -> Result<(), Exceeded> {
        self.start_message()?;
        self.bytes(len as u64)
    }

    /// A message begins (the proxy charges it at its first frame, so a
    /// message over the rate is not forwarded at all).
    pub fn start_message(&self) -> Result<(), Exceeded> {
        match self.0.as_deref() {
            Some(Limiters {
                messages: Some(m), ..
            }) => m.charge(1),
            _ => Ok(()),
        }
    }

    /// `len` more payload bytes arrive (the proxy charges each data frame
    /// from its header, before forwarding it).
    pub fn bytes(&self, len: u64) -> Result<(), Exceeded> {
        match self.0.as_deref() {
            Some(Limiters { bytes: Some(b), .. }) => b.charge(len),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Limits;
    use crate::config::limits::RouteLimits;
    use crate::config::rate::SetBy;

    fn limits(messages: Option<(u32, u32)>, bytes: Option<(u32, u32)>) -> SessionLimits {
        let rate = |(r, b): (u32, u32)| Rate {
            per_second: NonZeroU32::new(r).unwrap(),
            burst: NonZeroU32::new(b).unwrap(),
            set_by: SetBy::Global,
        };
        SessionLimits {
            message_rate: messages.map(rate),
            byte_rate: bytes.map(rate),
            ..Limits::default().for_route(&RouteLimits::default(), false)
        }
    }

    #[test]
    fn off_costs_one_pointer_and_admits_everything() {
        assert_eq!(size_of::<Meter>(), size_of::<usize>());
        let m = Meter::new(&limits(None, None));
        assert!(m.0.is_none());
        for _ in 0..10_000 {
            assert!(m.message(1 << 20).is_ok());
        }
    }

    #[test]
    fn burst_passes_then_the_next_message_is_refused() {
        // 1 per second: the test is far faster than one second.
        let m = Meter::new(&limits(Some((1, 5)), None));
        for _ in 0..5 {
            assert!(m.message(10).is_ok());
        }
        let e = m.message(10).unwrap_err();
        assert_eq!(e.unit, Unit::Messages);
        assert_eq!(e.rate.burst.get(), 5);
    }

    #[test]
    fn bytes_are_charged_by_size() {
        let m = Meter::new(&limits(None, Some((1, 1000))));
        assert!(m.message(600).is_ok());
        assert!(m.message(0).is_ok());
        let e = m.message(600).unwrap_err();
        assert_eq!(e.unit, Unit::Bytes);
        // Larger than the burst (or than u32) can never pass.
        let m = Meter::new(&limits(None, Some((1, 1000))));
        assert!(m.bytes(1001).is_err());
        assert!(m.bytes(u64::MAX).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_refills_on_tokios_clock() {
        let m = Meter::new(&limits(Some((50, 1)), Some((1000, 1000))));
        assert!(m.message(1).is_ok());
        assert!(m.message(1).is_err());
        // One message per 20 ms at 50/s.
        tokio::time::advance(Duration::from_millis(19)).await;
        assert!(m.message(1).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(m.message(1).is_ok());
        // Bytes: 1000/s, so 0.5 s refills 500 of the 1000-byte burst.
        let b = Meter::new(&limits(None, Some((1000, 1000))));
        assert!(b.message(1000).is_ok());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.message(501).is_err());
        assert!(b.message(500).is_ok());
    }

    #[test]
    fn memory_per_session() {
        // Printed for the report: the cost of a session with both limits.
        let both = size_of::<Limiters>();
        eprintln!(
            "Meter {} B; with limits on, +{both} B on the heap",
            size_of::<Meter>()
        );
        assert!(both <= 160, "{both}");
    }
}
