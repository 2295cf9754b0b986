//! Opening a WebSocket session once a kind admitted it: answer 101, wait
//! for hyper's upgrade, wrap the connection (memory budget, codec limits)
//! and run the kind's session driver, holding the connection slot and the
//! admission ticket until it ends. The proxy opens its own (it relays raw
//! frames); every other kind goes through here.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::Instrument;

use super::broadcast::BroadcastSession;
use super::chat::ChatSession;
use super::echo::Echo;
use super::env::Env;
use super::exec;
use super::identity::session_span;
use crate::access_log::{self, Who};
use crate::budget::BudgetedIo;
use crate::config::SessionLimits;
use crate::http::reply::{Body, Handshake, switching_protocols};
use crate::http::upgraded::{H2Conn, UpgradedIo};
use crate::metrics::SessionMetrics;
use crate::server::stall::StallGuard;
use crate::session::{self, Ending};

/// The socket a session runs on: the upgraded connection (a TLS or TCP
/// socket on HTTP/1.1, a stream on HTTP/2) under its own send timeout.
type Socket = WebSocketStream<BudgetedIo<StallGuard<UpgradedIo>>>;

/// A WebSocket session's place: its route (for logs and metrics), the
/// route's limits, and the connection slot it holds until it ends.
pub struct SessionSlot {
    pub route: Arc<str>,
    pub limits: SessionLimits,
    permit: OwnedSemaphorePermit,
}

impl SessionSlot {
    pub fn new(route: &Arc<str>, limits: SessionLimits, permit: OwnedSemaphorePermit) -> Self {
        SessionSlot {
            route: route.clone(),
            limits,
            permit,
        }
    }

    /// Gives the connection slot back (the session ended).
    pub fn release(self) {
        drop(self.permit);
    }
}

/// What a kind admitted, ready to run after the upgrade.
pub enum Opened {
    Echo,
    // Boxed like exec: a chat session's state is larger than an echo's.
    Chat(Box<ChatSession>),
    Broadcast(BroadcastSession),
    // Boxed: the request facts are large, and every echo session would pay.
    Exec(Box<exec::Admitted>),
}

impl Opened {
    /// Runs the session until it closes.
    async fn run(
        self,
        ws: Socket,
        limits: SessionLimits,
        shutdown: tokio_util::sync::CancellationToken,
        counters: &SessionMetrics,
    ) -> Ending {
        // Kinds other than echo run boxed: a spawned task is as big as its
        // largest branch, and every idle echo connection would pay for it.
        match self {
            Opened::Echo => session::run(ws, limits, shutdown, counters, &mut Echo).await,
            Opened::Chat(mut handler) => {
                Box::pin(async move {
                    let ending =
                        session::run(ws, limits, shutdown, counters, handler.as_mut()).await;
                    handler.finish().await;
                    ending
                })
                .await
            }
            Opened::Broadcast(mut handler) => {
                Box::pin(
                    async move { session::run(ws, limits, shutdown, counters, &mut handler).await },
                )
                .await
            }
            Opened::Exec(admitted) => {
                Box::pin(exec::run(ws, *admitted, limits, shutdown, counters)).await
            }
        }
    }
}

/// Who a session's access log line is about.
pub fn who(env: &Env<'_>) -> Who {
    Who {
        peer: env.conn.peer,
        identity: env.identity.map(|i| i.name.clone()),
        listener: env.conn.listener.clone(),
    }
}

/// The access log line of a WebSocket that ended (the one place every
/// session driver's end goes through: here for echo, chat, broadcast and
/// exec, `routes::proxy` for proxied sockets).
pub fn log_end(
    who: &Who,
    route: &str,
    started: tokio::time::Instant,
    counters: &SessionMetrics,
    ending: &Ending,
) {
    let (code, reason, closed_by) = ending.summary();
    crate::status::live::live().closed(route, code, closed_by.label());
    if !access_log::enabled() {
        return;
    }
    access_log::WebSocketEnd {
        who,
        route,
        started,
        traffic: counters.traffic(),
        code,
        reason,
        closed_by,
    }
    .log();
}

/// Answers 101 and spawns the session on the upgraded connection; its log
/// lines carry the caller's identity, if any.
pub fn spawn(
    mut req: Request<Incoming>,
    slot: SessionSlot,
    opened: Opened,
    handshake: &Handshake,
    env: &Env<'_>,
) -> Response<Body> {
    let shutdown = env.shutdown.clone();
    let listener = env.conn.listener.clone();
    let peer = env.conn.peer;
    let ticket = env.conn.ticket.clone();
    let who = who(env);
    let upgrade = hyper::upgrade::on(&mut req);
    let abort = req.extensions().get::<H2Conn>().cloned();
    let task = async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "upgrade failed");
                return;
            }
        };
        // Bytes of messages being received are charged to the memory budget.
        let io = StallGuard::over_upgraded(TokioIo::new(upgraded), slot.limits.send_timeout, abort);
        let ws = WebSocketStream::from_raw_socket(
            BudgetedIo::new(io),
            Role::Server,
            Some(session::websocket_config(&slot.limits)),
        )
        .await;
        let route = slot.route.clone();
        let started = tokio::time::Instant::now();
        let counters = SessionMetrics::open(&route, &listener);
        tracing::debug!(%peer, %route, "WebSocket opened");
        let ending = opened.run(ws, slot.limits, shutdown, &counters).await;
        tracing::debug!(%peer, %route, ?ending, "WebSocket closed");
        log_end(&who, &route, started, &counters, &ending);
        slot.release();
        drop(ticket);
    };
    // Boxed, so tokio moves a pointer rather than the whole session future.
    env.tracker
        .spawn(Box::pin(task).instrument(session_span(env.identity)));
    switching_protocols(handshake)
}
