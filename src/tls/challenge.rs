//! ACME challenge answers the listeners serve while an order is pending:
//! HTTP-01 key authorizations (plain listener, `/.well-known/acme-challenge/`)
//! and TLS-ALPN-01 validation certificates (TLS listener, ALPN `acme-tls/1`).
//!
//! The ACME client (`certs::acme`) fills this; `http` and the resolver read it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Path prefix of HTTP-01 (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending challenge answers. Cheap to read; written a few times per order.
#[derive(Default)]
pub struct Challenges {
    http01: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// Serves `key_authorization` at `/.well-known/acme-challenge/<token>`.
    pub fn set_http01(&self, token: &str, key_authorization: &str) {
        if let Ok(mut map) = self.http01.write() {
            map.insert(token.to_string(), key_authorization.to_string());
        }
    }

    pub fn remove_http01(&self, token: &str) {
        if let Ok(mut map) = self.http01.write() {
            map.remove(token);
        }
    }

    /// The key authorization for a token, if one is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.read().ok()?.get(token).cloned()
    }

    /// Serves `key` to `acme-tls/1` handshakes for `name`.
    pub fn set_alpn(&self, name: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.alpn.write() {
            map.insert(name.to_ascii_lowercase(), key);
        }
    }

    pub fn remove_alpn(&self, name: &str) {
        if let Ok(mut map) = self.alpn.write() {
            map.remove(&name.to_ascii_lowercase());
        }
    }

    /// The validation certificate for `name`, if one is pending.
    pub fn alpn(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn
            .read()
            .ok()?
            .get(&name.to_ascii_lowercase())
            .cloned()
    }
}
