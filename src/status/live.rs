//! Live figures for the admin `/status` page, kept cheaply: per-route and
//! per-listener counters that a session holds as `Arc`s and bumps with
//! relaxed atomics (no lock per message), a bounded ring of recent closes
//! and counts per close code (one short lock per close), the last upstream
//! connect of each proxy route (one short lock per connect), and a ring of
//! one-second samples of the totals (`sample`, run by the admin listener).
//!
//! Every table is bounded: routes and listeners come from configuration but
//! reloads can add more over a process's life, so past [`MAX_ROUTES`] /
//! [`MAX_LISTENERS`] new ones share one overflow entry; close codes past
//! [`MAX_CODES`] distinct ones are counted as code 0 ("other").
//!
//! Nothing here imports the rest of the crate: `metrics`, `routes` and
//! `server` write into it, `status::snapshot` reads it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Routes remembered; later ones are counted under [`OVERFLOW`].
pub const MAX_ROUTES: usize = 1024;
/// Listeners remembered; later ones are counted under [`OVERFLOW`].
pub const MAX_LISTENERS: usize = 256;
/// Distinct close codes counted; others are counted as code 0.
pub const MAX_CODES: usize = 128;
/// Recent closes kept.
pub const RECENT_CLOSES: usize = 100;
/// One-second samples kept (the charts' width).
pub const HISTORY: usize = 60;
/// The label of the shared entry past a table's bound.
pub const OVERFLOW: &str = "(other)";

/// One route's counters.
#[derive(Debug, Default)]
pub struct RouteLive {
    kind: Mutex<&'static str>,
    open: AtomicI64,
    total: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl RouteLive {
    pub fn received(&self, len: u64) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len, Ordering::Relaxed);
    }

    pub fn sent(&self, len: u64) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len, Ordering::Relaxed);
    }

    fn figures(&self) -> Figures {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Figures {
            open: self.open.load(Ordering::Relaxed).max(0) as u64,
            total: get(&self.total),
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
        }
    }
}

/// One listener's counters.
#[derive(Debug, Default)]
pub struct ListenerLive {
    tls: Mutex<Option<bool>>,
    open: AtomicI64,
    total: AtomicU64,
}

/// Counts one open WebSocket on a route and a listener until dropped.
#[derive(Debug)]
pub struct OpenSession {
    route: Arc<RouteLive>,
    listener: Arc<ListenerLive>,
}

impl OpenSession {
    /// The route's counters, for the per-message path.
    pub fn route(&self) -> &RouteLive {
        &self.route
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.route.open.fetch_sub(1, Ordering::Relaxed);
        self.listener.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections and traffic of one route (or of all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub open: u64,
    pub total: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.open += o.open;
        self.total += o.total;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// A route's figures with its path and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    pub path: String,
    pub kind: &'static str,
    pub figures: Figures,
}

/// A listener's open and total connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerRow {
    pub address: String,
    pub tls: Option<bool>,
    pub open: u64,
    pub total: u64,
}

/// One ended WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub at_unix: u64,
    pub route: Arc<str>,
    pub code: u16,
    pub closed_by: &'static str,
}

/// The last upstream connect of a proxy route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamRow {
    pub route: String,
    pub last_ok: bool,
    pub last_at_unix: u64,
    pub connects: u64,
    pub failures: u64,
}

/// The totals at one second, for rates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Milliseconds since the registry started (monotonic).
    pub at_ms: u64,
    pub figures: Figures,
}

/// Per-second rates between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub connections_open: u64,
    pub messages_in: f64,
    pub messages_out: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
}

#[derive(Debug, Default)]
struct Closes {
    recent: VecDeque<Close>,
    by_code: BTreeMap<u16, u64>,
}

/// Every live figure of the process.
#[derive(Debug)]
pub struct Live {
    started: tokio::time::Instant,
    started_unix: u64,
    routes: Mutex<HashMap<Arc<str>, Arc<RouteLive>>>,
    listeners: Mutex<HashMap<Arc<str>, Arc<ListenerLive>>>,
    closes: Mutex<Closes>,
    upstreams: Mutex<HashMap<Arc<str>, UpstreamRow>>,
    samples: Mutex<VecDeque<Sample>>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

/// The process's registry.
pub fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(Live::new)
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A poisoned lock still holds usable figures: take them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The entry of `key`, made if there is room, else the overflow entry.
fn entry<T: Default>(map: &mut HashMap<Arc<str>, Arc<T>>, key: &str, cap: usize) -> Arc<T> {
    if let Some(v) = map.get(key) {
        return v.clone();
    }
    let key: Arc<str> = if map.len() < cap {
        Arc::from(key)
    } else {
        Arc::from(OVERFLOW)
    };
    map.entry(key).or_default().clone()
}

impl Live {
    pub fn new() -> Live {
        Live {
            started: tokio::time::Instant::now(),
            started_unix: unix_now(),
            routes: Mutex::default(),
            listeners: Mutex::default(),
            closes: Mutex::default(),
            upstreams: Mutex::default(),
            samples: Mutex::default(),
        }
    }

    /// Seconds since the registry started (about the process's uptime).
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// When the registry started, Unix seconds.
    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    /// A configured route, shown before its first connection.
    pub fn declare_route(&self, path: &str, kind: &'static str) {
        let r = entry(&mut lock(&self.routes), path, MAX_ROUTES);
        *lock(&r.kind) = kind;
    }

    /// A bound listener, shown before its first connection.
    pub fn declare_listener(&self, address: &str, tls: bool) {
        let l = entry(&mut lock(&self.listeners), address, MAX_LISTENERS);
        *lock(&l.tls) = Some(tls);
    }

    /// A WebSocket opened on `route` through `listener`; counted open until
    /// the returned value is dropped.
    pub fn open(&self, route: &str, listener: &str) -> OpenSession {
        let route = entry(&mut lock(&self.routes), route, MAX_ROUTES);
        let listener = entry(&mut lock(&self.listeners), listener, MAX_LISTENERS);
        route.open.fetch_add(1, Ordering::Relaxed);
        route.total.fetch_add(1, Ordering::Relaxed);
        listener.open.fetch_add(1, Ordering::Relaxed);
        listener.total.fetch_add(1, Ordering::Relaxed);
        OpenSession { route, listener }
    }

    /// A WebSocket on `route` ended with `code`, closed by `closed_by`.
    pub fn closed(&self, route: &str, code: u16, closed_by: &'static str) {
        let route: Arc<str> = {
            // Share the route's stored key rather than a copy per close.
            let routes = lock(&self.routes);
            match routes.get_key_value(route) {
                Some((k, _)) => k.clone(),
                None => Arc::from(OVERFLOW),
            }
        };
        let mut closes = lock(&self.closes);
        if closes.recent.len() == RECENT_CLOSES {
            closes.recent.pop_front();
        }
        closes.recent.push_back(Close {
            at_unix: unix_now(),
            route,
            code,
            closed_by,
        });
        let known = closes.by_code.contains_key(&code);
        let key = if known || closes.by_code.len() < MAX_CODES {
            code
        } else {
            0
        };
        *closes.by_code.entry(key).or_insert(0) += 1;
    }

    /// A proxy route tried to connect to an upstream.
    pub fn upstream_connect(&self, route: &str, ok: bool) {
        let mut ups = lock(&self.upstreams);
        let key: Arc<str> = if ups.contains_key(route) || ups.len() < MAX_ROUTES {
            Arc::from(route)
        } else {
            Arc::from(OVERFLOW)
        };
        let row = ups.entry(key).or_insert_with(|| UpstreamRow {
            route: route.to_string(),
            ..UpstreamRow::default()
        });
        row.last_ok = ok;
        row.last_at_unix = unix_now();
        row.connects += 1;
        if !ok {
            row.failures += 1;
        }
    }

    /// Every route, sorted by path.
    pub fn routes(&self) -> Vec<RouteRow> {
        let mut rows: Vec<RouteRow> = lock(&self.routes)
            .iter()
            .map(|(path, r)| RouteRow {
                path: path.to_string(),
                kind: *lock(&r.kind),
                figures: r.figures(),
            })
            .collect();
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        rows
    }

    /// Every listener, sorted by address.
    pub fn listeners(&self) -> Vec<ListenerRow> {
        let mut rows: Vec<ListenerRow> = lock(&self.listeners)
            .iter()
            .map(|(address, l)| ListenerRow {
                address: address.to_string(),
                tls: *lock(&l.tls),
                open: l.open.load(Ordering::Relaxed).max(0) as u64,
                total: l.total.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by(|a, b| a.address.cmp(&b.address));
        rows
    }

    /// The sum over every route.
    pub fn totals(&self) -> Figures {
        let mut sum = Figures::default();
        for r in lock(&self.routes).values() {
            sum.add(&r.figures());
        }
        sum
    }

    /// Recent closes, the newest first.
    pub fn recent_closes(&self) -> Vec<Close> {
        lock(&self.closes).recent.iter().rev().cloned().collect()
    }

    /// Closes counted per code (0: codes past the table's bound), by code.
    pub fn closes_by_code(&self) -> Vec<(u16, u64)> {
        lock(&self.closes)
            .by_code
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect()
    }

    /// Proxy routes' last upstream connects, by route.
    pub fn upstreams(&self) -> Vec<UpstreamRow> {
        let mut rows: Vec<UpstreamRow> = lock(&self.upstreams).values().cloned().collect();
        rows.sort_by(|a, b| a.route.cmp(&b.route));
        rows
    }

    /// Takes one sample of the totals (the admin listener does every second).
    pub fn sample(&self) {
        let s = Sample {
            at_ms: self.started.elapsed().as_millis() as u64,
            figures: self.totals(),
        };
        let mut samples = lock(&self.samples);
        if samples.len() == HISTORY + 1 {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// Rates between successive samples, the oldest first (at most
    /// [`HISTORY`]); the last is the current rate.
    pub fn history(&self) -> Vec<Rates> {
        let samples = lock(&self.samples);
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| rates(a, b))
            .collect()
    }
}

/// Per-second rates from sample `a` to the later `b`.
fn rates(a: &Sample, b: &Sample) -> Rates {
    let secs = (b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0).max(0.001);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    Rates {
        connections_open: b.figures.open,
        messages_in: per(a.figures.messages_in, b.figures.messages_in),
        messages_out: per(a.figures.messages_out, b.figures.messages_out),
        bytes_in: per(a.figures.bytes_in, b.figures.bytes_in),
        bytes_out: per(a.figures.bytes_out, b.figures.bytes_out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_open_until_dropped() {
        let live = Live::new();
        live.declare_route("/idle", "echo");
        live.declare_listener("127.0.0.1:1", true);
        let a = live.open("/ws", "127.0.0.1:1");
        let b = live.open("/ws", "127.0.0.1:1");
        a.route().received(10);
        b.route().sent(3);
        let rows = live.routes();
        assert_eq!(rows[0].path, "/idle");
        assert_eq!(rows[0].figures, Figures::default());
        assert_eq!(rows[1].figures.open, 2);
        assert_eq!(rows[1].figures.bytes_in, 10);
        assert_eq!(rows[1].figures.messages_out, 1);
        drop(a);
        assert_eq!(live.totals().open, 1);
        assert_eq!(live.totals().total, 2);
        let l = &live.listeners()[0];
        assert_eq!((l.open, l.total, l.tls), (1, 2, Some(true)));
    }

    #[test]
    fn tables_are_bounded() {
        let live = Live::new();
        for i in 0..MAX_ROUTES + 10 {
            drop(live.open(&format!("/r{i}"), &format!("l{i}")));
        }
        assert_eq!(live.routes().len(), MAX_ROUTES + 1);
        assert_eq!(live.listeners().len(), MAX_LISTENERS + 1);
        let other = live.routes().into_iter().find(|r| r.path == OVERFLOW);
        assert_eq!(other.map(|r| r.figures.total), Some(10));
        for i in 0..(RECENT_CLOSES + MAX_CODES + 5) {
            live.closed("/r1", 1000 + i as u16, "client");
        }
        assert_eq!(live.recent_closes().len(), RECENT_CLOSES);
        assert_eq!(live.closes_by_code().len(), MAX_CODES + 1);
        assert_eq!(live.closes_by_code()[0], (0, (RECENT_CLOSES + 5) as u64));
        for i in 0..MAX_ROUTES + 3 {
            live.upstream_connect(&format!("/p{i}"), false);
        }
        assert_eq!(live.upstreams().len(), MAX_ROUTES + 1);
    }

    #[test]
    fn recent_closes_are_newest_first_with_the_routes_key() {
        let live = Live::new();
        drop(live.open("/ws", "l"));
        live.closed("/ws", 1000, "client");
        live.closed("/ws", 4000, "server");
        live.closed("/gone", 1001, "server");
        let recent = live.recent_closes();
        assert_eq!(recent[0].route.as_ref(), OVERFLOW);
        assert_eq!((recent[1].code, recent[1].closed_by), (4000, "server"));
        assert_eq!(live.closes_by_code(), vec![(1000, 1), (1001, 1), (4000, 1)]);
    }

    #[test]
    fn upstream_failures_are_counted() {
        let live = Live::new();
        live.upstream_connect("/p", true);
        live.upstream_connect("/p", false);
        let row = &live.upstreams()[0];
        assert_eq!((row.last_ok, row.connects, row.failures), (false, 2, 1));
        live.upstream_connect("/p", true);
        assert!(live.upstreams()[0].last_ok);
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let a = Sample {
            at_ms: 1000,
            figures: Figures::default(),
        };
        let b = Sample {
            at_ms: 3000,
            figures: Figures {
                open: 4,
                messages_in: 10,
                bytes_out: 4000,
                ..Figures::default()
            },
        };
        let r = rates(&a, &b);
        assert_eq!(r.connections_open, 4);
        assert_eq!(r.messages_in, 5.0);
        assert_eq!(r.bytes_out, 2000.0);
        let live = Live::new();
        for _ in 0..HISTORY + 5 {
            live.sample();
        }
        assert_eq!(live.history().len(), HISTORY);
    }
}
