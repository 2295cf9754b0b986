//! How a session ends from wssd's side: a read error mapped to the close
//! code RFC 6455 asks for, wssd's own reasons (`keepalive::CloseReason`),
//! the rate limits' 1008, and the closing handshake itself, bounded by the
//! close timeout (lingering after an oversized message so the close frame
//! is not lost to a reset). Every close sent is counted.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::ending::Ending;
use crate::config::limits::CLOSE_TIMEOUT;
use crate::config::rate::Exceeded;
use crate::keepalive::CloseReason;
use crate::metrics::{self, SessionMetrics};

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
