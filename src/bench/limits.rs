//! How far a bench run may go: the bounds of its command-line values and
//! of its concurrency, and the environment switch that lifts the
//! loopback-only rule. A leaf: every other file of `bench` may use it.

/// Set to `1` to allow benchmarking hosts that are not loopback.
pub const ALLOW_REMOTE_ENV: &str = "WSSD_BENCH_ALLOW_REMOTE";
/// Handshakes in progress at once while opening many connections.
pub const CONNECT_CONCURRENCY: usize = 64;
/// Mutex-guarded latency histograms shared by all connection tasks.
pub const HISTOGRAM_SHARDS: usize = 16;
/// Longest run accepted for --secs and --hold (a day).
pub const MAX_SECS: f64 = 86_400.0;
/// Most connections (--conns) or connect loops (--workers) one run may ask for.
pub const MAX_CONNS: usize = 1_000_000;
/// Most messages in flight per connection (--inflight).
pub const MAX_INFLIGHT: usize = 65_536;
