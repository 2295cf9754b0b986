//! The identity keys of `[[route]]` tables (issue 12, "ident": where the
//! identity goes), kept beside `route.rs` so that file stays one table's
//! parsing: chat's `identity_username`, `moderators` and `moderator_claim`,
//! and the exec variables `pass_env` may not list; and the warnings
//! (`wssd check`, and logged at start) for identity keys no identity can
//! ever satisfy.

use crate::auth::spec::Method;

use super::claim::ClaimRule;
use super::error::RouteSpecError;
use super::route::{ChatSpec, RouteKind, RouteSpec};
use super::route_table::RouteTable;

/// Environment variables of exec programs that only the caller's identity
/// sets (`REMOTE_USER`, `AUTH_TYPE`): never from `pass_env`.
pub const IDENTITY_VARIABLES: &[&str] = &["REMOTE_USER", "AUTH_TYPE"];

impl RouteTable {
    /// Refuses a `pass_env` that lists an identity variable, naming it.
    pub(super) fn check_pass_env(&self, place: &str) -> Result<(), RouteSpecError> {
        match self
            .pass_env
            .iter()
            .flatten()
            .find(|n| IDENTITY_VARIABLES.contains(&n.as_str()))
        {
            Some(name) => Err(RouteSpecError::IdentityInPassEnv {
                place: place.into(),
                name: name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A chat route's identity keys (issue 12, "ident"): `identity_username`,
    /// `moderators` (non-empty names) and `moderator_claim` (a
    /// [`ClaimRule`]).
    pub(super) fn chat_identity(
        &self,
        c: &mut ChatSpec,
        place: &str,
    ) -> Result<(), RouteSpecError> {
        c.identity_username = self.identity_username.unwrap_or(false);
        if let Some(list) = &self.moderators {
            if list.iter().any(|m| m.is_empty()) {
                return Err(RouteSpecError::EmptyModerator {
                    place: place.into(),
                });
            }
            c.moderators = list.clone();
        }
        if let Some(text) = &self.moderator_claim {
            c.moderator_claim = Some(ClaimRule::parse(text).map_err(|source| {
                RouteSpecError::BadModeratorClaim {
                    place: place.into(),
                    rule: text.clone(),
                    source,
                }
            })?);
        }
        Ok(())
    }
}

/// Warnings for chat identity keys that cannot take effect: a route with
/// `identity_username`, `moderators` or `moderator_claim` but neither its
/// own `auth` nor client certificates (`client_certs`: `--client-ca` is
/// set) has no identity, so nobody could join or nobody be a moderator by
/// it; and `moderator_claim` matches JWT claims only, so it is inert
/// unless the route's `auth` is `jwt` (client certificates carry none).
pub fn identity_warnings(routes: &[RouteSpec], client_certs: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    for route in routes {
        let RouteKind::Chat(chat) = &route.kind else {
            continue;
        };
        let path = &route.path;
        if route.auth.is_none() && !client_certs {
            if chat.identity_username {
                warnings.push(format!(
                    "route {path}: `identity_username = true` but the route has no `auth` and \
                     --client-ca is not set, so no connection has an identity and nobody can \
                     join; add an `auth` table to the route or set --client-ca"
                ));
            }
            if !chat.moderators.is_empty() || chat.moderator_claim.is_some() {
                warnings.push(format!(
                    "route {path}: `moderators`/`moderator_claim` are set but the route has no \
                     `auth` and --client-ca is not set, so no connection has an identity and \
                     only the moderator password makes moderators; add an `auth` table to the \
                     route or set --client-ca"
                ));
            }
            continue;
        }
        let jwt = route
            .auth
            .as_ref()
            .is_some_and(|a| matches!(*a.method, Method::Jwt(_)));
        if chat.moderator_claim.is_some() && !jwt {
            warnings.push(format!(
                "route {path}: `moderator_claim` matches JWT claims, but the route's identity \
                 comes from {}, not a JWT, so it has no claims and the rule makes no moderator; use `auth = \
                 {{ kind = \"jwt\", .. }}` or list identities in `moderators`",
                route
                    .auth
                    .as_ref()
                    .map_or("client certificates".into(), |a| format!(
                        "its `auth` of kind \"{}\"",
                        a.method.name()
                    ))
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::route::parse_route_flag;

    fn chat(identity_username: bool, moderators: &[&str], claim: Option<&str>) -> RouteSpec {
        let mut r = parse_route_flag("/c=chat").unwrap();
        let RouteKind::Chat(c) = &mut r.kind else {
            panic!("not chat")
        };
        c.identity_username = identity_username;
        c.moderators = moderators.iter().map(|m| m.to_string()).collect();
        c.moderator_claim = claim.map(|t| ClaimRule::parse(t).unwrap());
        r
    }

    #[test]
    fn identity_keys_without_any_identity_are_warned() {
        let w = identity_warnings(&[chat(true, &[], None)], false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("route /c: `identity_username = true`"),
            "{w:?}"
        );
        assert!(w[0].contains("nobody can join"), "{w:?}");
        let w = identity_warnings(&[chat(false, &["alice"], None)], false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("only the moderator password"), "{w:?}");
        assert_eq!(
            identity_warnings(&[chat(true, &["a"], Some("role=mod"))], false).len(),
            2
        );
    }

    #[test]
    fn client_certificates_are_an_identity_but_carry_no_claims() {
        assert!(identity_warnings(&[chat(true, &["CN=a"], None)], true).is_empty());
        let w = identity_warnings(&[chat(false, &[], Some("role=mod"))], true);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("comes from client certificates, not a JWT"),
            "{w:?}"
        );
    }

    #[test]
    fn plain_chat_and_other_kinds_are_quiet() {
        let echo = parse_route_flag("/e=echo").unwrap();
        assert!(identity_warnings(&[chat(false, &[], None), echo], false).is_empty());
    }
}
