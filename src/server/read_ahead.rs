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

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes read ahead at once: one full TLS record (16 KiB of
/// plaintext, its 5-byte header and up to 256 bytes of expansion), which
/// also covers a 16 KiB WebSocket frame with its header.
pub const CHUNK: usize = 16 * 1024 + 5 + 256;

/// A connection whose small reads are served from one larger read.
#[derive(Debug)]
pub struct ReadAhead<T> {
    inner: T,
    /// Bytes read but not yet taken; `None` whenever it is empty.
    ahead: Option<Box<Ahead>>,
}

#[derive(Debug)]
struct Ahead {
    bytes: Box<[u8]>,
    taken: usize,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        ReadAhead { inner, ahead: None }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Bytes read from the socket and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.bytes.len() - a.taken)
    }

    /// Hands out what was read ahead; true when there was any.
    fn take_ahead(&mut self, dst: &mut ReadBuf<'_>) -> bool {
        let Some(ahead) = self.ahead.as_mut() else {
            return false;
        };
        let rest = &ahead.bytes[ahead.taken..];
        let n = rest.len().min(dst.remaining());
        dst.put_slice(&rest[..n]);
        ahead.taken += n;
        if ahead.taken == ahead.bytes.len() {
            self.ahead = None;
        }
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
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
        let mut scratch = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut read = ReadBuf::uninit(&mut scratch);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
        let got = read.filled();
        let n = got.len().min(dst.remaining());
        dst.put_slice(&got[..n]);
        if n < got.len() {
            this.ahead = Some(Box::new(Ahead {
                bytes: got[n..].into(),
                taken: 0,
            }));
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
