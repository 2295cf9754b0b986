//! The presence catch-up's books: what an outage hid, kept until the link
//! is back and handed to the chat route through
//! [`crate::broker::Backend::presence_changes`] (see "Presence catch-up" in
//! the module doc of `redis`).
//!
//! All five records live behind one lock: each operation touches one or two
//! of them for a moment (never across an `.await`, never while taking
//! another lock), and some must change together (a leave forgets the join it
//! had queued and the name it had to announce; a comparison with Redis
//! queues changes while it updates the view).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use crate::broker::backend::PresenceChange;

/// Most entries kept in each record (oldest dropped first).
const PENDING_LEAVES_MAX: usize = 65_536;

/// The catch-up's records, behind one lock.
#[derive(Default)]
pub(super) struct CatchUp {
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    /// Leaves made while Redis was unreachable, to replay on reconnect.
    pending_leaves: Vec<(String, String)>,
    /// Members admitted while Redis was unreachable: the other instances
    /// have not heard of them (announced once the refresh registers them).
    unannounced: HashSet<(String, String)>,
    /// Presence changes waiting for `presence_changes`.
    changes: Vec<PresenceChange>,
    /// Per local room, the members of *other* instances as last seen in
    /// Redis: what this instance's clients were told. Frozen during an
    /// outage, compared with Redis once the link has settled again.
    seen: HashMap<String, HashSet<String>>,
    /// Clashes already logged, to log each once.
    clashes: HashSet<(String, String)>,
}

impl Book {
    fn push(&mut self, change: PresenceChange) {
        if self.changes.len() >= PENDING_LEAVES_MAX {
            self.changes.remove(0);
        }
        self.changes.push(change);
    }

    /// Queues a change for everyone in the room.
    fn push_change(&mut self, room: &str, username: &str, joined: bool) {
        self.push(PresenceChange {
            topic: room.to_string(),
            username: username.to_string(),
            joined,
            local_only: false,
        });
    }
}

impl CatchUp {
    /// Runs `f` on the books (a poisoned lock skips it, as before the split).
    fn with<R: Default>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        self.book.lock().map(|mut b| f(&mut b)).unwrap_or_default()
    }

    /// Remembers a leave Redis did not get, to replay on reconnect.
    pub(super) fn remember_leave(&self, room: &str, username: &str) {
        self.with(|b| {
            if b.pending_leaves.len() >= PENDING_LEAVES_MAX {
                b.pending_leaves.remove(0);
            }
            b.pending_leaves
                .push((room.to_string(), username.to_string()));
        });
    }

    /// The leaves to replay, taken out.
    pub(super) fn take_pending_leaves(&self) -> Vec<(String, String)> {
        self.with(|b| std::mem::take(&mut b.pending_leaves))
    }

    /// A member admitted while Redis was unreachable: announce it once the
    /// refresh registers it.
    pub(super) fn admitted_locally(&self, room: &str, username: &str) {
        self.with(|b| {
            if b.unannounced.len() < PENDING_LEAVES_MAX {
                b.unannounced
                    .insert((room.to_string(), username.to_string()));
            }
        });
    }

    /// Forgets that `username` in `room` has a join to announce (it left
    /// before that happened); whether it was one the others never heard of.
    pub(super) fn forget_unannounced(&self, room: &str, username: &str) -> bool {
        self.with(|b| {
            b.changes
                .retain(|c| !(c.joined && c.topic == room && c.username == username));
            b.unannounced
                .remove(&(room.to_string(), username.to_string()))
        })
    }

    /// Queues a change for everyone in the room.
    pub(super) fn push_change(&self, room: &str, username: &str, joined: bool) {
        self.with(|b| b.push_change(room, username, joined));
    }

    /// After a refresh wrote `names` (but `clashes`) to Redis: queues a
    /// join for each name the other instances have not heard of, or were
    /// told had gone (`back`).
    pub(super) fn registered(
        &self,
        room: &str,
        names: &[String],
        clashes: &[String],
        back: Vec<String>,
    ) {
        self.with(|b| {
            let mut joins: Vec<String> = back;
            if !b.unannounced.is_empty() {
                for name in names {
                    if !clashes.contains(name)
                        && b.unannounced.remove(&(room.to_string(), name.clone()))
                        && !joins.contains(name)
                    {
                        joins.push(name.clone());
                    }
                }
            }
            for name in joins {
                b.push_change(room, &name, true);
            }
        });
    }

    /// Records `now`, the other instances' members of `room`; when
    /// `reconciling` after an outage, first queues, for this instance's
    /// clients only, a join for each that came and a leave for each that
    /// went since they were last seen.
    pub(super) fn observe(&self, room: &str, now: HashSet<String>, reconciling: bool) {
        self.with(|b| {
            if reconciling {
                // No entry: every local member joined during the outage, from
                // the local mirror, so none of them knows the others.
                let before = b.seen.get(room).cloned().unwrap_or_default();
                let mut came: Vec<&String> = now.difference(&before).collect();
                let mut went: Vec<&String> = before.difference(&now).collect();
                came.sort();
                went.sort();
                for (names, joined) in [(came, true), (went, false)] {
                    for name in names {
                        b.push(PresenceChange {
                            topic: room.to_string(),
                            username: name.clone(),
                            joined,
                            local_only: true,
                        });
                    }
                }
            }
            b.seen.insert(room.to_string(), now);
        });
    }

    /// Sets what this instance's clients know of the other instances'
    /// members of `room` (a join through Redis told them).
    pub(super) fn saw(&self, room: &str, now: HashSet<String>) {
        self.with(|b| {
            b.seen.insert(room.to_string(), now);
        });
    }

    /// Forgets the view of rooms no longer held here.
    pub(super) fn keep_rooms(&self, rooms: &BTreeSet<String>) {
        self.with(|b| b.seen.retain(|room, _| rooms.contains(room)));
    }

    /// The other instances' members of `room` as last seen, sorted.
    pub(super) fn seen_elsewhere(&self, room: &str) -> Option<Vec<String>> {
        self.with(|b| {
            let mut names: Vec<String> = b.seen.get(room)?.iter().cloned().collect();
            names.sort();
            Some(names)
        })
    }

    /// Logs each clash (a name held on two instances after an outage) once.
    pub(super) fn log_clashes(&self, room: &str, clashes: Vec<String>) {
        self.with(|b| {
            for name in clashes {
                if b.clashes.insert((room.to_string(), name.clone())) {
                    tracing::warn!(
                        room,
                        username = %name,
                        "this name was taken on another instance while redis was unreachable; both keep it until one leaves"
                    );
                }
            }
            if b.clashes.len() > PENDING_LEAVES_MAX {
                b.clashes.clear();
            }
        });
    }

    /// The queued changes in topics starting with `prefix`, taken out.
    pub(super) fn take(&self, prefix: &str) -> Vec<PresenceChange> {
        self.with(|b| {
            let (taken, kept) = std::mem::take(&mut b.changes)
                .into_iter()
                .partition(|c| c.topic.starts_with(prefix));
            b.changes = kept;
            taken
        })
    }

    #[cfg(test)]
    pub(super) fn pending_leaves(&self) -> Vec<(String, String)> {
        self.with(|b| b.pending_leaves.clone())
    }

    #[cfg(test)]
    pub(super) fn unannounced(&self) -> HashSet<(String, String)> {
        self.with(|b| b.unannounced.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> HashSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn reconciling_queues_who_came_and_went_for_local_clients_only() {
        let c = CatchUp::default();
        c.observe("r", names(&["ann", "bob"]), false);
        assert!(c.take("").is_empty(), "no outage: nothing to announce");
        c.observe("r", names(&["bob", "cy"]), true);
        let changes = c.take("r");
        let got: Vec<(&str, bool, bool)> = changes
            .iter()
            .map(|ch| (ch.username.as_str(), ch.joined, ch.local_only))
            .collect();
        assert_eq!(got, [("cy", true, true), ("ann", false, true)]);
        assert_eq!(c.seen_elsewhere("r"), Some(vec!["bob".into(), "cy".into()]));
    }

    #[test]
    fn a_member_admitted_locally_is_announced_once_when_registered() {
        let c = CatchUp::default();
        c.admitted_locally("r", "ann");
        c.registered("r", &["ann".into()], &[], Vec::new());
        c.registered("r", &["ann".into()], &[], Vec::new());
        let changes = c.take("");
        assert_eq!(changes.len(), 1);
        assert!(changes[0].joined && !changes[0].local_only);
    }

    #[test]
    fn leaving_before_the_announcement_forgets_it() {
        let c = CatchUp::default();
        c.admitted_locally("r", "ann");
        assert!(c.forget_unannounced("r", "ann"));
        assert!(!c.forget_unannounced("r", "ann"));
        c.push_change("r", "bob", true);
        assert!(!c.forget_unannounced("r", "bob"));
        assert!(c.take("").is_empty(), "bob's queued join went with him");
    }

    #[test]
    fn pending_leaves_are_taken_once() {
        let c = CatchUp::default();
        c.remember_leave("r", "ann");
        assert_eq!(c.take_pending_leaves(), [("r".into(), "ann".into())]);
        assert!(c.take_pending_leaves().is_empty());
    }
}
