//! A session's connection and its WebSocket codec, the codec's read
//! buffer held only while the client sends.
//!
//! tungstenite's codec keeps a read buffer (`READ_BUFFER_SIZE`) from the
//! moment it is built, and keeps it, whether the connection is busy or has
//! been silent for hours. A [`Link`] starts without a codec ("parked": the
//! connection alone, no buffer) and waits for the client with a read into
//! a small buffer on the task's own state; the codec is built around what
//! that read brought. Writing to a parked connection (a ping, a fan-out
//! delivery) builds a codec without a read buffer, and a link holding one
//! still waits with the small read. A link that received is parked again
//! once the session allows it ([`Link::allow_park`], at its keepalive
//! tick: a connection quiet at a ping drops its codec, so an idle one
//! holds no buffer after at most one ping interval) and it next waits
//! with nothing half read. Busy connections keep their codec: rebuilding
//! it per message costs 10-30 % more instructions per echoed message.
//!
//! A busy codec that handed out every item read so far (counted against
//! [`MessageBoundary::items_read`]) is not asked for more by the batch
//! look-ahead, and, after a small message, is waited for with the same
//! small read past it, what arrives put back under it
//! ([`MessageBoundary::unread`]): asking it costs a zero-filled 4 KiB read
//! attempt and a call down every layer, for nothing while the client waits
//! for its reply.
//!
//! Dropping the codec, or reading past it, loses nothing only when it
//! holds nothing: no buffered bytes, no fragmented message, no unsent
//! output. The first two are known from the connection under it
//! ([`MessageBoundary`]: every byte read so far belongs to complete frames
//! outside any data message) and from the codec's last read having found
//! nothing (it reads only when it has no complete frame left, so it holds
//! none). The session flushes after everything it writes (and after every
//! ping it answers) before it waits again, so nothing is left to send.

use std::future::{Future, poll_fn};
use std::ops::ControlFlow;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};

use futures_util::task::AtomicWaker;

use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::budget::MessageBoundary;
use crate::config::limits::{READ_BUFFER_SIZE, WRITE_BUFFER_SIZE};

/// The most bytes a parked connection reads before its codec is rebuilt:
/// a small message (frame header included) arrives whole, so rebuilding
/// costs no extra read.
const PARKED_READ: usize = 256;

/// The codec settings for messages up to `max_message_size`
/// (`session::websocket_config`): small eager buffers, explicit bounds.
pub fn codec_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(WRITE_BUFFER_SIZE)
        // A bound, not an allocation: one outgoing message plus slack.
        .max_write_buffer_size(max_message_size.saturating_mul(2).max(64 * 1024))
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// What a wait for the next message ends with (`Link::next`).
type Next = Option<Result<Message, WsError>>;

/// Whether a message like this one (its frame header included) arrives
/// whole in a small read: a client sending such messages is waited for
/// with one.
fn fits_small_read(message: &Message) -> bool {
    message.len() + 8 <= PARKED_READ
}

/// A server-side WebSocket connection whose codec exists only when needed.
pub struct Link<S> {
    state: State<S>,
    /// The codec has a read buffer (it was built around received bytes).
    reads: bool,
    /// The codec's last read found nothing: it holds no complete frame.
    starved: bool,
    /// The codec may be dropped at the next wait (see [`Link::allow_park`]).
    may_park: bool,
    /// The codec's message size limit (its settings: [`codec_config`]).
    max_message_size: usize,
    /// Items (messages, control frames) the codecs of this link handed out,
    /// against [`MessageBoundary::items_read`].
    handed: u64,
    /// The last item handed out fits in a small read.
    small: bool,
    /// Made at the first wait (see [`ReadGate`]).
    gate: Option<(Arc<ReadGate>, Waker)>,
}

/// Lets a wait skip the read side when nothing happened to it. The session
/// waits for the client and for its outbound queue at once and wakes for
/// either; without the gate, every wake for an outbound message (one per
/// fan-out delivery) polled the whole read stack again down to the
/// socket's readiness, about 1,300 instructions to learn nothing
/// (bench/README.md, fan-out profile). The read side is polled with the
/// gate's own waker, so the gate knows when it has news.
struct ReadGate {
    /// Poll the read side at the next wait: its waker fired, the last poll
    /// returned something, or something else used the codec's read side.
    due: AtomicBool,
    /// The session's task.
    task: AtomicWaker,
}

impl Wake for ReadGate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        self.task.wake();
    }
}

enum State<S> {
    /// The codec, around the connection. Boxed: the enum lives in every
    /// session's task, and inline the codec's state (its settings, frame
    /// and message decoders) would stay there while the connection is
    /// parked too.
    Live(Box<WebSocketStream<S>>),
    /// The connection alone: nothing is half read or unsent.
    Parked(S),
    /// Lost while the codec was being built (never expected).
    Gone,
}

impl<S> Link<S>
where
    S: AsyncRead + AsyncWrite + MessageBoundary + Unpin,
{
    /// A link over a freshly upgraded connection (parked: nothing read).
    pub fn new(io: S, max_message_size: usize) -> Self {
        Link {
            state: State::Parked(io),
            reads: false,
            starved: true,
            may_park: true,
            max_message_size,
            handed: 0,
            small: true,
            gate: None,
        }
    }

    /// Whether the codec is dropped (the connection holds no buffer).
    pub fn is_parked(&self) -> bool {
        matches!(self.state, State::Parked(_))
    }

    /// Whether the link holds a codec with a read buffer.
    pub fn holds_read_buffer(&self) -> bool {
        matches!(self.state, State::Live(_)) && self.reads
    }

    /// Lets the next wait drop the codec if it holds nothing.
    pub fn allow_park(&mut self) {
        self.may_park = true;
        self.read_due();
    }

    /// Makes the next wait poll the read side.
    fn read_due(&self) {
        if let Some((gate, _)) = &self.gate {
            gate.due.store(true, Ordering::Release);
        }
    }

    /// The next message, as `WebSocketStream::next`: `None` once the
    /// connection has ended. Cancel-safe. Polls the read side only when it
    /// may have news ([`ReadGate`]).
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        let (gate, waker) = self
            .gate
            .get_or_insert_with(|| {
                let gate = Arc::new(ReadGate {
                    due: AtomicBool::new(true),
                    task: AtomicWaker::new(),
                });
                (gate.clone(), Waker::from(gate))
            })
            .clone();
        let mut read = pin!(self.read_next());
        poll_fn(|cx| {
            gate.task.register(cx.waker());
            if !gate.due.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
            let polled = read.as_mut().poll(&mut Context::from_waker(&waker));
            if polled.is_ready() {
                gate.due.store(true, Ordering::Release);
            }
            polled
        })
        .await
    }

    /// [`Link::next`] without the gate.
    async fn read_next(&mut self) -> Option<Result<Message, WsError>> {
        if self.may_park {
            self.park_if_idle();
        }
        if self.waits_small()
            && let ControlFlow::Break(ended) = poll_fn(|cx| self.poll_small_read(cx)).await
        {
            return ended;
        }
        if self.small && self.drained() {
            // The codec holds nothing: wait with a small read past it and
            // put what arrives back for it, instead of asking it (a
            // zero-filled 4 KiB read buffer and a call down every layer
            // that finds nothing, then the same again once woken).
            // It holds nothing (the connection says so): it may be parked
            // at a keepalive tick while this wait goes on.
            self.starved = true;
            if let ControlFlow::Break(ended) = poll_fn(|cx| self.poll_read_past(cx)).await {
                return ended;
            }
        }
        let State::Live(ws) = &mut self.state else {
            return None;
        };
        let starved = &mut self.starved;
        let handed = &mut self.handed;
        let small = &mut self.small;
        poll_fn(|cx| {
            let polled = ws.poll_next_unpin(cx);
            *starved = polled.is_pending();
            if let std::task::Poll::Ready(Some(Ok(message))) = &polled {
                *handed += 1;
                *small = fits_small_read(message);
            }
            polled
        })
        .await
    }

    /// A small read while the link waits small ([`Link::waits_small`]); a
    /// codec with a read buffer is built around what it brings. `Break`:
    /// the wait's end (the connection ended or failed). The buffer is on
    /// the stack of this poll, not in the session's task: a pending read
    /// leaves nothing in it (`AsyncRead`), so every idle connection would
    /// otherwise keep 256 bytes for nothing.
    fn poll_small_read(&mut self, cx: &mut Context<'_>) -> Poll<ControlFlow<Next>> {
        let mut head = [0u8; PARKED_READ];
        let mut buf = ReadBuf::new(&mut head);
        let polled = match &mut self.state {
            State::Parked(io) => Pin::new(io).poll_read(cx, &mut buf),
            State::Live(ws) => Pin::new(ws.get_mut()).poll_read(cx, &mut buf),
            State::Gone => return Poll::Ready(ControlFlow::Break(None)),
        };
        Poll::Ready(match ready!(polled) {
            Ok(()) if buf.filled().is_empty() => ControlFlow::Break(None),
            Ok(()) => {
                self.rebuild(buf.filled());
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.unpark();
                ControlFlow::Break(Some(Err(WsError::Io(e))))
            }
        })
    }

    /// A small read past a codec that holds nothing, what it brings put
    /// back under the codec. `Break`: the wait's end. The buffer is on the
    /// stack of this poll (see [`Link::poll_small_read`]).
    fn poll_read_past(&mut self, cx: &mut Context<'_>) -> Poll<ControlFlow<Next>> {
        let State::Live(ws) = &mut self.state else {
            return Poll::Ready(ControlFlow::Break(None));
        };
        let mut head = [0u8; PARKED_READ];
        let mut buf = ReadBuf::new(&mut head);
        Poll::Ready(
            match ready!(Pin::new(ws.get_mut()).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => ControlFlow::Break(None),
                Ok(()) => {
                    ws.get_mut().unread(buf.filled());
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(Some(Err(WsError::Io(e)))),
            },
        )
    }

    /// The next message if the codec has one ready now (the batch loop's
    /// look-ahead; a link waiting with a small read has none). A codec
    /// that handed out every item read so far is not asked: it would have
    /// to read, and a client that waits for each reply (one message in
    /// flight) has sent nothing more, so the attempt (a call down every
    /// layer of the connection, and tungstenite zero-filling its read
    /// buffer) would find nothing. What did arrive meanwhile is read by
    /// the next wait instead, after the flush.
    pub fn next_ready(&mut self) -> Option<Option<Result<Message, WsError>>> {
        if self.waits_small() {
            return None;
        }
        if self.drained() {
            return None;
        }
        let State::Live(ws) = &mut self.state else {
            return None;
        };
        let ready = ws.next().now_or_never();
        self.starved = ready.is_none();
        if let Some(Some(Ok(message))) = &ready {
            self.handed += 1;
            self.small = fits_small_read(message);
        }
        // Polled with no waker: the next wait must poll it again.
        self.read_due();
        ready
    }

    /// The codec handed out every item read so far and nothing is partly
    /// read: it holds nothing to hand out before it reads again.
    fn drained(&self) -> bool {
        match &self.state {
            State::Live(ws) => {
                let io = ws.get_ref();
                io.at_message_boundary() && io.items_read() == self.handed
            }
            _ => false,
        }
    }

    /// The codec, built (without a read buffer) if the link is parked;
    /// `None` if it was lost.
    pub fn live(&mut self) -> Option<&mut WebSocketStream<S>> {
        self.unpark();
        match &mut self.state {
            State::Live(ws) => Some(ws.as_mut()),
            _ => None,
        }
    }

    /// The codec by value, for the closing paths; `None` if it was lost.
    pub fn into_live(mut self) -> Option<WebSocketStream<S>> {
        self.unpark();
        match self.state {
            State::Live(ws) => Some(*ws),
            _ => None,
        }
    }

    /// The codec holds nothing (see the module docs).
    fn holds_nothing(&self) -> bool {
        match &self.state {
            State::Live(ws) => self.starved && ws.get_ref().at_message_boundary(),
            _ => false,
        }
    }

    /// Whether the next wait is a small read past the codec: parked, or a
    /// codec without a read buffer that holds nothing.
    fn waits_small(&self) -> bool {
        match &self.state {
            State::Parked(_) => true,
            State::Live(_) => !self.reads && self.holds_nothing(),
            State::Gone => false,
        }
    }

    /// Drops the codec if it holds nothing.
    fn park_if_idle(&mut self) {
        if self.holds_nothing()
            && let State::Live(ws) = std::mem::replace(&mut self.state, State::Gone)
        {
            self.state = State::Parked(ws.into_inner());
        }
        self.may_park = false;
    }

    /// Builds a codec with a read buffer around the bytes a small read
    /// brought (a codec without one is replaced: it held nothing).
    fn rebuild(&mut self, read: &[u8]) {
        let io = match std::mem::replace(&mut self.state, State::Gone) {
            State::Parked(io) => io,
            State::Live(ws) => ws.into_inner(),
            State::Gone => return,
        };
        let config = codec_config(self.max_message_size);
        // Building never waits: the future is ready at the first poll.
        let built =
            WebSocketStream::from_partially_read(io, read.to_vec(), Role::Server, Some(config))
                .now_or_never();
        if let Some(ws) = built {
            self.state = State::Live(Box::new(ws));
        }
        self.reads = true;
        self.starved = false;
        self.may_park = false;
    }

    /// Builds a codec without a read buffer around a parked connection (to
    /// write, or to close).
    fn unpark(&mut self) {
        if !self.is_parked() {
            return;
        }
        let State::Parked(io) = std::mem::replace(&mut self.state, State::Gone) else {
            return;
        };
        let config = codec_config(self.max_message_size).read_buffer_size(0);
        // Building never waits: the future is ready at the first poll.
        if let Some(ws) =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).now_or_never()
        {
            self.state = State::Live(Box::new(ws));
        }
        self.reads = false;
        self.starved = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{BudgetedIo, MemoryBudget};
    use futures_util::SinkExt;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A masked client frame (mask 0: the payload reads as is).
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    fn link() -> (DuplexStream, Link<BudgetedIo<DuplexStream>>) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let budget = Box::leak(Box::new(MemoryBudget::new(1 << 20)));
        (
            client,
            Link::new(BudgetedIo::with_budget(server, budget), 1 << 16),
        )
    }

    /// Waits once without blocking: the link parks if it holds nothing.
    fn wait_once<S: AsyncRead + AsyncWrite + MessageBoundary + Unpin>(link: &mut Link<S>) {
        assert!(link.next().now_or_never().is_none(), "nothing to read");
    }

    /// What a waiting link keeps in its session's task (idle memory per
    /// connection): not the codec's state (boxed, and dropped while
    /// parked), and no read buffer in the wait.
    #[test]
    fn a_waiting_link_keeps_neither_the_codec_nor_a_buffer_inline() {
        type Io = BudgetedIo<DuplexStream>;
        let codec = std::mem::size_of::<WebSocketStream<Io>>();
        let inline = std::mem::size_of::<Link<Io>>();
        assert!(
            inline < codec,
            "a link ({inline} B) holds the codec ({codec} B) inline"
        );
        let (_client, mut link) = link();
        let wait = link.next();
        let size = std::mem::size_of_val(&wait);
        assert!(
            size < PARKED_READ,
            "the wait ({size} B) keeps a {PARKED_READ} B read buffer"
        );
    }

    #[tokio::test]
    async fn an_idle_link_holds_no_read_buffer() {
        let (mut client, mut link) = link();
        assert!(link.is_parked(), "nothing read yet");
        wait_once(&mut link);
        assert!(link.is_parked());
        // Two messages in one read: both come out.
        let mut wire = frame(0x81, b"one");
        wire.extend(frame(0x82, b"two"));
        client.write_all(&wire).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), Message::text("one"));
        let two = link.next().await.unwrap().unwrap();
        assert_eq!(two, Message::binary(b"two".to_vec()));
        // A busy link keeps its codec...
        wait_once(&mut link);
        wait_once(&mut link);
        assert!(link.holds_read_buffer());
        // ...until the session allows it to park (its keepalive tick).
        link.allow_park();
        wait_once(&mut link);
        assert!(link.is_parked());
        // A message larger than a parked read comes out whole.
        let big = vec![b'x'; 120];
        let mut wire = frame(0x81, &big);
        wire.extend(frame(0x81, &big));
        wire.extend(frame(0x81, &big));
        client.write_all(&wire).await.unwrap();
        for _ in 0..3 {
            let got = link.next().await.unwrap().unwrap();
            assert_eq!(got.into_data().as_ref(), &big[..]);
        }
    }

    #[tokio::test]
    async fn a_half_read_frame_or_message_keeps_the_codec() {
        let (mut client, mut link) = link();
        // A frame cut after its header.
        let whole = frame(0x81, b"hello");
        client.write_all(&whole[..7]).await.unwrap();
        wait_once(&mut link);
        link.allow_park();
        wait_once(&mut link);
        assert!(!link.is_parked(), "half a frame is in the codec");
        client.write_all(&whole[7..]).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), Message::text("hello"));
        // A fragmented message: its first fragment, a ping, the rest.
        client.write_all(&frame(0x01, b"frag")).await.unwrap();
        client.write_all(&frame(0x89, b"p")).await.unwrap();
        let ping = link.next().await.unwrap().unwrap();
        assert_eq!(ping, Message::Ping(b"p".to_vec().into()));
        wait_once(&mut link);
        link.allow_park();
        wait_once(&mut link);
        assert!(!link.is_parked(), "a message is half received");
        client.write_all(&frame(0x80, b"ment")).await.unwrap();
        assert_eq!(
            link.next().await.unwrap().unwrap(),
            Message::text("fragment")
        );
    }

    /// Counts the reads that reach the connection (and keeps the size of
    /// the last one asked for).
    struct Counted<S> {
        inner: S,
        reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    type Count = std::sync::Arc<std::sync::atomic::AtomicUsize>;

    /// A link over a connection that counts its reads and the room the
    /// last one asked for.
    fn counted_link(
        server: DuplexStream,
    ) -> (Link<BudgetedIo<Counted<DuplexStream>>>, Count, Count) {
        let (reads, asked) = (Count::default(), Count::default());
        let counted = Counted {
            inner: server,
            reads: reads.clone(),
            asked: asked.clone(),
        };
        let budget = Box::leak(Box::new(MemoryBudget::new(1 << 20)));
        let link = Link::new(BudgetedIo::with_budget(counted, budget), 1 << 16);
        (link, reads, asked)
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let this = self.get_mut();
            this.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            this.asked
                .store(buf.remaining(), std::sync::atomic::Ordering::Relaxed);
            std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn the_look_ahead_does_not_read_once_everything_read_was_handed_out() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut link, reads, _) = counted_link(server);
        let count = || reads.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..3 {
            // One message in flight: once it is out, the look-ahead has
            // nothing to find and does not ask the connection.
            client.write_all(&frame(0x81, b"one")).await.unwrap();
            assert_eq!(link.next().await.unwrap().unwrap(), Message::text("one"));
            let before = count();
            assert!(link.next_ready().is_none());
            assert_eq!(count(), before, "the look-ahead read the connection");
        }
        // Two messages and a ping in one read: the look-ahead hands out
        // the rest without reading, then stops.
        let mut wire = frame(0x81, b"a");
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x82, b"b"));
        client.write_all(&wire).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), Message::text("a"));
        let before = count();
        let ping = link.next_ready().unwrap().unwrap().unwrap();
        assert_eq!(ping, Message::Ping(b"p".to_vec().into()));
        let b = link.next_ready().unwrap().unwrap().unwrap();
        assert_eq!(b, Message::binary(b"b".to_vec()));
        assert!(link.next_ready().is_none());
        assert_eq!(count(), before);
        // Half a frame read: the look-ahead asks for the rest.
        let whole = frame(0x81, b"later");
        client.write_all(&whole[..4]).await.unwrap();
        assert!(link.next().now_or_never().is_none());
        client.write_all(&whole[4..]).await.unwrap();
        let next = link.next_ready().unwrap().unwrap().unwrap();
        assert_eq!(next, Message::text("later"));
    }

    #[tokio::test]
    async fn a_link_that_handed_out_everything_waits_with_a_small_read() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut link, _, asked) = counted_link(server);
        let asked = || asked.load(std::sync::atomic::Ordering::Relaxed);
        for round in 0..3 {
            client.write_all(&frame(0x81, b"one")).await.unwrap();
            assert_eq!(link.next().await.unwrap().unwrap(), Message::text("one"));
            assert!(link.holds_read_buffer(), "the codec is kept while busy");
            // Nothing more: the wait reads past the codec, a small read.
            wait_once(&mut link);
            assert!(
                asked() <= PARKED_READ,
                "round {round}: asked for {}",
                asked()
            );
        }
        // What a small read brings is handed to the codec: several
        // messages, a frame cut by the read, a larger message next.
        let mut wire = frame(0x81, b"a");
        wire.extend(frame(0x82, &[5; 100]));
        wire.extend(frame(0x81, &[b'c'; 120]));
        wire.extend(frame(0x81, &[b'd'; 120]));
        client.write_all(&wire).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), Message::text("a"));
        let two = link.next_ready().unwrap().unwrap().unwrap();
        assert_eq!(two, Message::binary(vec![5; 100]));
        for c in [b'c', b'd'] {
            let got = link.next().await.unwrap().unwrap();
            assert_eq!(got.into_data().as_ref(), &[c; 120][..]);
        }
        let big = vec![b'x'; 3000];
        let mut long = vec![0x81, 0x80 | 126];
        long.extend_from_slice(&3000u16.to_be_bytes());
        long.extend_from_slice(&[0, 0, 0, 0]);
        long.extend_from_slice(&big);
        client.write_all(&long).await.unwrap();
        let got = link.next().await.unwrap().unwrap();
        assert_eq!(got.into_data().as_ref(), &big[..]);
        // After a large message the codec reads as it did.
        wait_once(&mut link);
        assert!(asked() > PARKED_READ);
        drop(client);
        assert!(matches!(link.next().await, None | Some(Err(_))));
    }

    #[tokio::test]
    async fn a_look_ahead_leaves_the_next_wait_reading() {
        let (mut client, mut link) = link();
        client.write_all(&frame(0x81, b"one")).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), Message::text("one"));
        // A wait finds nothing; a look-ahead (no waker) after it must not
        // hide what comes later.
        wait_once(&mut link);
        assert!(link.next_ready().is_none());
        let later = async {
            tokio::task::yield_now().await;
            client.write_all(&frame(0x81, b"two")).await.unwrap();
        };
        let (got, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(link.next(), later)
        })
        .await
        .expect("the read side was polled");
        assert_eq!(got.unwrap().unwrap(), Message::text("two"));
    }

    #[tokio::test]
    async fn writes_to_a_parked_link_take_no_read_buffer() {
        let (mut client, mut link) = link();
        wait_once(&mut link);
        for _ in 0..2 {
            let ws = link.live().unwrap();
            ws.send(Message::text("hi")).await.unwrap();
            let mut got = [0u8; 4];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0x81, 2, b'h', b'i']);
            wait_once(&mut link);
            assert!(!link.holds_read_buffer());
        }
        // What the client sends next is read whole.
        client.write_all(&frame(0x81, b"back")).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), Message::text("back"));
        assert!(link.holds_read_buffer());
        wait_once(&mut link);
        link.allow_park();
        wait_once(&mut link);
        assert!(link.is_parked());
        // The end of the connection ends the link.
        drop(client);
        assert!(link.next().await.is_none());
    }
}
