//! The identity keys of `[[route]]` tables (issue 12, "ident": where the
//! identity goes), kept beside `route.rs` so that file stays one table's
//! parsing: chat's `identity_username`, `moderators` and `moderator_claim`,
//! and the exec variables `pass_env` may not list.

use super::claim::ClaimRule;
use super::error::RouteSpecError;
use super::route::{ChatSpec, RouteTable};

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
