//! What a fanout run reports: the tally of what the subscribers saw, the
//! [`FanoutReport`] (`--json`) and its human-readable lines.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::Setup;
use super::publisher::{Load, PublishFailure, Publisher, Warm};
use super::subscribers::{Connected, Deliveries, SubOutcome};
use crate::bench::report::{ErrorLog, Percentiles, client_cpu_line, per_sec, round_to};
use crate::bench::sys;

/// What the subscribers saw, summed.
#[derive(Default)]
struct Tally {
    closes: BTreeMap<String, u64>,
    close_details: ErrorLog,
    out_of_order: u64,
    unexpected: u64,
}

impl Tally {
    fn of(outcomes: &[SubOutcome]) -> Tally {
        let mut t = Tally::default();
        for outcome in outcomes {
            t.out_of_order += outcome.out_of_order;
            t.unexpected += outcome.unexpected;
            if let Some(ended) = &outcome.ended {
                *t.closes.entry(ended.key()).or_insert(0u64) += 1;
                t.close_details.add(ended.detail.clone());
            }
        }
        t
    }
}

/// What the bench client itself used while measuring.
pub(super) struct ClientUse {
    cpu_cores: Option<f64>,
    rss_kib: Option<u64>,
}

impl ClientUse {
    /// CPU since the load started, and memory now.
    pub(super) fn since(load: &Load) -> ClientUse {
        ClientUse {
            cpu_cores: sys::cpu_cores_since(load.cpu_before, load.start.elapsed().as_secs_f64()),
            rss_kib: sys::own_rss_kib(),
        }
    }
}

/// Everything a finished run measured, for [`FanoutReport::new`].
pub(super) struct Measured<'a> {
    pub(super) setup: &'a Setup,
    pub(super) connected: &'a Connected,
    pub(super) warm: &'a Warm,
    pub(super) load: &'a Load,
    /// Seconds waited for stragglers, and whether that timed out.
    pub(super) drain: (f64, bool),
    pub(super) deliveries: Deliveries,
    pub(super) client: ClientUse,
    pub(super) publisher: &'a Publisher,
    pub(super) publisher_failure: Option<PublishFailure>,
    pub(super) outcomes: Vec<SubOutcome>,
    pub(super) latency: Percentiles,
}

impl FanoutReport {
    pub(super) fn new(m: Measured<'_>) -> FanoutReport {
        let plan = &m.setup.plan;
        let load = m.load;
        let tally = Tally::of(&m.outcomes);
        let measured = m.warm.measured.len();
        let received = m.deliveries.received;
        let expected = load.sent.saturating_mul(measured as u64);
        let window_secs = m.deliveries.last_ns.saturating_sub(load.start_ns) as f64 / 1e9;
        let (drain_secs, drain_timed_out) = m.drain;
        FanoutReport {
            mode: "fanout",
            url: m.setup.subscribers.target().url.clone(),
            publish_url: m.publisher.url.clone(),
            tls: m.publisher.tls.clone(),
            subscribers: plan.subscribers,
            connected: m.connected.count,
            connect_errors: m.connected.log.total(),
            connect_secs: round_to(m.connected.secs, 3),
            warmup_secs: round_to(m.warm.secs, 3),
            warmup_messages: m.warm.messages,
            measured_subscribers: measured,
            messages: plan.messages,
            sent: load.sent,
            size: plan.size,
            rate: plan.rate,
            window: (plan.rate == 0.0).then_some(plan.window),
            send_secs: round_to(load.send_secs, 3),
            send_rate: round_to(per_sec(load.sent as f64, load.send_secs), 1),
            max_send_lag_ms: round_to(load.max_lag.as_secs_f64() * 1e3, 3),
            expected,
            received,
            lost: expected.saturating_sub(received),
            out_of_order: tally.out_of_order,
            unexpected: tally.unexpected,
            drain_secs: round_to(drain_secs, 3),
            drain_timed_out,
            window_secs: round_to(window_secs, 3),
            deliveries_per_sec: round_to(per_sec(received as f64, window_secs), 1),
            latency: LatencyMs::from(m.latency),
            closed: tally.closes.values().sum(),
            closes: tally.closes,
            close_details: tally.close_details.human(),
            publisher_error: m.publisher_failure.map(|f| f.to_string()),
            client_cpu_cores: m.client.cpu_cores,
            client_rss_kib: m.client.rss_kib,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LatencyMs {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl From<Percentiles> for LatencyMs {
    fn from(p: Percentiles) -> LatencyMs {
        let ms = |us: f64| round_to(us / 1e3, 3);
        LatencyMs {
            p50_ms: ms(p.p50_us as f64),
            p90_ms: ms(p.p90_us as f64),
            p99_ms: ms(p.p99_us as f64),
            p999_ms: ms(p.p999_us as f64),
            max_ms: ms(p.max_us as f64),
            mean_ms: ms(p.mean_us),
        }
    }
}

/// The JSON object of `wssd bench fanout --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutReport {
    pub mode: &'static str,
    pub url: String,
    pub publish_url: String,
    /// Negotiated TLS version, cipher suite and key exchange (publisher); null for ws://.
    pub tls: Option<String>,
    pub subscribers: usize,
    pub connected: usize,
    pub connect_errors: u64,
    pub connect_secs: f64,
    pub warmup_secs: f64,
    pub warmup_messages: u64,
    /// Subscribers that had received a warm-up message when measuring began.
    pub measured_subscribers: usize,
    pub messages: u64,
    pub sent: u64,
    pub size: usize,
    /// Requested messages per second; 0 = unpaced (bounded by `window`).
    pub rate: f64,
    pub window: Option<u64>,
    pub send_secs: f64,
    /// Achieved messages per second.
    pub send_rate: f64,
    /// How far the publisher fell behind its schedule at worst.
    pub max_send_lag_ms: f64,
    /// sent x measured_subscribers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    /// Time waited after the last send for late deliveries.
    pub drain_secs: f64,
    pub drain_timed_out: bool,
    /// First send to last delivery.
    pub window_secs: f64,
    pub deliveries_per_sec: f64,
    #[serde(flatten)]
    pub latency: LatencyMs,
    /// Subscriber connections the server ended, by close code ("none": no close frame).
    pub closes: BTreeMap<String, u64>,
    pub closed: u64,
    #[serde(skip)]
    pub close_details: String,
    pub publisher_error: Option<String>,
    /// CPU the bench client used while measuring, in cores.
    pub client_cpu_cores: Option<f64>,
    pub client_rss_kib: Option<u64>,
}

impl FanoutReport {
    pub(super) fn human(&self) -> String {
        let mut text = String::new();
        let rate = if self.rate > 0.0 {
            format!("{} msg/s asked", self.rate)
        } else {
            "unpaced".to_owned()
        };
        text.push_str(&format!(
            "  sent          {} of {} messages in {:.2} s ({:.1} msg/s, {rate}; at most {:.1} ms behind schedule)\n",
            self.sent, self.messages, self.send_secs, self.send_rate, self.max_send_lag_ms
        ));
        let lost_pct = if self.expected > 0 {
            100.0 * self.lost as f64 / self.expected as f64
        } else {
            0.0
        };
        text.push_str(&format!(
            "  deliveries    {} received of {} expected ({} messages x {} subscribers); lost {} ({lost_pct:.3} %)\n",
            self.received, self.expected, self.sent, self.measured_subscribers, self.lost
        ));
        if self.out_of_order > 0 || self.unexpected > 0 {
            text.push_str(&format!(
                "                out of order {}, unexpected messages {}\n",
                self.out_of_order, self.unexpected
            ));
        }
        text.push_str(&format!(
            "  rate          {:.1} deliveries/s over {:.3} s (first send to last delivery)\n",
            self.deliveries_per_sec, self.window_secs
        ));
        let l = &self.latency;
        text.push_str(&format!(
            "  latency       p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms\n",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        ));
        text.push_str(&format!(
            "  stragglers    waited {:.2} s after the last send{}\n",
            self.drain_secs,
            if self.drain_timed_out {
                " (timed out: some deliveries never came)"
            } else {
                ""
            }
        ));
        if self.closes.is_empty() {
            text.push_str("  closes        none\n");
        } else {
            let by_code: Vec<String> = self
                .closes
                .iter()
                .map(|(code, n)| format!("{n} x {code}"))
                .collect();
            text.push_str(&format!(
                "  closes        {} subscribers ended by the server: {} (1008 = slow consumer)\n",
                self.closed,
                by_code.join(", ")
            ));
            text.push_str(&self.close_details);
        }
        if let Some(e) = &self.publisher_error {
            text.push_str(&format!("  publisher     {e}\n"));
        }
        if let Some(cores) = self.client_cpu_cores {
            text.push_str(&client_cpu_line(cores));
        }
        if let Some(kib) = self.client_rss_kib {
            text.push_str(&format!("  client RSS    {} MiB\n", kib / 1024));
        }
        text
    }
}
