//! A route's authentication, ready to use: the method with its loaded
//! material (tokens, keys or users, read once at configuration load), the
//! realm and the cookie a token may travel in.

use std::fmt;
use std::sync::Arc;

use super::basic::Htpasswd;
use super::jwt::JwtVerifier;
use super::token::TokenSet;

/// The realm in `WWW-Authenticate` unless the route names another.
pub const DEFAULT_REALM: &str = "wssd";

/// How a route checks who is calling.
#[derive(Debug)]
pub enum Method {
    /// Static bearer tokens.
    Token(TokenSet),
    /// Signed JWTs.
    Jwt(JwtVerifier),
    /// HTTP basic auth against an htpasswd file.
    Basic(Htpasswd),
}

impl Method {
    /// The `kind` as written in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Token(_) => "token",
            Method::Jwt(_) => "jwt",
            Method::Basic(_) => "basic",
        }
    }

    fn fingerprint(&self) -> [u8; 32] {
        match self {
            Method::Token(t) => t.fingerprint(),
            Method::Jwt(j) => j.fingerprint(),
            Method::Basic(b) => b.fingerprint(),
        }
    }
}

/// One route's `auth`. Cheap to clone (the material is shared); two specs
/// are equal when their settings and loaded material are.
#[derive(Clone)]
pub struct AuthSpec {
    pub method: Arc<Method>,
    /// The realm of `WWW-Authenticate` (a quoted-string without quotes or
    /// backslashes).
    pub realm: String,
    /// A cookie that may carry the token (token and jwt only).
    pub cookie: Option<String>,
    /// Where the material came from, for logs (`tokens_file tokens.txt`).
    pub source: String,
}

impl AuthSpec {
    pub fn new(
        method: Method,
        realm: Option<String>,
        cookie: Option<String>,
        source: String,
    ) -> Self {
        AuthSpec {
            method: Arc::new(method),
            realm: realm.unwrap_or_else(|| DEFAULT_REALM.to_string()),
            cookie,
            source,
        }
    }
}

impl PartialEq for AuthSpec {
    fn eq(&self, other: &Self) -> bool {
        self.realm == other.realm
            && self.cookie == other.cookie
            && self.source == other.source
            && (Arc::ptr_eq(&self.method, &other.method)
                || self.method.fingerprint() == other.method.fingerprint())
    }
}

impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSpec")
            .field("kind", &self.method.name())
            .field("source", &self.source)
            .field("realm", &self.realm)
            .field("cookie", &self.cookie)
            .finish()
    }
}
