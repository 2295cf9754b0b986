//! One certificate order (RFC 8555 section 7.4): place it, answer each
//! authorization with one challenge type, wait for validation, finalize with
//! a fresh key and CSR, download and store the chain. [`Client::obtain`]
//! tries the next challenge type when validation fails.

use std::net::IpAddr;
use std::time::Duration;

use instant_acme::{
    AuthorizationStatus, CertificateIdentifier, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName};

use super::challenges::{
    ChallengeGuard, alpn_certificate, challenge_name, challenge_order, challenge_type,
};
use super::client::Client;
use super::error::{Failure, describe, is_problem, step};
use super::schedule::uncovered;
use crate::certs::files;
use crate::certs::generate::{self, GeneratedPem, new_key, normalize_name};
use crate::certs::loaded::LoadedCert;
use crate::certs::store::make_private_dir;
use crate::config::types::{AcmeChallenge, KeyType};

/// Order polling: quick first looks (validation is often done in
/// milliseconds), then doubling; Retry-After from the CA takes precedence.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(15))
    .backoff(2.0)
    .timeout(Duration::from_secs(90));

impl Client {
    /// Orders a certificate, trying each usable challenge type in turn.
    pub(super) async fn obtain(
        &mut self,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<LoadedCert, Failure> {
        let kinds = challenge_order(&self.settings);
        if kinds.is_empty() {
            return Err(Failure::Other(
                "no listener can answer a challenge (HTTP-01 needs --http, TLS-ALPN-01 a TLS listener)"
                    .into(),
            ));
        }
        let mut last = None;
        for (i, kind) in kinds.iter().enumerate() {
            match self.order_once(*kind, replaces.clone()).await {
                Ok(cert) => return Ok(cert),
                Err(Failure::Challenge(why)) if i + 1 < kinds.len() => {
                    tracing::warn!(
                        "ACME: {} validation failed: {why}; trying {} instead",
                        challenge_name(*kind),
                        challenge_name(kinds[i + 1])
                    );
                    last = Some(Failure::Challenge(why));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Failure::Other("no challenge type left to try".into())))
    }

    /// One order with one challenge type: the steps in order.
    async fn order_once(
        &mut self,
        kind: AcmeChallenge,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<LoadedCert, Failure> {
        let names: Vec<String> = self
            .settings
            .hostnames
            .iter()
            .map(|n| normalize_name(n))
            .collect();
        let ids = identifiers(&names);
        let mut order = self.new_order(&ids, replaces).await?;
        tracing::info!(
            "ACME: order placed for {} ({}), answering {}",
            names.join(", "),
            order.url(),
            challenge_name(kind)
        );
        let guard = self.answer_authorizations(&mut order, kind).await?;
        wait_until_validated(&mut order).await?;
        drop(guard);
        tracing::info!(
            "ACME: {} validated ({})",
            names.join(", "),
            challenge_name(kind)
        );
        let pem = self.finalize(&mut order, &names).await?;
        self.save(&names, &pem)
    }

    /// Places the order; a stored account the CA no longer knows is replaced,
    /// and a refused replacement order (ARI) is placed again without it.
    async fn new_order(
        &mut self,
        ids: &[Identifier],
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<Order, Failure> {
        let directory = self.settings.config.directory.clone();
        let what = || format!("placing the order at {directory}");
        let account = self.account().await?;
        let mut order = NewOrder::new(ids);
        if let Some(r) = replaces.clone() {
            order = order.replaces(r);
        }
        match account.new_order(&order).await {
            Ok(o) => Ok(o),
            Err(e) if is_problem(&e, "accountDoesNotExist") || is_problem(&e, "unauthorized") => {
                tracing::warn!(
                    "ACME: the CA rejected the stored account ({}); creating a new one",
                    describe(&e)
                );
                self.account = None;
                let account = self.create_account().await?;
                account
                    .new_order(&NewOrder::new(ids))
                    .await
                    .map_err(step(what()))
            }
            Err(e) if replaces.is_some() => {
                tracing::info!(
                    "ACME: order marked as a replacement was refused ({}); ordering without it",
                    describe(&e)
                );
                account
                    .new_order(&NewOrder::new(ids))
                    .await
                    .map_err(step(what()))
            }
            Err(e) => Err(step(what())(e)),
        }
    }

    /// Places a `kind` answer for every pending authorization and tells the
    /// CA it is ready; the answers stay until the returned guard is dropped.
    async fn answer_authorizations(
        &mut self,
        order: &mut Order,
        kind: AcmeChallenge,
    ) -> Result<ChallengeGuard, Failure> {
        let mut guard = ChallengeGuard::new(self.challenges.clone());
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(step("fetching an authorization".into()))?;
            let ident = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => {
                    tracing::info!("ACME: {ident} is already validated for this account");
                    continue;
                }
                other => {
                    return Err(Failure::Other(format!(
                        "the authorization for {ident} is {other:?}"
                    )));
                }
            }
            let mut challenge = authz.challenge(challenge_type(kind)).ok_or_else(|| {
                Failure::Challenge(format!(
                    "the CA offers no {} challenge for {ident}",
                    challenge_name(kind)
                ))
            })?;
            let key_auth = challenge.key_authorization();
            match kind {
                AcmeChallenge::Http01 => {
                    guard.http01(&challenge.token, key_auth.as_str());
                    tracing::info!(
                        "ACME: answering http-01 for {ident} on the plain listener at /.well-known/acme-challenge/{}",
                        challenge.token
                    );
                }
                AcmeChallenge::TlsAlpn01 => {
                    guard.alpn(
                        &ident,
                        alpn_certificate(&ident, key_auth.digest().as_ref())?,
                    );
                    tracing::info!(
                        "ACME: answering tls-alpn-01 for {ident} on the TLS listener (ALPN acme-tls/1)"
                    );
                }
            }
            challenge.set_ready().await.map_err(|e| match e {
                instant_acme::Error::Api(p) => Failure::Challenge(format!("{ident}: {p}")),
                other => step(format!("telling the CA the {ident} challenge is ready"))(other),
            })?;
        }
        Ok(guard)
    }

    /// Finalizes with a new key and CSR and downloads the chain.
    async fn finalize(
        &mut self,
        order: &mut Order,
        names: &[String],
    ) -> Result<GeneratedPem, Failure> {
        let (key_pem, csr) = key_and_csr(names, self.settings.key_type)?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(step("finalizing the order".into()))?;
        // Often issued at once; otherwise poll.
        let chain = match order
            .certificate()
            .await
            .map_err(step("downloading the certificate".into()))?
        {
            Some(chain) => chain,
            None => order
                .poll_certificate(&POLL)
                .await
                .map_err(step("downloading the certificate".into()))?,
        };
        tracing::info!(
            "ACME: order finalized with a new {} key; certificate downloaded",
            generate::key_type_name(self.settings.key_type)
        );
        Ok(GeneratedPem {
            cert_pem: chain,
            key_pem,
        })
    }

    /// Stores the new pair and loads it back, checking it covers `names`.
    fn save(&self, names: &[String], pem: &GeneratedPem) -> Result<LoadedCert, Failure> {
        make_private_dir(&self.store.cert_dir)?;
        generate::write_pair(&self.store.cert(), &self.store.key(), pem)?;
        let loaded = files::load_pair(&self.store.cert(), &self.store.key())?;
        let missing = uncovered(&loaded.info, names);
        if !missing.is_empty() {
            return Err(Failure::Other(format!(
                "the CA issued a certificate without {}",
                missing.join(", ")
            )));
        }
        Ok(loaded)
    }
}

/// Waits until the CA has validated every authorization.
async fn wait_until_validated(order: &mut Order) -> Result<(), Failure> {
    let status = order.poll_ready(&POLL).await.map_err(|e| match e {
        instant_acme::Error::Api(p) => Failure::Challenge(p.to_string()),
        other => step("waiting for validation".into())(other),
    })?;
    if status != OrderStatus::Ready {
        return Err(Failure::Challenge(invalid_detail(order).await));
    }
    Ok(())
}

/// Why an order became invalid, from the order and its authorizations.
async fn invalid_detail(order: &mut Order) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &order.state().error {
        parts.push(p.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let ident = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(p) = &c.error {
                    parts.push(format!("{ident}: {p}"));
                }
            }
        }
    }
    if parts.is_empty() {
        "the order became invalid".into()
    } else {
        parts.join("; ")
    }
}

/// A fresh key of `key_type` and a CSR for `names`: (key PEM, CSR DER).
fn key_and_csr(names: &[String], key_type: KeyType) -> Result<(String, Vec<u8>), Failure> {
    let fail = |e: rcgen::Error| Failure::Other(format!("building the CSR: {e}"));
    let key = new_key(key_type).map_err(fail)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(fail)?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(fail)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn identifiers(names: &[String]) -> Vec<Identifier> {
    names
        .iter()
        .map(|n| normalize_name(n))
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(n),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_has_the_names_and_key_type() {
        let names = vec!["wssd.test".to_string(), "www.wssd.test".to_string()];
        for kind in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let (key_pem, csr) = key_and_csr(&names, kind).unwrap();
            assert!(key_pem.contains("BEGIN PRIVATE KEY"));
            let parsed = rcgen::CertificateSigningRequestParams::from_der(&csr.into()).unwrap();
            let sans: Vec<String> = parsed
                .params
                .subject_alt_names
                .iter()
                .map(|s| match s {
                    rcgen::SanType::DnsName(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(sans, names);
        }
    }
}
