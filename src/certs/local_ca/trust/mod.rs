//! Adding the local CA to this machine's trust stores and removing it again:
//! the system store (`system`, `update-ca-certificates`) and Chromium's NSS
//! database (`nss`, `certutil`). Every store follows one pattern, driven by
//! [`apply`]: say what is there, change it, run the store's tool; a missing
//! tool or a store that needs root is skipped with advice, never an error;
//! a failure names what was already changed.
//!
//! One role per file: `store` (what the stores share: [`Trust`], the
//! `TrustStore` trait, errors, the log), `tool` (running a store's program),
//! `system`, `nss`. This file holds [`apply`]; the other files never import it.

mod nss;
mod store;
mod system;
mod tool;

use std::path::Path;

use super::ca::Ca;
use crate::certs::error::CertError;
use store::TrustStore;

pub(crate) use store::{Change, Log, Trust};

/// Applies `change` to every store in turn (system, then NSS), stopping at
/// the first failure; ends the log with what to do next.
pub(super) fn apply(
    change: Change,
    ca: &Ca,
    ca_file: &Path,
    t: &Trust,
    log: &mut Log,
) -> Result<(), CertError> {
    let stores: [&dyn TrustStore; 2] = [&system::SystemStore(t), &nss::NssStore(t)];
    for store in stores {
        let done = match change {
            Change::Install => store.install(ca, ca_file, log),
            Change::Uninstall => store.uninstall(ca, log),
        };
        done.map_err(|e| log.failed(&e))?;
    }
    if log.changes.is_empty() {
        log.note("nothing changed".into());
    } else {
        log.note("restart running browsers to pick up the change".into());
    }
    Ok(())
}

/// The bundle `update-ca-certificates` writes and OpenSSL, curl and most
/// programs read (Debian).
pub(super) const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Whether each store trusts the CA now (`None`: could not be checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrustStatus {
    pub(crate) system: Option<bool>,
    pub(crate) nss: Option<bool>,
}

/// Looks, without changing anything: is the CA in the system bundle, and
/// in the user's NSS database?
pub(crate) fn status(ca: &Ca, t: &Trust) -> TrustStatus {
    status_with_bundle(ca, t, Path::new(SYSTEM_BUNDLE))
}

pub(super) fn status_with_bundle(ca: &Ca, t: &Trust, bundle: &Path) -> TrustStatus {
    let squeeze = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect()
    };
    let body = squeeze(&ca.pem);
    let system = std::fs::read_to_string(bundle)
        .ok()
        .map(|b| !body.is_empty() && squeeze(&b).contains(&body));
    let nss = t.nss_db().and_then(|db| {
        if !db.join("cert9.db").exists() {
            return Some(false);
        }
        nss::NssStore(t).has(&db, &ca.nickname()).ok().flatten()
    });
    TrustStatus { system, nss }
}

#[cfg(test)]
mod tests {
    use super::tool::run_tool;
    use super::*;
    use crate::certs::local_ca::ca::load_ca;
    use crate::certs::local_ca::commands::{install, uninstall};
    use crate::certs::local_ca::paths;
    use crate::certs::local_ca::testing::mode;
    use std::fs;
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn certutil_available() -> bool {
        matches!(
            run_tool(Path::new("certutil"), &["-H".as_ref()]),
            Ok(Some(_))
        )
    }

    #[test]
    fn install_and_uninstall() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let system_dir = dir.path().join("ca-certificates");
        fs::create_dir(&system_dir).unwrap();
        let home = dir.path().join("home");
        let t = Trust {
            system_dir: system_dir.clone(),
            update_program: PathBuf::from("true"),
            certutil: PathBuf::from("certutil"),
            home: Some(home.clone()),
        };
        let msg = install(&state, &t, SystemTime::now()).unwrap();
        let ca = load_ca(&paths(&state)).unwrap().unwrap();
        let target = system_dir.join(format!("wssd-local-ca-{}.crt", ca.id));
        assert!(msg.contains("created local CA"), "{msg}");
        assert!(
            msg.contains(&format!("system trust store: added {}", target.display())),
            "{msg}"
        );
        assert!(msg.contains("ran true"), "{msg}");
        assert_eq!(fs::read_to_string(&target).unwrap(), ca.pem);
        assert_eq!(mode(&target), 0o644);
        let db = home.join(".pki/nssdb");
        let nss = certutil_available();
        let has = |t: &Trust| nss::NssStore(t).has(&db, &ca.nickname()).unwrap();
        if nss {
            assert!(msg.contains("NSS database"), "{msg}");
            assert!(msg.contains("created (no password)"), "{msg}");
            assert!(
                msg.contains(&format!("added \"{}\"", ca.nickname())),
                "{msg}"
            );
            assert_eq!(has(&t), Some(true));
        } else {
            assert!(msg.contains("apt-get install libnss3-tools"), "{msg}");
        }

        // The status sees it: a bundle holding the file, and the NSS database.
        let bundle = dir.path().join("bundle.crt");
        fs::write(&bundle, format!("junk\n{}", ca.pem)).unwrap();
        let now = status_with_bundle(&ca, &t, &bundle);
        assert_eq!(now.system, Some(true));
        if nss {
            assert_eq!(now.nss, Some(true));
        }
        fs::write(&bundle, "no CA here").unwrap();
        assert_eq!(status_with_bundle(&ca, &t, &bundle).system, Some(false));

        // Idempotent.
        let msg = install(&state, &t, SystemTime::now()).unwrap();
        assert!(msg.contains("already present (unchanged)"), "{msg}");
        assert!(msg.contains("nothing changed") || !nss, "{msg}");

        let msg = uninstall(&state, &t).unwrap();
        assert!(
            msg.contains(&format!("removed {}", target.display())),
            "{msg}"
        );
        assert!(!target.exists());
        if nss {
            assert!(
                msg.contains(&format!("removed \"{}\"", ca.nickname())),
                "{msg}"
            );
            assert_eq!(has(&t), Some(false));
        }
        let msg = uninstall(&state, &t).unwrap();
        assert!(msg.contains("nothing changed"), "{msg}");
        assert!(msg.contains("not present"), "{msg}");
        // The CA stays.
        assert!(paths(&state).ca_key.exists());
    }

    #[test]
    fn missing_tools_are_skipped_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let system_dir = dir.path().join("ca-certificates");
        fs::create_dir(&system_dir).unwrap();
        let t = Trust {
            system_dir: system_dir.clone(),
            update_program: PathBuf::from("wssd-test-no-such-update-tool"),
            certutil: PathBuf::from("wssd-test-no-such-certutil"),
            home: Some(dir.path().join("home")),
        };
        let msg = install(&state, &t, SystemTime::now()).unwrap();
        assert!(
            msg.contains("wssd-test-no-such-update-tool not found"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install libnss3-tools"), "{msg}");
        // Nothing left behind.
        assert_eq!(fs::read_dir(&system_dir).unwrap().count(), 0);
        assert!(!dir.path().join("home/.pki/nssdb").exists());

        let t = Trust { home: None, ..t };
        let msg = uninstall(&state, &t).unwrap();
        assert!(msg.contains("HOME is not set"), "{msg}");

        // No CA: nothing to uninstall.
        let msg = uninstall(&dir.path().join("empty"), &t).unwrap();
        assert!(msg.contains("nothing to uninstall"), "{msg}");
    }
}
