//! One global memory budget for message bytes: messages being received
//! (partial, still reassembling in a socket's codec) and messages queued for
//! fan-out (one charge per published message, however many subscribers hold
//! it). Charges never wait: when the budget is spent the connection that asked
//! is closed (1013) or the HTTP publish answers 503, and the refusal is
//! counted (`wssd_budget_exceeded_total{kind}`).
//!
//! - [`MemoryBudget`]: the counter; [`Charge`] releases its bytes on drop.
//! - [`BudgetedIo`]: wraps an upgraded connection under the WebSocket codec
//!   and charges the bytes of the message being received; it follows the
//!   client's frame headers and releases a message's bytes at the next read
//!   once the message is complete (the driver reads again only after it
//!   handled the message).
//! - [`charged_bytes`]: ties a charge to a payload's lifetime.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::limits::DEFAULT_MEMORY_BUDGET;

/// A bounded count of bytes, shared by every connection.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes held against a [`MemoryBudget`]; released when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: &'static MemoryBudget,
    bytes: usize,
}

/// The budget was spent: the charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server busy: memory budget exhausted (--memory-budget)")]
pub struct BudgetExceeded;

/// Which budget user was refused, for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message being received.
    Receive,
    /// A message published for fan-out.
    Queue,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub const fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The most bytes it admits.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Adds `n` bytes if they fit.
    fn try_add(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Charges `n` bytes, or refuses (counted) when they do not fit.
    pub fn try_charge(&'static self, n: usize, kind: Kind) -> Result<Charge, BudgetExceeded> {
        if self.try_add(n) {
            Ok(Charge {
                budget: self,
                bytes: n,
            })
        } else {
            refused(kind, self, n);
            Err(BudgetExceeded)
        }
    }

    /// An empty charge that can grow.
    pub fn empty(&'static self) -> Charge {
        Charge {
            budget: self,
            bytes: 0,
        }
    }
}

impl Charge {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `n` more bytes, or refuses (counted).
    pub fn try_grow(&mut self, n: usize, kind: Kind) -> Result<(), BudgetExceeded> {
        if self.budget.try_add(n) {
            self.bytes += n;
            Ok(())
        } else {
            refused(kind, self.budget, n);
            Err(BudgetExceeded)
        }
    }

    /// Gives back up to `n` bytes.
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.budget.release(n);
        self.bytes -= n;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

fn refused(kind: Kind, budget: &MemoryBudget, n: usize) {
    let label = match kind {
        Kind::Receive => "receive",
        Kind::Queue => "queue",
    };
    crate::metrics::budget_exceeded(label);
    tracing::debug!(
        kind = label,
        bytes = n,
        used = budget.used(),
        limit = budget.limit,
        "memory budget exhausted"
    );
}

static GLOBAL: OnceLock<MemoryBudget> = OnceLock::new();

/// Sets the process's budget (once, at startup; later calls are ignored).
pub fn install(limit: usize) {
    let _ = GLOBAL.set(MemoryBudget::new(limit));
    fixed_mmap_threshold();
}

/// Buffers above this size get their own mapping, returned to the system
/// when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// glibc raises its mmap threshold (up to 32 MiB) each time a large mapped
/// buffer is freed, after which message buffers grow inside the heap and
/// their memory stays with the process when they are freed: measured with
/// 1,000 connections churning 4 MiB partial messages, a 64 MiB budget then
/// cost about 170 MiB of RSS; with a fixed threshold, 70 MiB. Setting the
/// threshold once turns the adjustment off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only changes allocator parameters; it is called once
    // at startup with a valid parameter and value.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::debug!("could not set the allocator's mmap threshold");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}

/// The process's budget (the default size if [`install`] was not called).
pub fn global() -> &'static MemoryBudget {
    GLOBAL.get_or_init(|| MemoryBudget::new(DEFAULT_MEMORY_BUDGET))
}

/// `payload` with `charge` attached: the charge is released when the last
/// clone of the returned bytes is dropped (every subscriber wrote or dropped
/// it). No copy.
pub fn charged_bytes(payload: Bytes, charge: Charge) -> Bytes {
    Bytes::from_owner(Owned {
        payload,
        _charge: charge,
    })
}

struct Owned {
    payload: Bytes,
    _charge: Charge,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

/// Whether an I/O error is a refused receive charge.
pub fn is_exceeded(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|e| e.downcast_ref::<BudgetExceeded>().is_some())
}

/// Where the reader is in the client's frame stream.
#[derive(Debug, Clone, Copy)]
enum Frames {
    /// Reading a frame header; `have` bytes of it in `head`.
    Header { head: [u8; 14], have: usize },
    /// Reading a payload: `left` bytes to go; `ends` when the frame ends a
    /// data message.
    /// `ends`: the frame ends a data message; `item`: the codec hands it
    /// out as one item (a control frame, or a data message's final frame).
    Payload { left: u64, ends: bool, item: bool },
}

/// Length of a frame header once its first two bytes are known.
fn header_len(b1: u8) -> usize {
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + mask
        + match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

/// An upgraded connection whose received message bytes are charged to the
/// budget. Writes pass through.
pub struct BudgetedIo<S> {
    inner: S,
    budget: &'static MemoryBudget,
    charge: Option<Charge>,
    /// Bytes of complete messages, released at the next read.
    done: usize,
    frames: Frames,
    /// A data message has begun and its final frame has not (fragments).
    in_message: bool,
    /// A charge was refused: the connection is closing; reads pass through
    /// uncharged (the driver only discards what is left).
    exceeded: bool,
    /// Frames read whole that the codec turns into one item each (see
    /// [`MessageBoundary::items_read`]).
    items: u64,
    /// Bytes read (charged, followed) but put back for the next read
    /// ([`MessageBoundary::unread`]); `None` whenever empty.
    back: Option<Bytes>,
}

impl<S> BudgetedIo<S> {
    /// Wraps `inner`, charging the global budget.
    pub fn new(inner: S) -> BudgetedIo<S> {
        BudgetedIo::with_budget(inner, global())
    }

    pub fn with_budget(inner: S, budget: &'static MemoryBudget) -> BudgetedIo<S> {
        BudgetedIo {
            inner,
            budget,
            charge: None,
            done: 0,
            frames: Frames::Header {
                head: [0; 14],
                have: 0,
            },
            in_message: false,
            exceeded: false,
            items: 0,
            back: None,
        }
    }

    /// Bytes charged now for this connection.
    pub fn charged(&self) -> usize {
        self.charge.as_ref().map_or(0, Charge::bytes)
    }

    /// Follows the frames in `data`; returns how many of its bytes belong
    /// to messages that are complete by its end.
    fn track(&mut self, mut data: &[u8]) -> usize {
        let total = data.len();
        let mut complete_at = 0;
        while !data.is_empty() {
            match &mut self.frames {
                Frames::Header { head, have } => {
                    let need = if *have < 2 { 2 } else { header_len(head[1]) };
                    let take = (need - *have).min(data.len());
                    head[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have < 2 || *have < header_len(head[1]) {
                        continue;
                    }
                    let len = match head[1] & 0x7F {
                        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
                        127 => {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&head[2..10]);
                            u64::from_be_bytes(b)
                        }
                        n => u64::from(n),
                    };
                    let fin = head[0] & 0x80 != 0;
                    let data_frame = head[0] & 0x08 == 0;
                    if data_frame {
                        self.in_message = !fin;
                    }
                    self.frames = Frames::Payload {
                        left: len,
                        ends: fin && data_frame,
                        item: fin || !data_frame,
                    };
                }
                Frames::Payload { left, .. } => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= take as u64;
                    data = &data[take..];
                }
            }
            if let Frames::Payload {
                left: 0,
                ends,
                item,
            } = self.frames
            {
                if ends {
                    complete_at = total - data.len();
                }
                if item {
                    self.items += 1;
                }
                self.frames = Frames::Header {
                    head: [0; 14],
                    have: 0,
                };
            }
        }
        complete_at
    }
}

/// Whether the bytes read from a connection so far end at a message
/// boundary: no frame or fragmented data message is partly read. A codec
/// that has handed out every frame read holds nothing then, and can be
/// dropped and rebuilt without losing state (`session::link`).
pub trait MessageBoundary {
    fn at_message_boundary(&self) -> bool;

    /// How many frames read whole so far the codec hands out as one item
    /// each: control frames and the final frames of data messages (a
    /// fragmented message is one item, at its last frame). A codec that
    /// has handed out this many items, over a connection at a message
    /// boundary, has nothing more to hand out before it reads again.
    fn items_read(&self) -> u64;

    /// Puts back bytes just read from this connection: the next reads
    /// return them first (they stay charged and followed as read).
    fn unread(&mut self, bytes: &[u8]);
}

impl<S> MessageBoundary for BudgetedIo<S> {
    fn at_message_boundary(&self) -> bool {
        !self.exceeded && !self.in_message && matches!(self.frames, Frames::Header { have: 0, .. })
    }

    fn items_read(&self) -> u64 {
        self.items
    }

    fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.back = Some(match self.back.take() {
            None => Bytes::copy_from_slice(bytes),
            Some(rest) => [bytes, &rest[..]].concat().into(),
        });
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BudgetedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(back) = this.back.as_mut() {
            // Already charged and followed; the driver has not handled
            // them yet, so nothing is released either.
            let n = back.len().min(buf.remaining());
            buf.put_slice(&back.split_to(n));
            if back.is_empty() {
                this.back = None;
            }
            return Poll::Ready(Ok(()));
        }
        if this.exceeded {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // The driver reads again: the messages completed before were handled.
        if this.done > 0 {
            if let Some(c) = this.charge.as_mut() {
                c.shrink(this.done);
            }
            this.done = 0;
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n == 0 {
            return result;
        }
        let charge = this.charge.get_or_insert_with(|| this.budget.empty());
        if charge.try_grow(n, Kind::Receive).is_err() {
            // The partial message stays in the codec until the connection
            // is dropped: so does its charge.
            this.exceeded = true;
            return Poll::Ready(Err(io::Error::other(BudgetExceeded)));
        }
        let filled = &buf.filled()[before..];
        // Everything up to the end of the last complete message stays
        // charged until the next read.
        let complete = this.track(filled);
        if complete > 0 {
            this.done = this.charged() - (n - complete);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BudgetedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn leak(limit: usize) -> &'static MemoryBudget {
        Box::leak(Box::new(MemoryBudget::new(limit)))
    }

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn charges_release_on_drop_and_refuse_past_the_limit() {
        let b = leak(100);
        let c = b.try_charge(60, Kind::Queue).unwrap();
        assert!(b.try_charge(50, Kind::Queue).is_err());
        let shared = charged_bytes(Bytes::from_static(b"x"), c);
        let copy = shared.clone();
        drop(shared);
        assert_eq!(b.used(), 60);
        drop(copy);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn partial_messages_are_charged_until_complete_and_handled() {
        let b = leak(1 << 20);
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut io = BudgetedIo::with_budget(server, b);
        let mut client = client;
        // A fragmented message (text, non-FIN + ping + FIN continuation) and
        // the start of a second one.
        let mut wire = frame(0x01, &[b'a'; 300]);
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x80, &[b'b'; 70_000]));
        let first = wire.len();
        let second = frame(0x82, &[7; 1000]);
        wire.extend_from_slice(&second[..500]);
        client.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(b.used(), wire.len());
        // The next read releases the complete message, not the partial one.
        client.write_all(&second[500..]).await.unwrap();
        let mut rest = vec![0u8; second.len() - 500];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(b.used(), wire.len() - first + rest.len());
        drop(client);
        let mut end = [0u8; 1];
        assert_eq!(io.read(&mut end).await.unwrap(), 0);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn items_count_control_frames_and_whole_messages() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut io = BudgetedIo::with_budget(server, leak(1 << 20));
        // A fragmented message around a ping, an empty pong, a whole
        // binary message cut in two reads.
        let mut wire = frame(0x01, b"frag");
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x00, b"men"));
        wire.extend(frame(0x80, b"t"));
        wire.extend(frame(0x8A, b""));
        let whole = frame(0x82, &[3; 200]);
        wire.extend_from_slice(&whole[..100]);
        client.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        io.read_exact(&mut got).await.unwrap();
        // The ping, the message (at its final frame), the pong.
        assert_eq!(io.items_read(), 3);
        assert!(!io.at_message_boundary());
        client.write_all(&whole[100..]).await.unwrap();
        let mut rest = vec![0u8; whole.len() - 100];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(io.items_read(), 4);
        assert!(io.at_message_boundary());
    }

    #[tokio::test]
    async fn bytes_put_back_come_first_and_are_charged_once() {
        let b = leak(1 << 20);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut io = BudgetedIo::with_budget(server, b);
        let one = frame(0x81, b"one");
        client.write_all(&one).await.unwrap();
        let mut head = [0u8; 64];
        let n = io.read(&mut head).await.unwrap();
        assert_eq!(n, one.len());
        io.unread(&head[..n]);
        assert_eq!((io.items_read(), b.used()), (1, one.len()));
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.unwrap();
        let mut rest = vec![0u8; one.len() - 5];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!([&got[..], &rest[..]].concat(), one);
        assert!(io.back.is_none(), "emptied: nothing held");
        // Still charged (not handled yet), released by the next read.
        assert_eq!(b.used(), one.len());
        client.write_all(&frame(0x81, b"two")).await.unwrap();
        let n = io.read(&mut head).await.unwrap();
        assert_eq!(b.used(), n);
        assert_eq!(io.items_read(), 2);
    }

    #[tokio::test]
    async fn a_read_past_the_budget_fails() {
        let b = leak(10_000);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut io = BudgetedIo::with_budget(server, b);
        let wire = frame(0x82, &[1; 50_000]);
        client.write_all(&wire[..20_000]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut result = Ok(0);
        for _ in 0..10 {
            result = io.read(&mut buf).await;
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err();
        assert!(is_exceeded(&err));
        // What was read stays charged until the connection is dropped;
        // later reads pass through (the closing driver discards them).
        let held = b.used();
        assert!(held > 0 && held <= 10_000);
        assert!(io.read(&mut buf).await.is_ok());
        assert_eq!(b.used(), held);
        drop(io);
        assert_eq!(b.used(), 0);
    }
}
