//! [`LoadedCert`]: what every certificate source hands the TLS layer.

use std::path::PathBuf;
use std::sync::Arc;

use crate::certs::info::CertInfo;

/// A certificate chain with its private key, ready for rustls, plus what
/// operators want to know about it (for logs and `/metrics`).
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Chain and signing key, checked to match.
    pub key: Arc<rustls::sign::CertifiedKey>,
    /// Facts about the leaf certificate.
    pub info: CertInfo,
    /// Where the chain was read from.
    pub cert_path: PathBuf,
    /// Where the key was read from.
    pub key_path: PathBuf,
}
