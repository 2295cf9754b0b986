//! The local CA itself: loading it from the state folder (every way it can be
//! incomplete or damaged), creating it once, and the id that names it in the
//! trust stores. Signing server certificates with it is `issue`'s job.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::ParsedExtension;

use super::layout::{CA_VALIDITY_DAYS, CaPaths, NAME_PREFIX};
use crate::certs::error::CertError;
use crate::certs::files;
use crate::certs::generate::{
    self, DAY_SECS, GeneratedPem, SKEW, gen_error, new_key, random_serial,
};
use crate::certs::info::CertInfo;
use crate::certs::info::{format_time, public_key_summary};
use crate::certs::store::make_private_dir;
use crate::config::types::KeyType;

/// The CA as loaded from the state folder.
pub(super) struct Ca {
    /// Text of `ca.pem` (exactly one certificate).
    pub(super) pem: String,
    pub(super) der: CertificateDer<'static>,
    pub(super) key: KeyPair,
    pub(super) info: CertInfo,
    /// 12 hex digits naming this CA (see the module docs).
    pub(super) id: String,
}

impl Ca {
    /// The NSS nickname, also the subject CN.
    pub(super) fn nickname(&self) -> String {
        format!("{NAME_PREFIX} {}", self.id)
    }

    /// The file name in the system's local CA folder.
    pub(super) fn system_file_name(&self) -> String {
        format!("wssd-local-ca-{}.crt", self.id)
    }

    pub(super) fn describe(&self) -> String {
        let key = public_key_summary(&self.der)
            .map(|(words, _)| words)
            .unwrap_or_else(|_| "unknown key".into());
        format!(
            "{}; {key}; expires {}",
            self.info.subject,
            format_time(self.info.not_after)
        )
    }

    /// Fails when the CA has expired.
    pub(super) fn check_current(&self, path: &Path, now: SystemTime) -> Result<(), CertError> {
        if self.info.is_expired(now) {
            return Err(unusable(
                path,
                format!("it expired on {}", format_time(self.info.not_after)),
            ));
        }
        Ok(())
    }
}

fn unusable(path: &Path, detail: impl Into<String>) -> CertError {
    CertError::CaUnusable {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the CA; `None` when neither of its files exists.
pub(super) fn load_ca(p: &CaPaths) -> Result<Option<Ca>, CertError> {
    match (p.ca_cert.exists(), p.ca_key.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(unusable(
                &p.ca_key,
                "the CA certificate is there but its private key is missing",
            ));
        }
        (false, true) => {
            return Err(unusable(
                &p.ca_cert,
                "the CA private key is there but its certificate is missing",
            ));
        }
        (true, true) => {}
    }
    let (pem, der, info) = read_ca_cert(&p.ca_cert)?;
    let key = read_ca_key(&p.ca_key)?;
    let id = check_key_and_id(p, &der, &info, &key)?;
    tighten_key_mode(&p.ca_key);
    Ok(Some(Ca {
        pem,
        der,
        key,
        info,
        id,
    }))
}

/// `ca.pem`: exactly one certificate, and a CA one.
pub(super) fn read_ca_cert(
    path: &Path,
) -> Result<(String, CertificateDer<'static>, CertInfo), CertError> {
    let cert_bytes = files::read(path)?;
    let mut chain = files::parse_chain(path, &cert_bytes)?;
    if chain.len() != 1 {
        return Err(unusable(
            path,
            format!("it holds {} certificates; expected one", chain.len()),
        ));
    }
    let der = chain.remove(0);
    let info = CertInfo::from_der(&der).map_err(|e| e.with_path(path))?;
    if !info.is_ca {
        return Err(unusable(
            path,
            "not a CA certificate (basicConstraints CA:FALSE)",
        ));
    }
    let pem = String::from_utf8(cert_bytes).map_err(|_| unusable(path, "not PEM text"))?;
    Ok((pem, der, info))
}

fn read_ca_key(path: &Path) -> Result<KeyPair, CertError> {
    let key_pem =
        String::from_utf8(files::read(path)?).map_err(|_| unusable(path, "not PEM text"))?;
    KeyPair::from_pem(&key_pem)
        .map_err(|e| unusable(path, format!("cannot load the private key: {e}")))
}

/// Checks the key belongs to the certificate; returns the CA's id (from the
/// subject key identifier, else the serial).
fn check_key_and_id(
    p: &CaPaths,
    der: &CertificateDer<'static>,
    info: &CertInfo,
    key: &KeyPair,
) -> Result<String, CertError> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse {
        path: p.ca_cert.clone(),
        detail: e.to_string(),
    })?;
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(unusable(
            &p.ca_key,
            format!(
                "this private key does not belong to {}",
                p.ca_cert.display()
            ),
        ));
    }
    let ski = x509
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    Ok(match ski {
        Some(ski) if ski.len() >= 6 => hex(&ski[..6]),
        _ => info.serial.chars().take(12).collect(),
    })
}

/// The key is the CA: readable by the owner only, whoever copied it here.
fn tighten_key_mode(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        match fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                "{}: was readable by others; changed its mode to 0600",
                path.display()
            ),
            Err(e) => tracing::warn!(
                "{}: readable by others and cannot be changed to mode 0600 ({e})",
                path.display()
            ),
        }
    }
}

/// Makes a new CA and writes it (key 0600, folder 0700).
fn create_ca(p: &CaPaths, now: SystemTime) -> Result<Ca, CertError> {
    let key = new_key(KeyType::EcdsaP256).map_err(gen_error)?;
    let mut params = CertificateParams::default();
    // The same SHA-256-based key id rcgen writes as subjectKeyIdentifier.
    let id = hex(params.key_identifier(&key).get(..6).unwrap_or_default());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, NAME_PREFIX);
    if let Some(host) = machine_hostname() {
        dn.push(DnType::OrganizationalUnitName, format!("wssd on {host}"));
    }
    dn.push(DnType::CommonName, format!("{NAME_PREFIX} {id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::from(now.checked_sub(SKEW).unwrap_or(now));
    params.not_after = time::OffsetDateTime::from(
        now + Duration::from_secs(u64::from(CA_VALIDITY_DAYS) * DAY_SECS),
    );
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(gen_error)?;

    make_private_dir(&p.dir)?;
    let pem = GeneratedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    generate::write_pair(&p.ca_cert, &p.ca_key, &pem).map_err(|e| e.in_state_dir(&p.dir))?;
    load_ca(p)?.ok_or_else(|| unusable(&p.ca_cert, "missing right after it was written"))
}

/// Loads the CA, creating it when absent; the flag says whether it was created.
pub(super) fn ensure_ca(p: &CaPaths, now: SystemTime) -> Result<(Ca, bool), CertError> {
    match load_ca(p)? {
        Some(ca) => Ok((ca, false)),
        None => Ok((create_ca(p, now)?, true)),
    }
}

/// The machine's host name, shortened to fit a 64-character name attribute.
fn machine_hostname() -> Option<String> {
    let text = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host: String = text.trim().chars().take(48).collect();
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::local_ca::commands::init;
    use crate::certs::local_ca::testing::mode;
    use crate::certs::local_ca::{ensure_leaf, paths};

    #[test]
    fn ca_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = init(&state, SystemTime::now()).unwrap();
        assert!(first.starts_with("created local CA "), "{first}");
        let p = paths(&state);
        assert_eq!(mode(&p.dir), 0o700);
        assert_eq!(mode(&p.ca_key), 0o600);
        let ca = load_ca(&p).unwrap().unwrap();
        assert!(ca.info.is_ca);
        assert_eq!(ca.id.len(), 12);
        assert!(
            ca.info
                .subject
                .contains(&format!("CN=wssd local CA {}", ca.id)),
            "{}",
            ca.info.subject
        );
        assert_eq!(ca.nickname(), format!("wssd local CA {}", ca.id));
        let days = ca.info.days_left(SystemTime::now());
        assert!((3649..=3650).contains(&days), "{days}");
        let (_, kind) = public_key_summary(&ca.der).unwrap();
        assert_eq!(kind, Some(KeyType::EcdsaP256));

        let second = init(&state, SystemTime::now()).unwrap();
        assert!(second.contains("already exists"), "{second}");
        let again = load_ca(&p).unwrap().unwrap();
        assert_eq!(again.info.serial, ca.info.serial);
        assert_eq!(again.id, ca.id);

        // Another CA gets another id (so uninstall finds exactly one).
        let other = tempfile::tempdir().unwrap();
        init(other.path(), SystemTime::now()).unwrap();
        assert_ne!(load_ca(&paths(other.path())).unwrap().unwrap().id, ca.id);
    }

    #[test]
    fn loose_key_mode_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), SystemTime::now()).unwrap();
        let p = paths(dir.path());
        fs::set_permissions(&p.ca_key, fs::Permissions::from_mode(0o644)).unwrap();
        load_ca(&p).unwrap().unwrap();
        assert_eq!(mode(&p.ca_key), 0o600);
    }

    #[test]
    fn broken_ca_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), SystemTime::now()).unwrap();
        let p = paths(dir.path());
        let key = fs::read(&p.ca_key).unwrap();
        fs::remove_file(&p.ca_key).unwrap();
        let e = ensure_leaf(dir.path(), &[], KeyType::EcdsaP256).unwrap_err();
        assert!(matches!(e, CertError::CaUnusable { .. }), "{e}");
        assert!(e.to_string().contains("private key is missing"), "{e}");
        assert!(!p.ca_key.exists());

        // Someone else's key.
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(&p.ca_key, other.serialize_pem()).unwrap();
        let e = ensure_leaf(dir.path(), &[], KeyType::EcdsaP256).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        fs::write(&p.ca_key, key).unwrap();
        ensure_leaf(dir.path(), &[], KeyType::EcdsaP256).unwrap();
    }
}
