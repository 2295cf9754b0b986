//! `--tls acme`: certificates from an ACME CA (RFC 8555) with instant-acme.
//!
//! Serving never waits for the CA. [`initial`] hands the server the stored
//! certificate, or a temporary self-signed one (logged as such) when there is
//! none; [`run`] then orders, renews and installs certificates in the
//! background until shutdown:
//!
//! * HTTP-01 is answered by the plain listener and TLS-ALPN-01 by the TLS
//!   listener, both from [`Challenges`]; the configured type is tried first
//!   and the other one (when its listener runs) when validation fails.
//! * The account and the certificates live in the state folder and are reused
//!   at restart: `<state>/acme/<directory>/account.json` (0600) and
//!   `<state>/acme/<directory>/<first hostname>/{cert,key}.pem`, where
//!   `<directory>` is the directory's host plus a short hash of its URL.
//! * Renewal starts when a third of the lifetime is left, or earlier when the
//!   CA's renewal information (ARI, RFC 9773) says so.
//! * Failures keep the current certificate serving, are recorded in the
//!   manager, and are retried with exponential backoff
//!   ([`BACKOFF_START`] doubling up to [`BACKOFF_MAX`]).
//!
//! Every step logs one line starting with `ACME:`.
//!
//! One role per file: `storage` (file layout, account credentials),
//! `transport` (HTTPS to the CA), `client` (the account), `order` (one order,
//! challenge fallback), `challenges` (the solvers), `ari` (renewal
//! information), `schedule` (what is due when), `maintain` (the loop's state
//! and steps), `error` (why an attempt failed), `settings` (what the source
//! is given, fixed timings). This file holds the start ([`initial`]) and the
//! loop ([`run`]); the other files never import it.

mod ari;
mod challenges;
mod client;
mod error;
mod maintain;
mod order;
mod schedule;
mod settings;
mod storage;
mod transport;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::error::CertError;
use super::files;
use super::generate::{self, GeneratedPem};
use super::info::format_time;
use super::loaded::LoadedCert;
use super::manager::{CertManager, SlotId};
use super::store::sweep_stale;
use crate::tls::challenge::Challenges;
use maintain::Maintainer;
use schedule::{Plan, Stored, assess};
use storage::Store;

pub use schedule::{backoff, renewal_time};
pub use settings::{AcmeSettings, BACKOFF_MAX, BACKOFF_START, TEMPORARY_DAYS};
pub use storage::directory_key;

/// Obtains and renews the certificate until shutdown: each turn decides what
/// is next (wait, or order), then does it.
pub async fn run(
    settings: AcmeSettings,
    manager: Arc<CertManager>,
    slot: SlotId,
    challenges: Arc<Challenges>,
    shutdown: CancellationToken,
) {
    let mut maintainer = Maintainer::start(settings, manager, slot, challenges, shutdown);
    while let Some(plan) = maintainer.next_plan().await {
        let carry_on = match plan {
            Plan::Wait { until, what } => maintainer.wait(until, what).await,
            Plan::Order { reason } => maintainer.order(reason).await,
        };
        if carry_on.is_none() {
            return;
        }
    }
}

/// The certificate to serve at start, and whether an order is needed.
pub fn initial(settings: &AcmeSettings) -> Result<(LoadedCert, bool), CertError> {
    let store = Store::new(settings);
    // Temp files (account, key) of a start that was killed while writing.
    sweep_stale(&store.dir);
    sweep_stale(&store.cert_dir);
    match assess(settings, &store, SystemTime::now()) {
        Stored::Good { cert, renew_at } => {
            tracing::info!(
                "ACME: reusing the stored certificate {} for {}: serial {}, expires {}, renewal from {}",
                store.cert().display(),
                cert.info.sans.join(", "),
                cert.info.serial,
                format_time(cert.info.not_after),
                format_time(renew_at)
            );
            Ok((cert, false))
        }
        Stored::Due { cert, reason } => {
            tracing::info!(
                "ACME: serving the stored certificate {} (serial {}, expires {}) while renewing it: {reason}",
                store.cert().display(),
                cert.info.serial,
                format_time(cert.info.not_after)
            );
            Ok((cert, true))
        }
        Stored::Missing { reason } => {
            let cert = temporary(settings, &store)?;
            tracing::warn!(
                "ACME: {reason}; serving a TEMPORARY self-signed certificate for {} (serial {}) until the CA issues one; clients will not trust it meanwhile",
                settings.hostnames.join(", "),
                cert.info.serial
            );
            Ok((cert, true))
        }
    }
}

/// A self-signed certificate kept in memory only (never written).
fn temporary(settings: &AcmeSettings, store: &Store) -> Result<LoadedCert, CertError> {
    let pem = generate::self_signed(&settings.hostnames, TEMPORARY_DAYS, settings.key_type)?;
    loaded_from_pem(
        &store.cert_dir.join("temporary-self-signed (in memory)"),
        &pem,
    )
}

/// Builds a [`LoadedCert`] from PEM text; `path` only names it in messages.
fn loaded_from_pem(path: &Path, pem: &GeneratedPem) -> Result<LoadedCert, CertError> {
    let chain = files::parse_chain(path, pem.cert_pem.as_bytes())?;
    let info = files::chain_infos(path, &chain)?
        .into_iter()
        .next()
        .ok_or_else(|| CertError::NoCertificate {
            path: path.to_path_buf(),
            found: "nothing".into(),
        })?;
    let key = files::parse_key(path, pem.key_pem.as_bytes())?;
    let certified = CertifiedKey::new(chain, files::signing_key(path, key)?);
    files::check_keys_match(path, path, &certified)?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
        cert_path: path.to_path_buf(),
        key_path: path.to_path_buf(),
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Settings and stored certificates for the ACME unit tests.

    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use crate::certs::acme::loaded_from_pem;
    use crate::certs::acme::settings::AcmeSettings;
    use crate::certs::acme::storage::Store;
    use crate::certs::generate;
    use crate::certs::loaded::LoadedCert;
    use crate::config::AcmeConfig;
    use crate::config::types::{AcmeChallenge, KeyType};

    pub(crate) const DAY: Duration = Duration::from_secs(86_400);

    pub(crate) fn settings(state: &Path) -> AcmeSettings {
        AcmeSettings {
            config: AcmeConfig {
                directory: "https://127.0.0.1:1/dir".into(),
                email: None,
                ca_root: None,
                challenge: AcmeChallenge::Http01,
            },
            state_dir: state.to_path_buf(),
            hostnames: vec!["wssd.test".into(), "www.wssd.test".into()],
            key_type: KeyType::EcdsaP256,
            has_http_listener: true,
            has_tls_listener: true,
        }
    }

    /// Stores a pair for `names` valid between `from` and `to`.
    pub(crate) fn store_pair(s: &AcmeSettings, names: &[String], from: SystemTime, to: SystemTime) {
        let store = Store::new(s);
        let pem = generate::self_signed_between(names, from, to, KeyType::EcdsaP256).unwrap();
        generate::write_pair(&store.cert(), &store.key(), &pem).unwrap();
    }

    /// A certificate for `a.test` valid between `from` and `to`, in memory.
    pub(crate) fn loaded(dir: &Path, from: SystemTime, to: SystemTime) -> LoadedCert {
        let pem = generate::self_signed_between(&["a.test".into()], from, to, KeyType::EcdsaP256)
            .unwrap();
        loaded_from_pem(&dir.join("x"), &pem).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{DAY, settings, store_pair};
    use super::*;
    use crate::certs::manager::Source;
    use crate::tls::resolver::{CertResolver, CertSet};
    use std::time::Duration;

    #[test]
    fn nothing_stored_gives_temporary_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let (cert, needs_order) = initial(&s).unwrap();
        assert!(needs_order);
        assert!(cert.info.is_self_issued());
        assert_eq!(cert.info.sans, s.hostnames);
        assert!(cert.info.days_left(SystemTime::now()) <= i64::from(TEMPORARY_DAYS));
        // Nothing was written for the temporary certificate.
        assert!(!Store::new(&s).cert().exists());
    }

    #[test]
    fn stored_fresh_certificate_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = SystemTime::now();
        store_pair(&s, &s.hostnames, now - DAY, now + 89 * DAY);
        let (cert, needs_order) = initial(&s).unwrap();
        assert!(!needs_order);
        assert_eq!(cert.cert_path, Store::new(&s).cert());
        // Extra names in the stored certificate are fine.
        let mut more = s.hostnames.clone();
        more.push("other.test".into());
        store_pair(&s, &more, now - DAY, now + 89 * DAY);
        assert!(!initial(&s).unwrap().1);
    }

    #[tokio::test]
    #[allow(
        clippy::disallowed_types,
        reason = "the test polls with a real deadline, not tokio's clock"
    )]
    async fn unreachable_ca_keeps_serving_and_records_the_failure() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let (cert, _) = initial(&s).unwrap();
        let serial = cert.info.serial.clone();
        let manager = CertManager::new(Arc::new(CertResolver::new(CertSet::default())));
        let slot = manager.add("acme", Source::Acme, Vec::new(), true, Some(cert));
        let challenges = Arc::new(Challenges::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(s, manager.clone(), slot, challenges, shutdown.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = manager.status();
            if let Some(last) = status[0].last.as_ref().filter(|l| !l.ok) {
                assert!(last.message.contains("ACME:"), "{}", last.message);
                assert!(last.message.contains("next in 2 s"), "{}", last.message);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no failure recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(manager.current(slot).unwrap().info.serial, serial);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("run stops at shutdown")
            .unwrap();
    }
}
