//! The `memory` backend: room state in this process, nothing forwarded. A
//! room exists while it has members; when the last one leaves, its history
//! and bans go with it (the same rule the `redis` backend follows). Names
//! are unique and banned by their `crate::names::key` (`Alice` = `alice`);
//! members are listed as shown.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::names;

use super::backend::{Backend, BoxFuture, BrokerError, Health, JoinOutcome};
use super::envelope::Envelope;
use super::hub::Hub;

/// One room's state.
#[derive(Default)]
pub(crate) struct Room {
    pub members: BTreeSet<String>,
    /// The members' name keys.
    pub keys: HashSet<String>,
    pub history: VecDeque<Utf8Bytes>,
    /// Name keys.
    pub banned: HashSet<String>,
}

/// Rooms by topic, behind one lock (operations are tiny).
#[derive(Default)]
pub struct MemoryBackend {
    rooms: Mutex<HashMap<String, Room>>,
}

impl MemoryBackend {
    /// Claims a name; the shared logic of `join` (also used by `redis` as
    /// its local fallback).
    pub(crate) fn join_now(&self, room: &str, username: &str) -> JoinOutcome {
        let Ok(mut rooms) = self.rooms.lock() else {
            return JoinOutcome::NameTaken;
        };
        let state = rooms.entry(room.to_string()).or_default();
        let key = names::key(username);
        if state.banned.contains(&key) {
            return JoinOutcome::Banned;
        }
        if state.keys.contains(&key) || !state.members.insert(username.to_string()) {
            return JoinOutcome::NameTaken;
        }
        state.keys.insert(key);
        JoinOutcome::Joined {
            members: state.members.iter().cloned().collect(),
            history: state.history.iter().cloned().collect(),
        }
    }

    pub(crate) fn leave_now(&self, room: &str, username: &str) {
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(state) = rooms.get_mut(room)
        {
            if state.members.remove(username) {
                state.keys.remove(&names::key(username));
            }
            if state.members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    pub(crate) fn record_now(&self, room: &str, message: Utf8Bytes, cap: usize) {
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(state) = rooms.get_mut(room)
        {
            state.history.push_back(message);
            while state.history.len() > cap {
                state.history.pop_front();
            }
        }
    }

    pub(crate) fn ban_now(&self, room: &str, username: &str) {
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(state) = rooms.get_mut(room)
        {
            state.banned.insert(names::key(username));
        }
    }

    /// The names in one room.
    pub(crate) fn members_of(&self, room: &str) -> Vec<String> {
        self.rooms
            .lock()
            .ok()
            .and_then(|rooms| rooms.get(room).map(|s| s.members.iter().cloned().collect()))
            .unwrap_or_default()
    }

    /// Every (room, name) held here, for backends that refresh presence.
    #[allow(dead_code)] // for the redis backend's presence refresh
    pub(crate) fn members(&self) -> Vec<(String, String)> {
        self.rooms
            .lock()
            .map(|rooms| {
                rooms
                    .iter()
                    .flat_map(|(room, s)| s.members.iter().map(|m| (room.clone(), m.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn start(self: Arc<Self>, _hub: Arc<Hub>, _shutdown: CancellationToken) {}

    fn forward(&self, _envelope: &Envelope) {}

    fn join<'a>(
        &'a self,
        room: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<JoinOutcome, BrokerError>> {
        Box::pin(std::future::ready(Ok(self.join_now(room, username))))
    }

    fn members<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(std::future::ready(Ok(self.members_of(room))))
    }

    fn leave<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()> {
        self.leave_now(room, username);
        Box::pin(std::future::ready(()))
    }

    fn record<'a>(&'a self, room: &'a str, message: Utf8Bytes, cap: usize) -> BoxFuture<'a, ()> {
        self.record_now(room, message, cap);
        Box::pin(std::future::ready(()))
    }

    fn ban<'a>(&'a self, room: &'a str, username: &'a str) -> BoxFuture<'a, ()> {
        self.ban_now(room, username);
        Box::pin(std::future::ready(()))
    }

    fn sweep<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(std::future::ready(Vec::new()))
    }

    fn health(&self) -> Health {
        Health::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_history_bans_and_room_life() {
        let m = MemoryBackend::default();
        assert!(matches!(
            m.join_now("r", "alice"),
            JoinOutcome::Joined { .. }
        ));
        assert_eq!(m.join_now("r", "alice"), JoinOutcome::NameTaken);
        for i in 0..5 {
            m.record_now("r", i.to_string().into(), 3);
        }
        match m.join_now("r", "bob") {
            JoinOutcome::Joined { members, history } => {
                assert_eq!(members, ["alice", "bob"]);
                let h: Vec<_> = history.iter().map(|u| u.as_str().to_string()).collect();
                assert_eq!(h, ["2", "3", "4"]);
            }
            other => panic!("{other:?}"),
        }
        // Names clash and are banned case-insensitively.
        assert_eq!(m.join_now("r", "ALICE"), JoinOutcome::NameTaken);
        m.ban_now("r", "Eve");
        assert_eq!(m.join_now("r", "eve"), JoinOutcome::Banned);
        m.leave_now("r", "alice");
        m.leave_now("r", "bob");
        // The room ended: history and bans are gone.
        match m.join_now("r", "eve") {
            JoinOutcome::Joined { history, .. } => assert!(history.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
