//! The send timeout at the socket: a wrapper around a TCP stream that fails
//! every operation once a write (or flush, or shutdown) has made no progress
//! for the send timeout (nginx's `send_timeout` / `proxy_send_timeout`: the
//! clock runs only while a write is blocked, and restarts on progress).
//!
//! It sits *under* TLS, around every accepted connection and every upstream
//! connection of the proxy, so whatever is written on top (TLS records,
//! pongs, close frames, HTTP responses, file downloads, relayed frames) is
//! covered without each driver having to remember a deadline. Drivers keep
//! their own per-batch deadlines on top (a peer that reads one byte a second
//! makes progress here).
//!
//! Once it has fired, the wrapper is poisoned: reads and writes fail at once,
//! so a task waiting on the other direction ends too, and the socket is set
//! to `SO_LINGER 0` so that closing it sends a reset and frees the kernel
//! send buffer at once instead of keeping the unread bytes around.
//!
//! Cost: a boolean store per completed write; the timer is allocated the
//! first time a write blocks, so idle connections pay nothing for it.
//!
//! An HTTP/2 WebSocket is one stream of a connection whose socket keeps
//! moving for the other streams: its writes block on the stream's
//! flow-control window instead, so every WebSocket session puts a guard of
//! its own over its upgraded connection ([`StallGuard::over_upgraded`]; on
//! HTTP/1.1 it blocks exactly when the one below TLS does).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::metrics;

/// Which peer a guarded socket leads to (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Upstream,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::Client => "client",
            Peer::Upstream => "upstream",
        }
    }
}

/// A stream whose blocked writes time out; see the module docs.
#[derive(Debug)]
pub struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// Allocated on the first blocked write, then reused.
    timer: Option<Pin<Box<Sleep>>>,
    /// A write is blocked and `timer` runs for it.
    armed: bool,
    /// The timeout fired: every operation fails from now on.
    poisoned: bool,
    peer: Peer,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, timeout: Duration, peer: Peer) -> Self {
        StallGuard {
            inner,
            timeout,
            timer: None,
            armed: false,
            poisoned: false,
            peer,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer accepted nothing for the send timeout",
    )
}

/// What a guard does to its stream when the send timeout fires.
pub trait Abort {
    /// Makes the close that follows abortive (unread data is dropped).
    fn abort_on_close(&self);
}

impl Abort for tokio::net::TcpStream {
    /// `SO_LINGER 0`: closing sends a reset and frees the kernel's send
    /// buffer at once.
    fn abort_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

/// What a WebSocket stream holds of its HTTP/2 connection, put in each
/// request's extensions by `http::http2`:
/// - `abort`, cancelled when the stream stalls past the send timeout.
///   hyper cannot reset a stream that still holds unsent data (its send
///   task waits for window the peer never opens), so the connection goes,
///   as a stalled HTTP/1.1 socket does;
/// - `streams`, one token per live WebSocket: on shutdown the connection
///   keeps running until they have closed with 1001 (they are its
///   streams), and only then sends GOAWAY;
/// - `activity`: requests and WebSockets in progress (the idle timeout).
#[derive(Debug, Clone, Default)]
pub struct H2Conn {
    pub abort: CancellationToken,
    pub streams: TaskTracker,
    pub activity: Activity,
}

/// How many streams of a connection are in progress (a request until its
/// response body ends, a WebSocket until it closes); watched by the
/// connection for its idle timeout.
#[derive(Debug, Clone)]
pub struct Activity(Arc<watch::Sender<usize>>);

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(watch::Sender::new(0)))
    }
}

impl Activity {
    /// One more stream in progress, until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.send_modify(|n| *n += 1);
        Busy(self.0.clone())
    }

    /// Watches the count.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

/// A stream in progress (see [`Activity`]).
#[derive(Debug)]
pub struct Busy(Arc<watch::Sender<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A WebSocket's upgraded connection: a TLS or TCP socket on HTTP/1.1
/// (guarded below TLS already), one stream on HTTP/2 (with its
/// connection's [`H2Conn`]).
pub struct UpgradedIo {
    io: TokioIo<Upgraded>,
    abort: Option<CancellationToken>,
    /// Counts this WebSocket among its HTTP/2 connection's streams.
    _stream: Option<(TaskTrackerToken, Busy)>,
    /// The last write or flush returned `Pending` (the stream's window is
    /// shut): dropped in that state, the stream cannot end by itself.
    blocked: bool,
}

impl UpgradedIo {
    fn note<R>(&mut self, result: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        self.blocked = result.is_pending();
        result
    }
}

/// A session that ends (its own write deadline, or this guard's) while a
/// write to its HTTP/2 stream is still blocked leaves the stream stuck in
/// hyper: the connection is closed instead.
impl Drop for UpgradedIo {
    fn drop(&mut self) {
        if self.blocked {
            self.abort_on_close();
        }
    }
}

impl Abort for UpgradedIo {
    fn abort_on_close(&self) {
        if let Some(abort) = &self.abort {
            abort.cancel();
        }
    }
}

impl AsyncRead for UpgradedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpgradedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // hyper copies each write to an HTTP/2 stream into a buffer of its
        // own: keep the copies small (a large message is written from its
        // shared buffer, not copied whole per subscriber).
        let this = self.get_mut();
        let buf = match this.abort {
            Some(_) => &buf[..buf.len().min(MAX_STREAM_WRITE)],
            None => buf,
        };
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.note(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Largest single write handed to an HTTP/2 stream.
const MAX_STREAM_WRITE: usize = 16 * 1024;

impl StallGuard<UpgradedIo> {
    /// A guard over a WebSocket's upgraded connection. On HTTP/2 it is
    /// one stream: its writes wait on the stream's flow-control window,
    /// which one peer can hold shut while the connection's socket keeps
    /// moving for the other streams. `h2` is the HTTP/2 connection's
    /// [`H2Conn`] (from the request's extensions), `None` on HTTP/1.1.
    pub fn over_upgraded(io: TokioIo<Upgraded>, timeout: Duration, h2: Option<H2Conn>) -> Self {
        let io = UpgradedIo {
            io,
            _stream: h2.as_ref().map(|c| (c.streams.token(), c.activity.busy())),
            abort: h2.map(|c| c.abort),
            blocked: false,
        };
        StallGuard::new(io, timeout, Peer::Client)
    }
}

impl<T: Abort> StallGuard<T> {
    /// A write returned `Pending`: start the clock (unless it runs already)
    /// and fail once it has run out.
    fn blocked<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if !fired {
            return Poll::Pending;
        }
        self.poisoned = true;
        self.timer = None;
        metrics::write_timeout(self.peer.label());
        tracing::debug!(
            peer = self.peer.label(),
            "send timeout: the peer stopped reading"
        );
        // Closing sends a reset and drops the unread bytes at once.
        self.inner.abort_on_close();
        Poll::Ready(Err(timed_out()))
    }

    fn progressed<R>(
        &mut self,
        result: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Abort + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poisoned {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Abort + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poisoned {
            return Poll::Ready(Err(timed_out()));
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poisoned {
            return Poll::Ready(Err(timed_out()));
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poisoned {
            return Poll::Ready(Err(timed_out()));
        }
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poisoned {
            return Poll::Ready(Err(timed_out()));
        }
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_types,
    reason = "the test times the real close against the real clock"
)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_out_and_gets_a_reset() {
        let (mut client, server) = pair().await;
        let mut guarded = StallGuard::new(server, Duration::from_millis(300), Peer::Client);
        let chunk = vec![7u8; 64 * 1024];
        let started = std::time::Instant::now();
        let error = loop {
            match tokio::time::timeout(Duration::from_secs(10), guarded.write_all(&chunk)).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => break e,
                Err(_) => panic!("the write never timed out"),
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Poisoned: reads fail too.
        let mut b = [0u8; 1];
        assert!(guarded.read(&mut b).await.is_err());
        drop(guarded);
        // The close was a reset: the client's unread data is gone.
        let mut sink = vec![0u8; 1 << 20];
        let mut reset = false;
        for _ in 0..1000 {
            match client.read(&mut sink).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    reset = e.kind() == io::ErrorKind::ConnectionReset;
                    break;
                }
            }
        }
        assert!(reset, "expected a TCP reset");
    }

    #[tokio::test]
    async fn a_peer_that_reads_never_times_out() {
        let (mut client, server) = pair().await;
        // Writes wake when a third of the send buffer is free again: keep it
        // small so a slow reader makes progress often.
        let _ = socket2::SockRef::from(&server).set_send_buffer_size(64 * 1024);
        let mut guarded = StallGuard::new(server, Duration::from_millis(300), Peer::Client);
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while total < 8 << 20 {
                // A slow reader: pauses shorter than the timeout.
                tokio::time::sleep(Duration::from_millis(5)).await;
                match client.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        let chunk = vec![1u8; 64 * 1024];
        for _ in 0..128 {
            guarded.write_all(&chunk).await.unwrap();
        }
        guarded.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 8 << 20);
    }
}
