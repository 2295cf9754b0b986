//! The challenge solvers: which types can be answered (HTTP-01 needs the plain
//! listener, TLS-ALPN-01 the TLS listener), the answers placed in the shared
//! [`Challenges`] table for the duration of an order, and the RFC 8737
//! validation certificate. The listeners serve the table; they are not here.

use std::path::Path;
use std::sync::Arc;

use instant_acme::ChallengeType;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::Failure;
use super::settings::AcmeSettings;
use crate::certs::files;
use crate::certs::generate::new_key;
use crate::config::types::{AcmeChallenge, KeyType};
use crate::tls::challenge::Challenges;

pub(super) fn challenge_name(kind: AcmeChallenge) -> &'static str {
    match kind {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
    }
}

pub(super) fn challenge_type(kind: AcmeChallenge) -> ChallengeType {
    match kind {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// The challenge types to try, preferred first, limited to running listeners.
pub(super) fn challenge_order(settings: &AcmeSettings) -> Vec<AcmeChallenge> {
    let preferred = settings.config.challenge;
    let other = match preferred {
        AcmeChallenge::Http01 => AcmeChallenge::TlsAlpn01,
        AcmeChallenge::TlsAlpn01 => AcmeChallenge::Http01,
    };
    [preferred, other]
        .into_iter()
        .filter(|k| match k {
            AcmeChallenge::Http01 => settings.has_http_listener,
            AcmeChallenge::TlsAlpn01 => settings.has_tls_listener,
        })
        .collect()
}

/// Removes the challenge answers it placed when dropped.
pub(super) struct ChallengeGuard {
    challenges: Arc<Challenges>,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl ChallengeGuard {
    pub(super) fn new(challenges: Arc<Challenges>) -> Self {
        ChallengeGuard {
            challenges,
            tokens: Vec::new(),
            names: Vec::new(),
        }
    }

    pub(super) fn http01(&mut self, token: &str, key_authorization: &str) {
        self.challenges.set_http01(token, key_authorization);
        self.tokens.push(token.to_string());
    }

    pub(super) fn alpn(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.challenges.set_alpn(name, key);
        self.names.push(name.to_string());
    }
}

impl Drop for ChallengeGuard {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.remove_http01(t);
        }
        for n in &self.names {
            self.challenges.remove_alpn(n);
        }
    }
}

/// The TLS-ALPN-01 validation certificate for `name` (RFC 8737): self-signed,
/// the name as its only SAN, and the critical acmeIdentifier extension holding
/// SHA-256 of the key authorization.
pub(super) fn alpn_certificate(
    name: &str,
    key_auth_digest: &[u8],
) -> Result<Arc<CertifiedKey>, Failure> {
    let fail = |e: rcgen::Error| Failure::Other(format!("TLS-ALPN-01 certificate for {name}: {e}"));
    let key = new_key(KeyType::EcdsaP256).map_err(fail)?;
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params.distinguished_name = DistinguishedName::new();
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(key_auth_digest)];
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = files::signing_key(Path::new("acme-tls/1 validation key"), der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::acme::storage::sha256;
    use crate::certs::acme::testing::settings;
    use crate::certs::info::CertInfo;

    #[test]
    fn challenge_types_follow_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        assert_eq!(
            challenge_order(&s),
            vec![AcmeChallenge::Http01, AcmeChallenge::TlsAlpn01]
        );
        s.config.challenge = AcmeChallenge::TlsAlpn01;
        assert_eq!(
            challenge_order(&s),
            vec![AcmeChallenge::TlsAlpn01, AcmeChallenge::Http01]
        );
        s.has_http_listener = false;
        assert_eq!(challenge_order(&s), vec![AcmeChallenge::TlsAlpn01]);
        s.has_tls_listener = false;
        assert!(challenge_order(&s).is_empty());
    }

    #[test]
    fn alpn_certificate_carries_acme_identifier() {
        let digest = sha256(b"token.thumbprint");
        let key = alpn_certificate("wssd.test", &digest).unwrap();
        let der = key.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // OCTET STRING (0x04, 32) wrapping the digest.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &digest[..]);
        let info = CertInfo::from_der(der).unwrap();
        assert_eq!(info.sans, vec!["wssd.test".to_string()]);
    }
}
