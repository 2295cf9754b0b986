//! The rustls server configuration: TLS 1.2 and 1.3 only, the aws-lc-rs
//! provider (hybrid post-quantum key exchange first; as a server, AES-128-GCM
//! before AES-256-GCM whatever the client prefers), one session ticket per
//! full handshake, ALPN `h2` and `http/1.1`, and the one certificate resolver.
//!
//! Where certificates come from is not this module's business (see `certs`).

pub mod challenge;
pub mod resolver;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{cipher_suite as suite, kx_group};

use crate::config::ClientAuthConfig;
/// Trust roots are read by `config::trust` (a leaf); the old paths stay.
pub use crate::config::trust::{CaPemError, ca_roots};
use crate::http::http2::ALPN_H2;

/// The one crypto provider wssd uses everywhere (server, bench client, cert
/// checks): aws-lc-rs with the hybrid post-quantum group X25519MLKEM768
/// first, as browsers offer it (rustls lists it last unless its
/// `prefer-post-quantum` feature is on). A TLS 1.3 server takes the first
/// group of the client's list that it supports, so this order decides what
/// wssd offers as a client; as a server, every group here is accepted.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = KX_GROUPS.to_vec();
    Arc::new(provider)
}

/// Key exchange groups, most preferred first.
const KX_GROUPS: &[&'static dyn rustls::crypto::SupportedKxGroup] = &[
    kx_group::X25519MLKEM768,
    kx_group::X25519,
    kx_group::SECP256R1,
    kx_group::SECP384R1,
];

/// The server's cipher suites, in the order it picks them (the client's
/// order is ignored: `ignore_client_order`): AES-128-GCM first, as Go and
/// Caddy do. Its TLS 1.3 suite hashes with SHA-256, which this CPU class
/// runs in hardware (SHA-NI), where AES-256-GCM's SHA-384 runs in software:
/// a full handshake's key schedule (HKDF) was 13% of wssd's CPU per connect
/// with SHA-384 (bench/README.md, "Connects"). Browsers offer AES-128-GCM
/// first already; OpenSSL and rustls clients offer AES-256-GCM first. A
/// client without AES hardware that prefers ChaCha20 also gets AES-128-GCM.
const SERVER_SUITES: &[rustls::SupportedCipherSuite] = &[
    suite::TLS13_AES_128_GCM_SHA256,
    suite::TLS13_AES_256_GCM_SHA384,
    suite::TLS13_CHACHA20_POLY1305_SHA256,
    suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.3 session tickets sent after a full handshake (rustls's default is
/// 2, OpenSSL's 2, Go's and so Caddy's 1). Each costs the server a ticket
/// key derivation, a session stored and a record written; a resumed
/// handshake gets a fresh ticket, so a client that reconnects one
/// connection at a time always has one. Clients opening several
/// connections at once (HTTP/1.1 browsers) resume only one of them; with
/// HTTP/2 (on by default) a browser opens one connection per origin.
pub const TLS13_TICKETS: usize = 1;

/// The provider of the server side: [`provider`] with [`SERVER_SUITES`].
fn server_provider() -> Arc<CryptoProvider> {
    let mut provider = Arc::unwrap_or_clone(provider());
    provider.cipher_suites = SERVER_SUITES.to_vec();
    Arc::new(provider)
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
/// [`SERVER_SUITES`] in the server's order, [`TLS13_TICKETS`] tickets per
/// full handshake (resumption through rustls's bounded in-memory session
/// store), ALPN `h2` (unless `http2` is
/// off: `--http2 off`) then `http/1.1` (plus
/// `acme-tls/1` when ACME may validate through this listener), and client
/// certificate verification when mTLS is configured.
pub fn server_config(
    resolver: Arc<resolver::CertResolver>,
    client_auth: Option<&ClientAuthConfig>,
    acme: bool,
    http2: bool,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let builder = rustls::ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth)?),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.ignore_client_order = true;
    config.send_tls13_tickets = TLS13_TICKETS;
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
