//! HTTP basic auth against an htpasswd file (`auth.kind = "basic"`),
//! parsed here rather than with `htpasswd-verify` (which pulls the
//! unmaintained `rust-crypto`, compares with `==` and panics on a bad
//! line). Accepted entries: bcrypt (`$2y$`, `$2b$`, `$2a$`, what
//! `htpasswd -B` writes) and argon2id (`$argon2id$...`, PHC form); the weak
//! formats (`$apr1$` MD5, `{SHA}`, crypt, plain text) are refused at load,
//! naming the line.
//!
//! Both hashes are slow on purpose (tens of milliseconds), so a handshake
//! flood must not become a CPU flood: checks run on the blocking pool, at
//! most [`MAX_CONCURRENT`] at once (a request waits at most
//! [`PERMIT_WAIT`] for a turn, then is refused as throttled), and a
//! successful (user, password) pair is remembered for [`CACHE_TTL`] so a
//! client that reconnects does not pay again. An unknown user is checked
//! against the file's first entry, so timing does not tell which users
//! exist.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::error::HtpasswdError;
use super::reason::Reason;
use crate::secret::sha256;

/// Most password checks running at once (per htpasswd file).
pub const MAX_CONCURRENT: usize = 2;
/// Longest a request waits for a turn to have its password checked.
pub const PERMIT_WAIT: Duration = Duration::from_secs(2);
/// How long a successful check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most remembered successes.
pub const CACHE_MAX: usize = 1024;
/// Highest bcrypt cost accepted (cost 14 is about a second per check).
pub const MAX_BCRYPT_COST: u32 = 14;
/// Most argon2 memory accepted, in KiB (256 MiB).
pub const MAX_ARGON2_KIB: u32 = 256 * 1024;
/// Most argon2 passes accepted.
pub const MAX_ARGON2_PASSES: u32 = 16;

#[derive(Clone)]
enum Hash {
    Bcrypt(String),
    Argon2(String),
}

/// The users of one htpasswd file and the machinery to check them.
pub struct Htpasswd {
    users: HashMap<String, Hash>,
    /// Checked (and its result ignored) for unknown users.
    decoy: Hash,
    /// SHA-256 of the file's entries (to tell two configurations apart).
    fingerprint: [u8; 32],
    turns: Semaphore,
    /// Digest of user and password -> when the success was seen.
    cache: Mutex<HashMap<[u8; 32], Instant>>,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Parses `USER:HASH` lines (blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        let mut decoy = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = entry.split_once(':') else {
                return Err(HtpasswdError::NotUserHash { line });
            };
            if user.is_empty() {
                return Err(HtpasswdError::NotUserHash { line });
            }
            let hash = classify(line, user, hash)?;
            if users.contains_key(user) {
                return Err(HtpasswdError::DuplicateUser {
                    line,
                    user: user.to_string(),
                });
            }
            decoy.get_or_insert_with(|| hash.clone());
            users.insert(user.to_string(), hash);
        }
        let Some(decoy) = decoy else {
            return Err(HtpasswdError::Empty);
        };
        Ok(Htpasswd {
            users,
            decoy,
            fingerprint: sha256(text.as_bytes()),
            turns: Semaphore::new(MAX_CONCURRENT),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no user (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks `password` for `user`: `Ok(())`, or why not.
    pub async fn verify(&self, user: &str, password: &str) -> Result<(), Reason> {
        let key = cache_key(user, password);
        if self.remembered(&key) {
            return Ok(());
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let Ok(Ok(_turn)) = tokio::time::timeout(PERMIT_WAIT, self.turns.acquire()).await else {
            return Err(Reason::Throttled);
        };
        let password = password.to_string();
        let matched = tokio::task::spawn_blocking(move || check(&hash, &password))
            .await
            .unwrap_or(false);
        match (known, matched) {
            (true, true) => {
                self.remember(key);
                Ok(())
            }
            (true, false) => Err(Reason::BadPassword),
            (false, _) => Err(Reason::UnknownUser),
        }
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        let Ok(cache) = self.cache.lock() else {
            return false;
        };
        cache
            .get(key)
            .is_some_and(|seen| seen.elapsed() < CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, seen| seen.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, Instant::now());
    }
}

fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut both = Vec::with_capacity(user.len() + password.len() + 1);
    both.extend_from_slice(user.as_bytes());
    both.push(0);
    both.extend_from_slice(password.as_bytes());
    sha256(&both)
}

/// Whether `password` matches `hash` (slow: run it on the blocking pool).
fn check(hash: &Hash, password: &str) -> bool {
    match hash {
        // bcrypt looks at the first 72 bytes only; a longer password is
        // refused rather than matched by its prefix.
        Hash::Bcrypt(h) => password.len() <= 72 && bcrypt::verify(password, h).unwrap_or(false),
        Hash::Argon2(h) => {
            use argon2::PasswordVerifier;
            argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        }
    }
}

/// Sorts one entry's hash into an accepted format, or says why not.
fn classify(line: usize, user: &str, hash: &str) -> Result<Hash, HtpasswdError> {
    let malformed = |scheme, why: String| HtpasswdError::Malformed {
        line,
        user: user.to_string(),
        scheme,
        why,
    };
    let too_costly = |what, max| HtpasswdError::TooCostly {
        line,
        user: user.to_string(),
        what,
        max,
    };
    let weak = |scheme| HtpasswdError::Weak {
        line,
        user: user.to_string(),
        scheme,
    };
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        let parts: bcrypt::HashParts = hash
            .parse()
            .map_err(|e: bcrypt::BcryptError| malformed("bcrypt", e.to_string()))?;
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err(too_costly("a bcrypt cost above 14", MAX_BCRYPT_COST));
        }
        return Ok(Hash::Bcrypt(hash.to_string()));
    }
    if hash.starts_with("$argon2id$") {
        let parsed =
            argon2::PasswordHash::new(hash).map_err(|e| malformed("argon2id", e.to_string()))?;
        let params =
            argon2::Params::try_from(&parsed).map_err(|e| malformed("argon2id", e.to_string()))?;
        if params.m_cost() > MAX_ARGON2_KIB {
            return Err(too_costly(
                "argon2 memory above 256 MiB (m=262144)",
                MAX_ARGON2_KIB,
            ));
        }
        if params.t_cost() > MAX_ARGON2_PASSES {
            return Err(too_costly(
                "more than 16 argon2 passes (t=16)",
                MAX_ARGON2_PASSES,
            ));
        }
        return Ok(Hash::Argon2(hash.to_string()));
    }
    if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        return Err(weak("MD5 ($apr1$/$1$)"));
    }
    if hash.starts_with("{SHA}") {
        return Err(weak("SHA-1 ({SHA})"));
    }
    if hash.starts_with("$argon2i$") || hash.starts_with("$argon2d$") {
        return Err(HtpasswdError::Unknown {
            line,
            user: user.to_string(),
        });
    }
    if hash.len() == 13
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(weak("DES crypt"));
    }
    if !hash.starts_with('$') {
        return Err(weak("plain-text"));
    }
    Err(HtpasswdError::Unknown {
        line,
        user: user.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argon2_line(user: &str, password: &str) -> String {
        use argon2::PasswordHasher;
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let hasher =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = hasher
            .hash_password_with_salt(password.as_bytes(), b"somesaltsomesalt")
            .unwrap()
            .to_string();
        format!("{user}:{hash}")
    }

    #[tokio::test]
    async fn bcrypt_and_argon2id_entries() {
        let bcrypt_hash = bcrypt::hash("pw-bob", 4).unwrap();
        let text = format!(
            "# users\nbob:{bcrypt_hash}\n{}\n",
            argon2_line("carol", "pw-carol")
        );
        let file = Htpasswd::parse(&text).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(file.verify("bob", "pw-bob").await, Ok(()));
        assert_eq!(file.verify("bob", "pw-bob").await, Ok(()), "cached");
        assert_eq!(file.verify("bob", "nope").await, Err(Reason::BadPassword));
        assert_eq!(file.verify("carol", "pw-carol").await, Ok(()));
        assert_eq!(
            file.verify("carol", "pw-bob").await,
            Err(Reason::BadPassword)
        );
        assert_eq!(
            file.verify("dave", "pw-bob").await,
            Err(Reason::UnknownUser)
        );
        let long = "x".repeat(80);
        assert_eq!(file.verify("bob", &long).await, Err(Reason::BadPassword));
    }

    #[test]
    fn weak_and_unknown_lines_are_refused_by_line() {
        let refuse = |text: &str| Htpasswd::parse(text).unwrap_err();
        assert!(matches!(
            refuse("a:$apr1$abc$def\n"),
            HtpasswdError::Weak { line: 1, .. }
        ));
        assert!(matches!(
            refuse("\n\nb:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n"),
            HtpasswdError::Weak { line: 3, .. }
        ));
        assert!(matches!(
            refuse("c:abJnggxhB/yWI\n"),
            HtpasswdError::Weak { .. }
        ));
        assert!(matches!(refuse("d:hunter2\n"), HtpasswdError::Weak { .. }));
        assert!(matches!(
            refuse("e:$6$salt$hash\n"),
            HtpasswdError::Unknown { .. }
        ));
        assert!(matches!(
            refuse("no-colon\n"),
            HtpasswdError::NotUserHash { line: 1 }
        ));
        assert!(matches!(refuse("# empty\n"), HtpasswdError::Empty));
        assert!(matches!(
            refuse("f:$2y$05$bad\n"),
            HtpasswdError::Malformed { .. }
        ));
        let costly = format!(
            "g:{}",
            bcrypt::hash("x", 4).unwrap().replace("$04$", "$15$")
        );
        assert!(matches!(refuse(&costly), HtpasswdError::TooCostly { .. }));
        let h = bcrypt::hash("x", 4).unwrap();
        assert!(matches!(
            refuse(&format!("h:{h}\nh:{h}\n")),
            HtpasswdError::DuplicateUser { line: 2, .. }
        ));
    }
}
