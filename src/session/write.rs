//! The session's writes, each under the send deadline: messages fed to the
//! codec's buffer and flushed in batches, large data messages written
//! straight from their (shared) payload buffer, and what a write that did
//! not finish means ([`Stop`]: the peer is gone, or it stopped reading).

use std::future::Future;

use futures_util::future::Either;
use futures_util::{FutureExt, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio::time::error::Elapsed;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::close::close_for;
use super::ending::Ending;
use super::link::Link;
use crate::budget::MessageBoundary;
use crate::config::limits::WRITE_BUFFER_SIZE;
use crate::keepalive::CloseReason;
use crate::metrics;

/// [`flush_by`] on the link's codec. The write paths are plain functions
/// returning their futures, built from the futures that do the work: an
/// `async fn` keeps a copy of its arguments beside the future it awaits,
/// and these futures sit in every session's task (idle memory per
/// connection).
pub(super) fn flush_link<S>(
    link: &mut Link<S>,
    deadline: Instant,
) -> impl Future<Output = Result<(), Stop>>
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
{
    match link.live() {
        Some(ws) => Either::Left(flush_by(ws, deadline)),
        None => Either::Right(std::future::ready(Err(Stop::Broken))),
    }
}

/// [`write_by`] on the link's codec.
pub(super) fn write_link<S>(
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
pub(super) enum Stop {
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
pub(super) async fn stopped<S>(ws: WebSocketStream<S>, stop: Stop) -> Ending
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
pub(super) fn flush_by<S>(
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
pub(super) fn write_by<S>(
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
