//! The Lua scripts that make each room operation atomic in Redis, the
//! keys of a room, and one invocation builder per script, so that the
//! `KEYS`/`ARGV` order a script expects is written down once, beside it.

use redis::{Script, ScriptInvocation};

use super::settings::KEY_TTL;

/// Shared Lua: the server's clock in ms, the parts of a member entry, and
/// the names of a room's live members.
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
local function live_members(key)
  local all = redis.call('HGETALL', key)
  local live = {}
  for i = 1, #all, 2 do
    if expiry(all[i + 1]) > now then live[#live + 1] = all[i] end
  end
  return live
end
";

/// KEYS: members, history, bans, swept, names. ARGV: username, instance,
/// ttl_ms, key_ttl_ms, name key.
/// Returns {1, live members, history} | {2, {}, {}} banned | {3, {}, {}} taken.
/// The tombstones (`swept`) outlive a restarted room on purpose: a swept
/// member who comes back must still be announced to the room's new members.
const JOIN: &str = r"
local live = live_members(KEYS[1])
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
return live_members(KEYS[1])
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
return {clashes, back, live_members(KEYS[1])}
";

/// The compiled scripts (each with [`PRELUDE`] in front).
pub(super) struct Scripts {
    join: Script,
    members: Script,
    leave: Script,
    record: Script,
    ban: Script,
    sweep: Script,
    refresh: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
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

    /// [`JOIN`] of `username` by `instance`, its entry living `ttl_ms`.
    pub(super) fn join(
        &self,
        room: &str,
        username: &str,
        instance: &str,
        ttl_ms: u64,
    ) -> ScriptInvocation<'_> {
        let keys = Keys::of(room);
        let mut call = self.join.prepare_invoke();
        keys.all(&mut call)
            .arg(username)
            .arg(instance)
            .arg(ttl_ms)
            .arg(key_ttl_ms())
            .arg(crate::names::key(username));
        call
    }

    /// [`MEMBERS`] of `room`.
    pub(super) fn members(&self, room: &str) -> ScriptInvocation<'_> {
        self.members.key(Keys::of(room).members)
    }

    /// [`LEAVE`] of `username`, if `instance` holds it.
    pub(super) fn leave(&self, room: &str, username: &str, instance: &str) -> ScriptInvocation<'_> {
        let keys = Keys::of(room);
        let mut call = self.leave.prepare_invoke();
        keys.lifecycle(&mut call).arg(username).arg(instance);
        call
    }

    /// [`RECORD`] of `message`, keeping the last `cap`.
    pub(super) fn record(&self, room: &str, message: &[u8], cap: usize) -> ScriptInvocation<'_> {
        let keys = Keys::of(room);
        let mut call = self.record.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.history)
            .arg(message)
            .arg(cap)
            .arg(key_ttl_ms());
        call
    }

    /// [`BAN`] of `username`'s name key.
    pub(super) fn ban(&self, room: &str, username: &str) -> ScriptInvocation<'_> {
        let keys = Keys::of(room);
        let mut call = self.ban.prepare_invoke();
        call.key(&keys.members)
            .key(&keys.bans)
            .arg(crate::names::key(username))
            .arg(key_ttl_ms());
        call
    }

    /// [`SWEEP`] of `room`'s expired entries.
    pub(super) fn sweep(&self, room: &str) -> ScriptInvocation<'_> {
        let keys = Keys::of(room);
        let mut call = self.sweep.prepare_invoke();
        keys.lifecycle(&mut call).arg(key_ttl_ms());
        call
    }

    /// [`REFRESH`] of `names`, this instance's members of `room`.
    pub(super) fn refresh(
        &self,
        room: &str,
        instance: &str,
        ttl_ms: u64,
        names: &[String],
    ) -> ScriptInvocation<'_> {
        let keys = Keys::of(room);
        let mut call = self.refresh.prepare_invoke();
        keys.all(&mut call)
            .arg(instance)
            .arg(ttl_ms)
            .arg(key_ttl_ms());
        for name in names {
            call.arg(name).arg(crate::names::key(name));
        }
        call
    }
}

/// Lifetime of a room's keys in ms (see [`KEY_TTL`]).
fn key_ttl_ms() -> u64 {
    u64::try_from(KEY_TTL.as_millis()).unwrap_or(u64::MAX)
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

    /// Adds members, history, bans, swept (in that order).
    fn lifecycle<'c, 'a>(
        &self,
        call: &'c mut ScriptInvocation<'a>,
    ) -> &'c mut ScriptInvocation<'a> {
        call.key(&self.members)
            .key(&self.history)
            .key(&self.bans)
            .key(&self.swept)
    }

    /// Adds members, history, bans, swept, names (in that order).
    fn all<'c, 'a>(&self, call: &'c mut ScriptInvocation<'a>) -> &'c mut ScriptInvocation<'a> {
        self.lifecycle(call).key(&self.names)
    }
}
