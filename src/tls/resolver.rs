//! The one certificate resolver. Every TLS handshake asks it for a
//! certificate; it answers from an immutable snapshot that certificate
//! sources replace whole (lock-free, no I/O in the handshake).
//!
//! Sources (self-signed, files, later reload/ACME/local CA) live in `certs`
//! and call [`CertResolver::publish`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::challenge::{ACME_TLS_ALPN, Challenges};

/// What the resolver serves: a default certificate and certificates by name.
#[derive(Default, Clone)]
pub struct CertSet {
    /// Served when SNI is absent or names no known certificate.
    pub default: Option<Arc<CertifiedKey>>,
    /// Lower-case DNS name (or `*.domain`) to certificate.
    pub by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    /// A set with one certificate for every name.
    pub fn single(key: Arc<CertifiedKey>) -> Self {
        CertSet {
            default: Some(key),
            by_name: HashMap::new(),
        }
    }

    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.by_name.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(k) = self.by_name.get(&format!("*.{parent}"))
            {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

/// The resolver handed to rustls. Cheap to clone-share via `Arc`.
#[derive(Default)]
pub struct CertResolver {
    current: ArcSwap<CertSet>,
    challenges: Arc<Challenges>,
}

impl CertResolver {
    pub fn new(set: CertSet) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(set),
            challenges: Arc::default(),
        }
    }

    /// The ACME challenge answers this resolver (and the HTTP layer) serve.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Replaces what new handshakes get. Open connections are unaffected.
    pub fn publish(&self, set: CertSet) {
        self.current.store(Arc::new(set));
    }

    /// Whether a default certificate is loaded (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.current.load().default.is_some()
    }

    /// The certificate a handshake with this SNI would get.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.current.load().lookup(sni)
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current.load();
        f.debug_struct("CertResolver")
            .field("default", &set.default.is_some())
            .field("names", &set.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // TLS-ALPN-01 validation: the CA offers only `acme-tls/1`.
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            return hello.server_name().and_then(|n| self.challenges.alpn(n));
        }
        self.lookup(hello.server_name())
    }
}
