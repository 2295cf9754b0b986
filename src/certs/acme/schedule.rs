//! When the ACME certificate is due: the stored certificate's state at start
//! ([`assess`]), the next step of the loop ([`schedule`]: a third of the
//! lifetime left, or the CA's ARI choice when earlier), and the backoff
//! after failures. Pure functions of the certificate and the clock.

use std::time::{Duration, SystemTime};

use super::ari::AriPlan;
use super::settings::{AcmeSettings, BACKOFF_MAX, BACKOFF_START};
use super::storage::Store;
use crate::certs::generate;
use crate::certs::info::CertInfo;
use crate::certs::info::format_time;
use crate::certs::loaded::LoadedCert;
use crate::certs::reuse::{self, Unfit};

pub(super) use crate::certs::reuse::{key_type_of, uncovered};

/// The state of the stored certificate.
#[derive(Debug)]
pub(super) enum Stored {
    /// Usable and not due; renew from `renew_at`.
    Good {
        cert: LoadedCert,
        renew_at: SystemTime,
    },
    /// Usable but to be replaced now.
    Due { cert: LoadedCert, reason: String },
    /// Nothing usable.
    Missing { reason: String },
}

/// What to do next.
pub(super) enum Plan {
    Order {
        reason: String,
    },
    /// Sleep until `until`; `what` says what happens then (for the log).
    Wait {
        until: SystemTime,
        what: String,
    },
}

/// When a certificate is due: when a third of its lifetime is left.
pub fn renewal_time(info: &CertInfo) -> SystemTime {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    info.not_before + lifetime * 2 / 3
}

/// The stored certificate's state as of `now`.
pub(super) fn assess(settings: &AcmeSettings, store: &Store, now: SystemTime) -> Stored {
    let missing = |unfit: Unfit| Stored::Missing {
        reason: match unfit {
            Unfit::Missing => "no certificate stored yet".into(),
            Unfit::Expired { date } => format!("the stored certificate expired on {date}"),
            Unfit::Unreadable(e) => format!("the stored certificate is unusable ({e})"),
            other => format!("the stored certificate {other}"),
        },
    };
    let cert = match reuse::load_stored(&store.cert(), &store.key(), now) {
        Ok(cert) => cert,
        Err(unfit) => return missing(unfit),
    };
    let not_covered = uncovered(&cert.info, &settings.hostnames);
    if !not_covered.is_empty() {
        return missing(Unfit::NotCovered(not_covered));
    }
    if key_type_of(&cert) != Some(settings.key_type) {
        return Stored::Due {
            cert,
            reason: format!(
                "the key type changed to {}",
                generate::key_type_name(settings.key_type)
            ),
        };
    }
    let renew_at = renewal_time(&cert.info);
    if now >= renew_at {
        let reason = format!(
            "a third of its lifetime is left (expires {})",
            format_time(cert.info.not_after)
        );
        return Stored::Due { cert, reason };
    }
    Stored::Good { cert, renew_at }
}

/// Why the certificate being served must be replaced now, whatever its age:
/// names no longer covered or another key type wanted.
pub(super) fn unfit_now(cert: &LoadedCert, settings: &AcmeSettings) -> Option<String> {
    let missing = uncovered(&cert.info, &settings.hostnames);
    if !missing.is_empty() {
        Some(format!(
            "the certificate does not cover {}",
            missing.join(", ")
        ))
    } else if key_type_of(cert) != Some(settings.key_type) {
        Some("the key type changed".into())
    } else {
        None
    }
}

/// When `cert` is to be renewed: a third of its lifetime left, or the CA's
/// (ARI) choice when that is earlier; wakes up again for the next ARI check.
pub(super) fn schedule(cert: &LoadedCert, ari: Option<&AriPlan>, now: SystemTime) -> Plan {
    let rule = renewal_time(&cert.info);
    let ari = ari.filter(|a| a.serial == cert.info.serial);
    let (at, why) = match ari {
        Some(a) if a.renew_at < rule => (a.renew_at, "the CA's renewal window (ARI)"),
        _ => (rule, "a third of the lifetime left"),
    };
    if now >= at {
        return Plan::Order {
            reason: format!(
                "renewal due: {why} (serial {}, expires {})",
                cert.info.serial,
                format_time(cert.info.not_after)
            ),
        };
    }
    let renewal = format!(
        "next renewal at {} ({why}; serial {} expires {})",
        format_time(at),
        cert.info.serial,
        format_time(cert.info.not_after)
    );
    match ari {
        Some(a) if a.recheck < at => Plan::Wait {
            until: a.recheck,
            what: format!(
                "{renewal}; renewal information checked again at {}",
                format_time(a.recheck)
            ),
        },
        _ => Plan::Wait {
            until: at,
            what: renewal,
        },
    }
}

/// Backoff after `failures` consecutive failures (1 = the first).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    BACKOFF_START
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// A duration for log lines: `2 s`, `1 min 4 s`, `1 h`.
pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} s", s.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::acme::testing::{DAY, loaded, settings, store_pair};
    use crate::config::types::KeyType;
    use std::fs;

    #[test]
    fn renewal_at_two_thirds() {
        let now = SystemTime::now();
        let dir = tempfile::tempdir().unwrap();
        let cert = loaded(dir.path(), now, now + 90 * DAY);
        let at = renewal_time(&cert.info);
        let expected = cert.info.not_before + 60 * DAY;
        assert_eq!(at, expected);
    }

    #[test]
    fn stored_certificate_due_is_served_and_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        // 90-day certificate with 20 days left: less than a third.
        store_pair(&s, &s.hostnames, now - 70 * DAY, now + 20 * DAY);
        let store = Store::new(&s);
        assert!(matches!(assess(&s, &store, now), Stored::Due { .. }));
        let (cert, needs_order) = crate::certs::acme::initial(&s).unwrap();
        assert!(needs_order);
        assert_eq!(cert.cert_path, store.cert());
        // 40 days left of 90: not yet.
        store_pair(&s, &s.hostnames, now - 50 * DAY, now + 40 * DAY);
        assert!(matches!(assess(&s, &store, now), Stored::Good { .. }));
    }

    #[test]
    fn key_type_change_makes_it_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let now = SystemTime::now();
        store_pair(&s, &s.hostnames, now - DAY, now + 89 * DAY);
        s.key_type = KeyType::Rsa2048;
        let store = Store::new(&s);
        assert!(
            matches!(assess(&s, &store, now), Stored::Due { reason, .. } if reason.contains("key type"))
        );
    }

    #[test]
    fn unusable_stored_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let store = Store::new(&s);
        let now = SystemTime::now();
        // Names not covered.
        store_pair(&s, &["wssd.test".into()], now - DAY, now + 89 * DAY);
        assert!(
            matches!(assess(&s, &store, now), Stored::Missing { reason } if reason.contains("www.wssd.test"))
        );
        // Expired.
        store_pair(&s, &s.hostnames, now - 90 * DAY, now - DAY);
        assert!(
            matches!(assess(&s, &store, now), Stored::Missing { reason } if reason.contains("expired"))
        );
        // Garbage.
        fs::write(store.cert(), "junk").unwrap();
        assert!(
            matches!(assess(&s, &store, now), Stored::Missing { reason } if reason.contains("unusable"))
        );
        let (cert, needs) = crate::certs::acme::initial(&s).unwrap();
        assert!(needs && cert.info.is_self_issued());
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(11), Duration::from_secs(2048));
        assert_eq!(backoff(12), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn ari_schedule_only_brings_renewal_forward() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let cert = loaded(dir.path(), now, now + 90 * DAY);
        let rule = renewal_time(&cert.info);
        let plan = schedule(&cert, None, now);
        assert!(matches!(plan, Plan::Wait { until, .. } if until == rule));
        let early = AriPlan {
            serial: cert.info.serial.clone(),
            renew_at: now + DAY,
            recheck: now + Duration::from_secs(6 * 3600),
        };
        assert!(
            matches!(schedule(&cert, Some(&early), now), Plan::Wait { until, .. } if until == early.recheck)
        );
        assert!(matches!(
            schedule(&cert, Some(&early), now + 2 * DAY),
            Plan::Order { reason } if reason.contains("ARI")
        ));
        let late = AriPlan {
            renew_at: now + 80 * DAY,
            recheck: now + 70 * DAY,
            ..early.clone()
        };
        assert!(
            matches!(schedule(&cert, Some(&late), now), Plan::Wait { until, .. } if until == rule)
        );
        assert!(matches!(
            schedule(&cert, None, rule + Duration::from_secs(1)),
            Plan::Order { .. }
        ));
    }
}
