//! Backoff on failed secret checks (moderator passwords, the publish
//! token): wrong guesses are counted per client address and in total, the
//! counts leak away over time, and once either is full further attempts are
//! refused *without* checking the secret, so guessing speed is bounded per
//! address and for the whole server whatever the number of connections or
//! addresses used.
//!
//! Each count is a leaky bucket: a failure adds one, the bucket drains at a
//! fixed rate, and an attempt is refused while the bucket holds `burst` or
//! more (the wait is how long it takes to drain below). Every attempt let
//! through is charged as a failure at once, under the same lock as the
//! check, so concurrent attempts cannot all slip in before any is counted;
//! a success refunds its charge and clears its address's bucket. IPv6 addresses count per /64
//! (one host usually owns a whole /64) and IPv4-mapped ones as IPv4.
//!
//! Memory is bounded: the per-address table holds at most `max_addresses`
//! entries; drained entries are dropped when space is needed, and when
//! none is drained the fullest-drained (lowest) one goes. Since only failures
//! that passed the global bucket insert, the table also cannot grow faster
//! than the global rate.
//!
//! Not `governor`: its keyed limiter does not bound its table (keys stay
//! until `retain_recent` is called), it has no "look without taking" for
//! refusing before the check while charging only failures, and the whole
//! thing here is two small buckets under one lock.
#![allow(
    clippy::disallowed_types,
    reason = "the leaky buckets count wall-clock time between guesses, in sync code and its tests"
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bounds of one [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Failures one address may make in a burst.
    pub per_ip_burst: f64,
    /// Failures per second one address may make in the long run.
    pub per_ip_rate: f64,
    /// Failures all addresses together may make in a burst.
    pub global_burst: f64,
    /// Failures per second all addresses together may make in the long run.
    pub global_rate: f64,
    /// Most addresses remembered at once.
    pub max_addresses: usize,
}

/// Failed attempts at one secret, per address and in total.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    global: Leaky,
    by_ip: HashMap<IpAddr, Leaky>,
}

/// Why an attempt is refused before the secret is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many wrong attempts from this address; try again in {} s", secs(.0))]
    Address(Duration),
    #[error("too many wrong attempts on this server; try again in {} s", secs(.0))]
    Global(Duration),
}

impl Refused {
    /// How long until an attempt would be checked again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Refused::Address(d) | Refused::Global(d) => *d,
        }
    }

    /// [`Self::retry_after`] in whole seconds, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        secs(&self.retry_after())
    }
}

fn secs(d: &Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            state: Mutex::new(State {
                global: Leaky::new(Instant::now()),
                by_ip: HashMap::new(),
            }),
        }
    }

    /// Whether an attempt from `ip` may be checked now; if so it is
    /// counted as a failure until [`Self::succeeded`] says otherwise.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), Refused> {
        self.attempt_at(ip, Instant::now())
    }

    /// The attempt from `ip` presented the right secret: its charge is
    /// refunded and the address's failures forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut s) = self.state.lock() {
            s.by_ip.remove(&key(ip));
            s.global.level = (s.global.level - 1.0).max(0.0);
        }
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.state.lock().map_or(0, |s| s.by_ip.len())
    }

    fn attempt_at(&self, ip: IpAddr, now: Instant) -> Result<(), Refused> {
        let p = self.policy;
        // A poisoned lock means a panic elsewhere: refuse rather than let
        // guesses through unchecked.
        let Ok(mut s) = self.state.lock() else {
            return Err(Refused::Global(Duration::from_secs(1)));
        };
        if let Some(entry) = s.by_ip.get_mut(&key(ip))
            && let Some(wait) = entry.wait(now, p.per_ip_rate, p.per_ip_burst)
        {
            return Err(Refused::Address(wait));
        }
        if let Some(wait) = s.global.wait(now, p.global_rate, p.global_burst) {
            return Err(Refused::Global(wait));
        }
        s.global.add(now, p.global_rate);
        let k = key(ip);
        if !s.by_ip.contains_key(&k) && s.by_ip.len() >= p.max_addresses {
            s.by_ip.retain(|_, e| e.level_at(now, p.per_ip_rate) > 0.0);
            if s.by_ip.len() >= p.max_addresses
                && let Some(lowest) = s
                    .by_ip
                    .iter()
                    .min_by(|a, b| {
                        let (x, y) = (
                            a.1.level_at(now, p.per_ip_rate),
                            b.1.level_at(now, p.per_ip_rate),
                        );
                        x.total_cmp(&y)
                    })
                    .map(|(ip, _)| *ip)
            {
                s.by_ip.remove(&lowest);
            }
        }
        s.by_ip
            .entry(k)
            .or_insert_with(|| Leaky::new(now))
            .add(now, p.per_ip_rate);
        Ok(())
    }
}

/// The address a client is counted under, by failures here and by the
/// per-IP connection rate (`crate::server::rate`): IPv4-mapped IPv6 as
/// IPv4, other IPv6 per /64 (one host usually owns a whole /64).
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A leaky bucket of failures.
#[derive(Debug, Clone, Copy)]
struct Leaky {
    level: f64,
    at: Instant,
}

impl Leaky {
    fn new(now: Instant) -> Leaky {
        Leaky {
            level: 0.0,
            at: now,
        }
    }

    fn level_at(&self, now: Instant, rate: f64) -> f64 {
        let drained = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        (self.level - drained).max(0.0)
    }

    fn add(&mut self, now: Instant, rate: f64) {
        self.level = self.level_at(now, rate) + 1.0;
        self.at = now;
    }

    /// `None` when below `burst`, else how long until it is.
    fn wait(&self, now: Instant, rate: f64, burst: f64) -> Option<Duration> {
        let level = self.level_at(now, rate);
        if level < burst {
            return None;
        }
        // Drain to just below `burst`, so the next attempt is checked.
        let excess = level - burst + 1e-6;
        Some(Duration::from_secs_f64(excess / rate.max(1e-9)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BackoffPolicy = BackoffPolicy {
        per_ip_burst: 3.0,
        per_ip_rate: 1.0,
        global_burst: 5.0,
        global_rate: 2.0,
        max_addresses: 4,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_burst_then_drains() {
        let b = Backoff::new(POLICY);
        let t = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(b.attempt_at(a, t), Ok(()));
        }
        let refused = b.attempt_at(a, t).unwrap_err();
        assert!(matches!(refused, Refused::Address(_)));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another address is still checked.
        assert_eq!(b.attempt_at(ip("192.0.2.2"), t), Ok(()));
        // One second drains one failure.
        assert_eq!(b.attempt_at(a, t + Duration::from_millis(1001)), Ok(()));
    }

    #[test]
    fn global_bound_holds_across_addresses() {
        let b = Backoff::new(POLICY);
        let t = Instant::now();
        for i in 0..5 {
            let a = ip(&format!("198.51.100.{i}"));
            assert_eq!(b.attempt_at(a, t), Ok(()));
        }
        assert!(matches!(
            b.attempt_at(ip("203.0.113.9"), t),
            Err(Refused::Global(_))
        ));
        assert_eq!(
            b.attempt_at(ip("203.0.113.9"), t + Duration::from_millis(501)),
            Ok(())
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_as_v4() {
        let b = Backoff::new(POLICY);
        let t = Instant::now();
        for i in 1..=3 {
            let _ = b.attempt_at(ip(&format!("2001:db8:1:2::{i}")), t);
        }
        assert!(b.attempt_at(ip("2001:db8:1:2::ffff"), t).is_err());
        assert!(b.attempt_at(ip("2001:db8:1:3::1"), t).is_ok());
        for _ in 0..3 {
            let _ = b.attempt_at(ip("::ffff:192.0.2.7"), t + Duration::from_secs(10));
        }
        assert!(
            b.attempt_at(ip("192.0.2.7"), t + Duration::from_secs(10))
                .is_err()
        );
    }

    #[test]
    fn table_is_bounded_and_success_clears() {
        let b = Backoff::new(BackoffPolicy {
            global_burst: 1e9,
            global_rate: 1e9,
            ..POLICY
        });
        let t = Instant::now();
        for i in 0..100 {
            let _ = b.attempt_at(ip(&format!("10.0.{}.{}", i / 250, i % 250)), t);
        }
        assert_eq!(b.tracked(), 4);
        let a = ip("10.9.9.9");
        let _ = b.attempt_at(a, t);
        let _ = b.attempt_at(a, t);
        let _ = b.attempt_at(a, t);
        assert!(b.attempt_at(a, t).is_err());
        b.succeeded(a);
        assert!(b.attempt_at(a, t).is_ok());
    }

    #[test]
    fn success_refunds_the_global_charge() {
        let b = Backoff::new(POLICY);
        let t = Instant::now();
        for i in 0..20 {
            let a = ip(&format!("192.0.2.{i}"));
            assert_eq!(b.attempt_at(a, t), Ok(()), "{i}");
            b.succeeded(a);
        }
    }
}
