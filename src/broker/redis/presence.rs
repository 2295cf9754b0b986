//! Presence expiry: the refresh that rewrites this instance's members every
//! `refresh_every` (and, after an outage, compares what the clients were
//! told with Redis), the replay of leaves Redis missed, and the sweep of
//! members whose instance stopped refreshing them.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::RedisBackend;
use super::link::CallError;

/// Where the refresh stands with the presence catch-up (see [`super::settings::SETTLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No outage since the last comparison: keep the view current.
    Current,
    /// After an outage, before it settled: leave the view as it was.
    Frozen,
    /// Settled after an outage: compare the view with Redis.
    Reconciling,
}

/// Why a refresh stopped: the link is down.
pub(super) struct LinkDown;

impl RedisBackend {
    /// Rewrites this instance's members every `refresh_every` (and checks
    /// the link with a PING when there are none).
    pub(super) async fn run_refresh(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.timing.refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some((generation, conn)) = self.link.current() {
                let _ = self.refresh_with(generation, &conn).await;
            }
        }
    }

    /// One refresh of every local member (a PING when there are none).
    /// Each room is refreshed under the gate with its members read afresh,
    /// so a leave is never undone by a refresh that read it before.
    pub(super) async fn refresh_with(
        &self,
        generation: u64,
        conn: &MultiplexedConnection,
    ) -> Result<(), LinkDown> {
        let rooms: BTreeSet<String> = self
            .mirror
            .members()
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        let mut conn = conn.clone();
        if rooms.is_empty() {
            return self.ping(generation, &mut conn).await;
        }
        let phase = self.phase();
        self.catchup.keep_rooms(&rooms);
        for room in rooms {
            self.refresh_room(generation, &mut conn, &room, phase)
                .await?;
        }
        if phase == Phase::Reconciling {
            self.link.reconcile.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Checks the link when there is nothing to refresh.
    async fn ping(
        &self,
        generation: u64,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), LinkDown> {
        let ping = redis::cmd("PING");
        self.link
            .guarded(generation, "PING", ping.query_async::<()>(conn))
            .await
            .map_err(|_| LinkDown)
    }

    /// Compare what this instance's clients were told with Redis only once
    /// the others had time to come back too (see [`super::settings::SETTLE`]).
    fn phase(&self) -> Phase {
        if !self.link.reconcile.load(Ordering::Acquire) {
            Phase::Current
        } else if self.link.settled(self.timing.settle) {
            Phase::Reconciling
        } else {
            Phase::Frozen
        }
    }

    /// Rewrites this instance's members of one room, under the gate, and
    /// books what the answer says.
    async fn refresh_room(
        &self,
        generation: u64,
        conn: &mut MultiplexedConnection,
        room: &str,
        phase: Phase,
    ) -> Result<(), LinkDown> {
        let _gate = self.refresh_gate.write().await;
        let names = self.mirror.members_of(room);
        if names.is_empty() {
            return Ok(());
        }
        let call = self
            .scripts
            .refresh(room, &self.instance_text, self.ttl_ms(), &names);
        match self
            .link
            .guarded(
                generation,
                "presence refresh",
                call.invoke_async::<(Vec<String>, Vec<String>, Vec<String>)>(conn),
            )
            .await
        {
            Ok((clashes, back, live)) => {
                self.catchup.registered(room, &names, &clashes, back);
                self.catchup.log_clashes(room, clashes);
                if phase != Phase::Frozen {
                    self.catchup.observe(
                        room,
                        elsewhere(live, &names),
                        phase == Phase::Reconciling,
                    );
                }
                Ok(())
            }
            Err(CallError::Down) => Err(LinkDown),
            Err(CallError::Redis(_)) => Ok(()),
        }
    }

    /// A join through Redis told the joiner every member: the others' are
    /// what this instance's clients now know (unless an outage froze that).
    pub(super) fn saw_on_join(&self, room: &str, members: &[String]) {
        if self.link.reconcile.load(Ordering::Acquire) {
            return;
        }
        let now = elsewhere(members.to_vec(), &self.mirror.members_of(room));
        self.catchup.saw(room, now);
    }

    /// Replays leaves made while Redis was unreachable (unless the name
    /// joined again here since).
    pub(super) async fn replay_leaves(&self, generation: u64, conn: &MultiplexedConnection) {
        let pending = self.catchup.take_pending_leaves();
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
                Ok(0) => self.catchup.push_change(&room, &name, false),
                Ok(_) | Err(CallError::Redis(_)) => {}
                Err(CallError::Down) => return,
            }
        }
    }

    /// Removes the expired members of `room` (once the link has settled)
    /// and returns their names.
    pub(super) async fn sweep_expired(&self, room: &str) -> Vec<String> {
        if !self.link.settled(self.timing.settle) {
            return Vec::new();
        }
        let Some((generation, mut conn)) = self.link.current() else {
            return Vec::new();
        };
        let call = self.scripts.sweep(room);
        self.link
            .guarded(
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
