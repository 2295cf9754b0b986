//! The per-IP new-connection rate (`--connection-rate-per-ip N`, burst
//! 2N): `governor`'s keyed GCRA limiter, with the bounds the crate leaves
//! to its users (boinkor-net/governor#171):
//!
//! - keys are client addresses, IPv4-mapped IPv6 as IPv4 and IPv6 per /64
//!   (one host usually owns a whole /64, so rotating inside it gains
//!   nothing);
//! - the table is swept by one timer ([`ConnectionRate::sweep`], every
//!   second from the admission upkeep): keys whose bucket is full again
//!   (unused for burst/rate = 2 s) are dropped and the map shrunk, and its
//!   size is exported as the `wssd_connection_rate_addresses` gauge;
//! - it never holds more than [`MAX_ADDRESSES`] keys: past that, an address
//!   it does not know is let through unremembered (the per-IP and total
//!   caps still apply). Filling it takes that many distinct addresses (or
//!   /64s) within about three seconds; refusing every unknown address then
//!   would let such an attacker lock out every new visitor.
//!
//! The limiter runs on tokio's clock ([`TokioClock`], as the per-WebSocket
//! limiters of `crate::rates` do): one clock for every timer in the house,
//! so tests on paused time see buckets refill.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

use crate::rates::{TokioClock, TokioInstant};

/// Most client addresses remembered at once (a few MiB at most).
pub const MAX_ADDRESSES: usize = 65_536;

/// The keyed table, shared between the limiter and [`ConnectionRate`]
/// (which needs `len` and `contains_key` to enforce the cap).
type Table = Arc<DashMapStateStore<IpAddr>>;

/// A [`StateStore`] over a shared table, so the cap can be checked
/// outside the limiter.
#[derive(Debug)]
struct Shared(Table);

impl StateStore for Shared {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for Shared {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// New connections per second per client address.
#[derive(Debug)]
pub struct ConnectionRate {
    limiter: RateLimiter<IpAddr, Shared, TokioClock, NoOpMiddleware<TokioInstant>>,
    table: Table,
    max_addresses: usize,
    /// Connections let through unremembered because the table was full,
    /// since the last sweep.
    overflow: AtomicU64,
}

impl ConnectionRate {
    /// `per_second` new connections per second, in bursts of twice that.
    pub fn new(per_second: NonZeroU32) -> Self {
        Self::with_capacity(per_second, MAX_ADDRESSES)
    }

    fn with_capacity(per_second: NonZeroU32, max_addresses: usize) -> Self {
        let burst = per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let table: Table = Arc::default();
        ConnectionRate {
            limiter: RateLimiter::new(quota, Shared(table.clone()), TokioClock),
            table,
            max_addresses,
            overflow: AtomicU64::new(0),
        }
    }

    /// Whether a new connection from `ip` is within the rate (and counts
    /// it).
    pub fn allow(&self, ip: IpAddr) -> bool {
        let key = crate::backoff::key(ip);
        if self.table.len() >= self.max_addresses && !self.table.contains_key(&key) {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.limiter.check_key(&key).is_ok()
    }

    /// Forgets addresses whose bucket is full again, shrinks the table and
    /// exports its size; returns the connections let through unremembered
    /// since the last sweep (the table was full).
    pub fn sweep(&self) -> u64 {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        crate::metrics::connection_rate_addresses(self.limiter.len());
        self.overflow.swap(0, Ordering::Relaxed)
    }

    /// Addresses remembered now.
    pub fn addresses(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::key;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn burst_is_twice_the_rate_per_address() {
        let rate = ConnectionRate::new(n(5));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let allowed = (0..20).filter(|_| rate.allow(a)).count();
        assert_eq!(allowed, 10);
        assert!(rate.allow(b), "another address has its own bucket");
        assert_eq!(rate.addresses(), 2);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_as_ipv4() {
        assert_eq!(
            key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            key("2001:db8:1:2::1".parse().unwrap()),
            key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let rate = ConnectionRate::new(n(1));
        assert!(rate.allow("2001:db8::1".parse().unwrap()));
        assert!(rate.allow("2001:db8::2".parse().unwrap()));
        assert!(!rate.allow("2001:db8::3".parse().unwrap()));
    }

    #[test]
    fn table_is_capped_and_swept() {
        let rate = ConnectionRate::with_capacity(n(1), 4);
        for i in 0..10u8 {
            assert!(rate.allow(IpAddr::from([10, 0, 0, i])));
        }
        assert_eq!(rate.addresses(), 4, "never more than the cap");
        assert_eq!(rate.sweep(), 6, "six let through unremembered");
        // A known address is still limited when the table is full.
        let known = IpAddr::from([10, 0, 0, 0]);
        assert!(rate.allow(known));
        assert!(!rate.allow(known));
    }

    /// The buckets refill on tokio's clock: paused time moved by hand.
    #[tokio::test(start_paused = true)]
    async fn buckets_refill_and_are_swept_on_tokios_clock() {
        let rate = ConnectionRate::new(n(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!((0..10).filter(|_| rate.allow(a)).count(), 4, "burst 2N");
        tokio::time::advance(std::time::Duration::from_millis(499)).await;
        assert!(!rate.allow(a), "no cell back before 1/N s");
        tokio::time::advance(std::time::Duration::from_millis(2)).await;
        assert!(rate.allow(a), "one cell back after 1/N s");
        assert!(!rate.allow(a));
        rate.sweep();
        assert_eq!(rate.addresses(), 1, "a drained bucket is kept");
        // Some 2.5 s later (burst/rate = 2 s, plus the cell taken past the
        // burst) the bucket is full again: swept.
        tokio::time::advance(std::time::Duration::from_millis(2_500)).await;
        rate.sweep();
        assert_eq!(rate.addresses(), 0, "a full bucket is forgotten");
    }
}
