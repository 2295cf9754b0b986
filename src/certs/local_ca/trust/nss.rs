//! The NSS database Chromium reads (`~/.pki/nssdb`, through `certutil`): the
//! CA under its nickname, trusted to identify TLS servers; the database is
//! created (without a password) when there is none.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::store::{Log, Trust, TrustError, TrustStore};
use super::tool::Tool;
use crate::certs::local_ca::ca::Ca;

/// NSS may hold several certificates under one nickname; `-D` removes one.
const MAX_DELETES: usize = 8;

/// The user's NSS database as configured in [`Trust`].
pub(super) struct NssStore<'a>(pub(super) &'a Trust);

impl NssStore<'_> {
    fn certutil(&self) -> Tool<'_> {
        Tool {
            program: &self.0.certutil,
            name: "certutil".into(),
            advice: "",
        }
    }

    /// The database folder; notes the skip when HOME is not set.
    fn db(&self, log: &mut Log) -> Option<PathBuf> {
        let db = self.0.nss_db();
        if db.is_none() {
            log.note("NSS database (Chromium): skipped: HOME is not set".into());
        }
        db
    }

    /// Whether the database lists `nickname`; `None` when certutil is missing.
    pub(super) fn has(&self, db: &Path, nickname: &str) -> Result<Option<bool>, TrustError> {
        let spec = nss_spec(db);
        let args: [&OsStr; 3] = ["-L".as_ref(), "-d".as_ref(), &spec];
        let listed = self.certutil().run(&args, || {
            format!("certutil -L -d {}", spec.to_string_lossy())
        })?;
        Ok(listed.map(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            // Lines are "<nickname><spaces><trust flags>".
            text.lines().any(|line| {
                line.strip_prefix(nickname)
                    .is_some_and(|rest| rest.starts_with(char::is_whitespace) || rest.is_empty())
            })
        }))
    }

    /// Creates an empty database (no password) unless there is one; `false`
    /// when certutil is missing (nothing is left behind then).
    fn create_db(&self, db: &Path, log: &mut Log) -> Result<bool, TrustError> {
        if db.join("cert9.db").exists() {
            return Ok(true);
        }
        let existed = db.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(db)
            .map_err(|source| TrustError::File {
                action: "create",
                path: db.to_path_buf(),
                source,
            })?;
        let spec = nss_spec(db);
        let args: [&OsStr; 4] = [
            "-N".as_ref(),
            "-d".as_ref(),
            &spec,
            "--empty-password".as_ref(),
        ];
        let created = self.certutil().run(&args, || {
            format!("certutil -N -d {}", spec.to_string_lossy())
        })?;
        if created.is_none() {
            if !existed {
                let _ = fs::remove_dir(db);
            }
            return Ok(false);
        }
        log.changed(format!(
            "NSS database {}: created (no password)",
            db.display()
        ));
        Ok(true)
    }
}

impl TrustStore for NssStore<'_> {
    fn install(&self, ca: &Ca, ca_file: &Path, log: &mut Log) -> Result<(), TrustError> {
        let Some(db) = self.db(log) else {
            return Ok(());
        };
        if !self.create_db(&db, log)? {
            log.note(certutil_missing(&db));
            return Ok(());
        }
        let shown = db.display();
        let nickname = ca.nickname();
        match self.has(&db, &nickname)? {
            None => {
                log.note(certutil_missing(&db));
                return Ok(());
            }
            Some(true) => {
                log.note(format!(
                    "NSS database {shown}: \"{nickname}\" already present (unchanged)"
                ));
                return Ok(());
            }
            Some(false) => {}
        }
        let spec = nss_spec(&db);
        let args: [&OsStr; 9] = [
            "-A".as_ref(),
            "-d".as_ref(),
            &spec,
            "-t".as_ref(),
            "C,,".as_ref(),
            "-n".as_ref(),
            nickname.as_ref(),
            "-i".as_ref(),
            ca_file.as_os_str(),
        ];
        let added = self.certutil().run(&args, || {
            format!("certutil -A -d {}", spec.to_string_lossy())
        })?;
        match added {
            Some(_) => log.changed(format!(
                "NSS database {shown}: added \"{nickname}\", trusted to identify TLS servers (Chromium and other programs using this database)"
            )),
            None => log.note(certutil_missing(&db)),
        }
        Ok(())
    }

    fn uninstall(&self, ca: &Ca, log: &mut Log) -> Result<(), TrustError> {
        let Some(db) = self.db(log) else {
            return Ok(());
        };
        let shown = db.display();
        let nickname = ca.nickname();
        if !db.join("cert9.db").exists() {
            log.note(format!(
                "NSS database {shown}: none here (nothing to remove)"
            ));
            return Ok(());
        }
        let spec = nss_spec(&db);
        let mut removed = false;
        for _ in 0..MAX_DELETES {
            match self.has(&db, &nickname)? {
                None => {
                    log.note(certutil_missing(&db));
                    return Ok(());
                }
                Some(false) => break,
                Some(true) => {}
            }
            let args: [&OsStr; 5] = [
                "-D".as_ref(),
                "-d".as_ref(),
                &spec,
                "-n".as_ref(),
                nickname.as_ref(),
            ];
            let deleted = self.certutil().run(&args, || {
                format!(
                    "certutil -D -d {} -n \"{nickname}\"",
                    spec.to_string_lossy()
                )
            })?;
            if deleted.is_none() {
                log.note(certutil_missing(&db));
                return Ok(());
            }
            removed = true;
        }
        if removed {
            log.changed(format!("NSS database {shown}: removed \"{nickname}\""));
        } else {
            log.note(format!(
                "NSS database {shown}: \"{nickname}\" not present (nothing to remove)"
            ));
        }
        Ok(())
    }
}

/// `sql:<dir>`, the NSS database argument.
fn nss_spec(db: &Path) -> OsString {
    let mut spec = OsString::from("sql:");
    spec.push(db.as_os_str());
    spec
}

fn certutil_missing(db: &Path) -> String {
    format!(
        "NSS database {}: skipped: certutil not found; install it (Debian/Ubuntu: apt-get install libnss3-tools) and run this again",
        db.display()
    )
}
