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
//! its own over its upgraded connection (`http::upgraded`; on HTTP/1.1 it
//! blocks exactly when the one below TLS does).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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
