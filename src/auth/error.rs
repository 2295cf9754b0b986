//! Why auth material cannot be loaded: one typed error per problem, each
//! saying what to write instead. The configuration wraps them with the
//! route and the file (`crate::config::auth`), so these name only the line.

/// A tokens file (or `tokens_env` value) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error(
        "holds no token; write one token per line (NAME:TOKEN, or a bare TOKEN); generate one with `openssl rand -hex 24`"
    )]
    Empty,
    #[error(
        "{unit} {at}: the token is shorter than {min} characters; generate one with `openssl rand -hex 24`"
    )]
    TooShort {
        unit: &'static str,
        at: usize,
        min: usize,
    },
    #[error("{unit} {at}: the token contains spaces or control characters")]
    BadToken { unit: &'static str, at: usize },
    #[error(
        "{unit} {at}: the name before `:` must be 1 to 64 visible characters without spaces (NAME:TOKEN)"
    )]
    BadName { unit: &'static str, at: usize },
    #[error("{unit} {at}: the same token as {unit} {first}; each token must be unique")]
    DuplicateToken {
        unit: &'static str,
        at: usize,
        first: usize,
    },
    #[error("{unit} {at}: the name `{name}` is used twice; each name must be unique")]
    DuplicateName {
        unit: &'static str,
        at: usize,
        name: String,
    },
}

/// An htpasswd file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    #[error(
        "holds no user; add one with `htpasswd -B FILE USER` (bcrypt) or an argon2id line (see README)"
    )]
    Empty,
    #[error("line {line}: expected USER:HASH")]
    NotUserHash { line: usize },
    #[error(
        "line {line} (user `{user}`): {scheme} hashes are weak and refused; re-create the entry with `htpasswd -B FILE {user}` (bcrypt) or argon2id"
    )]
    Weak {
        line: usize,
        user: String,
        scheme: &'static str,
    },
    #[error(
        "line {line} (user `{user}`): unknown hash format; use bcrypt (`htpasswd -B FILE {user}`, $2y$...) or argon2id ($argon2id$...)"
    )]
    Unknown { line: usize, user: String },
    #[error("line {line} (user `{user}`): malformed {scheme} hash: {why}")]
    Malformed {
        line: usize,
        user: String,
        scheme: &'static str,
        why: String,
    },
    #[error(
        "line {line} (user `{user}`): {what} is too costly to check at every handshake (at most {max}); re-create the entry with a lower cost"
    )]
    TooCostly {
        line: usize,
        user: String,
        what: &'static str,
        max: u32,
    },
    #[error("line {line}: user `{user}` is listed twice")]
    DuplicateUser { line: usize, user: String },
}

/// A JWT key (secret, PEM public key or JWKS) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtKeyError {
    #[error(
        "the secret is {len} bytes; HS256 needs at least {min} (generate one with `openssl rand -base64 48`)"
    )]
    ShortSecret { len: usize, min: usize },
    #[error(
        "holds a private key; give the public key instead (`openssl pkey -in KEY.pem -pubout -out public.pem`)"
    )]
    PrivateKey,
    #[error(
        "holds no PUBLIC KEY block; give the PEM public key that verifies the tokens (RSA, EC P-256/P-384 or Ed25519)"
    )]
    NoPublicKey,
    #[error("the public key cannot be read: {0}")]
    BadKey(String),
    #[error("unsupported key type {0}; use an RSA, EC (P-256 or P-384) or Ed25519 public key")]
    UnsupportedKey(String),
    #[error("not a JWKS document (a JSON object with a `keys` list): {0}")]
    BadJwks(String),
    #[error("the JWKS holds no usable key")]
    EmptyJwks,
    #[error("JWKS key {index}: {why}")]
    BadJwk { index: usize, why: String },
    #[error("JWKS keys {first} and {index} share the kid `{kid}`; each key needs its own kid")]
    DuplicateKid {
        first: usize,
        index: usize,
        kid: String,
    },
    #[error(
        "the JWKS has {0} keys and key {1} has no kid; with several keys every key needs a kid (tokens pick their key by kid)"
    )]
    MissingKid(usize, usize),
}
