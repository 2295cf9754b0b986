//! The session ticket leaves with the first reply: one write and one TCP
//! segment per connection fewer.
//!
//! A TLS 1.3 server sends its session ticket right after it has read the
//! client's Finished, and tokio-rustls writes and flushes it before the
//! handshake future returns; the HTTP reply (a WebSocket's 101) then goes
//! in a second write a few microseconds later. On loopback each write also
//! runs the peer's receive path on the sender's CPU. `TicketHold` sits
//! under TLS during the handshake: a small write made after the client's
//! second flight arrived (the ticket; in TLS 1.2 the server's last flight,
//! or a handshake's refusal alert) is kept, and the handshake's flush does
//! not push it. The held bytes leave
//!
//! - with the next write, in one `writev` (the reply: [`TicketHold::replying`]
//!   switches to this once a TLS 1.3 handshake is done),
//! - or, during the handshake, before a read would wait (the peer may be
//!   waiting for them: a HelloRetryRequest's flight),
//! - or at shutdown (a flush does not push them: hyper flushes before it
//!   has a reply),
//! - or by [`TicketHold::release`] (a failed handshake's alert).
//!
//! At most [`MAX_HELD`] bytes are held; larger writes go straight through,
//! and every write still goes through the stall guard below (its deadline).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Most bytes held: a ticket (about 100 bytes), an alert, a TLS 1.2 final
/// flight.
pub const MAX_HELD: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing written yet: the server's first flight goes straight out.
    First,
    /// The first flight went out; nothing read since.
    Sent,
    /// The client answered: the next small write is held.
    Answered,
    /// A TLS 1.3 handshake is done: held bytes leave with the next write
    /// (or at shutdown); nothing more is held.
    Replying,
    /// Nothing held, nothing to hold: a plain pass-through.
    Through,
}

/// A connection whose handshake's last small write waits for the reply.
#[derive(Debug)]
pub struct TicketHold<T> {
    inner: T,
    phase: Phase,
    held: Vec<u8>,
}

impl<T> TicketHold<T> {
    pub fn new(inner: T) -> Self {
        TicketHold {
            inner,
            phase: Phase::First,
            held: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Bytes held back (for tests).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A TLS 1.3 handshake is done: what is held (its session ticket,
    /// which no client waits for) leaves with the next write or at
    /// shutdown; a read that waits no longer pushes it (hyper reads on
    /// before it writes its reply). After a TLS 1.2 handshake the held
    /// bytes are the server's last flight, which the client waits for:
    /// [`TicketHold::release`] them instead.
    pub fn replying(&mut self) {
        self.phase = if self.held.is_empty() {
            Phase::Through
        } else {
            Phase::Replying
        };
    }
}

impl<T: AsyncWrite + Unpin> TicketHold<T> {
    /// Writes what is held (a failed handshake's alert), then nothing more
    /// is held.
    pub async fn release(&mut self) -> io::Result<()> {
        self.phase = Phase::Through;
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.inner.write_all(&held).await?;
            self.inner.flush().await?;
        }
        Ok(())
    }

    /// Writes what is held; `Ready(Ok)` once it has all left.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        self.held = Vec::new();
        if self.phase == Phase::Replying {
            self.phase = Phase::Through;
        }
        Poll::Ready(Ok(()))
    }

    /// Whether this write (of `len` bytes) is kept instead of written.
    fn holds(&self, len: usize) -> bool {
        self.phase == Phase::Answered && self.held.len() + len <= MAX_HELD
    }

    /// Writes `bufs` after what is held, in one call where possible.
    fn poll_write_after_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.holds(total) {
            for b in bufs {
                self.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        if self.phase == Phase::First {
            self.phase = Phase::Sent;
        }
        while !self.held.is_empty() {
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&self.held));
            all.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &all))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < self.held.len() {
                self.held.drain(..n);
                continue;
            }
            let past = n - self.held.len();
            self.held = Vec::new();
            if self.phase == Phase::Replying {
                self.phase = Phase::Through;
            }
            if past > 0 {
                return Poll::Ready(Ok(past));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TicketHold<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Sent && buf.filled().len() > before {
                    this.phase = Phase::Answered;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase == Phase::Answered && !this.held.is_empty() => {
                // About to wait for the peer, who may be waiting for these.
                match this.poll_release(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TicketHold<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.phase == Phase::Through {
            // The connection's whole life after the handshake.
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.poll_write_after_held(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.phase == Phase::Through {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.poll_write_after_held(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.phase, Phase::Answered | Phase::Replying) {
            // The handshake's own flush, or hyper's before it has a reply:
            // what is held waits for the reply (or a read that would wait).
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A pipe that counts the writes that reach it.
    struct Counting {
        io: tokio::io::DuplexStream,
        writes: usize,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.io).poll_write(cx, buf);
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes += 1;
            }
            r
        }
        /// One write of all the slices, as a socket's `writev`.
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    fn pair() -> (tokio::io::DuplexStream, TicketHold<Counting>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = TicketHold::new(Counting {
            io: server,
            writes: 0,
        });
        (client, server)
    }

    /// The client's hello, the server's first flight (flushed or not) and
    /// the client's answer: from here a small write is held.
    async fn answered(
        client: &mut tokio::io::DuplexStream,
        server: &mut TicketHold<Counting>,
        flush: bool,
    ) {
        let mut buf = [0u8; 8];
        client.write_all(b"hello").await.unwrap();
        server.read_exact(&mut buf[..5]).await.unwrap();
        server.write_all(b"flight").await.unwrap();
        if flush {
            server.flush().await.unwrap();
        }
        client.write_all(b"finished").await.unwrap();
        server.read_exact(&mut buf[..8]).await.unwrap();
    }

    #[tokio::test]
    async fn the_write_after_the_answer_leaves_with_the_reply() {
        let (mut client, mut server) = pair();
        answered(&mut client, &mut server, true).await;
        server.write_all(b"ticket").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(server.held(), 6);
        server.replying();
        server.write_all(b"reply").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(server.held(), 0);
        assert_eq!(server.get_ref().writes, 2);
        let mut got = vec![0u8; 17];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"flightticketreply");
    }

    #[tokio::test]
    async fn a_read_that_would_wait_sends_what_is_held() {
        let (mut client, mut server) = pair();
        answered(&mut client, &mut server, false).await;
        server.write_all(b"last").await.unwrap();
        // Still handshaking: the server now waits for the client, which
        // waits for "last" (a HelloRetryRequest's flight).
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = server.read(&mut buf).await.unwrap();
            (n, server)
        });
        let mut got = vec![0u8; 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"flightlast");
        client.write_all(b"req").await.unwrap();
        let (n, server) = read.await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(server.held(), 0);
    }

    #[tokio::test]
    async fn release_writes_a_held_alert_and_large_writes_pass() {
        let (mut client, mut server) = pair();
        answered(&mut client, &mut server, false).await;
        let big = vec![7u8; MAX_HELD + 1];
        server.write_all(&big).await.unwrap();
        assert_eq!(server.held(), 0);
        server.write_all(b"alert").await.unwrap();
        assert_eq!(server.held(), 5);
        server.release().await.unwrap();
        assert_eq!(server.held(), 0);
        let mut got = vec![0u8; 6 + MAX_HELD + 1 + 5];
        client.read_exact(&mut got).await.unwrap();
        assert!(got.ends_with(b"alert"));
    }
}
