//! One socket read per arrival instead of one per 4 KiB: `ReadAhead` sits
//! on every accepted connection, under TLS and HTTP.
//!
//! rustls reads the socket 4 KiB at a time (its deframer asks for at most
//! `READ_SIZE` = 4096 bytes per `read_tls`), and so does the WebSocket
//! codec on plain connections (`READ_BUFFER_SIZE`): a 16 KiB message cost
//! five `recvfrom` calls. Here a small read is served from one read of up
//! to [`CHUNK`] bytes into stack memory; what the caller could not take is
//! kept, exactly sized, and handed out by the next reads (no system call),
//! then freed. An idle connection holds nothing (one `None`), a busy one at
//! most `CHUNK` bytes, taken from the kernel's receive buffer rather than
//! added to it; a caller that asks for `CHUNK` or more reads directly.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stall::StallGuard;

/// Most bytes read ahead at once: one full TLS record (16 KiB of
/// plaintext, its 5-byte header and up to 256 bytes of expansion), which
/// also covers a 16 KiB WebSocket frame with its header.
pub const CHUNK: usize = 16 * 1024 + 5 + 256;

/// Whether a read would find data now, without reading: tokio's readiness
/// of the socket. A connection that brings large reads is read straight
/// into a heap buffer once it is readable (no copy through the stack), and
/// nothing is allocated while it waits.
pub trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl<T: ReadReady> ReadReady for StallGuard<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().poll_read_ready(cx)
    }
}

/// A connection whose small reads are served from one larger read.
#[derive(Debug)]
pub struct ReadAhead<T> {
    inner: T,
    /// Bytes read but not yet taken; `None` whenever it is empty.
    ahead: Option<Box<BytesMut>>,
    /// The last socket read brought more than its caller could take: the
    /// next one is made into a heap buffer, once the socket is readable.
    large: bool,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        ReadAhead {
            inner,
            ahead: None,
            large: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Bytes read from the socket and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.len())
    }

    /// Hands out what was read ahead; true when there was any.
    fn take_ahead(&mut self, dst: &mut ReadBuf<'_>) -> bool {
        let Some(ahead) = self.ahead.as_mut() else {
            return false;
        };
        let n = ahead.len().min(dst.remaining());
        dst.put_slice(&ahead[..n]);
        ahead.advance(n);
        if ahead.is_empty() {
            self.ahead = None;
        }
        true
    }

    /// Hands `dst` what it can take of `read` and keeps the rest.
    fn serve(&mut self, dst: &mut ReadBuf<'_>, mut read: BytesMut) {
        let n = read.len().min(dst.remaining());
        dst.put_slice(&read[..n]);
        read.advance(n);
        self.large = !read.is_empty();
        if self.large {
            self.ahead = Some(Box::new(read));
        }
    }
}

impl<T: AsyncRead + ReadReady + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if dst.remaining() == 0 || this.take_ahead(dst) {
            return Poll::Ready(Ok(()));
        }
        if dst.remaining() >= CHUNK {
            return Pin::new(&mut this.inner).poll_read(cx, dst);
        }
        if this.large {
            // Straight into the buffer that keeps what the caller cannot
            // take (a 16 KiB record read 4 KiB at a time by rustls).
            ready!(this.inner.poll_read_ready(cx))?;
            let mut read = BytesMut::with_capacity(CHUNK);
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut read
            ))?;
            this.serve(dst, read);
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut read = ReadBuf::uninit(&mut scratch);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
        let got = read.filled();
        let n = got.len().min(dst.remaining());
        dst.put_slice(&got[..n]);
        this.large = n < got.len();
        if this.large {
            this.ahead = Some(Box::new(BytesMut::from(&got[n..])));
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
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

    impl ReadReady for tokio::io::DuplexStream {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn after_a_large_read_the_next_goes_straight_to_the_kept_buffer() {
        let (mut client, server) = tokio::io::duplex(4 * CHUNK);
        let mut server = ReadAhead::new(server);
        let record: Vec<u8> = (0..16_000u32).map(|i| (i % 253) as u8).collect();
        let mut buf = [0u8; 4096];
        for round in 0..3 {
            client.write_all(&record).await.unwrap();
            let mut got = Vec::new();
            while got.len() < record.len() {
                let n = server.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if got.len() == 4096 {
                    // One socket read brought the whole record; the rest is kept.
                    assert_eq!(server.buffered(), record.len() - 4096, "round {round}");
                }
            }
            assert_eq!(got, record, "round {round}");
            assert!(server.ahead.is_none(), "an emptied read-ahead is freed");
            assert!(
                server.large,
                "round {round}: the next read goes to the heap"
            );
        }
        // A small read ends it: the next one is served from the stack again.
        client.write_all(b"small").await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"small");
        assert!(!server.large);
        assert!(server.ahead.is_none());
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_read_then_nothing_is_held() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut server = ReadAhead::new(server);
        let sent: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(n, 4096);
        got.extend_from_slice(&buf[..n]);
        // The rest was read with the first call and is held, exactly sized.
        assert_eq!(server.buffered(), 10_000 - 4096);
        while got.len() < sent.len() {
            let n = server.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(server.buffered(), 0);
        assert!(server.ahead.is_none(), "an emptied read-ahead is freed");
    }

    #[tokio::test]
    async fn never_more_than_a_chunk_is_read_ahead() {
        let (mut client, server) = tokio::io::duplex(4 * CHUNK);
        let mut server = ReadAhead::new(server);
        client.write_all(&vec![7u8; 3 * CHUNK]).await.unwrap();
        let mut buf = [0u8; 100];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(server.buffered(), CHUNK - 100);
        // A large read goes straight to the connection once the rest is out.
        let mut rest = vec![0u8; CHUNK - 100];
        server.read_exact(&mut rest).await.unwrap();
        let mut big = vec![0u8; 2 * CHUNK];
        let n = server.read(&mut big).await.unwrap();
        assert_eq!(n, 2 * CHUNK);
        assert_eq!(server.buffered(), 0);
    }

    #[tokio::test]
    async fn end_of_stream_and_writes_pass_through() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = ReadAhead::new(server);
        server.write_all(b"pong").await.unwrap();
        let mut four = [0u8; 4];
        client.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"pong");
        client.write_all(b"ping").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"ping");
    }
}
