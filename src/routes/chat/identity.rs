//! What a connection's identity (from the edge: route `auth` or a client
//! certificate) means in a chat route: its name as the username
//! (`identity_username`), and moderator rights without the password
//! (`moderators`, `moderator_claim`). docs/chat.md, "Identity".

use crate::auth::Identity;
use crate::config::ChatSpec;
use crate::names::{self, Name};

/// Whether `identity` is a moderator on a route with `spec`: its name is
/// listed in `moderators` (exactly), or its JWT claims satisfy
/// `moderator_claim`.
pub(super) fn is_moderator(spec: &ChatSpec, identity: Option<&Identity>) -> bool {
    let Some(identity) = identity else {
        return false;
    };
    let listed = spec.moderators.iter().any(|m| **m == *identity.name);
    let claimed = match (&spec.moderator_claim, &identity.claims) {
        (Some(rule), Some(claims)) => rule.matches(claims),
        _ => false,
    };
    listed || claimed
}

/// Why an identity cannot be the username: an error code and a message
/// for the chat `error` event.
pub(super) type Refused = (&'static str, String);

/// The username of a connection on an `identity_username` route: its
/// identity's name, checked like any other name.
pub(super) fn username(identity: Option<&Identity>) -> Result<Name, Refused> {
    let Some(identity) = identity else {
        return Err((
            "identity_required",
            "this chat takes usernames from authentication (identity_username): connect with your credentials (a token, a login or a client certificate)".into(),
        ));
    };
    names::member(&identity.name).map_err(|e| {
        (
            e.code(),
            format!(
                "your identity `{}` cannot be a chat name here: {e}",
                identity.name
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::auth::IdentitySource;
    use crate::config::claim::ClaimRule;

    fn jwt(name: &str, claims: serde_json::Value) -> Identity {
        let serde_json::Value::Object(map) = claims else {
            panic!("claims must be an object")
        };
        Identity {
            name: name.into(),
            source: IdentitySource::Jwt,
            claims: Some(Arc::new(map)),
        }
    }

    #[test]
    fn moderators_by_list_or_claim() {
        let spec = ChatSpec {
            moderators: vec!["alice".into(), "CN=carol".into()],
            moderator_claim: Some(ClaimRule::parse("role=moderator").unwrap()),
            ..ChatSpec::default()
        };
        let cert = |n: &str| Identity::new(n, IdentitySource::ClientCert);
        assert!(!is_moderator(&spec, None));
        assert!(is_moderator(&spec, Some(&cert("alice"))));
        assert!(is_moderator(&spec, Some(&cert("CN=carol"))));
        // Exact comparison: no case folding, no trimming.
        assert!(!is_moderator(&spec, Some(&cert("Alice"))));
        assert!(!is_moderator(&spec, Some(&cert("alice "))));
        assert!(!is_moderator(&spec, Some(&cert("bob"))));
        assert!(is_moderator(
            &spec,
            Some(&jwt("bob", json!({"role": ["moderator"]})))
        ));
        assert!(!is_moderator(
            &spec,
            Some(&jwt("bob", json!({"role": "user"})))
        ));
        // No claim rule: claims alone make no moderator.
        let plain = ChatSpec::default();
        assert!(!is_moderator(
            &plain,
            Some(&jwt("bob", json!({"role": "moderator"})))
        ));
    }

    #[test]
    fn identity_names_are_checked_like_chosen_ones() {
        let id = |n: &str| Identity::new(n, IdentitySource::Token);
        assert_eq!(username(Some(&id("alice"))).unwrap().display, "alice");
        assert_eq!(username(None).unwrap_err().0, "identity_required");
        assert_eq!(username(Some(&id("admin"))).unwrap_err().0, "name_reserved");
        let long = "x".repeat(names::MAX_NAME_CHARS + 1);
        assert_eq!(username(Some(&id(&long))).unwrap_err().0, "bad_name");
        assert_eq!(username(Some(&id("a\u{200b}b"))).unwrap_err().0, "bad_name");
    }
}
