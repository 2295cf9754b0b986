//! The WebSocket session driver: one upgraded connection from the first
//! frame to the closing handshake. It applies the per-socket limits (message
//! size; pings, pong deadline and idle timeout through `crate::keepalive`;
//! the message and byte rates through `crate::rates`),
//! answers protocol errors with the close code of `keepalive::CloseReason`,
//! sends 1001 when its route's stop signal fires (shutdown, or a reload
//! retiring the route: `crate::stop`) and counts everything.
//!
//! What a message *means* is the route kind's business (`crate::routes`); the
//! session hands data messages to a [`Handler`] and writes what it returns.

use std::future::{Future, poll_fn};
use std::task::{Poll, Waker};

use crate::stop::StopSignal;
use futures_util::{FutureExt, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::budget::MessageBoundary;
use crate::config::SessionLimits;
use crate::config::limits::CLOSE_TIMEOUT;
use crate::keepalive::{Action, Keepalive};
use crate::metrics::{self, SessionMetrics};
use crate::rates::Meter;

mod close;
mod ending;
pub mod link;
mod write;
pub use close::{close, close_and_linger, close_for, close_for_rate, fail};
pub use ending::Ending;
use link::{Link, codec_config};
use write::{flush_link, stopped, write_link};

/// Most messages handled between two flushes.
const MAX_BATCH: usize = 64;

/// The codec settings for one socket: small eager buffers, explicit bounds.
pub fn websocket_config(limits: &SessionLimits) -> WebSocketConfig {
    codec_config(limits.max_message_size)
}

/// What a route kind does with each data message, and what it sends on its
/// own (room messages, broker deliveries). Borrowed handlers are handlers
/// too (the session's owner keeps them after it ends).
pub trait Handler: Send {
    /// Called for every text or binary message; pushes the replies. Returning
    /// `Flow::Close` closes the socket after the replies are sent.
    fn on_message(
        &mut self,
        message: Message,
        replies: &mut Vec<Message>,
    ) -> impl std::future::Future<Output = Flow> + Send;

    /// The next message that arrives from elsewhere. Must be cancel-safe
    /// (it is polled in a `select!`). Default: nothing ever arrives.
    fn next_outbound(&mut self) -> impl std::future::Future<Output = Outbound> + Send {
        std::future::pending()
    }
}

impl<H: Handler> Handler for &mut H {
    fn on_message(
        &mut self,
        message: Message,
        replies: &mut Vec<Message>,
    ) -> impl std::future::Future<Output = Flow> + Send {
        (**self).on_message(message, replies)
    }

    fn next_outbound(&mut self) -> impl std::future::Future<Output = Outbound> + Send {
        (**self).next_outbound()
    }
}

/// Whether the session goes on after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Close with this code and reason.
    Close(CloseCode, String),
}

/// Something a handler sends without being asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Send(Message),
    /// Close with this code and reason (kicked, fell behind, ...).
    Close(CloseCode, String),
}

/// The close code and reason of a received close frame (1005 when none).
fn received_close(frame: Option<CloseFrame>) -> (u16, String) {
    frame.map_or((1005, String::new()), |f| {
        (u16::from(f.code), f.reason.as_str().to_string())
    })
}

/// Drives one WebSocket until it closes, from the connection just upgraded
/// (`io`: nothing read yet). The codec's read buffer exists only while the
/// client sends (`link`): a session that never received holds none, and
/// one that went quiet drops it at its next keepalive tick.
///
/// The closing paths (`close`, `fail`, `stopped`) are awaited boxed: they
/// run once per connection, and inline they would make every session's
/// future (idle memory per connection) as large as the largest of them.
///
/// A plain function returning the future: an `async fn` would keep a second
/// copy of its arguments in the state of every session.
pub fn run<S, H>(
    io: S,
    limits: SessionLimits,
    stop: StopSignal,
    counters: &SessionMetrics,
    mut handler: H,
) -> impl std::future::Future<Output = Ending>
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
    H: Handler,
{
    let mut link = Link::new(io, limits.max_message_size);
    let mut keepalive = Keepalive::new(limits.ping_interval, limits.idle_timeout);
    let meter = Meter::new(&limits);
    let send_timeout = limits.send_timeout;
    async move {
        let mut replies = Vec::new();
        // Made once, not at every wake (a fan-out session wakes per
        // delivery): a fresh `cancelled()` joins and leaves the token's
        // waiter list, which every session shares, and a fresh sleep sets
        // and clears a timer entry.
        let cancelled = stop.token().cancelled();
        tokio::pin!(cancelled);
        // The waker `cancelled` holds: polling it again (a lock on that
        // shared list) is needed only when the token was cancelled or the
        // task's waker changed.
        let mut shutdown_waker: Option<Waker> = None;
        let timer = sleep_until(keepalive.next_deadline());
        tokio::pin!(timer);
        loop {
            let deadline = keepalive.next_deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = poll_fn(|cx| {
                    if !stop.token().is_cancelled()
                        && shutdown_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        return Poll::Pending;
                    }
                    shutdown_waker = Some(cx.waker().clone());
                    cancelled.as_mut().poll(cx)
                }) => {
                    let reason = stop.reason();
                    return Box::pin(finish(link, move |ws| close_for(ws, reason))).await;
                }
                incoming = link.next() => {
                    let Some(incoming) = incoming else { return Ending::Dropped };
                    match incoming {
                        Ok(Message::Close(frame)) => {
                            return closed_by_peer(&mut link, frame).await;
                        }
                        Ok(Message::Pong(_)) => keepalive.on_pong(),
                        Ok(Message::Ping(ping)) => {
                            if let Err(exceeded) = meter.message(ping.len()) {
                                return Box::pin(finish(link, |ws| close_for_rate(ws, counters, exceeded))).await;
                            }
                            // The pong is queued by tungstenite; send it now.
                            if let Err(stop) = flush_link(&mut link, Instant::now() + send_timeout).await {
                                return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                            }
                        }
                        Ok(Message::Frame(_)) => {}
                        Ok(message) => {
                            keepalive.on_activity();
                            let mut pending = Some(message);
                            let mut batch = 0;
                            // One deadline for every write of the batch.
                            let send_by = Instant::now() + send_timeout;
                            // Handle what is already buffered (a bounded batch,
                            // so pings and shutdown are not starved), then flush once.
                            while let Some(message) = pending.take() {
                                // Past the rate the message is not handled; the
                                // replies written so far go out before the close.
                                if let Err(exceeded) = meter.message(message.len()) {
                                    return Box::pin(finish(link, |ws| close_for_rate(ws, counters, exceeded))).await;
                                }
                                batch += 1;
                                counters.received(message.len() as u64);
                                let flow = handler.on_message(message, &mut replies).await;
                                for reply in replies.drain(..) {
                                    counters.sent(reply.len() as u64);
                                    if let Err(stop) = write_link(&mut link, send_by, reply).await {
                                        return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                                    }
                                }
                                if let Flow::Close(code, reason) = flow {
                                    if let Err(stop) = flush_link(&mut link, send_by).await {
                                        return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                                    }
                                    return Box::pin(finish(link, |ws| close(ws, code, &reason))).await;
                                }
                                if batch >= MAX_BATCH {
                                    break;
                                }
                                match link.next_ready() {
                                    None => {}
                                    Some(Some(Ok(next))) => match next {
                                        Message::Text(_) | Message::Binary(_) => pending = Some(next),
                                        Message::Close(frame) => {
                                            return closed_by_peer(&mut link, frame).await;
                                        }
                                        Message::Pong(_) => keepalive.on_pong(),
                                        // Pongs to pings are queued by tungstenite
                                        // and go out with the flush below.
                                        Message::Ping(ping) => {
                                            if let Err(exceeded) = meter.message(ping.len()) {
                                                return Box::pin(finish(link, |ws| {
                                                    close_for_rate(ws, counters, exceeded)
                                                }))
                                                .await;
                                            }
                                        }
                                        Message::Frame(_) => {}
                                    },
                                    Some(Some(Err(e))) => {
                                        if let Err(stop) = flush_link(&mut link, send_by).await {
                                            return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                                        }
                                        return Box::pin(finish(link, |ws| fail(ws, e))).await;
                                    }
                                    Some(None) => {
                                        let _ = flush_link(&mut link, send_by).await;
                                        return Ending::Dropped;
                                    }
                                }
                            }
                            if let Err(stop) = flush_link(&mut link, send_by).await {
                                return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                            }
                        }
                        Err(e) => return Box::pin(finish(link, |ws| fail(ws, e))).await,
                    }
                }
                outbound = handler.next_outbound() => match outbound {
                    Outbound::Send(message) => {
                        // Write what is already queued too (a bounded batch),
                        // then flush once: fan-out bursts cost one write, not
                        // one per message.
                        let mut then_close = None;
                        let send_by = Instant::now() + send_timeout;
                        // Outside the block: captured by reference, not
                        // kept twice in its state.
                        let mut next = Some(message);
                        let write = async {
                            let mut batch = 0;
                            while let Some(message) = next.take() {
                                counters.sent(message.len() as u64);
                                write_link(&mut link, send_by, message).await?;
                                batch += 1;
                                if batch >= MAX_BATCH {
                                    break;
                                }
                                match handler.next_outbound().now_or_never() {
                                    Some(Outbound::Send(m)) => next = Some(m),
                                    Some(Outbound::Close(code, reason)) => {
                                        then_close = Some((code, reason));
                                    }
                                    None => {}
                                }
                            }
                            flush_link(&mut link, send_by).await
                        };
                        // A client that stopped reading is closed, so it holds
                        // nothing and slows no one.
                        if let Err(stop) = write.await {
                            return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                        }
                        if let Some((code, reason)) = then_close {
                            return Box::pin(finish(link, |ws| close(ws, code, &reason))).await;
                        }
                    }
                    Outbound::Close(code, reason) => {
                        return Box::pin(finish(link, |ws| close(ws, code, &reason))).await;
                    }
                },
                _ = &mut timer => match keepalive.fire() {
                    Some(Action::SendPing) => {
                        let send_by = Instant::now() + send_timeout;
                        if let Err(stop) = write_link(&mut link, send_by, Message::Ping(Bytes::new())).await {
                            return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                        }
                        if let Err(stop) = flush_link(&mut link, send_by).await {
                            return Box::pin(finish(link, |ws| stopped(ws, stop))).await;
                        }
                        // A keepalive tick: a quiet connection drops its
                        // codec at the next wait (no read buffer while idle).
                        link.allow_park();
                    }
                    Some(Action::Close(reason)) => {
                        return Box::pin(finish(link, |ws| close_for(ws, reason))).await;
                    }
                    None => link.allow_park(),
                },
            }
        }
    }
}

/// The client closed: tungstenite queued the reply; flush it and finish.
async fn closed_by_peer<S>(link: &mut Link<S>, frame: Option<CloseFrame>) -> Ending
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
{
    let (code, reason) = received_close(frame);
    metrics::close_code(code);
    if let Some(ws) = link.live() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.flush()).await;
    }
    Ending::ClosedByPeer(code, reason)
}

/// Runs a closing path on the link's codec (a connection whose codec was
/// lost has dropped).
async fn finish<S, F, Fut>(link: Link<S>, closing: F) -> Ending
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
    F: FnOnce(WebSocketStream<S>) -> Fut,
    Fut: std::future::Future<Output = Ending>,
{
    match link.into_live() {
        Some(ws) => closing(ws).await,
        None => Ending::Dropped,
    }
}
