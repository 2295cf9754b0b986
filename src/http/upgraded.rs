//! A WebSocket's upgraded connection (`UpgradedIo`): a TLS or TCP socket
//! on HTTP/1.1, one stream on HTTP/2, put under its own send timeout
//! ([`StallGuard::over_upgraded`]) by every session driver; and what an
//! HTTP/2 stream holds of its connection ([`H2Conn`]: the abort when it
//! stalls, the count of live WebSockets for shutdown, the activity for the
//! idle timeout).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::server::stall::{Abort, Peer, StallGuard};

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

    /// On HTTP/1.1 a frame's header and payload go down in one call (over
    /// TLS one record sequence and one `writev`, on TCP one segment) instead
    /// of a 2-10 byte write of its own; an HTTP/2 stream keeps the capped
    /// single-buffer path above.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.abort.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.abort.is_none() && self.io.is_write_vectored()
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
