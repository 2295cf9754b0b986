//! Trust roots from PEM CA files (`--client-ca`, `--broker-ca`,
//! `--acme-ca-root`, an upstream's `ca`). A leaf: it knows rustls' types but
//! no wssd module, so `config` reads CA files here and `tls`, `certs`,
//! `routes` and `broker` take the result (`tls` re-exports it).

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a PEM file of CA certificates cannot serve as trust roots (each
/// caller words it for its own option).
#[derive(Debug, thiserror::Error)]
pub enum CaPemError {
    #[error("not a PEM certificate ({0})")]
    Malformed(String),
    #[error("unusable CA certificate ({0})")]
    Unusable(String),
    #[error("holds no CERTIFICATE block")]
    Empty,
}

/// Trust roots from the CERTIFICATE blocks of a PEM file's bytes: at least
/// one, each one usable as a root.
pub fn ca_roots(pem: &[u8]) -> Result<RootCertStore, CaPemError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| CaPemError::Malformed(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| CaPemError::Unusable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(CaPemError::Empty);
    }
    Ok(roots)
}
