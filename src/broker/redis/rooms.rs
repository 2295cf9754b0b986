//! Room state: join, members, leave, record and ban, each one script in
//! Redis while the link is up, and the local mirror always (the source of
//! the refresh, and the only state while Redis is unreachable).

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::RedisBackend;
use super::link::CallError;
use crate::broker::backend::{BrokerError, JoinOutcome};

/// What the join script answered (`{code, members, history}`).
type JoinAnswer = (i64, Vec<String>, Vec<Vec<u8>>);

impl RedisBackend {
    pub(super) async fn join_room(
        &self,
        room: &str,
        username: &str,
    ) -> Result<JoinOutcome, BrokerError> {
        let Some((generation, mut conn)) = self.link.current() else {
            return Ok(self.join_locally(room, username));
        };
        let call = self
            .scripts
            .join(room, username, &self.instance_text, self.ttl_ms());
        let answer = self
            .link
            .guarded(
                generation,
                "join",
                call.invoke_async::<JoinAnswer>(&mut conn),
            )
            .await;
        match answer {
            Err(CallError::Down) => Ok(self.join_locally(room, username)),
            Err(CallError::Redis(e)) => Err(unavailable(e)),
            Ok((1, members, history)) => {
                self.joined_in_redis(generation, &mut conn, room, username, members, history)
                    .await
            }
            Ok((2, _, _)) => Ok(JoinOutcome::Banned),
            Ok(_) => Ok(JoinOutcome::NameTaken),
        }
    }

    /// Redis admitted the member: the mirror must agree before the joiner
    /// is told the members and history.
    async fn joined_in_redis(
        &self,
        generation: u64,
        conn: &mut MultiplexedConnection,
        room: &str,
        username: &str,
        mut members: Vec<String>,
        history: Vec<Vec<u8>>,
    ) -> Result<JoinOutcome, BrokerError> {
        match self.mirror.join_now(room, username) {
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
                let _ = self.leave_in_redis(generation, conn, room, username).await;
                Ok(JoinOutcome::Banned)
            }
        }
    }

    /// A join while Redis is unreachable: the mirror decides, and the
    /// member is announced to the other instances once registered.
    fn join_locally(&self, room: &str, username: &str) -> JoinOutcome {
        let outcome = self.mirror.join_now(room, username);
        if matches!(outcome, JoinOutcome::Joined { .. }) {
            self.catchup.admitted_locally(room, username);
        }
        outcome
    }

    pub(super) async fn room_members(&self, room: &str) -> Result<Vec<String>, BrokerError> {
        let Some((generation, mut conn)) = self.link.current() else {
            return Ok(self.mirror.members_of(room));
        };
        let call = self.scripts.members(room);
        match self
            .link
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
            Err(CallError::Redis(e)) => Err(unavailable(e)),
        }
    }

    pub(super) async fn leave_room(&self, room: &str, username: &str) {
        // Locally first and at once, so even a caller that gives up waiting
        // never leaves a member here to be refreshed forever.
        self.mirror.leave_now(room, username);
        // Then wait out a refresh of this room that may have read the name
        // before it left, so the removal below comes after its rewrite.
        let _gate = self.refresh_gate.read().await;
        // Admitted during an outage and never registered: Redis and the
        // other instances never had it, so there is nothing to undo.
        let never_registered = self.catchup.forget_unannounced(room, username);
        let Some((generation, mut conn)) = self.link.current() else {
            if !never_registered {
                self.catchup.remember_leave(room, username);
            }
            return;
        };
        if let Err(CallError::Down) = self
            .leave_in_redis(generation, &mut conn, room, username)
            .await
        {
            self.catchup.remember_leave(room, username);
        }
    }

    /// The leave script: 0 when the other instances may still list the
    /// name, 1 when a sweep already announced it gone, 2 when another
    /// instance holds it.
    pub(super) async fn leave_in_redis(
        &self,
        generation: u64,
        conn: &mut MultiplexedConnection,
        room: &str,
        username: &str,
    ) -> Result<i64, CallError> {
        let call = self.scripts.leave(room, username, &self.instance_text);
        self.link
            .guarded(generation, "leave", call.invoke_async::<i64>(conn))
            .await
    }

    pub(super) async fn record_message(&self, room: &str, message: Utf8Bytes, cap: usize) {
        self.mirror.record_now(room, message.clone(), cap);
        let Some((generation, mut conn)) = self.link.current() else {
            return;
        };
        let call = self.scripts.record(room, message.as_bytes(), cap);
        let _ = self
            .link
            .guarded(generation, "record", call.invoke_async::<()>(&mut conn))
            .await;
    }

    pub(super) async fn ban_name(&self, room: &str, username: &str) {
        self.mirror.ban_now(room, username);
        let Some((generation, mut conn)) = self.link.current() else {
            return;
        };
        let call = self.scripts.ban(room, username);
        let _ = self
            .link
            .guarded(generation, "ban", call.invoke_async::<()>(&mut conn))
            .await;
    }
}

/// Redis answered a room operation with an error.
fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(format!("redis: {e}"))
}
