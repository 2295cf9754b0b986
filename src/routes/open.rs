//! Opening a WebSocket session once a kind admitted it: answer 101, wait
//! for hyper's upgrade, wrap the connection (memory budget, codec limits)
//! and run the kind's session driver, holding the connection slot and the
//! admission ticket until it ends. The proxy opens its own (it relays raw
//! frames); every other kind goes through here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;

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
use crate::stop::StopSignal;

/// The connection a session runs on: the upgraded connection (a TLS or TCP
/// socket on HTTP/1.1, a stream on HTTP/2) under its own send timeout,
/// its received message bytes charged to the memory budget. The session
/// driver puts the WebSocket codec over it (`session::link`: only while
/// there is something to read; exec keeps one for its whole life).
type Socket = BudgetedIo<StallGuard<UpgradedIo>>;

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
    // Boxed: inline it made every session's task 64 bytes larger for its
    // whole life (what a session is opened with stays in its task).
    Broadcast(Box<BroadcastSession>),
    // Boxed: the request facts are large, and every echo session would pay.
    Exec(Box<exec::Admitted>),
}

impl Opened {
    /// Runs the session until it closes. A plain function returning the
    /// future: an `async fn` would keep a second copy of its arguments in
    /// every session's task.
    fn run<'a>(
        self,
        io: Socket,
        limits: SessionLimits,
        stop: StopSignal,
        counters: &'a SessionMetrics,
    ) -> Either<impl Future<Output = Ending> + Send + 'a, BoxedEnding<'a>> {
        // Kinds other than echo run boxed: a spawned task is as big as its
        // largest branch, and every idle echo connection would pay for it.
        match self {
            Opened::Echo => Either::Left(session::run(io, limits, stop, counters, Echo)),
            Opened::Chat(mut handler) => Either::Right(Box::pin(async move {
                let ending = session::run(io, limits, stop, counters, handler.as_mut()).await;
                handler.finish().await;
                ending
            })),
            Opened::Broadcast(handler) => {
                Either::Right(Box::pin(session::run(io, limits, stop, counters, *handler)))
            }
            Opened::Exec(admitted) => Either::Right(Box::pin(async move {
                let config = session::websocket_config(&limits);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                exec::run(ws, *admitted, limits, stop, counters).await
            })),
        }
    }
}

/// A session driver's future, boxed (see [`Opened::run`]).
type BoxedEnding<'a> = Pin<Box<dyn Future<Output = Ending> + Send + 'a>>;

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

/// Answers 101 and spawns the session on the upgraded connection, closed
/// when `stop` (its route's) fires; its log lines carry the caller's
/// identity, if any.
pub fn spawn(
    mut req: Request<Incoming>,
    slot: SessionSlot,
    opened: Opened,
    handshake: &Handshake,
    stop: StopSignal,
    env: &Env<'_>,
) -> Response<Body> {
    let ticket = env.conn.ticket.clone();
    let who = who(env);
    let upgrade = hyper::upgrade::on(&mut req);
    let abort = req.extensions().get::<H2Conn>().cloned();
    let task = async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(peer = %who.peer, error = %e, "upgrade failed");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        let counters = SessionMetrics::open(&slot.route, &who.listener);
        tracing::debug!(peer = %who.peer, route = %slot.route, "WebSocket opened");
        // Bytes of messages being received are charged to the memory budget.
        let io = StallGuard::over_upgraded(TokioIo::new(upgraded), slot.limits.send_timeout, abort);
        let ending = opened
            .run(BudgetedIo::new(io), slot.limits, stop, &counters)
            .await;
        tracing::debug!(peer = %who.peer, route = %slot.route, ?ending, "WebSocket closed");
        log_end(&who, &slot.route, started, &counters, &ending);
        slot.release();
        drop(ticket);
    };
    // Boxed, so tokio moves a pointer rather than the whole session future.
    env.tracker
        .spawn(Box::pin(task).instrument(session_span(env.identity)));
    switching_protocols(handshake)
}
