//! Authentication at the edge: who a request is ([`Identity`]), decided
//! once, before any route kind runs.

pub mod identity;

pub use identity::{Identity, IdentitySource};
