//! Results: latency percentiles from an HDR histogram, error tallies, the
//! human-readable lines and the one final JSON line every mode prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::error::BenchError;

/// Highest latency a histogram records, in microseconds (one hour); more saturates.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// Distinct error messages remembered per run (the count covers all of them).
const ERROR_KINDS_KEPT: usize = 8;

/// A latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
        .map_err(|e| BenchError::Internal(format!("histogram: {e}")))
}

/// Latencies recorded by many tasks into a few mutex-guarded histograms
/// (one histogram per connection would cost ~180 KiB each).
pub struct SharedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

/// Samples a recorder buffers before taking its shard's lock.
const RECORDER_BATCH: usize = 256;

impl SharedHistogram {
    pub fn new(shards: usize) -> Result<Arc<SharedHistogram>, BenchError> {
        let shards = (0..shards.max(1))
            .map(|_| new_histogram().map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(SharedHistogram { shards }))
    }

    /// A recorder for task number `index`; tasks spread over the shards.
    pub fn recorder(self: &Arc<Self>, index: usize) -> Recorder {
        Recorder {
            shared: Arc::clone(self),
            shard: index % self.shards.len(),
            pending: Vec::with_capacity(RECORDER_BATCH),
        }
    }

    /// All shards added up (call after every recorder is dropped).
    pub fn merged(&self) -> Result<Histogram<u64>, BenchError> {
        let mut total = new_histogram()?;
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            total
                .add(&*shard)
                .map_err(|e| BenchError::Internal(format!("histogram: {e:?}")))?;
        }
        Ok(total)
    }
}

/// One task's handle on a [`SharedHistogram`]; flushes when full and on drop.
pub struct Recorder {
    shared: Arc<SharedHistogram>,
    shard: usize,
    pending: Vec<u64>,
}

impl Recorder {
    pub fn record(&mut self, elapsed: std::time::Duration) {
        self.pending
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        if self.pending.len() >= RECORDER_BATCH {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(shard) = self.shared.shards.get(self.shard) {
            let mut histogram = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for us in self.pending.drain(..) {
                histogram.saturating_record(us.max(1));
            }
        }
        self.pending.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Latency percentiles in microseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn from_histogram(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: round_to(h.mean(), 1),
        }
    }

    /// `p50 812 us  p90 ...` on one line, with units scaled for reading.
    pub fn human(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            human_us(self.p50_us as f64),
            human_us(self.p90_us as f64),
            human_us(self.p99_us as f64),
            human_us(self.p999_us as f64),
            human_us(self.max_us as f64),
            human_us(self.mean_us),
        )
    }
}

/// `812 us`, `4.21 ms`, `1.50 s`.
pub fn human_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} us")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// `123456.789` -> `123456.8` (decimals = 1); non-finite values become 0.
pub fn round_to(x: f64, decimals: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// `x / secs`, 0 when `secs` is not positive.
pub fn per_sec(x: f64, secs: f64) -> f64 {
    if secs > 0.0 { x / secs } else { 0.0 }
}

/// Counts errors, remembering the first few distinct messages.
#[derive(Debug, Default, Clone)]
pub struct ErrorLog {
    total: u64,
    kinds: BTreeMap<String, u64>,
}

impl ErrorLog {
    pub fn add(&mut self, message: impl Into<String>) {
        self.add_n(message, 1);
    }

    pub fn add_n(&mut self, message: impl Into<String>, n: u64) {
        if n == 0 {
            return;
        }
        let message = message.into();
        self.total += n;
        if let Some(count) = self.kinds.get_mut(&message) {
            *count += n;
        } else if self.kinds.len() < ERROR_KINDS_KEPT {
            self.kinds.insert(message, n);
        }
    }

    pub fn merge(&mut self, other: ErrorLog) {
        let listed: u64 = other.kinds.values().sum();
        for (message, n) in other.kinds {
            self.add_n(message, n);
        }
        // Errors whose message was not kept still count.
        self.total += other.total.saturating_sub(listed);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Indented `count x message` lines, most frequent first; empty when no errors.
    pub fn human(&self) -> String {
        let mut kinds: Vec<(&String, &u64)> = self.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut out = String::new();
        for (message, n) in kinds {
            out.push_str(&format!("    {n} x {message}\n"));
        }
        out
    }
}

/// Per-process memory before and after (idle mode).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PidRss {
    pub pid: u32,
    pub before_kib: u64,
    pub after_kib: u64,
}

/// The final JSON line of `wssd bench echo`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EchoReport {
    pub mode: &'static str,
    pub url: String,
    /// Negotiated TLS version, cipher suite and key exchange; null for ws://.
    pub tls: Option<String>,
    pub conns: usize,
    pub connected: usize,
    pub size: usize,
    pub binary: bool,
    pub inflight: usize,
    /// A flush (one TLS record) after every message (`--flush-each`).
    pub flush_each: bool,
    pub secs: f64,
    pub round_trips: u64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    #[serde(flatten)]
    pub latency: Percentiles,
    pub errors: u64,
    pub connect_errors: u64,
    pub mismatches: u64,
    pub dropped_conns: u64,
    /// CPU the bench client itself used during the run, in cores (1.0 = one core busy).
    pub client_cpu_cores: Option<f64>,
}

/// The final JSON line of `wssd bench connect`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectReport {
    pub mode: &'static str,
    pub url: String,
    /// Negotiated TLS version, cipher suite and key exchange; null for ws://.
    pub tls: Option<String>,
    pub workers: usize,
    pub secs: f64,
    pub connects: u64,
    pub connects_per_sec: f64,
    #[serde(flatten)]
    pub latency: Percentiles,
    pub errors: u64,
    /// CPU the bench client itself used during the run, in cores (1.0 = one core busy).
    pub client_cpu_cores: Option<f64>,
}

/// The final JSON line of `wssd bench idle`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleReport {
    pub mode: &'static str,
    pub url: String,
    /// Negotiated TLS version, cipher suite and key exchange; null for ws://.
    pub tls: Option<String>,
    pub conns: usize,
    pub open: usize,
    pub errors: u64,
    pub open_secs: f64,
    pub hold: f64,
    pub closed_by_server: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after - before) / open, KiB; null without --pid or with no open connection.
    pub rss_per_conn_kib: Option<f64>,
    pub rss_settled: bool,
    pub pids: Vec<PidRss>,
    pub client_rss_kib: Option<u64>,
}

/// `  client CPU    0.98 of 1 cores ...` with a warning when the client was saturated.
pub fn client_cpu_line(cores: f64) -> String {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let note = if cores >= 0.9 * available as f64 {
        ": the client was busy all the time and may be what limited the rate"
    } else {
        ""
    };
    format!("  client CPU    {cores:.2} of {available} cores{note}\n")
}

/// One line of JSON (no newline).
pub fn json_line<T: Serialize>(report: &T) -> Result<String, BenchError> {
    serde_json::to_string(report).map_err(|e| BenchError::Internal(format!("JSON report: {e}")))
}

/// Ends a mode's human-readable `text` with the client CPU line (when
/// measured) and the JSON line of `report`, and prints it.
pub fn print_with_json<T: Serialize>(
    mut text: String,
    client_cpu_cores: Option<f64>,
    report: &T,
) -> Result<(), BenchError> {
    if let Some(cores) = client_cpu_cores {
        text.push_str(&client_cpu_line(cores));
    }
    text.push_str(&json_line(report)?);
    text.push('\n');
    print(&text);
    Ok(())
}

/// Writes to stdout, ignoring a closed pipe (results are best effort once measured).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A notice on stderr, kept out of the results on stdout.
pub fn note(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "note: {message}");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let mut h = new_histogram().unwrap();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.p50_us, 500);
        assert_eq!(p.p90_us, 900);
        assert_eq!(p.p99_us, 990);
        assert_eq!(p.p999_us, 999);
        assert_eq!(p.max_us, 1000);
        assert_eq!(p.mean_us, 500.5);
    }

    #[test]
    fn shared_histogram_merges_recorders() {
        let shared = SharedHistogram::new(4).unwrap();
        for task in 0..10 {
            let mut r = shared.recorder(task);
            for us in 0..1000u64 {
                r.record(Duration::from_micros(us + 1));
            }
        }
        let h = shared.merged().unwrap();
        assert_eq!(h.len(), 10_000);
        assert_eq!(Percentiles::from_histogram(&h).p50_us, 500);
    }

    #[test]
    fn empty_histogram_is_zero_and_tiny_values_count_as_one() {
        let shared = SharedHistogram::new(1).unwrap();
        assert_eq!(
            Percentiles::from_histogram(&shared.merged().unwrap()),
            Percentiles::default()
        );
        let mut r = shared.recorder(0);
        r.record(Duration::from_nanos(10));
        r.record(Duration::from_secs(100_000));
        drop(r);
        let h = shared.merged().unwrap();
        assert_eq!(h.min(), 1);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(812.0), "812 us");
        assert_eq!(human_us(4210.0), "4.21 ms");
        assert_eq!(human_us(1_500_000.0), "1.50 s");
    }

    #[test]
    fn rounding() {
        assert_eq!(round_to(123_456.789, 1), 123_456.8);
        assert_eq!(round_to(1.23456, 3), 1.235);
        assert_eq!(round_to(f64::NAN, 2), 0.0);
        assert_eq!(per_sec(10.0, 0.0), 0.0);
        assert_eq!(per_sec(10.0, 4.0), 2.5);
    }

    #[test]
    fn echo_report_json_is_one_flat_line_in_field_order() {
        let report = EchoReport {
            mode: "echo",
            url: "wss://127.0.0.1:8443/ws/echo".into(),
            tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519".into()),
            conns: 100,
            connected: 100,
            size: 64,
            binary: false,
            inflight: 1,
            flush_each: false,
            secs: 10.0,
            round_trips: 1_234_567,
            msgs_per_sec: 123_456.7,
            mb_per_sec: 15.802,
            latency: Percentiles {
                p50_us: 800,
                p90_us: 900,
                p99_us: 1200,
                p999_us: 2300,
                max_us: 9000,
                mean_us: 810.5,
            },
            errors: 0,
            connect_errors: 0,
            mismatches: 0,
            dropped_conns: 0,
            client_cpu_cores: Some(0.98),
        };
        let line = json_line(&report).unwrap();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(r#"{"mode":"echo","url":"wss://127.0.0.1:8443/ws/echo","tls":"TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519","conns":100,"#)
        );
        assert!(line.contains(r#""msgs_per_sec":123456.7,"mb_per_sec":15.802,"p50_us":800,"p90_us":900,"p99_us":1200,"p999_us":2300,"max_us":9000,"mean_us":810.5,"errors":0"#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["p999_us"], 2300);
    }

    #[test]
    fn idle_report_json_has_null_per_conn_without_pid() {
        let report = IdleReport {
            mode: "idle",
            url: "ws://127.0.0.1:1/".into(),
            tls: None,
            conns: 10,
            open: 10,
            errors: 0,
            open_secs: 0.5,
            hold: 1.0,
            closed_by_server: 0,
            rss_before_kib: 0,
            rss_after_kib: 0,
            rss_per_conn_kib: None,
            rss_settled: false,
            pids: vec![],
            client_rss_kib: Some(1234),
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(&report).unwrap()).unwrap();
        assert!(v["rss_per_conn_kib"].is_null());
        assert!(v["tls"].is_null());
        assert_eq!(v["mode"], "idle");
    }

    #[test]
    fn error_log_counts_all_but_keeps_few_kinds() {
        let mut log = ErrorLog::default();
        for i in 0..20 {
            log.add(format!("error {i}"));
        }
        log.add("error 0");
        assert_eq!(log.total(), 21);
        assert!(log.human().starts_with("    2 x error 0\n"));
        assert_eq!(log.human().lines().count(), ERROR_KINDS_KEPT);

        let mut all = ErrorLog::default();
        all.add("x");
        all.merge(log);
        assert_eq!(all.total(), 22);
    }
}
