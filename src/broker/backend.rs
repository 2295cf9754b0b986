//! The one small trait a backend implements ([`Backend`]), what its
//! operations answer ([`JoinOutcome`], [`PresenceChange`], [`Health`]) and
//! why they fail ([`BrokerError`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::envelope::Envelope;
use super::hub::Hub;

/// A boxed future, so [`Backend`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("malformed message from the broker: {0}")]
    Malformed(String),
}

/// The outcome of asking to join a room under a name.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOutcome {
    /// Joined; the room's members (the joiner included) and its history,
    /// oldest first.
    Joined {
        members: Vec<String>,
        history: Vec<Utf8Bytes>,
    },
    /// Someone in the room already has the name.
    NameTaken,
    /// The name is banned from the room.
    Banned,
}

/// A member who came or went without the other instances being told (see
/// [`Backend::presence_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub topic: String,
    pub username: String,
    /// `true`: announce a join; `false`: a leave.
    pub joined: bool,
    /// `true`: for this instance's own clients only (what they missed of
    /// the other instances); `false`: for everyone in the room (what the
    /// other instances missed of this one).
    pub local_only: bool,
}

/// Health of the backend, for `/readyz` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Local delivery works; sharing with other instances does not.
    Degraded(String),
}

/// Shared room state and cross-instance forwarding. Room keys are chat
/// [`Topic`](super::envelope::Topic)s. Every method is bounded in time: a
/// backend that cannot reach its store answers `Err(Unavailable)` (or
/// degrades to local state) rather than hanging.
pub trait Backend: Send + Sync + 'static {
    /// `memory` or `redis`, for logs.
    fn name(&self) -> &'static str;
    /// Starts background work (subscriber loop, presence refresh) that
    /// delivers envelopes from other instances into `hub` until shutdown.
    fn start(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken);
    /// Sends an envelope published on this instance to the other instances.
    /// Never blocks; may drop when the backend is down.
    fn forward(&self, envelope: &Envelope);
    /// Claims `username` in `room` (atomically: no two members, on any
    /// instance, get the same name) and returns members and history.
    fn join<'a>(
        &'a self,
        room: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<JoinOutcome, BrokerError>>;
    /// The names in a room now, on every instance.
    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>>;
    /// Frees the name. Idempotent.
    fn leave<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()>;
    /// Appends a message (already-encoded JSON) to the room's history,
    /// keeping the last `cap`.
    fn record<'a>(&'a self, room: &'a str, message: Utf8Bytes, cap: usize) -> BoxFuture<'a, ()>;
    /// Bans the name from the room for the room's life.
    fn ban<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()>;
    /// Members of a room whose instance stopped refreshing them (it died):
    /// removes them and returns their names, each to exactly one caller
    /// across instances. `memory` never has any.
    fn sweep<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Vec<String>>;
    /// Presence changes that other instances could not hear of when they
    /// happened (made during an outage, or members re-registered after
    /// being swept), in topics starting with `prefix`: taken out, for the
    /// chat route to announce now. `memory` never has any.
    fn presence_changes(&self, prefix: &str) -> Vec<PresenceChange> {
        let _ = prefix;
        Vec::new()
    }
    /// Current health.
    fn health(&self) -> Health;
}
