//! Static bearer tokens (`auth.kind = "token"`): a list loaded once, each
//! token kept only as its SHA-256 digest, checked in constant time.
//!
//! Every check hashes the presented token and compares its digest with
//! *every* configured digest using `subtle`'s constant-time equality,
//! OR-ing the results without an early exit: the time taken does not
//! depend on which token (if any) matched, nor on how much of a guess was
//! right (digests of different tokens share no prefix structure, and
//! their length is fixed, so `ct_eq` never short-circuits on length).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::TokensError;
use crate::secret::sha256;

/// Shortest token accepted (the publish token's rule).
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens of one route, by name.
pub struct TokenSet {
    /// Digest and name, in file order.
    entries: Vec<([u8; 32], Arc<str>)>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

impl TokenSet {
    /// Parses a tokens file: one token per line, `NAME:TOKEN` or a bare
    /// `TOKEN` (named `token-LINE`); blank lines and `#` comments skipped.
    pub fn parse_file(text: &str) -> Result<TokenSet, TokensError> {
        Self::parse(text.lines(), "line")
    }

    /// Parses a `tokens_env` value: entries separated by commas or
    /// newlines, each `NAME:TOKEN` or a bare `TOKEN` (named `token-N`, N
    /// its position from 1).
    pub fn parse_env(value: &str) -> Result<TokenSet, TokensError> {
        Self::parse(value.split([',', '\n']), "entry")
    }

    fn parse<'a>(
        items: impl Iterator<Item = &'a str>,
        unit: &'static str,
    ) -> Result<TokenSet, TokensError> {
        let mut entries: Vec<([u8; 32], Arc<str>)> = Vec::new();
        let mut seen_digest: HashMap<[u8; 32], usize> = HashMap::new();
        let mut seen_name: HashMap<Arc<str>, usize> = HashMap::new();
        for (i, raw) in items.enumerate() {
            let at = i + 1;
            let item = raw.trim();
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            let (name, token) = match item.split_once(':') {
                Some((name, token)) => {
                    let name = name.trim();
                    if name.is_empty()
                        || name.chars().count() > 64
                        || name.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(TokensError::BadName { unit, at });
                    }
                    (Arc::<str>::from(name), token.trim())
                }
                None => (Arc::<str>::from(format!("token-{at}")), item),
            };
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(TokensError::BadToken { unit, at });
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(TokensError::TooShort {
                    unit,
                    at,
                    min: MIN_TOKEN_LEN,
                });
            }
            let digest = sha256(token.as_bytes());
            if let Some(&first) = seen_digest.get(&digest) {
                return Err(TokensError::DuplicateToken { unit, at, first });
            }
            if seen_name.contains_key(&name) {
                return Err(TokensError::DuplicateName {
                    unit,
                    at,
                    name: name.to_string(),
                });
            }
            seen_digest.insert(digest, at);
            seen_name.insert(name.clone(), at);
            entries.push((digest, name));
        }
        if entries.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(TokenSet { entries })
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is configured (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token `presented`, if it is one of the set; every
    /// configured digest is compared, in constant time, whatever matches.
    pub fn verify(&self, presented: &[u8]) -> Option<Arc<str>> {
        let digest = sha256(presented);
        let mut hit = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, (known, _)) in self.entries.iter().enumerate() {
            let same = known.ct_eq(&digest);
            index.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), same);
            hit |= same;
        }
        if bool::from(hit) {
            self.entries
                .get(usize::try_from(index).ok()?)
                .map(|(_, name)| name.clone())
        } else {
            None
        }
    }

    /// A digest of the whole set (to tell two configurations apart).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut all = Vec::with_capacity(self.entries.len() * 40);
        for (digest, name) in &self.entries {
            all.extend_from_slice(digest);
            all.extend_from_slice(name.as_bytes());
            all.push(0);
        }
        sha256(&all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bare_tokens() {
        let set = TokenSet::parse_file(
            "# comment\n\nalice:0123456789abcdef0123\n  fedcba9876543210fedc  \n",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.verify(b"0123456789abcdef0123").as_deref(),
            Some("alice")
        );
        assert_eq!(
            set.verify(b"fedcba9876543210fedc").as_deref(),
            Some("token-4")
        );
        assert_eq!(set.verify(b"0123456789abcdef012"), None);
        assert_eq!(set.verify(b""), None);
        let env = TokenSet::parse_env("a:aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb").unwrap();
        assert_eq!(env.verify(b"bbbbbbbbbbbbbbbb").as_deref(), Some("token-2"));
    }

    #[test]
    fn refuses_weak_or_ambiguous_lists() {
        assert_eq!(
            TokenSet::parse_file("# none\n").unwrap_err(),
            TokensError::Empty
        );
        assert!(matches!(
            TokenSet::parse_file("short\n").unwrap_err(),
            TokensError::TooShort { at: 1, .. }
        ));
        assert!(matches!(
            TokenSet::parse_file("aaaaaaaaaaaaaaaa\nx:aaaaaaaaaaaaaaaa\n").unwrap_err(),
            TokensError::DuplicateToken {
                at: 2,
                first: 1,
                ..
            }
        ));
        assert!(matches!(
            TokenSet::parse_file("x:aaaaaaaaaaaaaaaa\nx:bbbbbbbbbbbbbbbb\n").unwrap_err(),
            TokensError::DuplicateName { at: 2, .. }
        ));
        assert!(matches!(
            TokenSet::parse_file(":aaaaaaaaaaaaaaaa\n").unwrap_err(),
            TokensError::BadName { at: 1, .. }
        ));
        assert!(matches!(
            TokenSet::parse_file("x:aaaaaaaa aaaaaaaa\n").unwrap_err(),
            TokensError::BadToken { at: 1, .. }
        ));
    }
}
