//! The ACME client's state and its account: reached through [`CaHttp`],
//! loaded from the stored credentials or created (and saved) on first use.
//! Ordering is in `order`, renewal information in `ari`.

use std::sync::Arc;

use instant_acme::{Account, AccountBuilder, NewAccount};

use super::error::{Failure, step};
use super::settings::AcmeSettings;
use super::storage::Store;
use super::transport::CaHttp;
use crate::tls::challenge::Challenges;

/// One directory's client: settings, storage, the challenge table the
/// listeners answer from, and what was learned about the CA so far.
pub(super) struct Client {
    pub(super) settings: AcmeSettings,
    pub(super) store: Store,
    pub(super) challenges: Arc<Challenges>,
    pub(super) account: Option<Account>,
    pub(super) http: Option<CaHttp>,
    /// `Some(false)` once the directory turned out not to offer ARI.
    pub(super) ari_supported: Option<bool>,
}

impl Client {
    pub(super) fn new(settings: AcmeSettings, store: Store, challenges: Arc<Challenges>) -> Client {
        Client {
            settings,
            store,
            challenges,
            account: None,
            http: None,
            ari_supported: None,
        }
    }

    /// Forgets the account and connections: the next attempt reconnects from
    /// the stored credentials.
    pub(super) fn reset(&mut self) {
        self.account = None;
        self.http = None;
    }

    fn builder(&mut self) -> Result<AccountBuilder, Failure> {
        let http = match &self.http {
            Some(h) => h.clone(),
            None => {
                let h = CaHttp::new(self.settings.config.ca_root.as_deref())?;
                self.http = Some(h.clone());
                h
            }
        };
        Ok(Account::builder_with_http(Box::new(http)))
    }

    /// The stored account, if there is one (no account is created).
    pub(super) async fn existing_account(&mut self) -> Result<Option<Account>, Failure> {
        if let Some(a) = &self.account {
            return Ok(Some(a.clone()));
        }
        let Some(credentials) = self.store.credentials() else {
            return Ok(None);
        };
        let account = self
            .builder()?
            .from_credentials(credentials)
            .await
            .map_err(step(format!(
                "reaching the ACME directory {}",
                self.settings.config.directory
            )))?;
        tracing::info!(
            "ACME: using the account stored in {} ({})",
            self.store.account().display(),
            account.id()
        );
        self.account = Some(account.clone());
        Ok(Some(account))
    }

    /// The stored account, or a new one.
    pub(super) async fn account(&mut self) -> Result<Account, Failure> {
        match self.existing_account().await? {
            Some(a) => Ok(a),
            None => self.create_account().await,
        }
    }

    pub(super) async fn create_account(&mut self) -> Result<Account, Failure> {
        let directory = self.settings.config.directory.clone();
        let contact = self
            .settings
            .config
            .email
            .as_ref()
            .map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(step(format!("creating an account at {directory}")))?;
        self.store.save_credentials(&credentials)?;
        tracing::info!(
            "ACME: account created at {directory}{} ({}); saved in {}",
            contact
                .as_deref()
                .map(|c| format!(" for {c}"))
                .unwrap_or_default(),
            account.id(),
            self.store.account().display()
        );
        self.account = Some(account.clone());
        Ok(account)
    }
}
