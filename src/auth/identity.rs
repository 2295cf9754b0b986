//! Who a request is, once the edge has authenticated it: a leaf that the
//! HTTP layer fills in and the route kinds read (proxy `X-Wssd-Identity`,
//! exec `REMOTE_USER`, chat names and moderators, the logs).

use std::sync::Arc;

/// How an [`Identity`] was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// A static bearer token (`auth.kind = "token"`); the name is the token's.
    Token,
    /// A verified JWT (`auth.kind = "jwt"`); the name is its identity claim.
    Jwt,
    /// HTTP basic auth against an htpasswd file (`auth.kind = "basic"`).
    Basic,
    /// A verified client certificate (mTLS); the name is its subject.
    ClientCert,
}

impl IdentitySource {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            IdentitySource::Token => "token",
            IdentitySource::Jwt => "jwt",
            IdentitySource::Basic => "basic",
            IdentitySource::ClientCert => "client-cert",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Who: the token's name, the JWT's identity claim, the basic-auth
    /// user, or the client certificate's subject.
    pub name: Arc<str>,
    pub source: IdentitySource,
    /// The JWT's claims (JWT only), for per-route rules such as chat's
    /// moderator claim.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl Identity {
    /// An identity with no claims.
    pub fn new(name: impl Into<Arc<str>>, source: IdentitySource) -> Identity {
        Identity {
            name: name.into(),
            source,
            claims: None,
        }
    }
}
