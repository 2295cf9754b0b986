//! What the ACME source is given ([`AcmeSettings`]) and its fixed timings.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::AcmeConfig;
use crate::config::types::KeyType;

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

/// First wait after a failed order; doubles after each further failure.
pub const BACKOFF_START: Duration = Duration::from_secs(2);
/// Longest wait between two failed orders.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Validity of the temporary self-signed certificate served until issuance.
pub const TEMPORARY_DAYS: u32 = 7;
/// An order (account, challenges, finalization, download) must finish within this.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The loop re-checks its schedule at least this often (clock jumps, suspend).
pub(super) const MAX_SLEEP: Duration = Duration::from_secs(3600);
