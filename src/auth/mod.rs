//! Authentication at the edge: who a request is ([`Identity`]), decided
//! once, before any route kind runs.
//!
//! - `spec`: a route's `auth`, loaded ([`AuthSpec`], [`Method`]).
//! - `extract`: where credentials are read from a request and how they
//!   are taken out of it.
//! - `token` (static tokens, SHA-256 + constant time), `jwt`
//!   (`jsonwebtoken`), `basic` (htpasswd: bcrypt, argon2id): the verifiers.
//! - `check`: the orchestrator (read, backoff, verify) the HTTP layer calls.
//! - `reason`: why a request was refused; `error`: why material could not
//!   be loaded.

pub mod basic;
pub mod check;
pub mod error;
pub mod extract;
pub mod identity;
pub mod jwt;
pub mod reason;
pub mod spec;
pub mod token;

#[cfg(test)]
mod props;

pub use check::{Accepted, Refusal, check};
pub use identity::{Identity, IdentitySource};
pub use reason::Reason;
pub use spec::{AuthSpec, Method};
