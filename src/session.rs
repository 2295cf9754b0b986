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
use std::time::Duration;

use crate::stop::StopSignal;
use futures_util::future::Either;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::error::Elapsed;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::access_log::ClosedBy;
use crate::budget::MessageBoundary;
use crate::config::SessionLimits;
use crate::config::limits::{CLOSE_TIMEOUT, WRITE_BUFFER_SIZE};
use crate::config::rate::Exceeded;
use crate::keepalive::{Action, CloseReason, Keepalive};
use crate::metrics::{self, SessionMetrics};
use crate::rates::Meter;

pub mod link;
use link::{Link, codec_config};

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

/// Why a session ended, for logs and the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client closed (with this code, 1005 when none, and its reason).
    ClosedByPeer(u16, String),
    /// We closed with this code and reason.
    ClosedByUs(u16, String),
    /// Proxy routes: the upstream closed with this code.
    ClosedByUpstream(u16),
    /// Exec routes: the program ended; the close sent for it.
    ClosedByProgram(u16, String),
    /// The TCP connection dropped without a closing handshake.
    Dropped,
}

impl Ending {
    /// Close code (1006 when the connection dropped), reason, who closed.
    pub fn summary(&self) -> (u16, &str, ClosedBy) {
        match self {
            Ending::ClosedByPeer(code, reason) => (*code, reason, ClosedBy::Client),
            Ending::ClosedByUs(code, reason) => (*code, reason, ClosedBy::Server),
            Ending::ClosedByUpstream(code) => (*code, "", ClosedBy::Upstream),
            Ending::ClosedByProgram(code, reason) => (*code, reason, ClosedBy::Program),
            Ending::Dropped => (1006, "", ClosedBy::Client),
        }
    }

    /// This ending, told as the program's doing (exec: it exited).
    pub fn by_program(self) -> Ending {
        match self {
            Ending::ClosedByUs(code, reason) => Ending::ClosedByProgram(code, reason),
            other => other,
        }
    }
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

/// [`flush_by`] on the link's codec. The write paths are plain functions
/// returning their futures, built from the futures that do the work: an
/// `async fn` keeps a copy of its arguments beside the future it awaits,
/// and these futures sit in every session's task (idle memory per
/// connection).
fn flush_link<S>(link: &mut Link<S>, deadline: Instant) -> impl Future<Output = Result<(), Stop>>
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
{
    match link.live() {
        Some(ws) => Either::Left(flush_by(ws, deadline)),
        None => Either::Right(std::future::ready(Err(Stop::Broken))),
    }
}

/// [`write_by`] on the link's codec.
fn write_link<S>(
    link: &mut Link<S>,
    deadline: Instant,
    message: Message,
) -> impl Future<Output = Result<(), Stop>>
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
{
    match link.live() {
        Some(ws) => Either::Left(write_by(ws, deadline, message)),
        None => Either::Right(std::future::ready(Err(Stop::Broken))),
    }
}

/// Data messages longer than this are written from their own (shared)
/// buffer instead of being copied into the codec's write buffer.
const DIRECT_WRITE_MIN: usize = WRITE_BUFFER_SIZE;

/// Why a write did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The connection failed.
    Broken,
    /// The deadline passed (the client does not read). `torn`: a frame was
    /// cut in the middle, so nothing more (not even a close) may be sent.
    Stalled { torn: bool },
}

impl Stop {
    /// A failed write: the socket's stall timer (`server::stall`) reports
    /// `TimedOut` when the client read nothing for the send timeout; the
    /// socket is then reset and refuses every later write, so it is a stall
    /// where not even a close can be sent. Any other error: the peer is gone.
    fn after_io_error(error: &std::io::Error) -> Stop {
        if error.kind() == std::io::ErrorKind::TimedOut {
            Stop::Stalled { torn: true }
        } else {
            Stop::Broken
        }
    }
}

/// Ends a session after a failed write: a stalled client gets a 1008 close
/// (itself bounded by the close timeout) unless a frame was cut, then the
/// connection is dropped.
async fn stopped<S>(ws: WebSocketStream<S>, stop: Stop) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match stop {
        Stop::Stalled { torn: false } => close_for(ws, CloseReason::NotReading).await,
        Stop::Stalled { torn: true } => {
            metrics::close_code(u16::from(CloseCode::Policy));
            tracing::debug!("client stopped reading inside a frame; dropping it");
            Ending::Dropped
        }
        Stop::Broken => Ending::Dropped,
    }
}

/// Flushes the codec's buffer before `deadline` (a plain function: see
/// [`flush_link`]).
fn flush_by<S>(
    ws: &mut WebSocketStream<S>,
    deadline: Instant,
) -> impl Future<Output = Result<(), Stop>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout_at(deadline, ws.flush()).map(codec_write_result)
}

/// A codec write or flush that had until a deadline, as a [`Stop`].
fn codec_write_result(result: Result<Result<(), WsError>, Elapsed>) -> Result<(), Stop> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(WsError::Io(e))) => Err(Stop::after_io_error(&e)),
        Ok(Err(_)) => Err(Stop::Broken),
        Err(_) => Err(Stop::Stalled { torn: false }),
    }
}

/// Writes one message before `deadline`. Small messages go to the codec's
/// buffer (batched, sent by the next flush); a larger data message is
/// written straight from its payload buffer, which may be shared with every
/// other subscriber: the codec is flushed (pongs it queued go out first),
/// then the frame header and the payload go to the connection. Server
/// frames are unmasked, so nothing is copied per connection (over TLS,
/// rustls takes at most `TLS_BUFFER_LIMIT` of plaintext per write).
/// A plain function: see [`flush_link`].
fn write_by<S>(
    ws: &mut WebSocketStream<S>,
    deadline: Instant,
    message: Message,
) -> impl Future<Output = Result<(), Stop>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (opcode, payload) = match message {
        Message::Binary(b) if b.len() > DIRECT_WRITE_MIN => (OP_BINARY, b),
        Message::Text(t) if t.len() > DIRECT_WRITE_MIN => (OP_TEXT, Bytes::from(t)),
        small => {
            return Either::Left(
                tokio::time::timeout_at(deadline, ws.feed(small)).map(codec_write_result),
            );
        }
    };
    // Boxed: only large messages take this path; inline, its state would
    // enlarge every session's future (idle memory per connection).
    Either::Right(Box::pin(write_direct(ws, deadline, opcode, payload)))
}

/// Writes one large data message from its payload buffer: the codec is
/// flushed (pongs it queued go out first), then the frame header and the
/// payload go to the connection.
async fn write_direct<S>(
    ws: &mut WebSocketStream<S>,
    deadline: Instant,
    opcode: u8,
    payload: Bytes,
) -> Result<(), Stop>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    flush_by(ws, deadline).await?;
    let header = frame_header(opcode, payload.len());
    let mut started = false;
    let write = write_frame(ws.get_mut(), &header, &payload, &mut started);
    let result = tokio::time::timeout_at(deadline, write).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Stop::after_io_error(&e)),
        Err(_) => Err(Stop::Stalled { torn: started }),
    }
}

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

/// The header of a final, unmasked server frame.
fn frame_header(opcode: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    h.push(0x80 | opcode);
    match len {
        n if n < 126 => h.push(n as u8),
        n if n <= 0xFFFF => {
            h.push(126);
            h.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            h.push(127);
            h.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    h
}

/// Writes a header and its payload: both in one vectored write when the
/// connection takes it (one TLS record, no tiny segment), then the rest of
/// the payload as the connection accepts it; the caller flushes. `started` turns true once any
/// byte went out.
async fn write_frame<W>(
    w: &mut W,
    header: &[u8],
    payload: &[u8],
    started: &mut bool,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    use std::io::IoSlice;
    use tokio::io::AsyncWriteExt;
    let mut head = header;
    let mut body = payload;
    while !head.is_empty() {
        let n = w
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *started = true;
        if n < head.len() {
            head = &head[n..];
        } else {
            body = &body[n - head.len()..];
            head = &[];
        }
    }
    // Flushed (TLS) with the rest of the batch.
    w.write_all(body).await
}

/// Maps a read error to the close code RFC 6455 asks for and closes.
pub async fn fail<S>(ws: WebSocketStream<S>, error: WsError) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = match &error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::MessageTooBig,
        WsError::Capacity(_) => CloseReason::FrameTooBig,
        WsError::Utf8(_) => CloseReason::InvalidUtf8,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            return Ending::Dropped;
        }
        WsError::Protocol(_) => CloseReason::ProtocolError,
        // The message being received does not fit in the memory budget.
        WsError::Io(e) if crate::budget::is_exceeded(e) => CloseReason::MemoryBudget,
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => {
            return Ending::Dropped;
        }
        _ => CloseReason::Internal,
    };
    let (code, reason) = reason.frame();
    tracing::debug!(%error, "closing WebSocket with {}", u16::from(code));
    if matches!(code, CloseCode::Size | CloseCode::Again) {
        // The rest of the oversized message is still on its way.
        close_and_linger(ws, code, reason).await
    } else {
        close(ws, code, reason).await
    }
}

/// Closes for one of wssd's own reasons (see [`CloseReason`]).
pub async fn close_for<S>(ws: WebSocketStream<S>, reason: CloseReason) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    close(ws, reason.frame().0, &reason.text()).await
}

/// Closes a session whose client sent faster than its rate: 1008 with the
/// limit in the reason, counted per route and limit.
pub async fn close_for_rate<S>(
    ws: WebSocketStream<S>,
    counters: &SessionMetrics,
    exceeded: Exceeded,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    counters.rate_limited(exceeded.unit.label());
    tracing::debug!("closing WebSocket: {exceeded}");
    close_for(ws, CloseReason::RateExceeded(exceeded)).await
}

/// Counts a close we send and builds its frame.
fn counted_close_frame(code: CloseCode, reason: &str) -> (u16, CloseFrame) {
    let numeric = u16::from(code);
    metrics::close_code(numeric);
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    (numeric, frame)
}

/// Most bytes discarded while lingering after an error close.
const LINGER_BUDGET: usize = 64 * 1024 * 1024;
/// Lingering stops once the peer has been silent this long.
const LINGER_QUIET: Duration = Duration::from_millis(250);

/// Sends a close frame after a read error, then discards whatever the peer
/// is still sending (the rest of an oversized message, its close reply)
/// until it goes quiet or closes, so the close frame is not lost to a TCP
/// reset (nginx's "lingering close").
pub async fn close_and_linger<S>(
    mut ws: WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (numeric, frame) = counted_close_frame(code, reason);
    let linger = async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        let raw = ws.get_mut();
        let _ = raw.flush().await;
        let mut buf = vec![0u8; 16 * 1024];
        let mut discarded = 0usize;
        while discarded < LINGER_BUDGET {
            match tokio::time::timeout(LINGER_QUIET, raw.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, linger).await;
    Ending::ClosedByUs(numeric, reason.to_string())
}

/// Sends a close frame and waits (bounded) for the peer's reply.
pub async fn close<S>(mut ws: WebSocketStream<S>, code: CloseCode, reason: &str) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (numeric, frame) = counted_close_frame(code, reason);
    let finish = async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        // Read until the peer answers the close (or gives up).
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, finish).await;
    Ending::ClosedByUs(numeric, reason.to_string())
}
