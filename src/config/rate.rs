//! The per-WebSocket rate limits as configured: `--message-rate`/`--message-burst`
//! and `--byte-rate`/`--byte-burst` globally, `message_rate`, `message_burst`,
//! `byte_rate` and `byte_burst` per route, resolved into one [`Rate`] per
//! limit for each route. The drivers enforce them through `crate::rates`.
//!
//! Resolution, per limit (messages, bytes) and route:
//! - the route's rate, when it sets one: 0 turns the limit off on this
//!   route; otherwise its burst is the route's burst, else the default;
//! - else the global rate (off unless given), with the route's burst, else
//!   the global burst, else the default.
//!
//! Default bursts: twice the rate for messages; for bytes, twice the rate
//! but never less than the route's `max_message_size` (a message the size
//! limit admits must be able to pass a full bucket). An explicit byte burst
//! smaller than the message size limit is a configuration error
//! (`route_list` and `limits_section` check it).

use std::fmt;
use std::num::NonZeroU32;

use super::error::RouteSpecError;

/// How many bursts' worth of the rate a default burst is.
pub const DEFAULT_BURST_FACTOR: u32 = 2;

/// Where a limit's numbers came from, for the close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    /// The global option (`--message-rate`, `--byte-rate`).
    Global,
    /// The route's own key (`message_rate`, `byte_rate`, or a burst).
    Route,
}

/// One rate limit of one route: `per_second` sustained, `burst` at once
/// (messages, or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
    pub set_by: SetBy,
}

/// What a rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Messages,
    Bytes,
}

impl Unit {
    /// The metric label (`wssd_rate_limited_total{limit=...}`).
    pub fn label(self) -> &'static str {
        match self {
            Unit::Messages => "messages",
            Unit::Bytes => "bytes",
        }
    }

    /// The option that sets it, as the close reason names it.
    fn option(self, set_by: SetBy) -> &'static str {
        match (self, set_by) {
            (Unit::Messages, SetBy::Global) => "--message-rate",
            (Unit::Messages, SetBy::Route) => "route message_rate",
            (Unit::Bytes, SetBy::Global) => "--byte-rate",
            (Unit::Bytes, SetBy::Route) => "route byte_rate",
        }
    }
}

/// A limit that was exceeded, as the close reason describes it:
/// `message rate exceeded: 50/s, burst 100 (--message-rate)`. At most 80
/// bytes (close reasons may have 123).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub unit: Unit,
    pub rate: Rate,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Rate {
            per_second, burst, ..
        } = self.rate;
        let option = self.unit.option(self.rate.set_by);
        match self.unit {
            Unit::Messages => write!(
                f,
                "message rate exceeded: {per_second}/s, burst {burst} ({option})"
            ),
            Unit::Bytes => write!(
                f,
                "byte rate exceeded: {per_second} B/s, burst {burst} B ({option})"
            ),
        }
    }
}

/// A global limit as given: the rate (`None`: off) and an explicit burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSetting {
    pub per_second: Option<NonZeroU32>,
    pub burst: Option<NonZeroU32>,
}

/// A route's override of one limit: `rate` `Some(0)` turns it off there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateOverride {
    pub per_second: Option<u32>,
    pub burst: Option<NonZeroU32>,
}

impl RateOverride {
    /// Whether the route says anything about this limit.
    pub fn is_set(&self) -> bool {
        self.per_second.is_some() || self.burst.is_some()
    }
}

/// The limit a route runs with; `min_burst` is the smallest default burst
/// (the route's message size, for bytes; 1 for messages).
pub fn resolve(global: RateSetting, route: RateOverride, min_burst: usize) -> Option<Rate> {
    let default_burst = |rate: NonZeroU32| {
        let floor = u32::try_from(min_burst).unwrap_or(u32::MAX);
        let burst = rate.get().saturating_mul(DEFAULT_BURST_FACTOR).max(floor);
        NonZeroU32::new(burst).unwrap_or(rate)
    };
    match route.per_second {
        Some(n) => {
            let per_second = NonZeroU32::new(n)?;
            Some(Rate {
                per_second,
                burst: route.burst.unwrap_or_else(|| default_burst(per_second)),
                set_by: SetBy::Route,
            })
        }
        None => {
            let per_second = global.per_second?;
            let (burst, set_by) = match (route.burst, global.burst) {
                (Some(b), _) => (b, SetBy::Route),
                (None, Some(b)) => (b, SetBy::Global),
                (None, None) => (default_burst(per_second), SetBy::Global),
            };
            Some(Rate {
                per_second,
                burst,
                set_by,
            })
        }
    }
}

/// A `[[route]]` table's rate keys (`message_rate`, `message_burst`,
/// `byte_rate`, `byte_burst`, in that order) as the route's overrides of
/// messages and bytes. They apply to WebSocket routes only; a burst of 0
/// is refused (a rate of 0 is the way to turn a limit off).
pub fn route_overrides(
    keys: [Option<u32>; 4],
    place: &str,
    websocket: bool,
) -> Result<(RateOverride, RateOverride), RouteSpecError> {
    const NAMES: [&str; 4] = ["message_rate", "message_burst", "byte_rate", "byte_burst"];
    if let Some((key, _)) = NAMES
        .iter()
        .zip(keys)
        .find(|(_, v)| v.is_some() && !websocket)
    {
        return Err(RouteSpecError::Misplaced {
            place: place.into(),
            key,
            kinds: "WebSocket (echo, chat, broadcast, exec, proxy)",
        });
    }
    let [message_rate, message_burst, byte_rate, byte_burst] = keys;
    let burst = |value: Option<u32>, key: &'static str, rate_key: &'static str| match value {
        Some(0) => Err(RouteSpecError::ZeroRateBurst {
            place: place.into(),
            key,
            rate_key,
        }),
        other => Ok(other.and_then(NonZeroU32::new)),
    };
    Ok((
        RateOverride {
            per_second: message_rate,
            burst: burst(message_burst, "message_burst", "message_rate")?,
        },
        RateOverride {
            per_second: byte_rate,
            burst: burst(byte_burst, "byte_burst", "byte_rate")?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn global_applies_with_default_burst() {
        let g = RateSetting {
            per_second: Some(nz(50)),
            burst: None,
        };
        let r = resolve(g, RateOverride::default(), 1).unwrap();
        assert_eq!((r.per_second.get(), r.burst.get()), (50, 100));
        assert_eq!(r.set_by, SetBy::Global);
        assert_eq!(
            resolve(RateSetting::default(), RateOverride::default(), 1),
            None
        );
    }

    #[test]
    fn byte_default_burst_covers_a_whole_message() {
        let g = RateSetting {
            per_second: Some(nz(1000)),
            burst: None,
        };
        let r = resolve(g, RateOverride::default(), 65_536).unwrap();
        assert_eq!(r.burst.get(), 65_536);
        let huge = resolve(g, RateOverride::default(), usize::MAX).unwrap();
        assert_eq!(huge.burst.get(), u32::MAX);
    }

    #[test]
    fn route_overrides_win_and_zero_turns_off() {
        let g = RateSetting {
            per_second: Some(nz(10)),
            burst: Some(nz(15)),
        };
        let higher = RateOverride {
            per_second: Some(1000),
            burst: None,
        };
        let r = resolve(g, higher, 1).unwrap();
        assert_eq!((r.per_second.get(), r.burst.get()), (1000, 2000));
        assert_eq!(r.set_by, SetBy::Route);
        let off = RateOverride {
            per_second: Some(0),
            burst: None,
        };
        assert_eq!(resolve(g, off, 1), None);
        let burst_only = RateOverride {
            per_second: None,
            burst: Some(nz(40)),
        };
        let r = resolve(g, burst_only, 1).unwrap();
        assert_eq!((r.per_second.get(), r.burst.get()), (10, 40));
        let on_route_only = resolve(RateSetting::default(), higher, 1).unwrap();
        assert_eq!(on_route_only.per_second.get(), 1000);
        // The global burst belongs to the global rate.
        assert_eq!(
            resolve(g, RateOverride::default(), 1).unwrap().burst.get(),
            15
        );
    }

    #[test]
    fn route_keys_checked() {
        let (m, b) = route_overrides([Some(0), None, Some(9), Some(20)], "r", true).unwrap();
        assert_eq!(m.per_second, Some(0));
        assert_eq!((b.per_second, b.burst), (Some(9), Some(nz(20))));
        let zero = route_overrides([None, Some(0), None, None], "r", true).unwrap_err();
        assert!(zero.to_string().contains("message_rate = 0"), "{zero}");
        let static_route = route_overrides([None, None, Some(1), None], "r", false).unwrap_err();
        assert!(
            static_route.to_string().contains("`byte_rate`"),
            "{static_route}"
        );
    }

    #[test]
    fn reasons_fit_a_close_frame() {
        let worst = Rate {
            per_second: nz(u32::MAX),
            burst: nz(u32::MAX),
            set_by: SetBy::Route,
        };
        for unit in [Unit::Messages, Unit::Bytes] {
            let text = Exceeded { unit, rate: worst }.to_string();
            assert!(text.len() <= 123, "{text}");
        }
        let r = Rate {
            per_second: nz(50),
            burst: nz(100),
            set_by: SetBy::Global,
        };
        assert_eq!(
            Exceeded {
                unit: Unit::Messages,
                rate: r
            }
            .to_string(),
            "message rate exceeded: 50/s, burst 100 (--message-rate)"
        );
    }
}
