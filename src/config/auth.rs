//! A route's `auth` table: `{ kind = "token" | "jwt" | "basic", ... }`,
//! checked and loaded once at configuration load (files read, keys parsed,
//! secrets taken from the environment) into a ready [`AuthSpec`]. Every
//! problem names the route, the file or variable, and the fix; a missing
//! or empty secret is an error, never an open route.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::environment::Environment;
use crate::auth::basic::Htpasswd;
use crate::auth::error::{HtpasswdError, JwtKeyError, TokensError};
use crate::auth::jwt::{JwtRules, JwtVerifier};
use crate::auth::token::TokenSet;
use crate::auth::{AuthSpec, Method};

/// Default `leeway_secs`: clock skew allowed on `exp` and `nbf`
/// (jsonwebtoken's own default).
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Largest `leeway_secs` accepted (one hour).
pub const MAX_LEEWAY_SECS: u64 = 3600;
/// Default `identity_claim`.
pub const DEFAULT_IDENTITY_CLAIM: &str = "sub";
/// Largest auth file read (tokens, htpasswd, keys, JWKS).
pub const MAX_FILE: u64 = 4 * 1024 * 1024;

/// The `auth` inline table of a `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthTable {
    /// `token`, `jwt` or `basic`.
    pub kind: String,
    /// token: a file of `NAME:TOKEN` or bare `TOKEN` lines.
    pub tokens_file: Option<PathBuf>,
    /// token: an environment variable holding tokens (comma-separated).
    pub tokens_env: Option<String>,
    /// jwt: an environment variable holding the HMAC secret (HS*).
    pub secret_env: Option<String>,
    /// jwt: a PEM public key (RS*, PS*, ES*, EdDSA by key type).
    pub public_key: Option<PathBuf>,
    /// jwt: a JWKS file (keys picked by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// jwt: accepted `aud` value(s).
    pub audience: Option<Audience>,
    /// jwt: the required `iss`.
    pub issuer: Option<String>,
    /// jwt: clock skew allowed on `exp`/`nbf`, seconds (default 60).
    pub leeway_secs: Option<u64>,
    /// jwt: the claim that names the caller (default `sub`).
    pub identity_claim: Option<String>,
    /// basic: the htpasswd file (bcrypt or argon2id entries).
    pub htpasswd: Option<PathBuf>,
    /// The realm of `WWW-Authenticate` (default `wssd`).
    pub realm: Option<String>,
    /// token, jwt: a cookie that may carry the token.
    pub cookie: Option<String>,
}

/// One audience or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a route's `auth` cannot be used; `place` names the file, line and
/// route.
#[derive(Debug, thiserror::Error)]
#[error("{place}: auth: {problem}")]
pub struct AuthConfigError {
    pub place: String,
    pub problem: AuthProblem,
}

/// What is wrong with an `auth` table.
#[derive(Debug, thiserror::Error)]
pub enum AuthProblem {
    #[error("unknown kind `{0}`; use kind = \"token\", \"jwt\" or \"basic\"")]
    UnknownKind(String),
    #[error("`{key}` does not apply to kind = \"{kind}\"")]
    Misplaced { key: &'static str, kind: String },
    #[error("kind = \"token\" needs exactly one of tokens_file = \"FILE\" or tokens_env = \"VAR\"")]
    TokensSource,
    #[error(
        "kind = \"jwt\" needs exactly one of secret_env = \"VAR\" (HS256), public_key = \"FILE.pem\" or jwks_file = \"FILE.json\""
    )]
    JwtKeySource,
    #[error("kind = \"basic\" needs htpasswd = \"FILE\"")]
    NoHtpasswd,
    #[error(
        "environment variable {var} ({what}) is not set or is empty; set it, or the route would be open to anyone"
    )]
    EnvMissing { var: String, what: &'static str },
    #[error("{}: cannot read: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_FILE} bytes; is this the right file?", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{origin}: {source}")]
    Tokens { origin: String, source: TokensError },
    #[error("{}: {source}", .path.display())]
    Htpasswd {
        path: PathBuf,
        source: HtpasswdError,
    },
    #[error("{origin}: {source}")]
    JwtKey { origin: String, source: JwtKeyError },
    #[error(
        "realm must be 1 to 64 visible ASCII characters or spaces, without quotes or backslashes"
    )]
    BadRealm,
    #[error("cookie must be a cookie name (letters, digits, `-`, `_`, `.`)")]
    BadCookie,
    #[error("identity_claim must name a claim (for example \"sub\" or \"email\")")]
    BadClaim,
    #[error("audience must not be empty")]
    BadAudience,
    #[error("leeway_secs must be at most {MAX_LEEWAY_SECS}, not {0}")]
    LeewayTooLong(u64),
}

impl AuthTable {
    /// Checks the table and loads what it names; `place` names the route
    /// in errors, `env` holds the secrets.
    pub fn load(&self, place: &str, env: &Environment) -> Result<AuthSpec, AuthConfigError> {
        self.resolve(env).map_err(|problem| AuthConfigError {
            place: place.to_string(),
            problem,
        })
    }

    fn resolve(&self, env: &Environment) -> Result<AuthSpec, AuthProblem> {
        self.check_keys()?;
        if let Some(realm) = &self.realm
            && (realm.is_empty()
                || realm.chars().count() > 64
                || !realm
                    .chars()
                    .all(|c| (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\'))
        {
            return Err(AuthProblem::BadRealm);
        }
        if let Some(cookie) = &self.cookie
            && (cookie.is_empty()
                || !cookie
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(AuthProblem::BadCookie);
        }
        let (method, source) = match self.kind.as_str() {
            "token" => self.tokens(env)?,
            "jwt" => self.jwt(env)?,
            "basic" => self.basic()?,
            other => return Err(AuthProblem::UnknownKind(other.to_string())),
        };
        Ok(AuthSpec::new(
            method,
            self.realm.clone(),
            self.cookie.clone(),
            source,
        ))
    }

    /// Keys of another kind are refused, so a typo never silently opens
    /// or weakens a route.
    fn check_keys(&self) -> Result<(), AuthProblem> {
        let present: [(&'static str, bool, &[&str]); 12] = [
            ("tokens_file", self.tokens_file.is_some(), &["token"]),
            ("tokens_env", self.tokens_env.is_some(), &["token"]),
            ("secret_env", self.secret_env.is_some(), &["jwt"]),
            ("public_key", self.public_key.is_some(), &["jwt"]),
            ("jwks_file", self.jwks_file.is_some(), &["jwt"]),
            ("audience", self.audience.is_some(), &["jwt"]),
            ("issuer", self.issuer.is_some(), &["jwt"]),
            ("leeway_secs", self.leeway_secs.is_some(), &["jwt"]),
            ("identity_claim", self.identity_claim.is_some(), &["jwt"]),
            ("htpasswd", self.htpasswd.is_some(), &["basic"]),
            ("cookie", self.cookie.is_some(), &["token", "jwt"]),
            ("realm", self.realm.is_some(), &["token", "jwt", "basic"]),
        ];
        let known = ["token", "jwt", "basic"].contains(&self.kind.as_str());
        for (key, is_set, kinds) in present {
            if known && is_set && !kinds.contains(&self.kind.as_str()) {
                return Err(AuthProblem::Misplaced {
                    key,
                    kind: self.kind.clone(),
                });
            }
        }
        Ok(())
    }

    fn tokens(&self, env: &Environment) -> Result<(Method, String), AuthProblem> {
        match (&self.tokens_file, &self.tokens_env) {
            (Some(path), None) => {
                let text = read_text(path)?;
                let set = TokenSet::parse_file(&text).map_err(|source| AuthProblem::Tokens {
                    origin: path.display().to_string(),
                    source,
                })?;
                Ok((
                    Method::Token(set),
                    format!("tokens_file {}", path.display()),
                ))
            }
            (None, Some(var)) => {
                let value = secret(env, var, "the route's tokens")?;
                let set = TokenSet::parse_env(value).map_err(|source| AuthProblem::Tokens {
                    origin: format!("environment variable {var}"),
                    source,
                })?;
                Ok((Method::Token(set), format!("tokens_env {var}")))
            }
            _ => Err(AuthProblem::TokensSource),
        }
    }

    fn jwt(&self, env: &Environment) -> Result<(Method, String), AuthProblem> {
        let rules = self.rules()?;
        let key_error = |origin: String| move |source| AuthProblem::JwtKey { origin, source };
        match (&self.secret_env, &self.public_key, &self.jwks_file) {
            (Some(var), None, None) => {
                let value = secret(env, var, "the JWT secret")?;
                let jwt = JwtVerifier::from_secret(value.as_bytes(), &rules)
                    .map_err(key_error(format!("environment variable {var}")))?;
                Ok((Method::Jwt(jwt), format!("secret_env {var}")))
            }
            (None, Some(path), None) => {
                let pem = read_bytes(path)?;
                let jwt = JwtVerifier::from_pem(&pem, &rules)
                    .map_err(key_error(path.display().to_string()))?;
                Ok((Method::Jwt(jwt), format!("public_key {}", path.display())))
            }
            (None, None, Some(path)) => {
                let json = read_bytes(path)?;
                let jwt = JwtVerifier::from_jwks(&json, &rules)
                    .map_err(key_error(path.display().to_string()))?;
                Ok((Method::Jwt(jwt), format!("jwks_file {}", path.display())))
            }
            _ => Err(AuthProblem::JwtKeySource),
        }
    }

    fn rules(&self) -> Result<JwtRules, AuthProblem> {
        let audience = match &self.audience {
            None => None,
            Some(Audience::One(a)) => Some(vec![a.clone()]),
            Some(Audience::Many(list)) => Some(list.clone()),
        };
        if audience
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.iter().any(String::is_empty))
        {
            return Err(AuthProblem::BadAudience);
        }
        let leeway_secs = self.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
        if leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthProblem::LeewayTooLong(leeway_secs));
        }
        let identity_claim = self
            .identity_claim
            .clone()
            .unwrap_or_else(|| DEFAULT_IDENTITY_CLAIM.to_string());
        if identity_claim.is_empty() || identity_claim.chars().any(char::is_control) {
            return Err(AuthProblem::BadClaim);
        }
        Ok(JwtRules {
            audience,
            issuer: self.issuer.clone(),
            leeway_secs,
            identity_claim,
        })
    }

    fn basic(&self) -> Result<(Method, String), AuthProblem> {
        let Some(path) = &self.htpasswd else {
            return Err(AuthProblem::NoHtpasswd);
        };
        let text = read_text(path)?;
        let users = Htpasswd::parse(&text).map_err(|source| AuthProblem::Htpasswd {
            path: path.clone(),
            source,
        })?;
        Ok((Method::Basic(users), format!("htpasswd {}", path.display())))
    }
}

/// A non-empty secret from the environment.
fn secret<'a>(env: &'a Environment, var: &str, what: &'static str) -> Result<&'a str, AuthProblem> {
    env.secrets
        .get(var)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| AuthProblem::EnvMissing {
            var: var.to_string(),
            what,
        })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, AuthProblem> {
    let unreadable = |source| AuthProblem::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.len() > MAX_FILE {
        return Err(AuthProblem::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(unreadable)
}

fn read_text(path: &Path) -> Result<String, AuthProblem> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|_| AuthProblem::Unreadable {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: &str) -> AuthTable {
        AuthTable {
            kind: kind.into(),
            tokens_file: None,
            tokens_env: None,
            secret_env: None,
            public_key: None,
            jwks_file: None,
            audience: None,
            issuer: None,
            leeway_secs: None,
            identity_claim: None,
            htpasswd: None,
            realm: None,
            cookie: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment {
            secrets: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Environment::default()
        }
    }

    #[test]
    fn missing_secrets_are_errors_not_open_routes() {
        let t = AuthTable {
            tokens_env: Some("API_TOKENS".into()),
            ..table("token")
        };
        let e = t.load("wssd.toml:3: [[route]] /ws", &env(&[])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("wssd.toml:3"), "{text}");
        assert!(text.contains("API_TOKENS"), "{text}");
        assert!(text.contains("open to anyone"), "{text}");
        let spec = t
            .load("x", &env(&[("API_TOKENS", "svc:0123456789abcdef0123")]))
            .unwrap();
        assert_eq!(spec.realm, "wssd");
        let t = AuthTable {
            secret_env: Some("JWT_SECRET".into()),
            ..table("jwt")
        };
        assert!(t.load("x", &env(&[("JWT_SECRET", " ")])).is_err());
        let short = t.load("x", &env(&[("JWT_SECRET", "short")])).unwrap_err();
        assert!(short.to_string().contains("at least 32"), "{short}");
    }

    #[test]
    fn shape_errors() {
        let e = table("token").load("r", &env(&[])).unwrap_err();
        assert!(matches!(e.problem, AuthProblem::TokensSource));
        let e = table("jwt").load("r", &env(&[])).unwrap_err();
        assert!(matches!(e.problem, AuthProblem::JwtKeySource));
        let e = table("basic").load("r", &env(&[])).unwrap_err();
        assert!(matches!(e.problem, AuthProblem::NoHtpasswd));
        let e = table("oauth").load("r", &env(&[])).unwrap_err();
        assert!(matches!(e.problem, AuthProblem::UnknownKind(_)));
        let t = AuthTable {
            htpasswd: Some("x".into()),
            ..table("token")
        };
        assert!(matches!(
            t.load("r", &env(&[])).unwrap_err().problem,
            AuthProblem::Misplaced {
                key: "htpasswd",
                ..
            }
        ));
        let t = AuthTable {
            tokens_file: Some("/nonexistent/tokens.txt".into()),
            ..table("token")
        };
        let e = t.load("r", &env(&[])).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/tokens.txt"), "{e}");
        let t = AuthTable {
            realm: Some("a\"b".into()),
            htpasswd: Some("x".into()),
            ..table("basic")
        };
        assert!(matches!(
            t.load("r", &env(&[])).unwrap_err().problem,
            AuthProblem::BadRealm
        ));
    }
}
