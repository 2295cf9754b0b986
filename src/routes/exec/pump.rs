//! The exec relay: moves data both ways between the socket and the
//! program's pipes until one side ends, with backpressure both ways and the
//! session's keepalive; see the module docs of `exec`.

use std::future::Future;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use crate::stop::StopSignal;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::program::{KILL_GRACE, Program, signal_group};
use crate::config::SessionLimits;
use crate::config::limits::CLOSE_TIMEOUT;
use crate::config::rate::Exceeded;
use crate::keepalive::{Action, CloseReason, Keepalive};
use crate::metrics::{self, SessionMetrics};
use crate::rates::Meter;

/// Largest single read from stdout (and largest binary message from it).
const READ_CHUNK: usize = 16 * 1024;

/// How long stdout may keep flowing after the program exited, beyond the grace.
const DRAIN_EXTRA: Duration = Duration::from_secs(1);

/// Why the relay stopped.
pub(super) enum Stop {
    /// The program exited and its output was drained.
    Exited(ExitStatus),
    /// The client closed (code, reason).
    PeerClosed(u16, String),
    Dropped,
    /// The client accepted nothing for the send timeout.
    Stalled,
    /// The program accepted nothing on stdin for the send timeout.
    StdinStalled,
    /// Closed by wssd for this reason (shutdown, keepalive, a binary
    /// message on a text route, a rate exceeded).
    Closed(CloseReason),
    ReadError(WsError),
    OutputTooLong,
    WaitFailed(io::Error),
}

/// Session-wide settings the relay reads.
pub(super) struct Ctx<'a> {
    pub(super) binary: bool,
    pub(super) limits: &'a SessionLimits,
    pub(super) stop: &'a StopSignal,
    pub(super) counters: &'a SessionMetrics,
}

/// Moves data both ways until one side ends; see the module docs.
pub(super) async fn relay<S>(ws: &mut WebSocketStream<S>, p: &mut Program, ctx: &Ctx<'_>) -> Stop
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = ctx.limits;
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut keepalive = Keepalive::new(limits.ping_interval, limits.idle_timeout);
    let meter = Meter::new(limits);
    let stall = limits.send_timeout;
    let mut kill_at = far_future;
    let mut drain_until = far_future;

    let mut out = Output::new(ctx.binary, limits.max_message_size);
    let mut chunk = vec![0u8; READ_CHUNK.min(limits.max_message_size.max(1))];
    let mut to_stdin: Option<Bytes> = None;
    // When stdin must have accepted something by (while `to_stdin` waits).
    let mut stdin_stall_at = far_future;

    loop {
        if let Some(status) = p.exited
            && p.stdout.is_none()
        {
            return Stop::Exited(status);
        }
        let timer = keepalive.next_deadline();
        tokio::select! {
            biased;
            _ = ctx.stop.token().cancelled() => return Stop::Closed(ctx.stop.reason()),
            status = p.child.wait(), if p.exited.is_none() => {
                let status = match status {
                    Ok(status) => status,
                    Err(e) => return Stop::WaitFailed(e),
                };
                p.exited = Some(status);
                p.stdin = None;
                to_stdin = None;
                // Background jobs of the program would hold stdout open.
                signal_group(p.pgid, libc::SIGTERM);
                kill_at = Instant::now() + KILL_GRACE;
                drain_until = kill_at + DRAIN_EXTRA;
            }
            incoming = ws.next(), if to_stdin.is_none() => {
                let Some(incoming) = incoming else { return Stop::Dropped };
                let data = match incoming {
                    Ok(Message::Close(frame)) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (u16::from(f.code), f.reason.as_str().to_string())
                        });
                        metrics::close_code(code);
                        // tungstenite queued the reply; flush it and finish.
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.flush()).await;
                        return Stop::PeerClosed(code, reason);
                    }
                    Ok(Message::Pong(_)) => {
                        keepalive.on_pong();
                        continue;
                    }
                    Ok(Message::Ping(ping)) => {
                        if let Err(exceeded) = meter.message(ping.len()) {
                            return rate_exceeded(ctx, exceeded);
                        }
                        // The pong is queued by tungstenite; send it now.
                        match guarded(ws.flush(), ctx, stall).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(_)) => return Stop::Dropped,
                            Err(stop) => return stop,
                        }
                    }
                    Ok(Message::Frame(_)) => continue,
                    Ok(Message::Text(text)) => {
                        if let Err(exceeded) = meter.message(text.len()) {
                            return rate_exceeded(ctx, exceeded);
                        }
                        count_in(ctx, text.len());
                        if ctx.binary {
                            Bytes::from(text)
                        } else {
                            let mut line = Vec::with_capacity(text.len() + 1);
                            line.extend_from_slice(text.as_bytes());
                            line.push(b'\n');
                            Bytes::from(line)
                        }
                    }
                    Ok(Message::Binary(data)) => {
                        if let Err(exceeded) = meter.message(data.len()) {
                            return rate_exceeded(ctx, exceeded);
                        }
                        count_in(ctx, data.len());
                        if !ctx.binary {
                            return Stop::Closed(CloseReason::TextOnly);
                        }
                        data
                    }
                    Err(e) => return Stop::ReadError(e),
                };
                keepalive.on_activity();
                // After the program closed stdin (or exited), input is dropped.
                if p.stdin.is_some() && !data.is_empty() {
                    to_stdin = Some(data);
                    stdin_stall_at = Instant::now() + limits.send_timeout;
                }
            }
            // While stdin is full the socket is not read, so a pong may
            // wait unread: the keepalive does not count that wait.
            _ = sleep_until(timer) => match keepalive.fire_while(to_stdin.is_none()) {
                Some(Action::SendPing) => {
                    match guarded(ws.send(Message::Ping(Bytes::new())), ctx, stall).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Stop::Dropped,
                        Err(stop) => return stop,
                    }
                }
                Some(Action::Close(reason)) => return Stop::Closed(reason),
                None => {}
            },
            _ = sleep_until(stdin_stall_at), if to_stdin.is_some() => return Stop::StdinStalled,
            _ = sleep_until(kill_at) => {
                signal_group(p.pgid, libc::SIGKILL);
                kill_at = far_future;
            }
            _ = sleep_until(drain_until) => {
                // Something still holds stdout (outside the group?): stop here.
                if let Some(status) = p.exited {
                    return Stop::Exited(status);
                }
                drain_until = far_future;
            }
            written = write_some(&mut p.stdin, to_stdin.as_deref().unwrap_or_default()),
                if to_stdin.is_some() =>
            {
                match written {
                    Ok(n) if n > 0 => {
                        stdin_stall_at = Instant::now() + limits.send_timeout;
                        if let Some(data) = to_stdin.as_mut() {
                            data.advance(n.min(data.len()));
                            if data.is_empty() {
                                to_stdin = None;
                            }
                        }
                    }
                    _ => {
                        tracing::debug!(pid = p.pgid, "exec: program closed its stdin");
                        p.stdin = None;
                        to_stdin = None;
                    }
                }
            }
            read = read_some(&mut p.stdout, &mut chunk), if p.stdout.is_some() => {
                match read {
                    Ok(n) if n > 0 => out.push(&chunk[..n]),
                    _ => {
                        out.finish();
                        p.stdout = None;
                    }
                }
                match guarded(deliver(ws, &mut out, ctx.counters), ctx, stall).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(_)) => keepalive.on_activity(),
                    Ok(Err(DeliverError::TooLong)) => return Stop::OutputTooLong,
                    Ok(Err(DeliverError::Socket)) => return Stop::Dropped,
                    Err(stop) => return stop,
                }
            }
        }
    }
}

/// The client sent faster than its rate: counted, then closed with 1008
/// (the message is not passed to the program).
fn rate_exceeded(ctx: &Ctx<'_>, exceeded: Exceeded) -> Stop {
    ctx.counters.rate_limited(exceeded.unit.label());
    tracing::debug!("exec: closing WebSocket: {exceeded}");
    Stop::Closed(CloseReason::RateExceeded(exceeded))
}

fn count_in(ctx: &Ctx<'_>, len: usize) {
    ctx.counters.received(len as u64);
}

/// Runs a socket write, giving up on shutdown or when the client accepts
/// nothing for `stall`.
async fn guarded<T>(
    write: impl Future<Output = T>,
    ctx: &Ctx<'_>,
    stall: Duration,
) -> Result<T, Stop> {
    let limit = tokio::time::sleep(stall);
    tokio::select! {
        biased;
        _ = ctx.stop.token().cancelled() => Err(Stop::Closed(ctx.stop.reason())),
        done = write => Ok(done),
        _ = limit => Err(Stop::Stalled),
    }
}

/// One `write` to stdin (cancel-safe); pending forever without stdin.
async fn write_some(stdin: &mut Option<ChildStdin>, data: &[u8]) -> io::Result<usize> {
    match stdin {
        Some(stdin) => stdin.write(data).await,
        None => std::future::pending().await,
    }
}

/// One `read` from stdout (cancel-safe); pending forever without stdout.
async fn read_some(stdout: &mut Option<ChildStdout>, buf: &mut [u8]) -> io::Result<usize> {
    match stdout {
        Some(stdout) => stdout.read(buf).await,
        None => std::future::pending().await,
    }
}

enum DeliverError {
    TooLong,
    Socket,
}

/// Writes every complete message in `out` to the socket and flushes;
/// returns how many were sent.
async fn deliver<S>(
    ws: &mut WebSocketStream<S>,
    out: &mut Output,
    counters: &SessionMetrics,
) -> Result<usize, DeliverError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sent = 0;
    while let Some(message) = out.next().map_err(|TooLong| DeliverError::TooLong)? {
        counters.sent(message.len() as u64);
        ws.feed(message).await.map_err(|_| DeliverError::Socket)?;
        sent += 1;
    }
    if sent > 0 {
        ws.flush().await.map_err(|_| DeliverError::Socket)?;
    }
    Ok(sent)
}

/// A stdout line longer than `max_message_size`.
struct TooLong;

/// Turns stdout bytes into messages: lines (text mode) or chunks (binary).
struct Output {
    binary: bool,
    max: usize,
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no newline.
    searched: usize,
    eof: bool,
}

impl Output {
    fn new(binary: bool, max: usize) -> Self {
        Output {
            binary,
            max,
            buf: BytesMut::new(),
            searched: 0,
            eof: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// stdout ended: a last line without newline is still sent.
    fn finish(&mut self) {
        self.eof = true;
    }

    /// The next complete message, if any.
    fn next(&mut self) -> Result<Option<Message>, TooLong> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.binary {
            return Ok(Some(Message::Binary(self.buf.split().freeze())));
        }
        let mut line = match self.buf[self.searched..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = self.searched + i;
                let mut line = self.buf.split_to(end + 1);
                line.truncate(end);
                self.searched = 0;
                line
            }
            None if self.eof => {
                self.searched = 0;
                self.buf.split()
            }
            None => {
                self.searched = self.buf.len();
                // +1: a line of exactly `max` may be waiting for "\n" after "\r".
                if self.buf.len() > self.max.saturating_add(1) {
                    return Err(TooLong);
                }
                return Ok(None);
            }
        };
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max {
            return Err(TooLong);
        }
        let text = if std::str::from_utf8(&line).is_ok() {
            Utf8Bytes::try_from(line.freeze()).unwrap_or_default()
        } else {
            Utf8Bytes::from(String::from_utf8_lossy(&line).into_owned())
        };
        Ok(Some(Message::Text(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: Message) -> String {
        match m {
            Message::Text(t) => t.to_string(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn lines_are_split_and_cr_stripped() {
        let mut out = Output::new(false, 100);
        out.push(b"one\r\ntw");
        assert_eq!(text(out.next().ok().flatten().unwrap()), "one");
        assert!(out.next().ok().unwrap().is_none());
        out.push(b"o\n\nlast");
        assert_eq!(text(out.next().ok().flatten().unwrap()), "two");
        assert_eq!(text(out.next().ok().flatten().unwrap()), "");
        assert!(out.next().ok().unwrap().is_none());
        out.finish();
        assert_eq!(text(out.next().ok().flatten().unwrap()), "last");
        assert!(out.next().ok().unwrap().is_none());
    }

    #[test]
    fn invalid_utf8_is_replaced_and_long_lines_refused() {
        let mut out = Output::new(false, 4);
        out.push(b"a\xffb\n");
        assert_eq!(text(out.next().ok().flatten().unwrap()), "a\u{fffd}b");
        out.push(b"abcde\n");
        assert!(out.next().is_err());
        let mut out = Output::new(false, 4);
        out.push(b"abcdef");
        assert!(out.next().is_err());
    }

    #[test]
    fn binary_chunks_pass_as_they_come() {
        let mut out = Output::new(true, 100);
        out.push(b"a\nb");
        match out.next().ok().flatten().unwrap() {
            Message::Binary(b) => assert_eq!(&b[..], b"a\nb"),
            other => panic!("{other:?}"),
        }
        assert!(out.next().ok().unwrap().is_none());
    }
}
