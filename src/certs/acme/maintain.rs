//! The state of the background ACME task between two steps, and the steps
//! themselves: decide what is next, wait for it, order and install. The loop
//! that strings them together is [`super::run`]; what is due when is
//! `schedule`'s, how an order is placed is `order`'s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::ari::{ARI_TIMEOUT, AriPlan, certificate_id};
use super::challenges::{challenge_name, challenge_order};
use super::client::Client;
use super::error::Failure;
use super::schedule::{Plan, Stored, assess, backoff, human, schedule, unfit_now};
use super::settings::{ATTEMPT_TIMEOUT, AcmeSettings, MAX_SLEEP};
use super::storage::Store;
use crate::certs::info::format_time;
use crate::certs::loaded::LoadedCert;
use crate::certs::manager::{CertManager, SlotId};
use crate::tls::challenge::Challenges;

/// The ACME task's state: the certificate it last stored, the CA's renewal
/// information about it, and the failures since the last success.
pub(super) struct Maintainer {
    settings: AcmeSettings,
    manager: Arc<CertManager>,
    slot: SlotId,
    shutdown: CancellationToken,
    client: Client,
    /// The certificate from the CA now served (`None`: none yet).
    stored: Option<LoadedCert>,
    /// Consecutive failed orders.
    failures: u32,
    ari: Option<AriPlan>,
    /// The last schedule logged (logged again only when it changes).
    announced: Option<String>,
}

impl Maintainer {
    /// Logs what the task will do and reads the stored certificate.
    pub(super) fn start(
        settings: AcmeSettings,
        manager: Arc<CertManager>,
        slot: SlotId,
        challenges: Arc<Challenges>,
        shutdown: CancellationToken,
    ) -> Maintainer {
        let store = Store::new(&settings);
        let kinds: Vec<&str> = challenge_order(&settings)
            .into_iter()
            .map(challenge_name)
            .collect();
        tracing::info!(
            "ACME: directory {}, challenges {}, names {}, storage {}",
            settings.config.directory,
            if kinds.is_empty() {
                "none possible".to_string()
            } else {
                kinds.join(" then ")
            },
            settings.hostnames.join(", "),
            store.dir.display()
        );
        let stored = match assess(&settings, &store, SystemTime::now()) {
            Stored::Good { cert, .. } | Stored::Due { cert, .. } => Some(cert),
            Stored::Missing { .. } => None,
        };
        Maintainer {
            client: Client::new(settings.clone(), store, challenges),
            settings,
            manager,
            slot,
            shutdown,
            stored,
            failures: 0,
            ari: None,
            announced: None,
        }
    }

    /// What to do next; `None` at shutdown.
    pub(super) async fn next_plan(&mut self) -> Option<Plan> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let now = SystemTime::now();
        let Some(cert) = self.stored.clone() else {
            return Some(Plan::Order {
                reason: "no certificate from the CA yet".into(),
            });
        };
        if let Some(reason) = unfit_now(&cert, &self.settings) {
            return Some(Plan::Order { reason });
        }
        let stale = self
            .ari
            .as_ref()
            .is_none_or(|a| a.serial != cert.info.serial || now >= a.recheck);
        if stale {
            self.ari = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = tokio::time::timeout(ARI_TIMEOUT, self.client.renewal_info(&cert)) => r.ok().flatten(),
            };
        }
        Some(schedule(&cert, self.ari.as_ref(), SystemTime::now()))
    }

    /// Sleeps until `until` (at most [`MAX_SLEEP`]); `None` at shutdown.
    pub(super) async fn wait(&mut self, until: SystemTime, what: String) -> Option<()> {
        if self.announced.as_ref() != Some(&what) {
            tracing::info!("ACME: {what}");
            self.announced = Some(what);
        }
        let wait = until
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_SLEEP);
        sleep(&self.shutdown, wait).await
    }

    /// Orders a certificate and installs it, or records the failure and
    /// backs off; `None` at shutdown.
    pub(super) async fn order(&mut self, reason: String) -> Option<()> {
        tracing::info!(
            "ACME: requesting a certificate for {}: {reason}",
            self.settings.hostnames.join(", ")
        );
        let replaces = self
            .stored
            .as_ref()
            .filter(|_| self.client.ari_supported == Some(true))
            .and_then(|c| c.key.end_entity_cert().ok())
            .and_then(|der| certificate_id(der));
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            r = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.obtain(replaces)) => r,
        };
        let result = result.unwrap_or_else(|_| {
            Err(Failure::Other(format!(
                "no certificate after {}",
                human(ATTEMPT_TIMEOUT)
            )))
        });
        match result {
            Ok(cert) => {
                self.install(cert, started.elapsed());
                Some(())
            }
            Err(e) => self.back_off(e).await,
        }
    }

    fn install(&mut self, cert: LoadedCert, took: Duration) {
        tracing::info!(
            "ACME: certificate installed for {}: serial {}, expires {}, issued by {}; saved in {} ({} ms)",
            cert.info.sans.join(", "),
            cert.info.serial,
            format_time(cert.info.not_after),
            cert.info.issuer,
            cert.cert_path.display(),
            took.as_millis()
        );
        self.manager.install(self.slot, cert.clone());
        self.stored = Some(cert);
        self.failures = 0;
        self.ari = None;
    }

    async fn back_off(&mut self, e: Failure) -> Option<()> {
        self.failures += 1;
        let wait = backoff(self.failures);
        // Reconnect from the stored credentials next time.
        self.client.reset();
        self.manager.fail(
            self.slot,
            &format!(
                "ACME: {e}; attempt {}, next in {}",
                self.failures,
                human(wait)
            ),
        );
        sleep(&self.shutdown, wait).await
    }
}

/// Sleeps for `wait`; `None` when shutdown comes first.
async fn sleep(shutdown: &CancellationToken, wait: Duration) -> Option<()> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        _ = tokio::time::sleep(wait) => Some(()),
    }
}
