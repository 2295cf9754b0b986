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

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult, Script};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::memory::MemoryBackend;
use super::{
    Backend, BoxFuture, BrokerError, Envelope, Health, Hub, InstanceId, JoinOutcome,
    PresenceChange, wire,
};
use crate::config::limits::BROKER_TIMEOUT;
use crate::metrics;

/// The pub/sub channel every instance publishes to and subscribes on.
pub const CHANNEL: &str = "wssd:bus";
/// Encoded envelopes waiting for the publisher task; past this, `forward`
/// drops (and counts) instead of waiting.
pub const FORWARD_QUEUE: usize = 8192;
/// Most envelopes sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// How long a member entry lives without a refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How often this instance rewrites its members' entries.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Lifetime of a room's keys after the last write (garbage collection of
/// rooms whose instances all died).
const KEY_TTL: Duration = Duration::from_secs(3600);
/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bound of one Redis call: inside `BROKER_TIMEOUT`, so a caller that
/// bounds a backend call by `BROKER_TIMEOUT` gets the local fallback rather
/// than its own timeout when Redis stops answering.
const CALL_TIMEOUT: Duration = Duration::from_millis(BROKER_TIMEOUT.as_millis() as u64 * 3 / 4);
/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long after (re)connecting this instance waits before sweeping and
/// before announcing presence catch-up: long enough for the other
/// instances, which lost Redis at the same moment, to be back (their retry
/// is at most [`BACKOFF_MAX`] away) and hear it, and to re-register their
/// members before they could be swept as dead.
const SETTLE: Duration = Duration::from_secs(6);
/// Leaves remembered during an outage, to replay on reconnect.
const PENDING_LEAVES_MAX: usize = 65_536;

/// Shared Lua: the server's clock in ms, and the parts of a member entry.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function expiry(v)
  local sep = string.find(v, ':', 1, true)
  if not sep then return 0 end
  return tonumber(string.sub(v, sep + 1)) or 0
end
local function owner(v)
  local sep = string.find(v, ':', 1, true)
  if not sep then return '' end
  return string.sub(v, 1, sep - 1)
end
";

/// KEYS: members, history, bans, swept, names. ARGV: username, instance,
/// ttl_ms, key_ttl_ms, name key.
/// Returns {1, live members, history} | {2, {}, {}} banned | {3, {}, {}} taken.
/// The tombstones (`swept`) outlive a restarted room on purpose: a swept
/// member who comes back must still be announced to the room's new members.
const JOIN: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  if expiry(all[i + 1]) > now then live[#live + 1] = all[i] end
end
if #live == 0 then
  -- Nobody is alive in the room: it ended; start afresh.
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
end
if redis.call('SISMEMBER', KEYS[3], ARGV[5]) == 1 then return {2, {}, {}} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and expiry(cur) > now then return {3, {}, {}} end
local same = redis.call('HGET', KEYS[5], ARGV[5])
if same and same ~= ARGV[1] then
  local other = redis.call('HGET', KEYS[1], same)
  if other and expiry(other) > now then return {3, {}, {}} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[5], ARGV[1])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
redis.call('HDEL', KEYS[4], ARGV[1])
live[#live + 1] = ARGV[1]
return {1, live, redis.call('LRANGE', KEYS[2], 0, -1)}
";

/// KEYS: members. The live members' names.
const MEMBERS: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  if expiry(all[i + 1]) > now then live[#live + 1] = all[i] end
end
return live
";

/// KEYS: members, history, bans, swept. ARGV: username, instance.
/// Removes the entry if this instance owns it; ends the room when empty.
/// Returns 0 when the other instances may still list the name, 1 when a
/// sweep already announced it gone (its tombstone is removed), 2 when
/// another instance holds the name (a clash from an outage).
const LEAVE: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local r = 0
if cur then
  if owner(cur) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) else r = 2 end
end
if redis.call('HGET', KEYS[4], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[4], ARGV[1])
  if r == 0 then r = 1 end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
return r
";

/// KEYS: members, history. ARGV: message, cap, key_ttl_ms.
/// Appends only to a room that exists (has members), as `memory` does.
const RECORD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cap = tonumber(ARGV[2])
if cap <= 0 then redis.call('DEL', KEYS[2]) return 1 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -cap, -1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// KEYS: members, bans. ARGV: name key, key_ttl_ms.
const BAN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// KEYS: members, history, bans, swept. ARGV: key_ttl_ms. Removes expired
/// entries and returns their names; ends the room when that empties it.
/// Each removed entry leaves a tombstone (`swept`: username -> instance),
/// so an instance that was only cut off, not dead, announces its member
/// again when it re-registers it.
const SWEEP: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #all, 2 do
  if expiry(all[i + 1]) <= now then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('HSET', KEYS[4], all[i], owner(all[i + 1]))
    gone[#gone + 1] = all[i]
  end
end
if #gone > 0 then
  redis.call('PEXPIRE', KEYS[4], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
end
return gone
";

/// KEYS: members, history, bans, swept, names. ARGV: instance, ttl_ms,
/// key_ttl_ms, then (name, name key) pairs. Rewrites this instance's
/// entries and their name keys; an entry another instance holds live, or a
/// name key pointing at another instance's live member (`Alice` there,
/// `alice` here), is left alone and its name returned in `clashes` (a
/// clash from an outage). Returns {clashes, back, live}: `back` are names this
/// instance held that a sweep had announced gone (tombstone removed),
/// `live` every live member of the room afterwards.
const REFRESH: &str = r"
local clashes = {}
local back = {}
local function held_elsewhere(v)
  return v and owner(v) ~= ARGV[1] and expiry(v) > now
end
for i = 4, #ARGV - 1, 2 do
  local name, key = ARGV[i], ARGV[i + 1]
  local same = redis.call('HGET', KEYS[5], key)
  if held_elsewhere(redis.call('HGET', KEYS[1], name))
    or (same and same ~= name and held_elsewhere(redis.call('HGET', KEYS[1], same))) then
    clashes[#clashes + 1] = name
  else
    redis.call('HSET', KEYS[1], name, ARGV[1] .. ':' .. (now + tonumber(ARGV[2])))
    redis.call('HSET', KEYS[5], key, name)
    if redis.call('HGET', KEYS[4], name) == ARGV[1] then
      redis.call('HDEL', KEYS[4], name)
      back[#back + 1] = name
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[5], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  if expiry(all[i + 1]) > now then live[#live + 1] = all[i] end
end
return {clashes, back, live}
";

struct Scripts {
    join: Script,
    members: Script,
    leave: Script,
    record: Script,
    ban: Script,
    sweep: Script,
    refresh: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let s = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            join: s(JOIN),
            members: s(MEMBERS),
            leave: s(LEAVE),
            record: s(RECORD),
            ban: s(BAN),
            sweep: s(SWEEP),
            refresh: s(REFRESH),
        }
    }
}

/// The keys of a room.
struct Keys {
    members: String,
    history: String,
    bans: String,
    /// Tombstones of swept members: username -> instance.
    swept: String,
    /// Name key -> username (case-insensitive uniqueness).
    names: String,
}

impl Keys {
    fn of(room: &str) -> Keys {
        Keys {
            members: format!("wssd:room:{room}:members"),
            history: format!("wssd:room:{room}:history"),
            bans: format!("wssd:room:{room}:bans"),
            swept: format!("wssd:room:{room}:swept"),
            names: format!("wssd:room:{room}:names"),
        }
    }
}

/// Where the link to Redis stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// Never connected yet.
    Connecting,
    /// Connected, subscribed, members registered.
    Up,
    /// Lost or never reached; the reason.
    Down(String),
}

struct Link {
    state: LinkState,
    /// The command connection and its generation, once connected (set just
    /// before `Up`, so re-registration can use it; cleared on failure).
    conn: Option<(u64, MultiplexedConnection)>,
}

/// Why a guarded call did not return a value.
enum CallError {
    /// Redis is unreachable (now marked down): fall back to local state.
    Down,
    /// Redis answered with an error.
    Redis(RedisError),
}

/// Timing knobs (the defaults are the constants above; tests shorten them).
#[derive(Debug, Clone, Copy)]
struct Timing {
    presence_ttl: Duration,
    refresh_every: Duration,
    settle: Duration,
}

/// Redis-backed [`Backend`]: pub/sub transport plus shared room state, with
/// a local mirror to fall back on.
pub struct RedisBackend {
    client: Client,
    /// `HOST:PORT` (never the password), for logs and health.
    addr: String,
    /// `rediss://`: TLS to Redis.
    tls: bool,
    instance: InstanceId,
    instance_text: String,
    timing: Timing,
    scripts: Scripts,
    /// This instance's members, history and bans: the source of the refresh
    /// and the fallback during an outage.
    mirror: MemoryBackend,
    link: Mutex<Link>,
    up: AtomicBool,
    next_gen: AtomicU64,
    /// Wakes the subscriber task when a command found the link broken.
    failed: Notify,
    tx: mpsc::Sender<Vec<u8>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    /// Leaves take it shared, the refresh exclusively, so a refresh never
    /// re-adds a name that left while it ran.
    refresh_gate: tokio::sync::RwLock<()>,
    pending_leaves: Mutex<Vec<(String, String)>>,
    /// When the link last came up (`None` while down).
    up_since: Mutex<Option<Instant>>,
    /// Members admitted while Redis was unreachable: the other instances
    /// have not heard of them (announced once the refresh registers them).
    unannounced: Mutex<HashSet<(String, String)>>,
    /// Presence changes waiting for [`Backend::presence_changes`].
    changes: Mutex<Vec<PresenceChange>>,
    /// Per local room, the members of *other* instances as last seen in
    /// Redis: what this instance's clients were told. Frozen during an
    /// outage, compared with Redis once the link has settled again.
    seen: Mutex<std::collections::HashMap<String, HashSet<String>>>,
    /// The link went down since `seen` was last compared.
    reconcile: AtomicBool,
    /// Clashes already logged, to log each once.
    clashes: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.addr)
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
        let redacted = redact(url);
        let invalid = |e: RedisError| {
            BrokerError::Unavailable(format!(
                "{redacted} is not a valid Redis URL ({e}); \
                 write redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS), for example redis://127.0.0.1:6379"
            ))
        };
        let tls = url.starts_with("rediss://");
        if tls {
            // The redis crate builds its rustls config from the process
            // default provider; wssd's own configs name theirs explicitly.
            let _ = rustls::crypto::CryptoProvider::install_default(
                crate::tls::provider().as_ref().clone(),
            );
        }
        let client = match ca {
            None => Client::open(url).map_err(invalid)?,
            Some(_) if !tls => {
                return Err(BrokerError::Unavailable(format!(
                    "{redacted}: a broker CA applies only to rediss:// (TLS) URLs"
                )));
            }
            Some(pem) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )
            .map_err(|e| {
                BrokerError::Unavailable(format!("{redacted}: the broker CA cannot be used: {e}"))
            })?,
        };
        let addr = client.get_connection_info().addr().to_string();
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        Ok(RedisBackend {
            client,
            addr,
            tls,
            instance,
            instance_text: instance.to_string(),
            timing: Timing {
                presence_ttl: PRESENCE_TTL,
                refresh_every: REFRESH_EVERY,
                settle: SETTLE,
            },
            scripts: Scripts::new(),
            mirror: MemoryBackend::default(),
            link: Mutex::new(Link {
                state: LinkState::Connecting,
                conn: None,
            }),
            up: AtomicBool::new(false),
            next_gen: AtomicU64::new(0),
            failed: Notify::new(),
            tx,
            rx: Mutex::new(Some(rx)),
            refresh_gate: tokio::sync::RwLock::new(()),
            pending_leaves: Mutex::new(Vec::new()),
            up_since: Mutex::new(None),
            unannounced: Mutex::new(HashSet::new()),
            changes: Mutex::new(Vec::new()),
            seen: Mutex::new(std::collections::HashMap::new()),
            reconcile: AtomicBool::new(false),
            clashes: Mutex::new(HashSet::new()),
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
        &self.addr
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.timing.presence_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn key_ttl_ms() -> u64 {
        u64::try_from(KEY_TTL.as_millis()).unwrap_or(u64::MAX)
    }

    /// Up for at least `settle` (see [`SETTLE`]).
    fn settled(&self) -> bool {
        self.up_since
            .lock()
            .ok()
            .and_then(|s| *s)
            .is_some_and(|t| t.elapsed() >= self.timing.settle)
    }

    /// The command connection, only while the link is up.
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        let link = self.link.lock().ok()?;
        match (&link.state, &link.conn) {
            (LinkState::Up, Some((generation, conn))) => Some((*generation, conn.clone())),
            _ => None,
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.link
            .lock()
            .map(|l| l.conn.as_ref().is_some_and(|(g, _)| *g == generation))
            .unwrap_or(false)
    }

    /// Runs one Redis call bounded by `CALL_TIMEOUT`; a timeout or a
    /// broken connection marks the link down.
    async fn guarded<T>(
        &self,
        generation: u64,
        what: &str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_link_error(&e) => {
                self.link_failed(generation, format!("{}: {what}: {e}", self.addr));
                Err(CallError::Down)
            }
            Ok(Err(e)) => {
                tracing::warn!(redis = %self.addr, error = %e, "redis {what} failed");
                Err(CallError::Redis(e))
            }
            Err(_) => {
                self.link_failed(
                    generation,
                    format!(
                        "{}: {what}: no answer within {} ms",
                        self.addr,
                        CALL_TIMEOUT.as_millis()
                    ),
                );
                Err(CallError::Down)
            }
        }
    }

    /// A command found the link of `generation` broken: mark down (once)
    /// and wake the subscriber task to reconnect.
    fn link_failed(&self, generation: u64, reason: String) {
        let Ok(mut link) = self.link.lock() else {
            return;
        };
        if link.conn.as_ref().is_none_or(|(g, _)| *g != generation) {
            return;
        }
        link.conn = None;
        self.set_down(&mut link, reason);
        drop(link);
        self.failed.notify_one();
    }

    /// Records an outage; logs only when one starts.
    fn set_down(&self, link: &mut Link, reason: String) {
        self.up.store(false, Ordering::Release);
        self.reconcile.store(true, Ordering::Release);
        if let Ok(mut since) = self.up_since.lock() {
            *since = None;
        }
        metrics::broker_up(false);
        match &link.state {
            LinkState::Down(_) => {
                tracing::debug!(error = %reason, "redis still unreachable");
            }
            LinkState::Connecting => tracing::warn!(
                redis = %self.addr,
                error = %reason,
                "redis unreachable; chat and broadcast work on this instance only until it is back (retrying)"
            ),
            LinkState::Up => tracing::warn!(
                redis = %self.addr,
                error = %reason,
                "lost redis; chat and broadcast work on this instance only until it is back (retrying)"
            ),
        }
        link.state = LinkState::Down(reason);
    }

    fn set_up(&self, generation: u64) -> bool {
        let Ok(mut link) = self.link.lock() else {
            return false;
        };
        if link.conn.as_ref().is_none_or(|(g, _)| *g != generation) {
            return false;
        }
        match &link.state {
            LinkState::Connecting => {
                tracing::info!(redis = %self.addr, instance = %self.instance, "connected to redis")
            }
            LinkState::Down(_) => tracing::info!(
                redis = %self.addr,
                "reconnected to redis; sharing with other instances resumed"
            ),
            LinkState::Up => {}
        }
        link.state = LinkState::Up;
        if let Ok(mut since) = self.up_since.lock() {
            since.get_or_insert_with(Instant::now);
        }
        self.up.store(true, Ordering::Release);
        metrics::broker_up(true);
        true
    }

    /// Opens both connections and subscribes (bounded).
    async fn connect(&self) -> Result<(MultiplexedConnection, redis::aio::PubSubStream), String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(BROKER_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let attempt = async {
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            let (_sink, stream) = pubsub.split();
            Ok::<_, RedisError>((conn, stream))
        };
        match tokio::time::timeout(BROKER_TIMEOUT * 2, attempt).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) if self.tls && e.to_string().contains("certificate") => Err(format!(
                "{}: TLS: {e} (a server certificate from a private CA needs --broker-ca FILE)",
                self.addr
            )),
            Ok(Err(e)) => Err(format!("{}: {e}", self.addr)),
            Err(_) => Err(format!(
                "{}: no connection within {} ms",
                self.addr,
                (BROKER_TIMEOUT * 2).as_millis()
            )),
        }
    }

    /// Connects, subscribes, re-registers, delivers; reconnects with backoff.
    async fn run_link(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        while !shutdown.is_cancelled() {
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = self.connect() => c,
            };
            match connected {
                Ok((conn, stream)) => {
                    let started = Instant::now();
                    self.serve_link(conn, stream, &hub, &shutdown).await;
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(reason) => {
                    if let Ok(mut link) = self.link.lock() {
                        self.set_down(&mut link, reason);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connected period: register members, mark up, deliver until the
    /// link breaks or shutdown.
    async fn serve_link(
        &self,
        conn: MultiplexedConnection,
        mut stream: redis::aio::PubSubStream,
        hub: &Hub,
        shutdown: &CancellationToken,
    ) {
        let generation = self.next_gen.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut link) = self.link.lock() {
            link.conn = Some((generation, conn.clone()));
        }
        // Re-register before declaring the link up, so nothing is announced
        // as gone that is still here.
        self.replay_leaves(generation, &conn).await;
        if self.refresh_with(generation, &conn).await.is_err() || !self.set_up(generation) {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.failed.notified() => {
                    if !self.is_current(generation) {
                        return;
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => self.deliver_remote(hub, msg.get_payload_bytes()),
                    None => {
                        self.link_failed(generation, format!("{}: connection lost", self.addr));
                        return;
                    }
                },
            }
        }
        if let Ok(mut link) = self.link.lock() {
            link.conn = None;
        }
        self.up.store(false, Ordering::Release);
    }

    fn deliver_remote(&self, hub: &Hub, bytes: &[u8]) {
        match wire::decode(bytes) {
            Ok((from, _)) if from == self.instance => {}
            Ok((_, envelope)) => {
                hub.deliver(&envelope);
            }
            Err(e) => tracing::debug!(error = %e, "ignoring a message on {CHANNEL}"),
        }
    }

    /// Sends queued envelopes to Redis in pipelines, in order.
    async fn run_publisher(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            batch.clear();
            let n = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = rx.recv_many(&mut batch, PUBLISH_BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let Some((generation, mut conn)) = self.current() else {
                (0..n).for_each(|_| metrics::broker_forward_error());
                continue;
            };
            let mut pipe = redis::pipe();
            for msg in &batch {
                pipe.cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(msg.as_slice())
                    .ignore();
            }
            if self
                .guarded(generation, "PUBLISH", pipe.exec_async(&mut conn))
                .await
                .is_err()
            {
                (0..n).for_each(|_| metrics::broker_forward_error());
            }
        }
    }

    /// Rewrites this instance's members every `refresh_every` (and checks
    /// the link with a PING when there are none).
    async fn run_refresh(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.timing.refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some((generation, conn)) = self.current() {
                let _ = self.refresh_with(generation, &conn).await;
            }
        }
    }

    /// One refresh of every local member (a PING when there are none).
    /// Each room is refreshed under the gate with its members read afresh,
    /// so a leave is never undone by a refresh that read it before.
    async fn refresh_with(&self, generation: u64, conn: &MultiplexedConnection) -> Result<(), ()> {
        let rooms: std::collections::BTreeSet<String> = self
            .mirror
            .members()
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        let mut conn = conn.clone();
        if rooms.is_empty() {
            let ping = redis::cmd("PING");
            return self
                .guarded(generation, "PING", ping.query_async::<()>(&mut conn))
                .await
                .map_err(|_| ());
        }
        let ttl = self.ttl_ms();
        // Compare what this instance's clients were told with Redis only
        // once the others had time to come back too (see SETTLE).
        let reconciling = self.reconcile.load(Ordering::Acquire) && self.settled();
        let frozen = self.reconcile.load(Ordering::Acquire) && !reconciling;
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|room, _| rooms.contains(room));
        }
        for room in rooms {
            let _gate = self.refresh_gate.write().await;
            let names = self.mirror.members_of(&room);
            if names.is_empty() {
                continue;
            }
            let keys = Keys::of(&room);
            let mut call = self.scripts.refresh.prepare_invoke();
            call.key(&keys.members)
                .key(&keys.history)
                .key(&keys.bans)
                .key(&keys.swept)
                .key(&keys.names)
                .arg(&self.instance_text)
                .arg(ttl)
                .arg(Self::key_ttl_ms());
            for name in &names {
                call.arg(name).arg(crate::names::key(name));
            }
            match self
                .guarded(
                    generation,
                    "presence refresh",
                    call.invoke_async::<(Vec<String>, Vec<String>, Vec<String>)>(&mut conn),
                )
                .await
            {
                Ok((clashes, back, live)) => {
                    self.registered(&room, &names, &clashes, back);
                    self.log_clashes(&room, clashes);
                    if !frozen {
                        self.observe(&room, &names, live, reconciling);
                    }
                }
                Err(CallError::Down) => return Err(()),
                Err(CallError::Redis(_)) => {}
            }
        }
        if reconciling {
            self.reconcile.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Records the other instances' members of `room` (`live` minus this
    /// instance's `local` ones); when `reconciling` after an outage, first
    /// queues, for this instance's clients only, a join for each that came
    /// and a leave for each that went since they were last seen.
    fn observe(&self, room: &str, local: &[String], live: Vec<String>, reconciling: bool) {
        let now = elsewhere(live, local);
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if reconciling {
            // No entry: every local member joined during the outage, from
            // the local mirror, so none of them knows the others.
            let before = seen.get(room).cloned().unwrap_or_default();
            let mut came: Vec<&String> = now.difference(&before).collect();
            let mut went: Vec<&String> = before.difference(&now).collect();
            came.sort();
            went.sort();
            for (names, joined) in [(came, true), (went, false)] {
                for name in names {
                    self.push(PresenceChange {
                        topic: room.to_string(),
                        username: name.clone(),
                        joined,
                        local_only: true,
                    });
                }
            }
        }
        seen.insert(room.to_string(), now);
    }

    /// After a refresh wrote `names` (but `clashes`) to Redis: queues a
    /// join for each name the other instances have not heard of, or were
    /// told had gone (`back`).
    fn registered(&self, room: &str, names: &[String], clashes: &[String], back: Vec<String>) {
        let mut joins: Vec<String> = back;
        if let Ok(mut unannounced) = self.unannounced.lock()
            && !unannounced.is_empty()
        {
            for name in names {
                if !clashes.contains(name)
                    && unannounced.remove(&(room.to_string(), name.clone()))
                    && !joins.contains(name)
                {
                    joins.push(name.clone());
                }
            }
        }
        for name in joins {
            self.push_change(room, &name, true);
        }
    }

    /// Queues a change for everyone in the room.
    fn push_change(&self, room: &str, username: &str, joined: bool) {
        self.push(PresenceChange {
            topic: room.to_string(),
            username: username.to_string(),
            joined,
            local_only: false,
        });
    }

    fn push(&self, change: PresenceChange) {
        if let Ok(mut changes) = self.changes.lock() {
            if changes.len() >= PENDING_LEAVES_MAX {
                changes.remove(0);
            }
            changes.push(change);
        }
    }

    /// A join through Redis told the joiner every member: the others' are
    /// what this instance's clients now know (unless an outage froze that).
    fn saw_on_join(&self, room: &str, members: &[String]) {
        if self.reconcile.load(Ordering::Acquire) {
            return;
        }
        let now = elsewhere(members.to_vec(), &self.mirror.members_of(room));
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(room.to_string(), now);
        }
    }

    /// The other instances' members of `room` as last seen (for tests and
    /// debugging): what this instance's clients were told.
    #[doc(hidden)]
    pub fn seen_elsewhere(&self, room: &str) -> Option<Vec<String>> {
        let seen = self.seen.lock().ok()?;
        let mut names: Vec<String> = seen.get(room)?.iter().cloned().collect();
        names.sort();
        Some(names)
    }

    /// Forgets that `username` in `room` has a join to announce (it left
    /// before that happened); whether it was one the others never heard of.
    fn forget_unannounced(&self, room: &str, username: &str) -> bool {
        if let Ok(mut changes) = self.changes.lock() {
            changes.retain(|c| !(c.joined && c.topic == room && c.username == username));
        }
        self.unannounced
            .lock()
            .map(|mut u| u.remove(&(room.to_string(), username.to_string())))
            .unwrap_or(false)
    }

    fn log_clashes(&self, room: &str, clashes: Vec<String>) {
        let Ok(mut seen) = self.clashes.lock() else {
            return;
        };
        for name in clashes {
            if seen.insert((room.to_string(), name.clone())) {
                tracing::warn!(
                    room,
                    username = %name,
                    "this name was taken on another instance while redis was unreachable; both keep it until one leaves"
                );
            }
        }
        if seen.len() > PENDING_LEAVES_MAX {
            seen.clear();
        }
    }

    /// Replays leaves made while Redis was unreachable (unless the name
    /// joined again here since).
    async fn replay_leaves(&self, generation: u64, conn: &MultiplexedConnection) {
        let pending = self
            .pending_leaves
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        if pending.is_empty() {
            return;
        }
        let here: HashSet<(String, String)> = self.mirror.members().into_iter().collect();
        let mut conn = conn.clone();
        for (room, name) in pending {
            if here.contains(&(room.clone(), name.clone())) {
                continue;
            }
            match self
                .leave_in_redis(generation, &mut conn, &room, &name)
                .await
            {
                // The others may still list the name: tell them it left.
                Ok(0) => self.push_change(&room, &name, false),
                Ok(_) | Err(CallError::Redis(_)) => {}
                Err(CallError::Down) => return,
            }
        }
    }

    async fn leave_in_redis(
        &self,
        generation: u64,
        conn: &mut MultiplexedConnection,
        room: &str,
        username: &str,
    ) -> Result<i64, CallError> {
        let keys = Keys::of(room);
        let mut call = self.scripts.leave.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.history)
            .key(&keys.bans)
            .key(&keys.swept)
            .arg(username)
            .arg(&self.instance_text);
        self.guarded(generation, "leave", call.invoke_async::<i64>(conn))
            .await
    }

    fn remember_leave(&self, room: &str, username: &str) {
        if let Ok(mut p) = self.pending_leaves.lock() {
            if p.len() >= PENDING_LEAVES_MAX {
                p.remove(0);
            }
            p.push((room.to_string(), username.to_string()));
        }
    }

    async fn join_impl(&self, room: &str, username: &str) -> Result<JoinOutcome, BrokerError> {
        let Some((generation, mut conn)) = self.current() else {
            return Ok(self.join_locally(room, username));
        };
        let keys = Keys::of(room);
        let mut call = self.scripts.join.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.history)
            .key(&keys.bans)
            .key(&keys.swept)
            .key(&keys.names)
            .arg(username)
            .arg(&self.instance_text)
            .arg(self.ttl_ms())
            .arg(Self::key_ttl_ms())
            .arg(crate::names::key(username));
        let answer = self
            .guarded(
                generation,
                "join",
                call.invoke_async::<(i64, Vec<String>, Vec<Vec<u8>>)>(&mut conn),
            )
            .await;
        match answer {
            Err(CallError::Down) => Ok(self.join_locally(room, username)),
            Err(CallError::Redis(e)) => Err(BrokerError::Unavailable(format!("redis: {e}"))),
            Ok((1, mut members, history)) => match self.mirror.join_now(room, username) {
                JoinOutcome::Joined { .. } => {
                    members.sort();
                    members.dedup();
                    self.saw_on_join(room, &members);
                    let history = history
                        .into_iter()
                        .filter_map(|h| Utf8Bytes::try_from(Bytes::from(h)).ok())
                        .collect();
                    Ok(JoinOutcome::Joined { members, history })
                }
                // Held here already (Redis lost it and the refresh has not
                // put it back yet): the entry just written is that member's.
                JoinOutcome::NameTaken => Ok(JoinOutcome::NameTaken),
                // Banned here during an outage: undo the claim.
                JoinOutcome::Banned => {
                    let _ = self
                        .leave_in_redis(generation, &mut conn, room, username)
                        .await;
                    Ok(JoinOutcome::Banned)
                }
            },
            Ok((2, _, _)) => Ok(JoinOutcome::Banned),
            Ok(_) => Ok(JoinOutcome::NameTaken),
        }
    }

    /// A join while Redis is unreachable: the mirror decides, and the
    /// member is announced to the other instances once registered.
    fn join_locally(&self, room: &str, username: &str) -> JoinOutcome {
        let outcome = self.mirror.join_now(room, username);
        if matches!(outcome, JoinOutcome::Joined { .. })
            && let Ok(mut u) = self.unannounced.lock()
            && u.len() < PENDING_LEAVES_MAX
        {
            u.insert((room.to_string(), username.to_string()));
        }
        outcome
    }

    async fn members_impl(&self, room: &str) -> Result<Vec<String>, BrokerError> {
        let Some((generation, mut conn)) = self.current() else {
            return Ok(self.mirror.members_of(room));
        };
        let call = self.scripts.members.key(Keys::of(room).members);
        match self
            .guarded(
                generation,
                "members",
                call.invoke_async::<Vec<String>>(&mut conn),
            )
            .await
        {
            Ok(mut members) => {
                members.sort();
                Ok(members)
            }
            Err(CallError::Down) => Ok(self.mirror.members_of(room)),
            Err(CallError::Redis(e)) => Err(BrokerError::Unavailable(format!("redis: {e}"))),
        }
    }

    async fn leave_impl(&self, room: &str, username: &str) {
        // Locally first and at once, so even a caller that gives up waiting
        // never leaves a member here to be refreshed forever.
        self.mirror.leave_now(room, username);
        // Then wait out a refresh of this room that may have read the name
        // before it left, so the removal below comes after its rewrite.
        let _gate = self.refresh_gate.read().await;
        // Admitted during an outage and never registered: Redis and the
        // other instances never had it, so there is nothing to undo.
        let never_registered = self.forget_unannounced(room, username);
        let Some((generation, mut conn)) = self.current() else {
            if !never_registered {
                self.remember_leave(room, username);
            }
            return;
        };
        if let Err(CallError::Down) = self
            .leave_in_redis(generation, &mut conn, room, username)
            .await
        {
            self.remember_leave(room, username);
        }
    }

    async fn record_impl(&self, room: &str, message: Utf8Bytes, cap: usize) {
        self.mirror.record_now(room, message.clone(), cap);
        let Some((generation, mut conn)) = self.current() else {
            return;
        };
        let keys = Keys::of(room);
        let mut call = self.scripts.record.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.history)
            .arg(message.as_bytes())
            .arg(cap)
            .arg(Self::key_ttl_ms());
        let _ = self
            .guarded(generation, "record", call.invoke_async::<()>(&mut conn))
            .await;
    }

    async fn ban_impl(&self, room: &str, username: &str) {
        self.mirror.ban_now(room, username);
        let Some((generation, mut conn)) = self.current() else {
            return;
        };
        let keys = Keys::of(room);
        let mut call = self.scripts.ban.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.bans)
            .arg(crate::names::key(username))
            .arg(Self::key_ttl_ms());
        let _ = self
            .guarded(generation, "ban", call.invoke_async::<()>(&mut conn))
            .await;
    }

    async fn sweep_impl(&self, room: &str) -> Vec<String> {
        if !self.settled() {
            return Vec::new();
        }
        let Some((generation, mut conn)) = self.current() else {
            return Vec::new();
        };
        let keys = Keys::of(room);
        let mut call = self.scripts.sweep.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.history)
            .key(&keys.bans)
            .key(&keys.swept)
            .arg(Self::key_ttl_ms());
        self.guarded(
            generation,
            "sweep",
            call.invoke_async::<Vec<String>>(&mut conn),
        )
        .await
        .unwrap_or_default()
    }
}

/// The names of `members` that are not among this instance's `local` ones.
fn elsewhere(members: Vec<String>, local: &[String]) -> HashSet<String> {
    let local: HashSet<&str> = local.iter().map(String::as_str).collect();
    members
        .into_iter()
        .filter(|n| !local.contains(n.as_str()))
        .collect()
}

/// Errors that mean the connection is unusable (as opposed to Redis
/// answering with an error).
fn is_link_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Io
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("LOADING" | "MASTERDOWN" | "READONLY"))
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
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        let Some(rx) = rx else {
            tracing::warn!("redis backend started twice; ignoring");
            return;
        };
        metrics::broker_up(false);
        tokio::spawn(self.clone().run_link(hub, shutdown.clone()));
        tokio::spawn(self.clone().run_publisher(rx, shutdown.clone()));
        tokio::spawn(self.run_refresh(shutdown));
    }

    fn forward(&self, envelope: &Envelope) {
        if !self.up.load(Ordering::Acquire) {
            metrics::broker_forward_error();
            return;
        }
        if self
            .tx
            .try_send(wire::encode(self.instance, envelope))
            .is_err()
        {
            metrics::broker_forward_error();
        }
    }

    fn join<'a>(
        &'a self,
        room: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<JoinOutcome, BrokerError>> {
        Box::pin(self.join_impl(room, username))
    }

    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(self.members_impl(room))
    }

    fn leave<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.leave_impl(room, username))
    }

    fn record<'a>(&'a self, room: &'a str, message: Utf8Bytes, cap: usize) -> BoxFuture<'a, ()> {
        Box::pin(self.record_impl(room, message, cap))
    }

    fn ban<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.ban_impl(room, username))
    }

    fn sweep<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.sweep_impl(room))
    }

    fn presence_changes(&self, prefix: &str) -> Vec<PresenceChange> {
        if !self.settled() {
            return Vec::new();
        }
        let Ok(mut changes) = self.changes.lock() else {
            return Vec::new();
        };
        let (taken, kept) = std::mem::take(&mut *changes)
            .into_iter()
            .partition(|c| c.topic.starts_with(prefix));
        *changes = kept;
        taken
    }

    fn health(&self) -> Health {
        let state = self
            .link
            .lock()
            .map(|l| l.state.clone())
            .unwrap_or_else(|_| LinkState::Down("internal lock poisoned".into()));
        match state {
            LinkState::Up => Health::Ok,
            LinkState::Connecting => {
                Health::Degraded(format!("redis unreachable: connecting to {}", self.addr))
            }
            LinkState::Down(reason) => Health::Degraded(format!("redis unreachable: {reason}")),
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(b.pending_leaves.lock().unwrap().is_empty());
        let unannounced = b.unannounced.lock().unwrap().clone();
        assert_eq!(unannounced, HashSet::from([("r".into(), "bob".into())]));
        assert!(
            b.presence_changes("").is_empty(),
            "announced once registered"
        );
    }
}
