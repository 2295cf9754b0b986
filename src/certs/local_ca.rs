//! The local CA (placeholder: the local-CA helper replaces this file).

use std::path::{Path, PathBuf};

use super::self_signed::Provenance;
use super::{CertError, LoadedCert};
use crate::cli::{CaCommand, KeyType};

/// A leaf for `hostnames` issued by the local CA (created if absent).
pub fn ensure_leaf(
    _state_dir: &Path,
    _hostnames: &[String],
    _key_type: KeyType,
) -> Result<(LoadedCert, Provenance), CertError> {
    Err(CertError::Generate {
        detail: "the local CA is not built yet".into(),
    })
}

/// `wssd cert ca init|issue|install|uninstall`; returns what to print.
pub fn run_command(
    _cmd: &CaCommand,
    _default_state_dir: Option<PathBuf>,
) -> Result<String, CertError> {
    Err(CertError::Generate {
        detail: "the local CA is not built yet".into(),
    })
}
