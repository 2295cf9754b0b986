//! `--tls local-ca` and `wssd cert ca init|issue|install|uninstall`.
//!
//! A certificate authority is created once in `<state>/local-ca/` (ECDSA
//! P-256, 10 years, `ca-key.pem` mode 0600 in a 0700 folder). It signs server
//! certificates for the `--hostname` names (90 days, kept in
//! `<state>/local-ca/leaf/`, reissued when the names, the key type or the CA
//! change, or when 30 days are left). `install` adds the CA to the system trust
//! store (`update-ca-certificates`) and to the NSS database Chromium reads
//! (`certutil`, `~/.pki/nssdb`); `uninstall` removes exactly those two entries.
//!
//! Each CA has an id (the first 6 bytes of its subject key identifier, in hex)
//! that names it everywhere: the subject `CN=wssd local CA <id>`, the NSS
//! nickname (the same text) and the system file `wssd-local-ca-<id>.crt`.
//!
//! One role per file: `ca` (load or create the CA), `issue` (sign a leaf;
//! may the stored one be served again), `commands` (`wssd cert ca ...`),
//! `public` (the certificate, fingerprint and iOS profile other devices get),
//! `qr` (QR codes of the install page's URL), `announce` (the page's URL and
//! QR code at start, the trust hint),
//! `trust` (the system store and the NSS database), `layout` (the files in
//! the state folder, validity periods). This file holds `--tls local-ca`'s
//! [`ensure_leaf`]; the other files never import it.

mod announce;
mod ca;
mod commands;
mod issue;
mod layout;
mod public;
mod qr;
mod trust;

use std::path::Path;
use std::time::SystemTime;

use super::error::CertError;
use super::generate::or_default_hostnames;
use super::loaded::LoadedCert;
use super::reuse::{self, Provenance, Wanted};
use super::store::sweep_stale;
use crate::config::types::KeyType;
use ca::ensure_ca;
use issue::{issue_leaf, reusable_leaf};

pub use announce::{announce_pages, page_url, trust_hint};
pub use commands::run_command;
pub use layout::{CA_VALIDITY_DAYS, CaPaths, LEAF_VALIDITY_DAYS, RENEW_DAYS, paths};
pub use public::{CaPublic, fingerprint, load_public, xml_escape};
pub use qr::{svg as qr_svg, terminal as qr_terminal};

/// A leaf for `hostnames` issued by the local CA (created if absent).
pub fn ensure_leaf(
    state_dir: &Path,
    hostnames: &[String],
    key_type: KeyType,
) -> Result<(LoadedCert, Provenance), CertError> {
    ensure_leaf_at(state_dir, hostnames, key_type, SystemTime::now())
}

/// [`ensure_leaf`] with the clock given.
pub fn ensure_leaf_at(
    state_dir: &Path,
    hostnames: &[String],
    key_type: KeyType,
    now: SystemTime,
) -> Result<(LoadedCert, Provenance), CertError> {
    let hostnames = or_default_hostnames(hostnames);
    let p = paths(state_dir);
    let leaf_dir = p.leaf_cert.parent().unwrap_or(&p.dir);
    // Temp files of a start that was killed while writing go first.
    sweep_stale(&p.dir);
    sweep_stale(leaf_dir);
    let (ca, created) = ensure_ca(&p, now)?;
    if created {
        tracing::info!(
            "created the local CA {} ({}); `wssd cert ca install --state-dir {}` makes browsers and curl on this machine trust it",
            p.ca_cert.display(),
            ca.describe(),
            state_dir.display()
        );
    }
    ca.check_current(&p.ca_cert, now)?;
    let wanted = Wanted {
        hostnames: &hostnames,
        key_type,
        renew_days: RENEW_DAYS,
        // A leaf already ending with the CA would not get any longer.
        longest: Some(ca.info.not_after),
    };
    reuse::reuse_or_generate(
        &p.leaf_cert,
        &p.leaf_key,
        leaf_dir,
        now,
        || reusable_leaf(&p, &ca, &wanted, now),
        || issue_leaf(&ca, &hostnames, LEAF_VALIDITY_DAYS, key_type, now).map(|(pem, _)| pem),
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the local CA's unit tests.

    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    use crate::certs::local_ca::ca::load_ca;
    use crate::certs::local_ca::layout::paths;

    pub(crate) fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    pub(crate) fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    pub(crate) fn ca_der(state: &Path) -> CertificateDer<'static> {
        load_ca(&paths(state)).unwrap().unwrap().der
    }

    /// Verifies `chain` (leaf first) for `name` with the CA of `state` as the only root.
    pub(crate) fn verify(
        state: &Path,
        chain: &[CertificateDer<'static>],
        name: &str,
    ) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der(state)).unwrap();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{ca_der, mode, names, verify};
    use super::*;
    use crate::certs::generate;
    use ca::load_ca;
    use commands::init;
    use std::fs;
    use std::time::Duration;
    use x509_parser::extensions::ParsedExtension;

    const DAY_SECS: u64 = 86_400;

    fn reason(p: Provenance) -> String {
        match p {
            Provenance::Generated { reason } => reason,
            Provenance::Reused => panic!("expected a new certificate"),
        }
    }

    #[test]
    fn leaf_verifies_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let (leaf, p) = ensure_leaf(state, &[], KeyType::EcdsaP256).unwrap();
        assert_eq!(reason(p), "none yet");
        let cp = paths(state);
        assert_eq!(leaf.cert_path, cp.leaf_cert);
        assert_eq!(leaf.key_path, cp.leaf_key);
        assert_eq!(mode(&cp.leaf_key), 0o600);
        assert_eq!(mode(cp.leaf_cert.parent().unwrap()), 0o700);
        assert_eq!(leaf.info.sans, vec!["localhost", "127.0.0.1", "::1"]);
        let days = leaf.info.days_left(SystemTime::now());
        assert!((89..=90).contains(&days), "{days}");

        // Full chain: the leaf, then the CA.
        let chain = leaf.key.cert.clone();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca_der(state));
        for name in ["localhost", "127.0.0.1", "::1"] {
            verify(state, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify(state, &chain, "example.com").is_err());
        // Also without the CA sent along (the root is enough).
        verify(state, &chain[..1], "localhost").unwrap();

        // What Chromium wants: serverAuth, SAN, not a CA, AKI = the CA's SKI.
        let (_, x) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(x.extended_key_usage().unwrap().unwrap().value.server_auth);
        assert!(!x.is_ca());
        let aki = x
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .expect("authorityKeyIdentifier");
        let (_, ca) = x509_parser::parse_x509_certificate(&chain[1]).unwrap();
        let ski = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("subjectKeyIdentifier");
        assert_eq!(aki, ski);
        assert_eq!(x.issuer(), ca.subject());

        // RSA leaves verify too.
        let (rsa, _) = ensure_leaf(state, &[], KeyType::Rsa2048).unwrap();
        verify(state, &rsa.key.cert, "127.0.0.1").unwrap();
    }

    #[test]
    fn reuse_and_reissue() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let (first, _) = ensure_leaf(state, &names(&["a.test"]), KeyType::EcdsaP256).unwrap();
        let (again, p) = ensure_leaf(state, &names(&["A.TEST."]), KeyType::EcdsaP256).unwrap();
        assert_eq!(p, Provenance::Reused);
        assert_eq!(again.info.serial, first.info.serial);

        let (second, p) = ensure_leaf(
            state,
            &names(&["a.test", "192.168.1.20"]),
            KeyType::EcdsaP256,
        )
        .unwrap();
        let why = reason(p);
        assert!(why.starts_with("names changed"), "{why}");
        assert!(why.contains("192.168.1.20"), "{why}");
        assert_ne!(second.info.serial, first.info.serial);
        verify(state, &second.key.cert, "192.168.1.20").unwrap();

        let both = names(&["192.168.1.20", "a.test"]);
        let (_, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        assert_eq!(reason(p), "key type changed");
        let (_, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        assert_eq!(p, Provenance::Reused);

        // Close to expiry.
        let cp = paths(state);
        let ca = load_ca(&cp).unwrap().unwrap();
        let (pem, _) = issue_leaf(&ca, &both, 10, KeyType::Rsa2048, SystemTime::now()).unwrap();
        generate::write_pair(&cp.leaf_cert, &cp.leaf_key, &pem).unwrap();
        let (renewed, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        let why = reason(p);
        assert!(
            why == "expires in 10 days" || why == "expires in 9 days",
            "{why}"
        );
        assert!(renewed.info.days_left(SystemTime::now()) >= 89);

        // A new CA: the old leaf no longer chains to it.
        fs::remove_file(&cp.ca_cert).unwrap();
        fs::remove_file(&cp.ca_key).unwrap();
        let (fresh, p) = ensure_leaf(state, &both, KeyType::Rsa2048).unwrap();
        assert_eq!(reason(p), "the local CA changed");
        verify(state, &fresh.key.cert, "a.test").unwrap();

        // Expired (checked as of a later time).
        let later = SystemTime::now() + Duration::from_secs(100 * DAY_SECS);
        let (_, p) = ensure_leaf_at(state, &both, KeyType::Rsa2048, later).unwrap();
        assert!(reason(p).starts_with("expired on "));
    }

    #[test]
    fn leaf_ends_with_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        init(state, SystemTime::now()).unwrap();
        let cp = paths(state);
        let ca = load_ca(&cp).unwrap().unwrap();
        // 20 days before the CA expires: the leaf is cut to the CA's end and
        // is not reissued on every check.
        let near_end = ca.info.not_after - Duration::from_secs(20 * DAY_SECS);
        let (leaf, _) = ensure_leaf_at(state, &[], KeyType::EcdsaP256, near_end).unwrap();
        assert_eq!(leaf.info.not_after, ca.info.not_after);
        let (_, p) = ensure_leaf_at(state, &[], KeyType::EcdsaP256, near_end).unwrap();
        assert_eq!(p, Provenance::Reused);
        let after = ca.info.not_after + Duration::from_secs(DAY_SECS);
        let e = ensure_leaf_at(state, &[], KeyType::EcdsaP256, after).unwrap_err();
        assert!(e.to_string().contains("expired on"), "{e}");
    }
}
