//! The rustls server configuration: TLS 1.2 and 1.3 only, the aws-lc-rs
//! provider, ALPN `h2` and `http/1.1`, and the one certificate resolver.
//!
//! Where certificates come from is not this module's business (see `certs`).

pub mod challenge;
pub mod resolver;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use crate::config::ClientAuthConfig;
/// Trust roots are read by `config::trust` (a leaf); the old paths stay.
pub use crate::config::trust::{CaPemError, ca_roots};
use crate::http::http2::ALPN_H2;

/// The one crypto provider wssd uses everywhere (server, bench client, cert checks).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("--client-ca {path}: {problem}")]
    ClientCa { path: PathBuf, problem: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the server config around the resolver: TLS 1.3 and 1.2 only,
/// the provider's (strong) cipher suites, ALPN `h2` (unless `http2` is
/// off: `--http2 off`) then `http/1.1` (plus
/// `acme-tls/1` when ACME may validate through this listener), and client
/// certificate verification when mTLS is configured.
pub fn server_config(
    resolver: Arc<resolver::CertResolver>,
    client_auth: Option<&ClientAuthConfig>,
    acme: bool,
    http2: bool,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth)?),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if acme {
        config
            .alpn_protocols
            .push(challenge::ACME_TLS_ALPN.to_vec());
    }
    Ok(config)
}

fn client_verifier(
    auth: &ClientAuthConfig,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsSetupError> {
    let fail = |problem: String| TlsSetupError::ClientCa {
        path: auth.ca.clone(),
        problem,
    };
    let bytes = std::fs::read(&auth.ca).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let roots = ca_roots(&bytes).map_err(|e| {
        fail(match e {
            CaPemError::Malformed(e) => format!("not a PEM certificate file ({e})"),
            CaPemError::Unusable(e) => format!("unusable CA certificate: {e}"),
            CaPemError::Empty => {
                "holds no CERTIFICATE block; give the PEM CA that signs client certificates".into()
            }
        })
    })?;
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if auth.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| fail(format!("cannot build the verifier: {e}")))
}

/// The subject of the verified client certificate, if the peer sent one.
pub fn client_subject(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use resolver::CertSet;

    fn alpn(acme: bool, http2: bool) -> Vec<Vec<u8>> {
        let resolver = Arc::new(resolver::CertResolver::new(CertSet::default()));
        server_config(resolver, None, acme, http2)
            .unwrap()
            .alpn_protocols
    }

    #[test]
    fn alpn_offers_h2_first_unless_off_and_keeps_acme_tls() {
        let h1 = b"http/1.1".to_vec();
        assert_eq!(alpn(false, true), vec![b"h2".to_vec(), h1.clone()]);
        assert_eq!(alpn(false, false), vec![h1.clone()]);
        assert_eq!(
            alpn(true, true),
            vec![b"h2".to_vec(), h1.clone(), b"acme-tls/1".to_vec()]
        );
        assert_eq!(alpn(true, false), vec![h1, b"acme-tls/1".to_vec()]);
    }
}
