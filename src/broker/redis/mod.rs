//! The `redis` backend (`--broker redis://[:PASSWORD@]HOST:PORT[/DB]`, or
//! `rediss://` for TLS, verified against Mozilla's roots or `--broker-ca`):
//! what lets several wssd instances serve the same chat rooms and broadcast
//! routes.
//!
//! It owns three things:
//! - **Transport.** Every envelope published on this instance is encoded
//!   ([`wire::encode`]) and `PUBLISH`ed on one Redis channel, `wssd:bus`, by a
//!   publisher task fed through a bounded queue ([`FORWARD_QUEUE`]), so
//!   [`Backend::forward`] never waits. A subscriber task `SUBSCRIBE`s to the
//!   channel on its own connection, drops its own instance's envelopes and
//!   hands the others to the local [`Hub`].
//! - **Room state**, keyed by the chat topic (`route#room`):
//!   `wssd:room:{topic}:members` (hash: username → `{instance}:{expires_ms}`),
//!   `wssd:room:{topic}:history` (list, oldest first, trimmed to the cap),
//!   `wssd:room:{topic}:bans` (set of name keys), `wssd:room:{topic}:names`
//!   (hash: name key → username; a name is taken when the username its key
//!   points to is a live member, so `Alice` and `alice` cannot both be in,
//!   whichever instance they join through; see `crate::names`) and
//!   `wssd:room:{topic}:swept` (hash:
//!   username → instance, tombstones of swept members). Join, leave,
//!   record, ban, refresh and
//!   sweep are each one Lua script, so each is atomic; expiry times use the
//!   Redis server's clock (`TIME`), never the instances' clocks. A room lives
//!   while it has live members: the last leave (or a sweep that empties it,
//!   or a join that finds only expired members) deletes its history and bans,
//!   as in `memory`. Every key also gets a one-hour TTL, renewed while the
//!   room is in use, so rooms of instances that all died do not linger.
//! - **Presence expiry.** A member entry expires [`PRESENCE_TTL`] after it
//!   was last written; a refresh task rewrites this instance's members every
//!   [`REFRESH_EVERY`]. An instance that dies stops refreshing, and
//!   [`Backend::sweep`] removes its expired members, returning each name to
//!   exactly one caller across instances, which announces the departure,
//!   and leaves a tombstone for each.
//! - **Presence catch-up.** Both directions of what an outage hid are
//!   handed to the chat route through [`Backend::presence_changes`] once
//!   the link is back. For everyone in the room, what the other instances
//!   could not hear of this one: members admitted during the outage (once
//!   the refresh registers them), leaves made during it (once replayed,
//!   unless a sweep already announced them or the member was never
//!   registered), and members a sweep announced gone while their instance
//!   was only cut off (the refresh finds their tombstone). For this
//!   instance's own clients only, what they could not hear of the others:
//!   the refresh keeps, per local room, the other instances' members as
//!   last seen (what the clients were told); that view is frozen while the
//!   link is down and compared with Redis once it has settled, giving a
//!   join for each that came and a leave for each that went. (A member of
//!   another instance who joined less than one refresh before the outage
//!   and left during it can be missed.) A Redis restart without persistence loses no
//!   presence either: the members are registered again and only the changes
//!   made during the outage are announced. Both sweeping and these
//!   announcements wait until the link has been up for [`SETTLE`], so that
//!   instances which lost Redis at the same moment are back to hear them and
//!   have re-registered their members before anyone sweeps.
//!
//! ## Delivery guarantee: at most once
//!
//! Redis pub/sub does not store messages. An envelope reaches another
//! instance only if both were connected to Redis when it was published.
//! While Redis is unreachable (from the moment a command fails or the
//! subscription connection drops until the reconnect, re-registration and
//! resubscribe have finished):
//! - local delivery is unaffected: subscribers on the same instance get
//!   every message, because [`super::Broker::publish`] delivers locally
//!   itself;
//! - messages published on this instance are dropped for the other instances
//!   (counted in `wssd_broker_forward_errors_total`) and are never replayed;
//!   messages published on other instances are not received here, and are
//!   not replayed either. That covers every envelope: chat messages,
//!   broadcast messages, HTTP publishes, moderation orders (a kick, mute or
//!   ban of a member on another instance is not carried out there) and
//!   `presence` events, with one exception: the presence *state* catches
//!   up (see "Presence catch-up" above): every client gets a join for each
//!   member who came and a leave for each who went during the outage, on
//!   whichever instance, 6 to 14 s after the reconnect rather than when it
//!   happened;
//! - history recorded during the outage is kept only in this instance's
//!   local mirror (what a join *on this instance* during the outage sees); it
//!   is not copied to Redis afterwards;
//! - joins, leaves and bans fall back to the local mirror: names stay unique
//!   among this instance's members, but **not across instances** (two
//!   instances may both admit `alice` to the same room); after reconnecting,
//!   an entry another instance holds live keeps its owner and the clash is
//!   logged; leaves made during the outage are replayed; bans made during
//!   the outage stay local;
//! - members of an instance that cannot reach Redis for longer than
//!   [`PRESENCE_TTL`] may be swept (and announced as gone) by the others,
//!   and are re-registered and announced again when it reconnects.
//!
//! Deliveries from other instances are never waited for: a local
//! subscriber whose queue is full when one arrives is cut off (1008) at
//! once, since pausing the one subscription connection would stall every
//! topic. A publisher is paced only by its own instance's subscribers.
//!
//! A Redis restart without persistence loses shared history and bans; live
//! members are re-registered by their instances on reconnect. `health()` is
//! `Degraded("redis unreachable: ...")` and `wssd_broker_up` is 0 during an
//! outage; one warning is logged when it starts and one info line when it
//! ends. Reconnection retries with exponential backoff from 100 ms to 5 s.
//! Needs Redis 5 or later (scripts that call `TIME` before writing).
//!
//! ## Layout
//!
//! - `mod.rs`: [`RedisBackend`], its construction and the [`Backend`] impl
//!   (each method hands over to the file of its role);
//! - `settings.rs`: the channel, queue size, TTLs and timing knobs;
//! - `link.rs`: the connections, where the link stands, every Redis call
//!   bounded;
//! - `reconnect.rs`: the reconnect loop (connect, re-register, deliver);
//! - `outbox.rs`: the forward queue;
//! - `transport.rs`: pub/sub delivery (the publisher task, envelopes from
//!   other instances into the hub);
//! - `scripts.rs`: the Lua scripts, a room's keys, one invocation per script;
//! - `rooms.rs`: join, members, leave, record, ban (Redis and the mirror);
//! - `presence.rs`: the refresh, the replay of leaves, the sweep;
//! - `catchup.rs`: the books of what an outage hid.
//!
//! ## Locks
//!
//! Four, each for one reason, none held while taking another (except the
//! refresh gate, which is held across Redis calls by design) and none but
//! the gate held across an `.await`:
//! - the link's status (state, command connection, up-time: always written
//!   together);
//! - the forward queue's receiving end (taken once by `start`);
//! - the refresh gate (async read/write: leaves read, the refresh writes, so
//!   a refresh never re-adds a name that left while it ran);
//! - the catch-up books (pending leaves, unannounced joins, queued changes,
//!   the view of other instances, logged clashes).
//!
//! The local mirror (a [`MemoryBackend`]) has its own locks and is never
//! called while one of these is held, except under the refresh gate.

mod catchup;
mod link;
mod outbox;
mod presence;
mod reconnect;
mod rooms;
mod scripts;
mod settings;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use redis::{Client, RedisError};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, BoxFuture, BrokerError, Health, JoinOutcome, PresenceChange};
use super::envelope::{Envelope, InstanceId};
use super::hub::Hub;
use super::memory::MemoryBackend;
#[cfg(doc)]
use super::wire;
use crate::metrics;
use catchup::CatchUp;
use link::Link;
use outbox::Outbox;
use scripts::Scripts;
pub use settings::{CHANNEL, FORWARD_QUEUE, PRESENCE_TTL, REFRESH_EVERY};
use settings::{SETTLE, Timing};

/// Redis-backed [`Backend`]: pub/sub transport plus shared room state, with
/// a local mirror to fall back on.
pub struct RedisBackend {
    instance: InstanceId,
    instance_text: String,
    timing: Timing,
    scripts: Scripts,
    /// This instance's members, history and bans: the source of the refresh
    /// and the fallback during an outage.
    mirror: MemoryBackend,
    /// The connection to Redis and where it stands.
    link: Link,
    /// Envelopes on their way to the publisher task.
    outbox: Outbox,
    /// Leaves take it shared, the refresh exclusively, so a refresh never
    /// re-adds a name that left while it ran.
    refresh_gate: tokio::sync::RwLock<()>,
    /// What an outage hid, for the presence catch-up.
    catchup: CatchUp,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.link.addr)
            .field("instance", &self.instance)
            .finish()
    }
}

impl RedisBackend {
    /// Parses the URL; does not connect (`start` does, and keeps retrying).
    /// A `rediss://` URL verifies the server against Mozilla's roots.
    pub fn new(url: &str, instance: InstanceId) -> Result<RedisBackend, BrokerError> {
        RedisBackend::with_ca(url, instance, None)
    }

    /// As [`RedisBackend::new`]; with `ca` (PEM), a `rediss://` server's
    /// certificate must chain to it instead of to Mozilla's roots.
    pub fn with_ca(
        url: &str,
        instance: InstanceId,
        ca: Option<&[u8]>,
    ) -> Result<RedisBackend, BrokerError> {
        let tls = url.starts_with("rediss://");
        let client = open_client(url, tls, ca)?;
        Ok(RedisBackend {
            instance,
            instance_text: instance.to_string(),
            timing: Timing {
                presence_ttl: PRESENCE_TTL,
                refresh_every: REFRESH_EVERY,
                settle: SETTLE,
            },
            scripts: Scripts::new(),
            mirror: MemoryBackend::default(),
            link: Link::new(client, tls),
            outbox: Outbox::new(),
            refresh_gate: tokio::sync::RwLock::new(()),
            catchup: CatchUp::default(),
        })
    }

    /// Shortens presence expiry (the refresh runs three times per `ttl`);
    /// for tests. Call before `start`.
    pub fn with_presence_ttl(mut self, ttl: Duration) -> RedisBackend {
        let ttl = ttl.max(Duration::from_millis(300));
        self.timing = Timing {
            presence_ttl: ttl,
            refresh_every: ttl / 3,
            settle: SETTLE.min(ttl),
        };
        self
    }

    /// `HOST:PORT` of the Redis server.
    pub fn addr(&self) -> &str {
        &self.link.addr
    }

    /// The other instances' members of `room` as last seen (for tests and
    /// debugging): what this instance's clients were told.
    #[doc(hidden)]
    pub fn seen_elsewhere(&self, room: &str) -> Option<Vec<String>> {
        self.catchup.seen_elsewhere(room)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.timing.presence_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The Redis client for `url` (with `ca` as its only root, for TLS);
/// errors name the URL without its password and say what to write.
fn open_client(url: &str, tls: bool, ca: Option<&[u8]>) -> Result<Client, BrokerError> {
    let redacted = redact(url);
    let invalid = |e: RedisError| {
        BrokerError::Unavailable(format!(
            "{redacted} is not a valid Redis URL ({e}); \
             write redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS), for example redis://127.0.0.1:6379"
        ))
    };
    if tls {
        // The redis crate builds its rustls config from the process
        // default provider; wssd's own configs name theirs explicitly.
        let _ = rustls::crypto::CryptoProvider::install_default(
            crate::tls::provider().as_ref().clone(),
        );
    }
    match ca {
        None => Client::open(url).map_err(invalid),
        Some(_) if !tls => Err(BrokerError::Unavailable(format!(
            "{redacted}: a broker CA applies only to rediss:// (TLS) URLs"
        ))),
        Some(pem) => Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        )
        .map_err(|e| {
            BrokerError::Unavailable(format!("{redacted}: the broker CA cannot be used: {e}"))
        }),
    }
}

/// The URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_string(),
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn start(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken) {
        let Some(rx) = self.outbox.take_receiver() else {
            tracing::warn!("redis backend started twice; ignoring");
            return;
        };
        metrics::broker_up(false);
        tokio::spawn(self.clone().run_link(hub, shutdown.clone()));
        tokio::spawn(self.clone().run_publisher(rx, shutdown.clone()));
        tokio::spawn(self.run_refresh(shutdown));
    }

    fn forward(&self, envelope: &Envelope) {
        self.queue_forward(envelope);
    }

    fn join<'a>(
        &'a self,
        room: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<JoinOutcome, BrokerError>> {
        Box::pin(self.join_room(room, username))
    }

    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(self.room_members(room))
    }

    fn leave<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.leave_room(room, username))
    }

    fn record<'a>(&'a self, room: &'a str, message: Utf8Bytes, cap: usize) -> BoxFuture<'a, ()> {
        Box::pin(self.record_message(room, message, cap))
    }

    fn ban<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.ban_name(room, username))
    }

    fn sweep<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.sweep_expired(room))
    }

    fn presence_changes(&self, prefix: &str) -> Vec<PresenceChange> {
        if !self.link.settled(self.timing.settle) {
            return Vec::new();
        }
        self.catchup.take(prefix)
    }

    fn health(&self) -> Health {
        self.link.health()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn new_parses_without_connecting() {
        let b = RedisBackend::new("redis://127.0.0.1:1", InstanceId(1)).unwrap();
        assert_eq!(b.addr(), "127.0.0.1:1");
        assert!(matches!(b.health(), Health::Degraded(m) if m.starts_with("redis unreachable")));
    }

    #[test]
    fn bad_urls_are_clear_errors_without_the_password() {
        for url in [
            "redis://:s3cret@",
            "http://:s3cret@host:1",
            "rediss://:s3cret@",
        ] {
            let e = RedisBackend::new(url, InstanceId(1))
                .unwrap_err()
                .to_string();
            assert!(e.contains("Redis"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[tokio::test]
    async fn down_falls_back_to_local_state() {
        let b = RedisBackend::new("redis://127.0.0.1:1", InstanceId(1)).unwrap();
        assert!(matches!(
            b.join("r", "alice").await.unwrap(),
            JoinOutcome::Joined { .. }
        ));
        assert_eq!(b.join("r", "alice").await.unwrap(), JoinOutcome::NameTaken);
        b.record("r", "m".into(), 10).await;
        match b.join("r", "bob").await.unwrap() {
            JoinOutcome::Joined { members, history } => {
                assert_eq!(members, ["alice", "bob"]);
                assert_eq!(history, [Utf8Bytes::from("m")]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.members("r").await.unwrap(), ["alice", "bob"]);
        b.ban("r", "eve").await;
        assert_eq!(b.join("r", "eve").await.unwrap(), JoinOutcome::Banned);
        b.leave("r", "alice").await;
        assert!(b.sweep("r").await.is_empty());
        // Both joined during the outage: Redis never had them, so there is
        // no leave to replay, and only bob is left to announce.
        assert!(b.catchup.pending_leaves().is_empty());
        let unannounced = b.catchup.unannounced();
        assert_eq!(unannounced, HashSet::from([("r".into(), "bob".into())]));
        assert!(
            b.presence_changes("").is_empty(),
            "announced once registered"
        );
    }
}
