//! A rule on a verified JWT's claims, as written in configuration (chat's
//! `moderator_claim`), parsed once:
//!
//! * `NAME` — the claim is the JSON boolean `true` (`"moderator": true`);
//! * `NAME=VALUE` — the claim is the string `VALUE`, or an array holding
//!   that string (`role=moderator` matches `"role": "moderator"` and
//!   `"role": ["user", "moderator"]`); a number or boolean claim matches
//!   when its JSON text is `VALUE` (`level=3`).
//!
//! `NAME` is a top-level claim (it may contain dots and slashes, as
//! namespaced claims such as `https://example.com/roles` do), or, when it
//! starts with `/`, a JSON Pointer (RFC 6901) into nested claims
//! (`/realm_access/roles=moderator`). Comparisons are exact (case
//! matters); nothing is trimmed.

use std::fmt;

use serde_json::{Map, Value};

/// A parsed claim rule (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    /// As written, for messages.
    text: String,
    /// The path to the claim: one element for a top-level name.
    path: Vec<String>,
    /// The value wanted; `None` means the boolean `true`.
    value: Option<String>,
}

/// Why a claim rule was refused; the text says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadClaimRule {
    #[error(
        "the claim name is empty; write NAME (the claim is true) or NAME=VALUE, e.g. role=moderator"
    )]
    EmptyName,
    #[error(
        "`{0}` is not a JSON Pointer: `~` must be followed by 0 or 1 (write ~0 for ~ and ~1 for /)"
    )]
    BadPointer(String),
}

impl ClaimRule {
    /// Parses `NAME` or `NAME=VALUE` (split at the first `=`).
    pub fn parse(text: &str) -> Result<ClaimRule, BadClaimRule> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (text, None),
        };
        let path = match name.strip_prefix('/') {
            _ if name.is_empty() || name == "/" => return Err(BadClaimRule::EmptyName),
            Some(pointer) => pointer
                .split('/')
                .map(|token| unescape(token).ok_or_else(|| BadClaimRule::BadPointer(name.into())))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![name.to_string()],
        };
        Ok(ClaimRule {
            text: text.to_string(),
            path,
            value,
        })
    }

    /// Whether `claims` satisfy the rule.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        let Some((first, rest)) = self.path.split_first() else {
            return false;
        };
        let mut claim = claims.get(first);
        for token in rest {
            claim = match claim {
                Some(Value::Object(map)) => map.get(token),
                Some(Value::Array(items)) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
        }
        let Some(claim) = claim else {
            return false;
        };
        match &self.value {
            None => *claim == Value::Bool(true),
            Some(wanted) => match claim {
                Value::String(s) => s == wanted,
                Value::Array(items) => items
                    .iter()
                    .any(|item| item.as_str() == Some(wanted.as_str())),
                Value::Number(n) => wanted.parse::<serde_json::Number>().is_ok_and(|w| w == *n),
                Value::Bool(b) => wanted == if *b { "true" } else { "false" },
                Value::Null | Value::Object(_) => false,
            },
        }
    }
}

impl fmt::Display for ClaimRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A JSON Pointer reference token with `~1` and `~0` decoded; `None` for
/// any other `~`.
fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn rule(text: &str) -> ClaimRule {
        ClaimRule::parse(text).unwrap()
    }

    #[test]
    fn bare_name_wants_true() {
        let r = rule("moderator");
        assert!(r.matches(&claims(json!({"moderator": true}))));
        for no in [
            json!({"moderator": "true"}),
            json!({"moderator": 1}),
            json!({"moderator": false}),
            json!({"other": true}),
            json!({}),
        ] {
            assert!(!r.matches(&claims(no.clone())), "{no}");
        }
    }

    #[test]
    fn name_equals_value_wants_that_string_or_array_member() {
        let r = rule("role=moderator");
        assert!(r.matches(&claims(json!({"role": "moderator"}))));
        assert!(r.matches(&claims(json!({"role": ["user", "moderator"]}))));
        for no in [
            json!({"role": "Moderator"}),
            json!({"role": "moderators"}),
            json!({"role": "user moderator"}),
            json!({"role": ["user"]}),
            json!({"role": {"moderator": true}}),
            json!({"roles": "moderator"}),
        ] {
            assert!(!r.matches(&claims(no.clone())), "{no}");
        }
        assert!(rule("level=3").matches(&claims(json!({"level": 3}))));
        assert!(rule("staff=true").matches(&claims(json!({"staff": true}))));
        assert!(rule("a=b=c").matches(&claims(json!({"a": "b=c"}))));
        assert!(rule("empty=").matches(&claims(json!({"empty": ""}))));
    }

    #[test]
    fn namespaced_and_nested_claims() {
        let r = rule("https://example.com/roles=moderator");
        assert!(r.matches(&claims(json!({"https://example.com/roles": ["moderator"]}))));
        let r = rule("/realm_access/roles=moderator");
        assert!(r.matches(&claims(
            json!({"realm_access": {"roles": ["offline", "moderator"]}})
        )));
        assert!(!r.matches(&claims(json!({"realm_access": ["moderator"]}))));
        let r = rule("/a~1b/c~0d");
        assert!(r.matches(&claims(json!({"a/b": {"c~d": true}}))));
        assert!(rule("/groups/1=mods").matches(&claims(json!({"groups": ["x", "mods"]}))));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(ClaimRule::parse(""), Err(BadClaimRule::EmptyName));
        assert_eq!(ClaimRule::parse("=x"), Err(BadClaimRule::EmptyName));
        assert_eq!(ClaimRule::parse("/"), Err(BadClaimRule::EmptyName));
        assert!(matches!(
            ClaimRule::parse("/a~2"),
            Err(BadClaimRule::BadPointer(_))
        ));
        assert_eq!(rule("role=x").to_string(), "role=x");
    }
}
