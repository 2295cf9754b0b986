//! Connections refused at accept (and WebSockets carried as HTTP/2 streams
//! refused at the upgrade for the per-IP cap or rate, which count as
//! connections: `admission`), counted and summarised: every refusal is
//! counted in `wssd_connections_refused_total{reason}`, but the log gets
//! one line for the first refusal of a burst and then one summary line per
//! [`SUMMARY_INTERVAL`] while refusals go on ("refused 5234 connections in
//! the last 10 s: per-ip cap 5000 (top 127.0.0.1: 5000), rate 234 (top
//! 127.0.0.1: 234)"), so a flood of refused connections cannot flood the
//! log. A whole interval without refusals ends the burst.
//!
//! Memory is bounded: at most [`MAX_TOP`] (reason, address) pairs are
//! counted per interval; past that, new addresses only add to the totals.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often a burst of refusals is summarised.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Most (reason, address) pairs counted per interval.
pub const MAX_TOP: usize = 1024;

/// Why a connection was refused at accept (or an HTTP/2 WebSocket stream
/// at the upgrade: `PerIp`, `Rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `--max-connections` (plus the handshake headroom) open already.
    Total,
    /// `--max-connections-per-ip` open from this address already.
    PerIp,
    /// `--connection-rate-per-ip` exceeded.
    Rate,
    /// `--proxy-protocol`: an untrusted peer, or no valid PROXY header.
    ProxyProtocol,
    /// `--listen-max-connections` / `--http-max-connections` open on this
    /// listener already.
    Listener,
}

/// How many reasons there are.
pub const REASONS: usize = 5;

impl Refusal {
    const ALL: [Refusal; REASONS] = [
        Refusal::Total,
        Refusal::PerIp,
        Refusal::Rate,
        Refusal::ProxyProtocol,
        Refusal::Listener,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
            Refusal::Rate => "rate",
            Refusal::ProxyProtocol => "proxy_protocol",
            Refusal::Listener => "listener",
        }
    }

    /// The name in the summary line.
    fn summary_name(self) -> &'static str {
        match self {
            Refusal::Total => "total cap",
            Refusal::PerIp => "per-ip cap",
            Refusal::Rate => "rate",
            Refusal::ProxyProtocol => "proxy protocol",
            Refusal::Listener => "listener cap",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The refusal counts of the current interval.
#[derive(Debug)]
struct Window {
    /// A burst is going on: refusals are counted, not logged one by one.
    active: bool,
    started: Instant,
    counts: [u64; REASONS],
    by_address: HashMap<(Refusal, IpAddr), u64>,
}

/// Counts refusals and decides which log lines they deserve.
#[derive(Debug)]
pub struct Refusals {
    /// Per reason: what the first refusal of a burst says (the flag and
    /// its value).
    why: [String; REASONS],
    window: Mutex<Window>,
}

impl Refusals {
    /// `why` gives, per reason (in [`Refusal`] order), the limit that was
    /// reached, e.g. "--max-connections-per-ip 4096 reached".
    pub fn new(why: [String; REASONS]) -> Self {
        Refusals {
            why,
            window: Mutex::new(Window {
                active: false,
                started: Instant::now(),
                counts: [0; REASONS],
                by_address: HashMap::new(),
            }),
        }
    }

    /// The limit a refusal for `reason` met (see [`Refusals::new`]).
    pub fn why(&self, reason: Refusal) -> &str {
        &self.why[reason.index()]
    }

    /// Counts a refusal of a connection from `ip`; the first of a burst is
    /// logged at once.
    pub fn record(&self, reason: Refusal, ip: IpAddr) {
        crate::metrics::connection_refused(reason.label());
        if self.count(reason, ip, Instant::now()) {
            tracing::info!(
                "refused a connection from {ip}: {}; further refusals are summarised every {} s",
                self.why[reason.index()],
                SUMMARY_INTERVAL.as_secs()
            );
        }
    }

    /// Counts; true when this refusal starts a burst (log it now).
    fn count(&self, reason: Refusal, ip: IpAddr, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if !w.active {
            w.active = true;
            w.started = now;
            return true;
        }
        w.counts[reason.index()] += 1;
        let full = w.by_address.len() >= MAX_TOP;
        match w.by_address.get_mut(&(reason, ip)) {
            Some(n) => *n += 1,
            None if !full => {
                w.by_address.insert((reason, ip), 1);
            }
            None => {}
        }
        false
    }

    /// Called by a timer (every second is fine): logs the summary once an
    /// interval has passed since the burst began or was last summarised.
    pub fn tick(&self) {
        if let Some(line) = self.summary(Instant::now()) {
            tracing::info!("{line}");
        }
    }

    /// The summary line due at `now`, if any; resets the interval. An
    /// interval without refusals ends the burst (the next refusal is logged
    /// at once).
    fn summary(&self, now: Instant) -> Option<String> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if !w.active || now.saturating_duration_since(w.started) < SUMMARY_INTERVAL {
            return None;
        }
        let secs = now.saturating_duration_since(w.started).as_secs();
        w.started = now;
        let total: u64 = w.counts.iter().sum();
        if total == 0 {
            w.active = false;
            return None;
        }
        let mut line = format!("refused {total} connections in the last {secs} s:");
        let mut first = true;
        for reason in Refusal::ALL {
            let n = w.counts[reason.index()];
            if n == 0 {
                continue;
            }
            let _ = write!(
                line,
                "{} {} {n}",
                if first { "" } else { "," },
                reason.summary_name()
            );
            first = false;
            let top = w
                .by_address
                .iter()
                .filter(|((r, _), _)| *r == reason)
                .max_by_key(|(_, count)| **count);
            if let Some(((_, ip), count)) = top {
                let _ = write!(line, " (top {ip}: {count})");
            }
        }
        w.counts = [0; REASONS];
        w.by_address = HashMap::new();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals() -> Refusals {
        Refusals::new(Refusal::ALL.map(|r| format!("{} reached", r.label())))
    }

    #[test]
    fn a_burst_is_one_line_then_one_summary_per_interval() {
        let r = refusals();
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(
            r.count(Refusal::PerIp, a, t0),
            "the first is logged at once"
        );
        for _ in 0..5000 {
            assert!(!r.count(Refusal::PerIp, a, t0));
        }
        for _ in 0..200 {
            assert!(!r.count(Refusal::Rate, b, t0));
        }
        for _ in 0..34 {
            assert!(!r.count(Refusal::Rate, a, t0));
        }
        assert_eq!(r.summary(t0 + Duration::from_secs(5)), None);
        let line = r.summary(t0 + SUMMARY_INTERVAL).unwrap();
        assert_eq!(
            line,
            "refused 5234 connections in the last 10 s: per-ip cap 5000 (top 127.0.0.1: 5000), rate 234 (top 127.0.0.2: 200)"
        );
        // A quiet interval ends the burst; the next refusal is logged again.
        assert_eq!(r.summary(t0 + 2 * SUMMARY_INTERVAL), None);
        assert!(r.count(Refusal::Total, a, t0 + 2 * SUMMARY_INTERVAL));
    }

    #[test]
    fn addresses_counted_are_bounded() {
        let r = refusals();
        let t0 = Instant::now();
        for i in 0..(MAX_TOP as u32 + 500) {
            r.count(Refusal::Rate, IpAddr::from(i.to_be_bytes()), t0);
        }
        let w = r.window.lock().unwrap();
        assert_eq!(w.by_address.len(), MAX_TOP);
        assert_eq!(w.counts[Refusal::Rate.index()], MAX_TOP as u64 + 499);
    }
}
