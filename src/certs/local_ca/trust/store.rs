//! What the trust stores share: where changes go ([`Trust`]), what a store
//! does ([`TrustStore`]), why it fails ([`TrustError`]) and what a command
//! reports ([`Log`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::certs::error::CertError;
use crate::certs::local_ca::ca::Ca;

/// Folder of local CA files `update-ca-certificates` reads (Debian).
const SYSTEM_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// Where `install` and `uninstall` make their changes (tests point these at
/// temporary folders and harmless programs).
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    /// Folder of local CA files `update-ca-certificates` reads.
    pub(crate) system_dir: PathBuf,
    /// `update-ca-certificates`.
    pub(crate) update_program: PathBuf,
    /// NSS's `certutil`.
    pub(crate) certutil: PathBuf,
    /// The user's home; its `.pki/nssdb` is the NSS database Chromium uses.
    pub(crate) home: Option<PathBuf>,
}

impl Trust {
    /// This machine's stores, and the NSS database under `home`.
    pub(crate) fn system(home: Option<PathBuf>) -> Trust {
        Trust {
            system_dir: PathBuf::from(SYSTEM_CA_DIR),
            update_program: PathBuf::from("update-ca-certificates"),
            certutil: PathBuf::from("certutil"),
            home,
        }
    }

    pub(super) fn nss_db(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".pki").join("nssdb"))
    }
}

/// Add the CA to the stores, or take it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Install,
    Uninstall,
}

/// One trust store the CA can be added to and removed from.
pub(super) trait TrustStore {
    /// Adds `ca` (whose certificate file is `ca_file`), unless it is there.
    fn install(&self, ca: &Ca, ca_file: &Path, log: &mut Log) -> Result<(), TrustError>;
    /// Removes exactly what `install` added, if it is there.
    fn uninstall(&self, ca: &Ca, log: &mut Log) -> Result<(), TrustError>;
}

/// Why a trust store could not be changed.
#[derive(Debug, thiserror::Error)]
pub(super) enum TrustError {
    /// The store's tool ran and failed.
    #[error("{command} failed ({detail}){advice}")]
    ToolFailed {
        command: String,
        detail: String,
        advice: &'static str,
    },
    /// The store's tool is there but could not be started.
    #[error("cannot run {program}: {source}{advice}")]
    CannotRun {
        program: String,
        source: io::Error,
        advice: &'static str,
    },
    /// A file or folder of the store could not be changed.
    #[error("cannot {action} {}: {source}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// What a command printed so far, and which of those lines were changes.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) lines: Vec<String>,
    pub(super) changes: Vec<String>,
}

impl Log {
    pub(crate) fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    pub(crate) fn changed(&mut self, line: String) {
        self.changes.push(line.clone());
        self.lines.push(line);
    }

    /// The error for a step that failed after `changes` were made.
    pub(super) fn failed(&self, what: &TrustError) -> CertError {
        let done = if self.changes.is_empty() {
            "nothing was changed".to_owned()
        } else {
            format!("already changed: {}", self.changes.join("; "))
        };
        CertError::LocalCa {
            detail: format!("{what} ({done})"),
        }
    }
}
