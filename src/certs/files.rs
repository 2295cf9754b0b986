//! `--tls files`: read a PEM chain and key, tell apart every way they can be
//! wrong (missing, unreadable, swapped, encrypted, mismatched, expired), and
//! build the rustls `CertifiedKey`. Watching the files for changes is not here.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::error::CertError;
use crate::certs::info::CertInfo;
use crate::certs::info::format_time;
use crate::certs::loaded::LoadedCert;

/// PEM labels of plain private keys rustls can load.
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// Loads and checks a certificate chain and its key, as of now.
pub fn load_pair(cert: &Path, key: &Path) -> Result<LoadedCert, CertError> {
    load_pair_at(cert, key, SystemTime::now())
}

/// [`load_pair`] with the clock given (for tests and `wssd check`).
pub fn load_pair_at(cert: &Path, key: &Path, now: SystemTime) -> Result<LoadedCert, CertError> {
    let cert_bytes = read(cert)?;
    let key_bytes = read(key)?;
    let chain = parse_chain(cert, &cert_bytes)?;
    let infos = chain_infos(cert, &chain)?;
    let private_key = parse_key(key, &key_bytes)?;
    let signing_key = signing_key(key, private_key)?;
    let certified = CertifiedKey::new(chain, signing_key);
    check_keys_match(cert, key, &certified)?;
    let info = infos
        .into_iter()
        .next()
        .ok_or_else(|| CertError::NoCertificate {
            path: cert.to_path_buf(),
            found: "nothing".into(),
        })?;
    check_validity(cert, &info, now)?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
        cert_path: cert.to_path_buf(),
        key_path: key.to_path_buf(),
    })
}

/// Reads a whole file, telling missing, forbidden and other failures apart.
pub fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::from_read(path, e))
}

/// The labels of every `-----BEGIN <label>-----` line, in file order.
pub fn pem_labels(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
                .map(str::to_owned)
        })
        .collect()
}

/// "CERTIFICATE, PRIVATE KEY" or "no PEM sections", for error messages.
fn describe_labels(labels: &[String]) -> String {
    if labels.is_empty() {
        "no PEM sections".to_owned()
    } else {
        let mut unique: Vec<&str> = Vec::new();
        for l in labels {
            if !unique.contains(&l.as_str()) {
                unique.push(l);
            }
        }
        unique.join(", ")
    }
}

fn is_key_label(label: &str) -> bool {
    label.ends_with("PRIVATE KEY")
}

fn bad_pem(path: &Path, err: pem::Error) -> CertError {
    // pem::Error's Display prints raw bytes as number lists; say it in text.
    let detail = match err {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "no -----END {}----- line",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "bad BEGIN line {:?}",
            String::from_utf8_lossy(&line)
                .chars()
                .take(80)
                .collect::<String>()
        ),
        pem::Error::Base64Decode(e) => format!("bad base64: {e}"),
        other => other.to_string(),
    }
    .replace(['\n', '\r'], " ");
    CertError::BadPem {
        path: path.to_path_buf(),
        detail,
    }
}

/// Every `CERTIFICATE` section of a PEM file, in order (leaf first).
pub fn parse_chain(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let labels = pem_labels(bytes);
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        match item {
            Ok(der) => chain.push(der),
            Err(e) => return Err(bad_pem(path, e)),
        }
    }
    if !chain.is_empty() {
        return Ok(chain);
    }
    let path = path.to_path_buf();
    Err(if labels.is_empty() {
        CertError::NotPem { path }
    } else if labels.iter().any(|l| is_key_label(l)) {
        CertError::CertIsKey { path }
    } else {
        CertError::NoCertificate {
            path,
            found: describe_labels(&labels),
        }
    })
}

/// The first plain private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    let labels = pem_labels(bytes);
    let owned = path.to_path_buf();
    // Legacy OpenSSL encryption keeps the RSA/EC label and adds a Proc-Type header.
    let legacy_encrypted = String::from_utf8_lossy(bytes).contains("Proc-Type: 4,ENCRYPTED");
    if legacy_encrypted {
        return Err(CertError::EncryptedKey { path: owned });
    }
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => return Ok(key),
        Err(pem::Error::NoItemsFound) => {}
        Err(e) => return Err(bad_pem(path, e)),
    }
    Err(if labels.iter().any(|l| l == "ENCRYPTED PRIVATE KEY") {
        CertError::EncryptedKey { path: owned }
    } else if let Some(other) = labels
        .iter()
        .find(|l| is_key_label(l) && !KEY_LABELS.contains(&l.as_str()))
    {
        CertError::UnsupportedKey {
            path: owned,
            detail: format!("PEM section {other}"),
        }
    } else if labels.iter().any(|l| l == "CERTIFICATE") {
        CertError::KeyIsCertificate { path: owned }
    } else {
        CertError::NoPrivateKey {
            path: owned,
            found: describe_labels(&labels),
        }
    })
}

/// Facts about every certificate of the chain; fails on the first that is not X.509.
pub fn chain_infos(
    path: &Path,
    chain: &[CertificateDer<'static>],
) -> Result<Vec<CertInfo>, CertError> {
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            CertInfo::from_der(der).map_err(|e| match e {
                CertError::Parse { detail, .. } if i > 0 => CertError::Parse {
                    path: path.to_path_buf(),
                    detail: format!("certificate #{} of the chain: {detail}", i + 1),
                },
                other => other.with_path(path),
            })
        })
        .collect()
}

/// Turns key bytes into a rustls signing key with the aws-lc-rs provider.
pub fn signing_key(
    path: &Path,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<dyn SigningKey>, CertError> {
    crate::tls::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::UnsupportedKey {
            path: path.to_path_buf(),
            detail: e.to_string().replace(['\n', '\r'], " "),
        })
}

/// Compares the key's public half with the leaf certificate's.
pub fn check_keys_match(
    cert: &Path,
    key: &Path,
    certified: &CertifiedKey,
) -> Result<(), CertError> {
    match certified.keys_match() {
        Ok(()) => Ok(()),
        // The provider could not tell (no public key available); rustls accepts it too.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(e) => Err(CertError::Parse {
            path: cert.to_path_buf(),
            detail: e.to_string().replace(['\n', '\r'], " "),
        }),
    }
}

/// Expired or not yet valid at `now`.
pub fn check_validity(path: &Path, info: &CertInfo, now: SystemTime) -> Result<(), CertError> {
    if info.is_expired(now) {
        Err(CertError::Expired {
            path: path.to_path_buf(),
            date: format_time(info.not_after),
        })
    } else if info.is_not_yet_valid(now) {
        Err(CertError::NotYetValid {
            path: path.to_path_buf(),
            date: format_time(info.not_before),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Files for the unit tests of this module and of `inspect`.

    use std::path::{Path, PathBuf};

    use crate::certs::generate::GeneratedPem;

    pub(crate) fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub(crate) fn pair(dir: &Path, pem: &GeneratedPem) -> (PathBuf, PathBuf) {
        (
            write(dir, "cert.pem", &pem.cert_pem),
            write(dir, "key.pem", &pem.key_pem),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{pair, write};
    use super::*;
    use crate::certs::generate::{self, GeneratedPem};
    use crate::config::types::KeyType;
    use std::time::Duration;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn loads_ecdsa_pair() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let loaded = load_pair(&c, &k).unwrap();
        assert_eq!(loaded.info.sans, names());
        assert_eq!(loaded.key.cert.len(), 1);
        assert_eq!(loaded.cert_path, c);
        assert_eq!(loaded.key_path, k);
        assert_eq!(
            loaded.key.key.algorithm(),
            rustls::SignatureAlgorithm::ECDSA
        );
    }

    #[test]
    fn loads_rsa_pair() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::Rsa2048).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let loaded = load_pair(&c, &k).unwrap();
        assert_eq!(loaded.key.key.algorithm(), rustls::SignatureAlgorithm::RSA);
    }

    #[test]
    fn loads_chain_and_combined_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let other = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        // Leaf then a second certificate standing in for an intermediate.
        let c = write(
            dir.path(),
            "chain.pem",
            &format!("{}{}", pem.cert_pem, other.cert_pem),
        );
        // A key file that also carries the certificate is fine.
        let k = write(
            dir.path(),
            "combined.pem",
            &format!("{}{}", pem.cert_pem, pem.key_pem),
        );
        let loaded = load_pair(&c, &k).unwrap();
        assert_eq!(loaded.key.cert.len(), 2);
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let nope = dir.path().join("nope.pem");
        let e = load_pair(&nope, &k).unwrap_err();
        assert!(matches!(e, CertError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("nope.pem: no such file"), "{e}");
        let e = load_pair(&c, &nope).unwrap_err();
        assert!(matches!(e, CertError::NotFound { .. }), "{e}");
    }

    #[test]
    fn directory_is_other_io() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (_, k) = pair(dir.path(), &pem);
        let e = load_pair(dir.path(), &k).unwrap_err();
        assert!(matches!(e, CertError::Io { .. }), "{e}");
    }

    #[test]
    fn permission_denied() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o000)).unwrap();
        let result = load_pair(&c, &k);
        if is_root() {
            // root reads mode-000 files anyway (CAP_DAC_OVERRIDE): nothing to assert.
            assert!(result.is_ok());
        } else {
            let e = result.unwrap_err();
            assert!(matches!(e, CertError::PermissionDenied { .. }), "{e}");
            assert!(e.to_string().contains("readable by the user"), "{e}");
        }
    }

    #[test]
    fn swapped_files() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        // Both swapped: the cert file is read first and holds only a key.
        let e = load_pair(&k, &c).unwrap_err();
        assert!(matches!(e, CertError::CertIsKey { .. }), "{e}");
        assert!(e.to_string().contains("did you swap --cert and --key?"));
        // Key file holds a certificate.
        let e = load_pair(&c, &c).unwrap_err();
        assert!(matches!(e, CertError::KeyIsCertificate { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("--key points at a certificate; did you swap --cert and --key?")
        );
    }

    #[test]
    fn not_pem() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, k) = pair(dir.path(), &pem);
        let junk = write(dir.path(), "junk.pem", "hello, I am not PEM\n");
        let e = load_pair(&junk, &k).unwrap_err();
        assert!(matches!(e, CertError::NotPem { .. }), "{e}");
        let e = load_pair(&c, &junk).unwrap_err();
        assert!(matches!(e, CertError::NoPrivateKey { .. }), "{e}");
        let csr = write(
            dir.path(),
            "csr.pem",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        );
        let e = load_pair(&csr, &k).unwrap_err();
        assert!(matches!(e, CertError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("CERTIFICATE REQUEST"), "{e}");
        let broken = write(
            dir.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        );
        let e = load_pair(&broken, &k).unwrap_err();
        assert!(matches!(e, CertError::BadPem { .. }), "{e}");
        assert!(
            e.to_string().contains("no -----END CERTIFICATE----- line"),
            "{e}"
        );
        let garbage = write(
            dir.path(),
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let e = load_pair(&garbage, &k).unwrap_err();
        assert!(matches!(e, CertError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
    }

    #[test]
    fn encrypted_key() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, _) = pair(dir.path(), &pem);
        let enc = write(
            dir.path(),
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
             MIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQIQ0FGRUJBQkUCAggA\n\
             -----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let e = load_pair(&c, &enc).unwrap_err();
        assert!(matches!(e, CertError::EncryptedKey { .. }), "{e}");
        assert!(e.to_string().contains("openssl pkey -in"), "{e}");
        let legacy = write(
            dir.path(),
            "legacy.pem",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
             DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n\
             -----END RSA PRIVATE KEY-----\n",
        );
        let e = load_pair(&c, &legacy).unwrap_err();
        assert!(matches!(e, CertError::EncryptedKey { .. }), "{e}");
    }

    #[test]
    fn unsupported_key() {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let (c, _) = pair(dir.path(), &pem);
        let ssh = write(
            dir.path(),
            "id_ed25519",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        let e = load_pair(&c, &ssh).unwrap_err();
        assert!(matches!(e, CertError::UnsupportedKey { .. }), "{e}");
        // Valid PEM, valid base64, but not a key aws-lc-rs accepts.
        let bogus = write(
            dir.path(),
            "bogus.pem",
            "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
        );
        let e = load_pair(&c, &bogus).unwrap_err();
        assert!(matches!(e, CertError::UnsupportedKey { .. }), "{e}");
    }

    #[test]
    fn mismatched_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let b = generate::self_signed(&names(), 30, KeyType::EcdsaP256).unwrap();
        let c = write(dir.path(), "a-cert.pem", &a.cert_pem);
        let k = write(dir.path(), "b-key.pem", &b.key_pem);
        let e = load_pair(&c, &k).unwrap_err();
        assert!(matches!(e, CertError::KeyMismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not match"), "{e}");
        // Different algorithms too.
        let r = generate::self_signed(&names(), 30, KeyType::Rsa2048).unwrap();
        let k = write(dir.path(), "r-key.pem", &r.key_pem);
        let e = load_pair(&c, &k).unwrap_err();
        assert!(matches!(e, CertError::KeyMismatch { .. }), "{e}");
    }

    fn rcgen_pair(
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> GeneratedPem {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key).unwrap();
        GeneratedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    #[test]
    fn expired() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let pem = rcgen_pair(
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        );
        let (c, k) = pair(dir.path(), &pem);
        let e = load_pair(&c, &k).unwrap_err();
        assert!(matches!(e, CertError::Expired { .. }), "{e}");
        let expected = format_time(SystemTime::from(now - time::Duration::days(1)));
        assert!(e.to_string().contains(&expected), "{e} / {expected}");
        // The same pair is fine at a time inside its validity.
        let then = SystemTime::now() - Duration::from_secs(5 * 86_400);
        assert!(load_pair_at(&c, &k, then).is_ok());
    }

    #[test]
    fn not_yet_valid() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let pem = rcgen_pair(
            now + time::Duration::days(2),
            now + time::Duration::days(30),
        );
        let (c, k) = pair(dir.path(), &pem);
        let e = load_pair(&c, &k).unwrap_err();
        assert!(matches!(e, CertError::NotYetValid { .. }), "{e}");
        assert!(e.to_string().contains("not valid until"), "{e}");
    }

    #[test]
    fn labels_are_listed() {
        let text = b"junk\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n  -----BEGIN EC PRIVATE KEY-----  \n";
        assert_eq!(pem_labels(text), vec!["CERTIFICATE", "EC PRIVATE KEY"]);
    }
}
