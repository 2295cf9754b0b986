//! The WebSocket relay of `proxy` routes, frame by frame: data frames are
//! streamed through as they arrive (a large message is never buffered whole;
//! client masks are kept, the upstream accepts any), while each leg gets its
//! own control traffic: pings are answered per leg, keepalive pings go to
//! both legs, close frames (code and reason) are relayed, 1014 goes to the
//! client when the upstream vanishes. Message size limits are checked from
//! frame headers before any byte of an oversized frame is forwarded, and so
//! are the client's rates (`crate::rates`: a message is charged at its
//! first frame, its bytes frame by frame; past a rate the client gets 1008
//! and the upstream 1001). With `--idle-timeout` (off by default), that
//! long without a data frame either way closes both legs with 1000.
//!
//! Buffers are fixed (one 16 KiB buffer per direction); a slow reader on
//! one side slows the reads on the other (backpressure), nothing queues.
//!
//! Each leg has its own [`Keepalive`]: a leg that sends no pong within a
//! ping interval of wssd's ping closes both legs (1001 "ping timeout").
//!
//! Both sockets run under the send timeout below TLS
//! (`crate::server::stall`): a write that makes no progress for that long
//! fails and the socket is reset. On top of that every write here (and
//! every wait for a side's writer) is bounded by twice the send timeout, so
//! a peer that drips a byte at a time is dropped too and the ping-timeout
//! and shutdown closes never wait longer than that for a writer a stuck
//! direction holds. A client that stops reading ends the relay (the
//! upstream gets 1001), an upstream that stops reading too (the client gets
//! 1014). A side whose write failed is dead: nothing more (no close frame
//! in the middle of a frame) is written to it.

use std::future::Future;
use std::pin::Pin;

use crate::stop::StopSignal;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::flag::{Flag, Slot, Waiter};

use crate::config::SessionLimits;
use crate::config::limits::CLOSE_TIMEOUT;
use crate::keepalive::{Action, CloseReason};
use crate::metrics::{self, SessionMetrics};
use crate::rates::Meter;
use crate::session::Ending;

use super::frame::{
    MAX_HEADER, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, parse_header,
    unmask,
};
use super::side::{Side, put_locked};

/// Bytes read at once from either side (the buffer grows only while a
/// frame header or control frame is incomplete).
const READ_SIZE: usize = 4 * 1024;

/// Bytes a pump waiting for a new frame reads into its own state before it
/// takes a buffer: an idle connection holds no read buffer on either leg,
/// and a burst of small frames up to this size still comes in one read.
const IDLE_READ: usize = 1024;

/// Complete frames collected before one write (one TLS record, one syscall).
const BATCH: usize = 16 * 1024;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Client to upstream: frames are masked; answers to pings go back
    /// unmasked.
    Up,
    /// Upstream to client: frames are unmasked; answers go back masked.
    Down,
}

/// What a branch of the relay ended with.
enum Branch {
    Up(PumpEnd),
    Down(PumpEnd),
    Control,
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpEnd {
    /// The source closed its connection (after a close frame or not).
    Eof { close_seen: Option<u16> },
    /// The source broke the protocol or a limit; closes were sent (this
    /// code to the source).
    Failed(u16),
    /// The destination could not be written (in time).
    WriteFailed,
    /// The source could not be answered (a pong, in time).
    BackFailed,
    /// The relay was told to stop.
    Stopped,
}

/// Appends to `buf` what `src` has ready now, without waiting, up to
/// `remaining` bytes of the frame being streamed and at most
/// `4 * READ_SIZE` per call (the buffer's bound); returns the bytes taken.
/// An error or the end of the stream is left for the next awaited read.
fn read_ready<R: AsyncRead + Unpin>(src: &mut R, buf: &mut Vec<u8>, remaining: u64) -> usize {
    use futures_util::FutureExt;
    let room = usize::try_from(remaining)
        .unwrap_or(usize::MAX)
        .min(4 * READ_SIZE);
    let cap = buf.len() + room;
    let mut taken = 0;
    while buf.len() < cap {
        buf.reserve(cap - buf.len());
        let want = (cap - buf.len()) as u64;
        let mut limited = (&mut *src).take(want);
        match limited.read_buf(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => taken += n,
            _ => break,
        }
    }
    taken
}

/// Reads from `src`, streams data frames to `dst` and answers control
/// frames on `back` (the writer towards `src`); `meter` holds the rates
/// `src` must keep (the client's; none for the upstream).
#[allow(clippy::too_many_arguments)]
async fn pump<R, D, B>(
    mut src: R,
    mut buffered: Vec<u8>,
    dst: &Side<D>,
    back: &Side<B>,
    dir: Dir,
    max_message: usize,
    meter: &Meter,
    counters: &SessionMetrics,
    stop: Waiter<'_>,
    closing: &Flag,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    D: AsyncWrite + Unpin,
    B: AsyncWrite + Unpin,
{
    let mut buf = std::mem::take(&mut buffered);
    // Complete frames waiting to be written together.
    let mut out: Vec<u8> = Vec::new();
    let mut message_len: u64 = 0;
    let mut in_message = false;
    let mut close_seen = None;
    // Reads more bytes into `buf`; false at EOF or on stop.
    macro_rules! fill {
        () => {{
            if !out.is_empty() {
                // Never sit on written-but-unsent frames while waiting.
                if !dst.put(&out).await {
                    return PumpEnd::WriteFailed;
                }
                out.clear();
            }
            if buf.is_empty() {
                // Waiting for the next frame (perhaps for hours): no heap
                // buffer is held meanwhile; a small read on the pump's own
                // state takes what comes first.
                buf = Vec::new();
                out = Vec::new();
                let mut head = [0u8; IDLE_READ];
                let n = tokio::select! {
                    _ = stop.raised() => return PumpEnd::Stopped,
                    n = src.read(&mut head) => n,
                };
                match n {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        buf.extend_from_slice(&head[..n]);
                        true
                    }
                }
            } else {
                buf.reserve(READ_SIZE);
                let n = tokio::select! {
                    _ = stop.raised() => return PumpEnd::Stopped,
                    n = src.read_buf(&mut buf) => n,
                };
                match n {
                    Ok(0) | Err(_) => false,
                    Ok(_) => true,
                }
            }
        }};
    }
    loop {
        if close_seen.is_some() {
            // Nothing may follow a close frame: discard until the peer hangs up.
            buf.clear();
            while fill!() {
                buf.clear();
            }
            return PumpEnd::Eof { close_seen };
        }
        // A whole header.
        let header = loop {
            if let Some(h) = parse_header(&buf) {
                break h;
            }
            if buf.len() >= MAX_HEADER || !fill!() {
                return PumpEnd::Eof { close_seen };
            }
        };
        let is_control = header.opcode & 0x08 != 0;
        // Fail fast, as an endpoint would: nothing after a broken frame is
        // answered or forwarded.
        let violation = if header.rsv != 0 {
            Some("reserved bits set (no extension was negotiated)")
        } else if !matches!(
            header.opcode,
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            Some("reserved opcode")
        } else if is_control && (!header.fin || header.len > 125) {
            Some("fragmented or oversized control frame")
        } else if header.opcode == OP_CONTINUATION && !in_message {
            Some("continuation frame outside a message")
        } else if matches!(header.opcode, OP_TEXT | OP_BINARY) && in_message {
            Some("new message inside a fragmented message")
        } else {
            None
        };
        if let Some(why) = violation {
            tracing::debug!(?dir, "relay: protocol error from the peer: {why}");
            back.send_close(CloseReason::ProtocolError).await;
            dst.send_close(CloseReason::PeerProtocolError).await;
            closing.raise();
            return PumpEnd::Failed(CloseReason::ProtocolError.code());
        }
        if is_control {
            let total = header.size + header.len as usize;
            while buf.len() < total {
                if !fill!() {
                    return PumpEnd::Eof { close_seen };
                }
            }
            if !out.is_empty() {
                if !dst.put(&out).await {
                    return PumpEnd::WriteFailed;
                }
                out.clear();
            }
            let frame: Vec<u8> = buf.drain(..total).collect();
            let mut payload = frame[header.size..].to_vec();
            unmask(&mut payload, header.mask);
            // A ping costs an answer: it counts as a message.
            if header.opcode == OP_PING
                && let Err(exceeded) = meter.message(payload.len())
            {
                let end = rate_exceeded(exceeded, dst, back, counters, closing).await;
                drain_until_close(&mut src, buf, stop).await;
                return end;
            }
            match header.opcode {
                OP_PING if !back.send_control(OP_PONG, &payload).await => {
                    return PumpEnd::BackFailed;
                }
                OP_PING => {}
                // Pongs end here: each leg answers its own pings.
                OP_PONG => back.pong(),
                OP_CLOSE => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    metrics::close_code(code);
                    close_seen = Some(code);
                    // Relay the close (code and reason) as it came, unless
                    // wssd already closed that side itself.
                    if dst
                        .close_sent
                        .swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        closing.raise();
                        continue;
                    }
                    if !dst.put(&frame).await {
                        return PumpEnd::WriteFailed;
                    }
                    closing.raise();
                }
                _ => {}
            }
            continue;
        }

        // A data frame: check the message size from the header, then stream.
        if matches!(header.opcode, OP_TEXT | OP_BINARY) {
            message_len = 0;
            in_message = true;
        }
        message_len = message_len.saturating_add(header.len);
        if message_len > max_message as u64 {
            back.send_close(CloseReason::MessageTooBig).await;
            dst.send_close(CloseReason::PeerMessageTooBig).await;
            closing.raise();
            return PumpEnd::Failed(CloseReason::MessageTooBig.code());
        }
        let mut charge = Ok(());
        if header.opcode != OP_CONTINUATION {
            charge = meter.start_message();
        }
        if let Err(exceeded) = charge.and_then(|()| meter.bytes(header.len)) {
            // What was admitted before goes out first.
            if !out.is_empty() && !dst.put(&out).await {
                return PumpEnd::WriteFailed;
            }
            let end = rate_exceeded(exceeded, dst, back, counters, closing).await;
            drain_until_close(&mut src, buf, stop).await;
            return end;
        }
        dst.activity();
        back.activity();
        let frame_size = header.size as u64 + header.len;
        if frame_size <= buf.len() as u64 {
            // The whole frame is here: batch it with the frames that follow.
            out.extend_from_slice(&buf[..frame_size as usize]);
            buf.drain(..frame_size as usize);
            let next_complete =
                parse_header(&buf).is_some_and(|h| h.size as u64 + h.len <= buf.len() as u64);
            if !next_complete || out.len() >= BATCH {
                if !dst.put(&out).await {
                    return PumpEnd::WriteFailed;
                }
                out.clear();
                if out.capacity() > 4 * BATCH {
                    out = Vec::new();
                }
            }
        } else {
            // Stream the frame through as it arrives, holding the writer so
            // nothing is injected inside it.
            let limit = dst.limit;
            let Some(mut w) = dst.lock().await else {
                return PumpEnd::WriteFailed;
            };
            if dst.is_dead() {
                return PumpEnd::WriteFailed;
            }
            if !out.is_empty() {
                if !put_locked(&mut *w, &out, limit).await {
                    dst.broken();
                    return PumpEnd::WriteFailed;
                }
                out.clear();
            }
            // What of the frame is already readable goes out with what
            // came first: one write per frame when it is all there.
            let mut remaining = frame_size - buf.len() as u64;
            remaining -= read_ready(&mut src, &mut buf, remaining) as u64;
            if !put_locked(&mut *w, &buf, limit).await {
                dst.broken();
                return PumpEnd::WriteFailed;
            }
            buf.clear();
            while remaining > 0 {
                buf.reserve((remaining as usize).min(4 * READ_SIZE));
                let mut limited = (&mut src).take(remaining);
                let n = tokio::select! {
                    _ = stop.raised() => return PumpEnd::Stopped,
                    n = limited.read_buf(&mut buf) => n,
                };
                let n = match n {
                    Ok(0) | Err(_) => return PumpEnd::Eof { close_seen },
                    Ok(n) => n,
                };
                remaining -= n as u64;
                remaining -= read_ready(&mut src, &mut buf, remaining) as u64;
                if !put_locked(&mut *w, &buf, limit).await {
                    dst.broken();
                    return PumpEnd::WriteFailed;
                }
                buf.clear();
            }
            if !tokio::time::timeout(limit, w.flush())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                dst.broken();
                return PumpEnd::WriteFailed;
            }
            drop(w);
            if buf.capacity() > 4 * READ_SIZE {
                buf = Vec::new();
            }
        }
        if header.fin {
            in_message = false;
            match dir {
                Dir::Up => counters.received(message_len),
                Dir::Down => counters.sent(message_len),
            }
        }
    }
}

/// The source sent faster than its rate: it gets 1008 naming the limit, the
/// destination 1001; counted per route and limit.
async fn rate_exceeded<D, B>(
    exceeded: crate::config::rate::Exceeded,
    dst: &Side<D>,
    back: &Side<B>,
    counters: &SessionMetrics,
    closing: &Flag,
) -> PumpEnd
where
    D: AsyncWrite + Unpin,
    B: AsyncWrite + Unpin,
{
    counters.rate_limited(exceeded.unit.label());
    tracing::debug!("relay: closing the client: {exceeded}");
    let reason = CloseReason::RateExceeded(exceeded);
    back.send_close(reason).await;
    dst.send_close(CloseReason::PeerRateExceeded).await;
    closing.raise();
    PumpEnd::Failed(reason.code())
}

/// After the source was closed for its rate: reads and drops its frames
/// until its close frame (or EOF, or the relay stops: at most the close
/// timeout), so the close frame sent to it is not lost to the TCP reset that
/// unread bytes would cause.
async fn drain_until_close<R: AsyncRead + Unpin>(src: &mut R, mut buf: Vec<u8>, stop: Waiter<'_>) {
    // Bytes of the current (dropped) frame still to come.
    let mut skip: u64 = 0;
    loop {
        loop {
            if skip > 0 {
                let n = skip.min(buf.len() as u64) as usize;
                buf.drain(..n);
                skip -= n as u64;
                if skip > 0 {
                    break;
                }
            }
            match parse_header(&buf) {
                Some(h) if h.opcode == OP_CLOSE => return,
                Some(h) => skip = h.size as u64 + h.len,
                None => break,
            }
        }
        buf.reserve(READ_SIZE);
        let read = tokio::select! {
            _ = stop.raised() => return,
            n = src.read_buf(&mut buf) => n,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Relays between an upgraded client connection and an upstream WebSocket
/// connection (handshake done; `upstream_buffered` holds bytes read past
/// the upstream's 101 response).
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    upstream_buffered: Vec<u8>,
    limits: SessionLimits,
    stop_signal: StopSignal,
    counters: &SessionMetrics,
) -> Ending
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    U: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (c_read, c_write): (ReadHalf<C>, WriteHalf<C>) = tokio::io::split(client);
    let (u_read, u_write): (ReadHalf<U>, WriteHalf<U>) = tokio::io::split(upstream);
    let client_side = Side::new(c_write, false, &limits);
    let upstream_side = Side::new(u_write, true, &limits);
    let stop = Flag::default();
    let closing = Flag::default();
    let max = limits.max_message_size;
    // The client's rates; the upstream is the operator's and has none.
    let client_rates = Meter::new(&limits);
    let no_rates = Meter::unlimited();

    let up = async {
        let end = pump(
            c_read,
            Vec::new(),
            &upstream_side,
            &client_side,
            Dir::Up,
            max,
            &client_rates,
            counters,
            stop.waiter(Slot::Up),
            &closing,
        )
        .await;
        match end {
            PumpEnd::Eof { close_seen: None } => {
                // The client vanished without a close frame.
                upstream_side.send_close(CloseReason::ClientGone).await;
            }
            PumpEnd::BackFailed => {
                // The client stopped reading (or its connection broke).
                upstream_side.send_close(CloseReason::ClientGone).await;
                closing.raise();
            }
            PumpEnd::WriteFailed => {
                // The upstream stopped reading (or its connection broke).
                client_side
                    .send_close(CloseReason::UpstreamNotReading)
                    .await;
                closing.raise();
            }
            _ => {}
        }
        upstream_side.shutdown().await;
        end
    };
    let down = async {
        let end = pump(
            u_read,
            upstream_buffered,
            &client_side,
            &upstream_side,
            Dir::Down,
            max,
            &no_rates,
            counters,
            stop.waiter(Slot::Down),
            &closing,
        )
        .await;
        match end {
            PumpEnd::Eof { close_seen: None } | PumpEnd::BackFailed => {
                // The upstream vanished without a closing handshake.
                client_side.send_close(CloseReason::UpstreamLost).await;
                closing.raise();
            }
            PumpEnd::WriteFailed => {
                // The client stopped reading (or its connection broke).
                upstream_side.send_close(CloseReason::ClientGone).await;
                closing.raise();
            }
            _ => {}
        }
        client_side.shutdown().await;
        end
    };
    let control = async {
        let (stopped, closed) = (stop.waiter(Slot::Control), closing.waiter(Slot::Control));
        loop {
            let due = client_side
                .next_deadline()
                .min(upstream_side.next_deadline());
            tokio::select! {
                _ = stopped.raised() => return,
                _ = closed.raised() => {
                    // Bound the closing handshake.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stopped.raised()).await;
                    stop.raise();
                    return;
                }
                _ = stop_signal.token().cancelled() => {
                    let reason = stop_signal.reason();
                    tokio::join!(
                        client_side.send_close(reason),
                        upstream_side.send_close(reason),
                    );
                    closing.raise();
                }
                _ = tokio::time::sleep_until(due) => {
                    let (to_client, to_upstream) = (client_side.fire(), upstream_side.fire());
                    let close = [to_client, to_upstream].into_iter().flatten().find_map(|a| match a {
                        Action::Close(reason) => Some(reason),
                        Action::SendPing => None,
                    });
                    if let Some(reason) = close {
                        tokio::join!(
                            client_side.send_close(reason),
                            upstream_side.send_close(reason),
                        );
                        closing.raise();
                        continue;
                    }
                    if to_client == Some(Action::SendPing) {
                        client_side.send_control(OP_PING, b"wssd").await;
                    }
                    if to_upstream == Some(Action::SendPing) {
                        upstream_side.send_control(OP_PING, b"wssd").await;
                    }
                }
            }
        }
    };
    // Each branch is polled only when it was woken (a joined future would
    // poll all three, each read and each wait, at every wake-up of either
    // socket); the control loop ends when both pumps have.
    let mut branches: FuturesUnordered<Pin<Box<dyn Future<Output = Branch> + Send + '_>>> =
        FuturesUnordered::new();
    branches.push(Box::pin(async { Branch::Up(up.await) }));
    branches.push(Box::pin(async { Branch::Down(down.await) }));
    branches.push(Box::pin(async {
        control.await;
        Branch::Control
    }));
    let (mut up_end, mut down_end) = (None, None);
    while let Some(branch) = branches.next().await {
        match branch {
            Branch::Up(end) => up_end = Some(end),
            Branch::Down(end) => down_end = Some(end),
            Branch::Control => {}
        }
        if up_end.is_some() && down_end.is_some() {
            stop.raise();
        }
    }
    let (Some(up_end), Some(down_end)) = (up_end, down_end) else {
        // Unreachable: the loop runs until every branch has ended.
        return Ending::Dropped;
    };
    match (up_end, down_end) {
        (
            PumpEnd::Eof {
                close_seen: Some(c),
            },
            _,
        ) => Ending::ClosedByPeer(c, String::new()),
        (
            _,
            PumpEnd::Eof {
                close_seen: Some(c),
            },
        ) => Ending::ClosedByUpstream(c),
        (PumpEnd::Failed(code), _) | (_, PumpEnd::Failed(code)) => {
            Ending::ClosedByUs(code, String::new())
        }
        _ => Ending::Dropped,
    }
}
