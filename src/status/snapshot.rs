//! The JSON of the admin `GET /status` (schema version [`VERSION`],
//! documented field by field in `docs/status.md`; a test keeps the two in
//! step): live figures from `status::live`, certificates from the
//! `CertManager`, the broker's health and readiness. It carries names,
//! addresses and numbers only: no token, key or credential.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::live::{Figures, Live, Rates};
use crate::broker::{Broker, Health};
use crate::certs::manager::{CertManager, Source};

/// The schema version; bumped when a field changes meaning or goes away.
pub const VERSION: u32 = 1;

/// What a snapshot is drawn from besides the live figures.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `Ok` when ready, else why not.
    pub ready: Result<(), &'a str>,
    pub certs: Option<&'a CertManager>,
    pub broker: Option<&'a Broker>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: u32,
    pub server: Server,
    pub totals: Totals,
    pub rates: RatesJson,
    pub history: History,
    pub routes: Vec<Route>,
    pub listeners: Vec<Listener>,
    pub certificates: Vec<Certificate>,
    pub upstreams: Vec<Upstream>,
    pub broker: BrokerJson,
    pub closes: Closes,
}

#[derive(Debug, Serialize)]
pub struct Server {
    pub version: &'static str,
    pub now_unix: u64,
    pub started_unix: u64,
    pub uptime_seconds: u64,
    pub ready: bool,
    pub not_ready_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub connections_open: u64,
    pub connections_total: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl From<Figures> for Totals {
    fn from(f: Figures) -> Totals {
        Totals {
            connections_open: f.open,
            connections_total: f.total,
            messages_in: f.messages_in,
            messages_out: f.messages_out,
            bytes_in: f.bytes_in,
            bytes_out: f.bytes_out,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RatesJson {
    pub messages_in_per_second: f64,
    pub messages_out_per_second: f64,
    pub bytes_in_per_second: f64,
    pub bytes_out_per_second: f64,
}

impl From<Rates> for RatesJson {
    fn from(r: Rates) -> RatesJson {
        RatesJson {
            messages_in_per_second: r.messages_in,
            messages_out_per_second: r.messages_out,
            bytes_in_per_second: r.bytes_in,
            bytes_out_per_second: r.bytes_out,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct History {
    pub interval_seconds: u32,
    pub connections_open: Vec<u64>,
    pub messages_in_per_second: Vec<f64>,
    pub messages_out_per_second: Vec<f64>,
    pub bytes_in_per_second: Vec<f64>,
    pub bytes_out_per_second: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct Route {
    pub path: String,
    pub kind: &'static str,
    pub connections_open: u64,
    pub connections_total: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Serialize)]
pub struct Listener {
    pub address: String,
    pub tls: Option<bool>,
    pub connections_open: u64,
    pub connections_total: u64,
}

#[derive(Debug, Serialize)]
pub struct Certificate {
    pub slot: String,
    pub source: &'static str,
    pub names: Vec<String>,
    pub not_after_unix: Option<u64>,
    pub days_left: Option<f64>,
    pub last_reload_ok: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Upstream {
    pub route: String,
    pub last_connect: &'static str,
    pub last_connect_unix: u64,
    pub connects: u64,
    pub failures: u64,
}

#[derive(Debug, Serialize)]
pub struct BrokerJson {
    pub backend: Option<&'static str>,
    pub state: &'static str,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Closes {
    pub by_code: Vec<CodeCount>,
    pub recent: Vec<RecentClose>,
}

#[derive(Debug, Serialize)]
pub struct CodeCount {
    pub code: u16,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct RecentClose {
    pub at_unix: u64,
    pub route: String,
    pub code: u16,
    pub closed_by: &'static str,
}

/// The snapshot now.
pub fn build(live: &Live, inputs: Inputs<'_>) -> Status {
    let now = SystemTime::now();
    let history = live.history();
    Status {
        version: VERSION,
        server: Server {
            version: env!("CARGO_PKG_VERSION"),
            now_unix: unix(now),
            started_unix: live.started_unix(),
            uptime_seconds: live.uptime_seconds(),
            ready: inputs.ready.is_ok(),
            not_ready_reason: inputs.ready.err().map(str::to_string),
        },
        totals: live.totals().into(),
        rates: history.last().copied().unwrap_or_default().into(),
        history: history_json(&history),
        routes: live
            .routes()
            .into_iter()
            .map(|r| Route {
                path: r.path,
                kind: r.kind,
                connections_open: r.figures.open,
                connections_total: r.figures.total,
                messages_in: r.figures.messages_in,
                messages_out: r.figures.messages_out,
                bytes_in: r.figures.bytes_in,
                bytes_out: r.figures.bytes_out,
            })
            .collect(),
        listeners: live
            .listeners()
            .into_iter()
            .map(|l| Listener {
                address: l.address,
                tls: l.tls,
                connections_open: l.open,
                connections_total: l.total,
            })
            .collect(),
        certificates: inputs
            .certs
            .map(|m| certificates(m, now))
            .unwrap_or_default(),
        upstreams: live
            .upstreams()
            .into_iter()
            .map(|u| Upstream {
                route: u.route,
                last_connect: if u.last_ok { "ok" } else { "failed" },
                last_connect_unix: u.last_at_unix,
                connects: u.connects,
                failures: u.failures,
            })
            .collect(),
        broker: broker(inputs.broker),
        closes: Closes {
            by_code: live
                .closes_by_code()
                .into_iter()
                .map(|(code, count)| CodeCount { code, count })
                .collect(),
            recent: live
                .recent_closes()
                .into_iter()
                .map(|c| RecentClose {
                    at_unix: c.at_unix,
                    route: c.route.to_string(),
                    code: c.code,
                    closed_by: c.closed_by,
                })
                .collect(),
        },
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn history_json(h: &[Rates]) -> History {
    History {
        interval_seconds: 1,
        connections_open: h.iter().map(|r| r.connections_open).collect(),
        messages_in_per_second: h.iter().map(|r| r.messages_in).collect(),
        messages_out_per_second: h.iter().map(|r| r.messages_out).collect(),
        bytes_in_per_second: h.iter().map(|r| r.bytes_in).collect(),
        bytes_out_per_second: h.iter().map(|r| r.bytes_out).collect(),
    }
}

fn source_name(s: &Source) -> &'static str {
    match s {
        Source::Files { .. } => "files",
        Source::SelfSigned => "self-signed",
        Source::LocalCa => "local-ca",
        Source::Acme => "acme",
    }
}

fn certificates(m: &CertManager, now: SystemTime) -> Vec<Certificate> {
    m.status()
        .into_iter()
        .map(|s| Certificate {
            source: source_name(&s.source),
            names: s.names,
            not_after_unix: s.not_after.map(unix),
            days_left: s.not_after.map(|t| days_between(now, t)),
            last_reload_ok: s.last.map(|l| l.ok),
            slot: s.label,
        })
        .collect()
}

/// Days from `now` to `t`, negative once `t` has passed, to 0.1 day.
fn days_between(now: SystemTime, t: SystemTime) -> f64 {
    let secs = match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    (secs / 86_400.0 * 10.0).round() / 10.0
}

fn broker(b: Option<&Broker>) -> BrokerJson {
    match b {
        None => BrokerJson {
            backend: None,
            state: "healthy",
            reason: None,
        },
        Some(b) => {
            let (state, reason) = match b.health() {
                Health::Ok => ("healthy", None),
                Health::Degraded(why) => ("degraded", Some(why)),
            };
            BrokerJson {
                backend: Some(b.backend().name()),
                state,
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_left_are_signed_tenths() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            days_between(now, now + Duration::from_secs(86_400 * 30 + 3600)),
            30.0
        );
        assert_eq!(days_between(now, now - Duration::from_secs(43_200)), -0.5);
    }

    #[test]
    fn a_snapshot_has_every_section_and_the_version() {
        let live = Live::new();
        drop(live.open("/ws", "127.0.0.1:1"));
        live.closed("/ws", 4000, "client");
        let s = build(
            &live,
            Inputs {
                ready: Err("listeners not bound yet"),
                certs: None,
                broker: Some(&Broker::memory()),
            },
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["server"]["ready"], false);
        assert_eq!(v["routes"][0]["connections_total"], 1);
        assert_eq!(v["closes"]["recent"][0]["code"], 4000);
        assert_eq!(v["broker"]["backend"], "memory");
        assert_eq!(v["broker"]["state"], "healthy");
    }
}
