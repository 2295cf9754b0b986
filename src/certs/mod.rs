//! Certificate sources and tools: PEM files, self-signed certificates in the
//! state folder, `wssd cert generate|inspect`, and the certificate half of
//! `wssd check`.
//!
//! This module produces [`LoadedCert`]s; it does not serve them. The TLS layer
//! (`crate::tls::resolver`) holds whatever the sources hand it.

pub mod acme;
pub mod error;
pub mod files;
pub mod generate;
pub mod info;
pub mod inspect;
pub mod local_ca;
pub mod manager;
pub mod self_signed;
pub mod startup;
pub mod store;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::CertError;
pub use files::load_pair;
pub use generate::GeneratedPem;
pub use info::CertInfo;
pub use inspect::InspectReport;
pub use self_signed::Provenance;

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
