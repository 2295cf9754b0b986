//! ACME Renewal Information (RFC 9773): the certificate's ARI identifier, the
//! CA's suggested window, and the point of it wssd picks. The one-third rule
//! in `schedule` applies whenever the CA offers no ARI or cannot be reached.

use std::time::{Duration, SystemTime};

use instant_acme::CertificateIdentifier;
use rustls_pki_types::Der;

use super::client::Client;
use super::error::describe;
use crate::certs::info::format_time;
use crate::certs::loaded::LoadedCert;

/// Bounds on how often the renewal information (ARI) is fetched again.
const ARI_MIN_POLL: Duration = Duration::from_secs(60);
const ARI_MAX_POLL: Duration = Duration::from_secs(6 * 3600);
/// Fetching the renewal information must finish within this.
pub(super) const ARI_TIMEOUT: Duration = Duration::from_secs(20);

/// What the CA's renewal information said about the current certificate.
#[derive(Debug, Clone)]
pub(super) struct AriPlan {
    pub(super) serial: String,
    /// When to renew according to the CA.
    pub(super) renew_at: SystemTime,
    /// When to ask again.
    pub(super) recheck: SystemTime,
}

/// The ARI identifier of a certificate: base64url(AKI keyIdentifier) "."
/// base64url(serial DER content).
pub(super) fn certificate_id(leaf_der: &[u8]) -> Option<CertificateIdentifier<'static>> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    let serial = cert.tbs_certificate.raw_serial().to_vec();
    Some(CertificateIdentifier::new(Der::from_slice(&aki), Der::from_slice(&serial)).into_owned())
}

/// A uniformly random point of the suggested window not before `now`; `now`
/// when the window is already over (RFC 9773 section 4.2).
pub(super) fn pick_in_window(
    start: SystemTime,
    end: SystemTime,
    now: SystemTime,
    random: u64,
) -> SystemTime {
    if end <= now {
        return now;
    }
    let start = start.max(now);
    let span = end.duration_since(start).unwrap_or_default();
    let nanos = span.as_nanos();
    if nanos == 0 {
        return start;
    }
    let offset = (u128::from(random) % nanos) as u64;
    start + Duration::from_nanos(offset)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = crate::tls::provider().secure_random.fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl Client {
    /// Asks the CA when to renew `cert` (ARI). `None` when the CA does not
    /// offer it or cannot be reached (the one-third rule applies then).
    pub(super) async fn renewal_info(&mut self, cert: &LoadedCert) -> Option<AriPlan> {
        if self.ari_supported == Some(false) {
            return None;
        }
        let id = certificate_id(cert.key.end_entity_cert().ok()?)?;
        let account = match self.existing_account().await {
            Ok(Some(a)) => a,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!("ACME: renewal information not fetched: {e}");
                self.account = None;
                return None;
            }
        };
        match account.renewal_info(&id).await {
            Ok((info, retry)) => {
                self.ari_supported = Some(true);
                let now = SystemTime::now();
                let window = &info.suggested_window;
                let renew_at = pick_in_window(
                    SystemTime::from(window.start),
                    SystemTime::from(window.end),
                    now,
                    random_u64(),
                );
                tracing::info!(
                    "ACME: the CA suggests renewing serial {} between {} and {}; chose {}",
                    cert.info.serial,
                    format_time(SystemTime::from(window.start)),
                    format_time(SystemTime::from(window.end)),
                    format_time(renew_at)
                );
                Some(AriPlan {
                    serial: cert.info.serial.clone(),
                    renew_at,
                    recheck: now + retry.clamp(ARI_MIN_POLL, ARI_MAX_POLL),
                })
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.ari_supported = Some(false);
                tracing::info!(
                    "ACME: the directory offers no renewal information (ARI); renewing when a third of the lifetime is left"
                );
                None
            }
            Err(e) => {
                tracing::debug!("ACME: renewal information not fetched: {}", describe(&e));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    #[test]
    fn ari_window_choice() {
        let now = SystemTime::now();
        let h = Duration::from_secs(3600);
        // Window entirely past: at once.
        assert_eq!(pick_in_window(now - 2 * h, now - h, now, 7), now);
        // Window begun: between now and its end.
        let t = pick_in_window(now - h, now + h, now, u64::MAX);
        assert!(t >= now && t <= now + h);
        // Future window: inside it.
        for r in [0, 1, 12345, u64::MAX] {
            let t = pick_in_window(now + h, now + 2 * h, now, r);
            assert!(t >= now + h && t <= now + 2 * h);
        }
    }

    #[test]
    fn ari_certificate_id() {
        // rcgen sets the AKI when signing with an issuer.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![1, 2, 3, 4]);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x87, 0x65]));
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        let id = certificate_id(leaf.der()).unwrap();
        assert_eq!(id.to_string(), "AQIDBA.AIdl");
    }
}
