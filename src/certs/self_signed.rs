//! `--tls self-signed`: keep one generated pair in `<state>/self-signed/`,
//! reuse it while it still fits (names, key type, > 30 days left), regenerate
//! otherwise and say why. Generation itself lives in `generate`.

use super::generate::{join_names, name_set};
use super::store::{make_private_dir, sweep_stale};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::certs::generate::{self, default_hostnames};
use crate::certs::info::public_key_summary;
use crate::certs::{CertError, LoadedCert, files};
use crate::cli::KeyType;

/// Days of validity for a regenerated certificate.
pub const VALIDITY_DAYS: u32 = 365;
/// A certificate with this many days left or fewer is replaced.
pub const RENEW_DAYS: i64 = 30;

/// Whether [`ensure`] reused the stored pair or made a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    Reused,
    Generated { reason: String },
}

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
    let hostnames = if hostnames.is_empty() {
        default_hostnames()
    } else {
        hostnames.to_vec()
    };
    let (cert_path, key_path) = paths(state_dir);
    // Temp files of a start that was killed while writing go first.
    if let Some(dir) = cert_path.parent() {
        sweep_stale(dir);
    }

    let reason = match why_not_reuse(&cert_path, &key_path, &hostnames, key_type, now) {
        Ok(loaded) => return Ok((loaded, Provenance::Reused)),
        Err(reason) => reason,
    };

    let dir = cert_path.parent().unwrap_or(state_dir);
    make_private_dir(dir)?;
    let pem = generate::self_signed(&hostnames, VALIDITY_DAYS, key_type)?;
    generate::write_pair(&cert_path, &key_path, &pem).map_err(|e| match e {
        CertError::Write { source, .. } => CertError::StateDirNotWritable {
            path: dir.to_path_buf(),
            source,
        },
        other => other,
    })?;
    let loaded = files::load_pair_at(&cert_path, &key_path, now)?;
    Ok((loaded, Provenance::Generated { reason }))
}

/// Loads the stored pair if it can be reused, else says why not.
fn why_not_reuse(
    cert_path: &Path,
    key_path: &Path,
    hostnames: &[String],
    key_type: KeyType,
    now: SystemTime,
) -> Result<LoadedCert, String> {
    if !cert_path.exists() && !key_path.exists() {
        return Err("none yet".into());
    }
    let loaded = match files::load_pair_at(cert_path, key_path, now) {
        Ok(l) => l,
        Err(CertError::Expired { date, .. }) => return Err(format!("expired on {date}")),
        Err(e) => return Err(format!("unreadable: {e}")),
    };

    let wanted = name_set(hostnames);
    let have = name_set(&loaded.info.sans);
    if wanted != have {
        return Err(format!(
            "names changed: was {}; now {}",
            join_names(&have),
            join_names(&wanted)
        ));
    }

    let stored_type = loaded
        .key
        .end_entity_cert()
        .ok()
        .and_then(|der| public_key_summary(der).ok())
        .and_then(|(_, kind)| kind);
    if stored_type != Some(key_type) {
        return Err("key type changed".into());
    }

    let days = loaded.info.days_left(now);
    if days <= RENEW_DAYS {
        return Err(format!("expires in {days} days"));
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
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
