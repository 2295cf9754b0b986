//! ACME certificates (placeholder: the ACME helper replaces this file).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::manager::{CertManager, SlotId};
use super::{CertError, LoadedCert};
use crate::cli::KeyType;
use crate::config::AcmeConfig;
use crate::tls::challenge::Challenges;

/// Everything the ACME source needs, resolved from configuration.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub config: AcmeConfig,
    pub state_dir: PathBuf,
    pub hostnames: Vec<String>,
    pub key_type: KeyType,
    /// Whether a plain listener runs (HTTP-01 possible).
    pub has_http_listener: bool,
    /// Whether a TLS listener runs (TLS-ALPN-01 possible).
    pub has_tls_listener: bool,
}

/// The certificate to serve at start, and whether an order is needed.
pub fn initial(_settings: &AcmeSettings) -> Result<(LoadedCert, bool), CertError> {
    Err(CertError::Generate {
        detail: "ACME is not built yet".into(),
    })
}

/// Obtains and renews the certificate until shutdown.
pub async fn run(
    _settings: AcmeSettings,
    _manager: Arc<CertManager>,
    _slot: SlotId,
    _challenges: Arc<Challenges>,
    _shutdown: CancellationToken,
) {
}
