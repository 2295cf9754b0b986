//! Certificate sources and tools: PEM files, self-signed certificates and a
//! local CA in the state folder, ACME, `wssd cert generate|inspect|ca`, and
//! the certificate half of `wssd check`.
//!
//! This module produces [`LoadedCert`]s; it does not serve them. The TLS layer
//! (`crate::tls::resolver`) holds whatever the sources hand it.
//!
//! Sources: `files` (`--tls files`), `self_signed`, `local_ca/` (CA, issuing,
//! `cert ca` commands, trust stores), `acme/` (storage, transport, client,
//! order, challenges, ARI, schedule, the loop). Shared: `reuse` (may a stored
//! pair be served again), `generate` (keys, certificates, `cert generate`),
//! `store` (atomic writes in the state folder), `info`, `inspect`, `error`.
//! Keeping them fresh: `startup`, `manager`, `watch`.

pub mod acme;
pub mod error;
pub mod files;
pub mod generate;
pub mod info;
pub mod inspect;
pub mod local_ca;
pub mod manager;
pub mod reuse;
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
