//! `--tls self-signed`: keep one generated pair in `<state>/self-signed/`,
//! reuse it while it still fits (names, key type, > 30 days left), regenerate
//! otherwise and say why. Generation itself lives in `generate`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use super::reuse::Provenance;
use super::reuse::{self, Unfit, Wanted};
use super::store::sweep_stale;
use crate::certs::error::CertError;
use crate::certs::generate;
use crate::certs::loaded::LoadedCert;
use crate::config::types::KeyType;

/// Days of validity for a regenerated certificate.
pub const VALIDITY_DAYS: u32 = 365;
/// A certificate with this many days left or fewer is replaced.
pub const RENEW_DAYS: i64 = 30;

/// `<state>/self-signed/cert.pem` and `<state>/self-signed/key.pem`.
pub fn paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("self-signed");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Returns a usable self-signed certificate for `hostnames` (the defaults when
/// empty), reusing the stored one when it still fits.
pub fn ensure(
    state_dir: &Path,
    hostnames: &[String],
    key_type: KeyType,
) -> Result<(LoadedCert, Provenance), CertError> {
    ensure_at(state_dir, hostnames, key_type, SystemTime::now())
}

/// [`ensure`] with the clock given.
pub fn ensure_at(
    state_dir: &Path,
    hostnames: &[String],
    key_type: KeyType,
    now: SystemTime,
) -> Result<(LoadedCert, Provenance), CertError> {
    let hostnames = generate::or_default_hostnames(hostnames);
    let (cert_path, key_path) = paths(state_dir);
    let dir = cert_path.parent().unwrap_or(state_dir);
    // Temp files of a start that was killed while writing go first.
    sweep_stale(dir);
    let wanted = Wanted {
        hostnames: &hostnames,
        key_type,
        renew_days: RENEW_DAYS,
        longest: None,
    };
    reuse::reuse_or_generate(
        &cert_path,
        &key_path,
        dir,
        now,
        || reusable(&cert_path, &key_path, &wanted, now),
        || generate::self_signed(&hostnames, VALIDITY_DAYS, key_type),
    )
}

/// Loads the stored pair if it can be reused, else says why not.
fn reusable(
    cert_path: &Path,
    key_path: &Path,
    wanted: &Wanted<'_>,
    now: SystemTime,
) -> Result<LoadedCert, Unfit> {
    let loaded = reuse::load_stored(cert_path, key_path, now)?;
    reuse::fits(&loaded, wanted, now)?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::generate::default_hostnames;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn reason(p: Provenance) -> String {
        match p {
            Provenance::Generated { reason } => reason,
            Provenance::Reused => panic!("expected a new certificate"),
        }
    }

    #[test]
    fn generates_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (first, p) = ensure(&state, &[], KeyType::EcdsaP256).unwrap();
        assert_eq!(reason(p), "none yet");
        assert_eq!(first.info.sans, vec!["localhost", "127.0.0.1", "::1"]);
        let (c, k) = paths(&state);
        assert_eq!(first.cert_path, c);
        assert_eq!(first.key_path, k);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.join("self-signed")), 0o700);
        assert_eq!(mode(&k), 0o600);

        // Same names in another order, other case, bracketed IPv6, expanded IPv6.
        let again = names(&["0:0:0:0:0:0:0:1", "LOCALHOST", "127.0.0.1"]);
        let (second, p) = ensure(&state, &again, KeyType::EcdsaP256).unwrap();
        assert_eq!(p, Provenance::Reused);
        assert_eq!(second.info.serial, first.info.serial);
        let (_, p) = ensure(
            &state,
            &names(&["[::1]", "localhost", "127.0.0.1"]),
            KeyType::EcdsaP256,
        )
        .unwrap();
        assert_eq!(p, Provenance::Reused);
    }

    #[test]
    fn regenerates_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = ensure(dir.path(), &names(&["a.test"]), KeyType::EcdsaP256).unwrap();
        let (second, p) = ensure(
            dir.path(),
            &names(&["a.test", "b.test"]),
            KeyType::EcdsaP256,
        )
        .unwrap();
        let why = reason(p);
        assert!(why.starts_with("names changed"), "{why}");
        assert!(why.contains("b.test"), "{why}");
        assert_ne!(first.info.serial, second.info.serial);
        assert_eq!(second.info.sans, vec!["a.test", "b.test"]);
        let (_, p) = ensure(
            dir.path(),
            &names(&["b.test", "a.test"]),
            KeyType::EcdsaP256,
        )
        .unwrap();
        assert_eq!(p, Provenance::Reused);
    }

    #[test]
    fn regenerates_when_key_type_changes() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &[], KeyType::EcdsaP256).unwrap();
        let (loaded, p) = ensure(dir.path(), &[], KeyType::Rsa2048).unwrap();
        assert_eq!(reason(p), "key type changed");
        assert_eq!(loaded.key.key.algorithm(), rustls::SignatureAlgorithm::RSA);
        let (_, p) = ensure(dir.path(), &[], KeyType::Rsa2048).unwrap();
        assert_eq!(p, Provenance::Reused);
    }

    #[test]
    fn regenerates_when_close_to_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = paths(dir.path());
        let pem = generate::self_signed(&default_hostnames(), 10, KeyType::EcdsaP256).unwrap();
        generate::write_pair(&c, &k, &pem).unwrap();
        let (loaded, p) = ensure(dir.path(), &[], KeyType::EcdsaP256).unwrap();
        let why = reason(p);
        assert!(
            why == "expires in 10 days" || why == "expires in 9 days",
            "{why}"
        );
        assert!(loaded.info.days_left(SystemTime::now()) >= 364);
    }

    #[test]
    fn regenerates_when_expired_or_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = paths(dir.path());
        let now = SystemTime::now();
        let pem = generate::self_signed_between(
            &default_hostnames(),
            now - Duration::from_secs(40 * 86_400),
            now - Duration::from_secs(86_400),
            KeyType::EcdsaP256,
        )
        .unwrap();
        generate::write_pair(&c, &k, &pem).unwrap();
        let (_, p) = ensure(dir.path(), &[], KeyType::EcdsaP256).unwrap();
        assert!(reason(p).starts_with("expired on "));

        fs::write(&k, "garbage").unwrap();
        let (_, p) = ensure(dir.path(), &[], KeyType::EcdsaP256).unwrap();
        let why = reason(p);
        assert!(why.starts_with("unreadable: "), "{why}");
        assert!(why.contains("key.pem"), "{why}");
    }

    #[test]
    fn state_dir_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        // A regular file where the folder should be fails for root too.
        let e = ensure(&file, &[], KeyType::EcdsaP256).unwrap_err();
        assert!(matches!(e, CertError::StateDirNotWritable { .. }), "{e}");
        assert!(e.to_string().contains("--state-dir"), "{e}");
    }
}
