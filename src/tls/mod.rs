//! The rustls server configuration: TLS 1.2 and 1.3 only, the aws-lc-rs
//! provider, ALPN `http/1.1`, and the one certificate resolver.
//!
//! Where certificates come from is not this module's business (see `certs`).

pub mod challenge;
pub mod resolver;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The one crypto provider wssd uses everywhere (server, bench client, cert checks).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the server config around the resolver: TLS 1.3 and 1.2 only,
/// ALPN `http/1.1`, default (strong) cipher suites of the provider.
pub fn server_config(
    resolver: Arc<resolver::CertResolver>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Ciphertext queued per connection before writers wait.
    config.send_half_rtt_data = false;
    Ok(config)
}
