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
//! `store` (atomic writes in the state folder), `info`, `inspect`, `error`,
//! `loaded` ([`LoadedCert`], what every source produces).
//! Keeping them fresh: `startup`, `manager`, `watch`.
//!
//! This file only declares the modules and re-exports their main types; the
//! modules import each other's files directly, never this one.

pub mod acme;
pub mod error;
pub mod files;
pub mod generate;
pub mod info;
pub mod inspect;
pub mod loaded;
pub mod local_ca;
pub mod manager;
pub mod reuse;
pub mod self_signed;
pub mod startup;
pub mod store;
pub mod watch;

pub use error::CertError;
pub use files::load_pair;
pub use generate::GeneratedPem;
pub use info::CertInfo;
pub use inspect::InspectReport;
pub use loaded::LoadedCert;
pub use self_signed::Provenance;

#[cfg(test)]
mod files_props;
