//! The `exec` route kind (websocketd-style): one process per WebSocket,
//! started after the upgrade.
//!
//! * **Text mode** (default): each text message is written to the program's
//!   stdin followed by `\n` (a message that itself contains newlines reaches
//!   the program as several lines); each stdout line (without its `\n`, and
//!   without a trailing `\r`) becomes one text message; a final line without
//!   `\n` is sent when stdout ends. Invalid UTF-8 in a line is replaced with
//!   U+FFFD (lossy) rather than closing the socket. A stdout line longer than
//!   `max_message_size` closes the socket with 1009 (lines are never split).
//!   A binary message from the client closes with 1003 (the route takes text).
//! * **Binary mode** (`binary = true`): message payloads (binary or text) are
//!   written to stdin as raw bytes; each stdout read (at most 16 KiB, and at
//!   most `max_message_size`) becomes one binary message.
//! * **Backpressure**: stdout is not read again until everything from the
//!   previous read has been written to the socket, and the socket is not read
//!   again until stdin has accepted the previous message; the two directions
//!   never wait on each other, so a program like `cat` cannot deadlock. While
//!   stdin is full the client's pongs cannot be read either, so the pong
//!   deadline is not enforced then. A write to a client that accepts nothing
//!   for the send timeout closes the socket (1008, or a reset when even the
//!   close cannot be written); a program that accepts nothing on stdin for
//!   the send timeout ends the session with 1011.
//! * **stderr** lines (at most 4 KiB each, the rest cut) go to wssd's log at
//!   info level with the connection number, peer and route.
//! * **Environment**: cleared, then the `pass_env` variables that are set in
//!   wssd's environment, then `PATH=/usr/local/bin:/usr/bin:/bin` unless
//!   `PATH` was passed, then `HTTP_*` for the request headers, then the CGI
//!   variables (which win): `GATEWAY_INTERFACE`, `SERVER_SOFTWARE`,
//!   `SERVER_NAME`, `SERVER_PORT`, `SERVER_PROTOCOL`, `REQUEST_METHOD`,
//!   `REQUEST_URI`, `SCRIPT_NAME` (the route path, empty for `/`),
//!   `PATH_INFO` (the rest, not percent-decoded), `QUERY_STRING`,
//!   `REMOTE_ADDR`, `REMOTE_HOST` (the address; no DNS), `REMOTE_PORT`,
//!   `HTTPS=on` on TLS, and `SSL_CLIENT_S_DN` with `SSL_CLIENT_VERIFY=SUCCESS`
//!   for a verified client certificate (mod_ssl's names). Headers are
//!   `HTTP_` + name upper-cased with `-` as `_`; repeated headers are joined
//!   with `, ` (`; ` for Cookie). Not passed: `Authorization` and
//!   `Proxy-Authorization` (credentials, as in Apache), `Proxy` (httpoxy) and
//!   names containing `_` or other characters beyond letters, digits and `-`
//!   (they could pose as another header, as nginx and Apache also refuse).
//! * **Program lookup**: a bare program name is resolved in wssd's own `PATH`
//!   when the route is built (as `wssd check` does), not in the child's
//!   minimal `PATH`; argv\[0\] stays as written. The working directory is wssd's.
//! * **Ending**: when the socket ends first (close, drop, ping or idle
//!   timeout, shutdown, error), the process group gets SIGTERM, SIGKILL after
//!   [`KILL_GRACE`], and the program is reaped before the process slot is
//!   released. When the program exits first, whatever it left running in its
//!   group gets the same treatment, stdout is drained to the socket (until it
//!   ends, at most [`KILL_GRACE`] + 1 s), and the socket closes with 1000
//!   ("process exited with status 0") or 1011 (non-zero status or a signal).

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::config::SessionLimits;
use crate::config::limits::CLOSE_TIMEOUT;
use crate::config::route::ExecSpec;
use crate::http::ConnInfo;
use crate::keepalive::{Action, CloseReason, Keepalive};
use crate::metrics::{self, SessionMetrics};
use crate::session::{self, Ending};

/// Time between SIGTERM and SIGKILL for the program's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// `PATH` given to programs unless `PATH` is listed in `pass_env`.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Largest single read from stdout (and largest binary message from it).
const READ_CHUNK: usize = 16 * 1024;
/// Longest stderr line logged; the rest of the line is cut.
const STDERR_LINE_MAX: usize = 4 * 1024;
/// How long stdout may keep flowing after the program exited, beyond the grace.
const DRAIN_EXTRA: Duration = Duration::from_secs(1);
/// How long the stderr logger may take to finish after the program ended.
const STDERR_FINISH: Duration = Duration::from_secs(1);
/// Poll interval while waiting for leftovers in the process group.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Numbers exec sessions in logs (there is no server-wide connection id).
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// An exec route: its command and its process cap.
#[derive(Debug)]
pub struct ExecRoute {
    pub spec: ExecSpec,
    processes: Arc<Semaphore>,
    /// The program, resolved in wssd's `PATH` when given as a bare name.
    program: PathBuf,
}

impl ExecRoute {
    pub fn new(spec: ExecSpec) -> Self {
        let program = spec
            .command
            .first()
            .map(|p| resolve_program(p))
            .unwrap_or_default();
        ExecRoute {
            processes: Arc::new(Semaphore::new(spec.max_processes)),
            spec,
            program,
        }
    }

    /// A process slot, or `None` when `max_processes` run already.
    pub fn try_reserve(&self) -> Option<OwnedSemaphorePermit> {
        self.processes.clone().try_acquire_owned().ok()
    }
}

/// What the program learns about the request (CGI-style environment).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub conn: ConnInfo,
    /// The route's path prefix (PATH_INFO is what follows it).
    pub route_path: String,
}

/// Runs the program for one WebSocket until either side ends.
pub async fn run<S>(
    mut ws: WebSocketStream<S>,
    route: Arc<ExecRoute>,
    request: ExecRequest,
    process: OwnedSemaphorePermit,
    limits: SessionLimits,
    shutdown: CancellationToken,
    counters: SessionMetrics,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let peer = request.conn.peer;
    let route_path: Arc<str> = request.route_path.as_str().into();
    let program = route.spec.command.first().cloned().unwrap_or_default();

    let spawned = spawn(&route, &request).and_then(|child| match child.id() {
        Some(pid) => Ok((child, pid)),
        None => Err(io::Error::other("the program exited at once")),
    });
    let (mut child, pid) = match spawned {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(conn, %peer, route = %route_path, %program, %error, "exec: could not start the program");
            let ending = session::close_for(ws, CloseReason::ProgramNotStarted).await;
            drop(process);
            return ending;
        }
    };
    tracing::info!(conn, %peer, route = %route_path, %program, pid, "exec: program started");
    let stderr_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(log_stderr(e, conn, peer, route_path.clone())));
    let mut program_state = Program {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        pgid: pid as i32,
        child,
        exited: None,
        armed: true,
    };
    let ctx = Ctx {
        binary: route.spec.binary,
        limits: &limits,
        shutdown: &shutdown,
        counters: &counters,
    };
    let stop = relay(&mut ws, &mut program_state, &ctx).await;

    let terminate = program_state.stop_group();
    let ending = match stop {
        Stop::Exited(status) => {
            let (code, reason) = exit_close(status);
            tokio::join!(session::close(ws, code, &reason), terminate).0
        }
        Stop::PeerClosed(code) => {
            terminate.await;
            Ending::ClosedByPeer(code)
        }
        Stop::Dropped => {
            terminate.await;
            Ending::Dropped
        }
        Stop::Stalled => {
            tracing::info!(conn, %peer, route = %route_path, "exec: client stopped reading; closing the connection");
            let close = session::close_for(ws, CloseReason::NotReading);
            tokio::join!(close, terminate).0
        }
        Stop::StdinStalled => {
            tracing::info!(conn, %peer, route = %route_path, "exec: program stopped reading its stdin; closing the connection");
            let close = session::close_for(ws, CloseReason::ProgramNotReading);
            tokio::join!(close, terminate).0
        }
        Stop::Closed(reason) => tokio::join!(session::close_for(ws, reason), terminate).0,
        Stop::ReadError(error) => tokio::join!(session::fail(ws, error), terminate).0,
        Stop::OutputTooLong => {
            tracing::warn!(conn, %peer, route = %route_path, max = limits.max_message_size, "exec: program wrote a line longer than max_message_size");
            let close = session::close_for(ws, CloseReason::OutputTooLong);
            tokio::join!(close, terminate).0
        }
        Stop::WaitFailed(error) => {
            tracing::error!(conn, %peer, route = %route_path, pid, %error, "exec: lost track of the program");
            let close = session::close_for(ws, CloseReason::ProgramLost);
            tokio::join!(close, terminate).0
        }
    };
    match program_state.exited {
        Some(status) => {
            tracing::info!(conn, %peer, route = %route_path, pid, %status, "exec: program ended")
        }
        None => {
            tracing::warn!(conn, %peer, route = %route_path, pid, "exec: program ended, status unknown")
        }
    }
    if let Some(mut task) = stderr_task {
        let _ = tokio::time::timeout(STDERR_FINISH, &mut task).await;
        task.abort();
    }
    drop(process);
    ending
}

/// The close code and reason for a program's exit status.
fn exit_close(status: ExitStatus) -> (CloseCode, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => (CloseCode::Normal, "process exited with status 0".into()),
        (Some(code), _) => (
            CloseCode::Error,
            format!("process exited with status {code}"),
        ),
        (None, Some(signal)) => (
            CloseCode::Error,
            format!("process killed by signal {signal}"),
        ),
        (None, None) => (CloseCode::Error, "process ended".into()),
    }
}

/// Why the relay stopped.
enum Stop {
    /// The program exited and its output was drained.
    Exited(ExitStatus),
    PeerClosed(u16),
    Dropped,
    /// The client accepted nothing for the send timeout.
    Stalled,
    /// The program accepted nothing on stdin for the send timeout.
    StdinStalled,
    /// Closed by wssd for this reason (shutdown, keepalive, a binary
    /// message on a text route).
    Closed(CloseReason),
    ReadError(WsError),
    OutputTooLong,
    WaitFailed(io::Error),
}

/// Session-wide settings the relay reads.
struct Ctx<'a> {
    binary: bool,
    limits: &'a SessionLimits,
    shutdown: &'a CancellationToken,
    counters: &'a SessionMetrics,
}

/// The running program and its pipes.
struct Program {
    child: Child,
    pgid: i32,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    exited: Option<ExitStatus>,
    /// Whether the group may still have members (SIGKILLed on drop).
    armed: bool,
}

impl Program {
    /// SIGTERM to the group, SIGKILL after [`KILL_GRACE`] to whatever is
    /// left; reaps the program. Returns once the group is empty (or killed).
    async fn stop_group(&mut self) {
        let deadline = Instant::now() + KILL_GRACE;
        signal_group(self.pgid, libc::SIGTERM);
        if self.exited.is_none() {
            let status = match tokio::time::timeout_at(deadline, self.child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal_group(self.pgid, libc::SIGKILL);
                    self.child.wait().await
                }
            };
            self.exited = status.ok();
        }
        // Members that outlive the program (its background jobs).
        while group_alive(self.pgid) {
            if Instant::now() >= deadline {
                signal_group(self.pgid, libc::SIGKILL);
                break;
            }
            tokio::time::sleep(GROUP_POLL).await;
        }
        self.armed = false;
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // The session was cancelled midway (runtime shutdown): no grace.
        // (`kill_on_drop` covers the leader; this covers the rest.)
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// Moves data both ways until one side ends; see the module docs.
async fn relay<S>(ws: &mut WebSocketStream<S>, p: &mut Program, ctx: &Ctx<'_>) -> Stop
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = ctx.limits;
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut keepalive = Keepalive::new(limits.ping_interval, limits.idle_timeout);
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
            _ = ctx.shutdown.cancelled() => return Stop::Closed(CloseReason::Shutdown),
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
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        metrics::close_code(code);
                        // tungstenite queued the reply; flush it and finish.
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.flush()).await;
                        return Stop::PeerClosed(code);
                    }
                    Ok(Message::Pong(_)) => {
                        keepalive.on_pong();
                        continue;
                    }
                    Ok(Message::Ping(_)) => {
                        // The pong is queued by tungstenite; send it now.
                        match guarded(ws.flush(), ctx, stall).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(_)) => return Stop::Dropped,
                            Err(stop) => return stop,
                        }
                    }
                    Ok(Message::Frame(_)) => continue,
                    Ok(Message::Text(text)) => {
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

fn count_in(ctx: &Ctx<'_>, len: usize) {
    ctx.counters.messages_in.increment(1);
    ctx.counters.bytes_in.increment(len as u64);
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
        _ = ctx.shutdown.cancelled() => Err(Stop::Closed(CloseReason::Shutdown)),
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
        counters.messages_out.increment(1);
        counters.bytes_out.increment(message.len() as u64);
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

/// Logs the program's stderr line by line until it ends.
async fn log_stderr(
    mut stderr: ChildStderr,
    conn: u64,
    peer: std::net::SocketAddr,
    route: Arc<str>,
) {
    let mut buf = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let emit = |line: &[u8], cut: bool| {
        let text = String::from_utf8_lossy(line);
        let more = if cut { " [cut]" } else { "" };
        tracing::info!(conn, %peer, %route, "stderr: {}{more}", text.trim_end_matches('\r'));
    };
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
            let (body, ends) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            let room = STDERR_LINE_MAX - line.len();
            if body.len() > room {
                cut = true;
            }
            line.extend_from_slice(&body[..body.len().min(room)]);
            if ends {
                emit(&line, cut);
                line.clear();
                cut = false;
            }
        }
    }
    if !line.is_empty() {
        emit(&line, cut);
    }
}

/// Starts the program with the route's command and the request's environment.
fn spawn(route: &ExecRoute, request: &ExecRequest) -> io::Result<Child> {
    let spec = &route.spec;
    let Some((arg0, args)) = spec.command.split_first() else {
        return Err(io::Error::other("the route has no command"));
    };
    let mut cmd = Command::new(&route.program);
    cmd.arg0(arg0)
        .args(args)
        .env_clear()
        .envs(environment(spec, request))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// A bare name looked up in wssd's `PATH`; a path as given.
fn resolve_program(program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| is_executable(candidate))
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program's whole environment; see the module docs.
pub fn environment(spec: &ExecSpec, request: &ExecRequest) -> Vec<(OsString, OsString)> {
    use std::collections::BTreeMap;
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    for name in &spec.pass_env {
        if let Some(value) = std::env::var_os(name) {
            env.insert(name.into(), value);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());

    let headers = &request.headers;
    for name in headers.keys() {
        let lower = name.as_str();
        if matches!(lower, "authorization" | "proxy-authorization" | "proxy")
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            continue;
        }
        let key = format!("HTTP_{}", lower.to_ascii_uppercase().replace('-', "_"));
        let separator: &[u8] = if lower == "cookie" { b"; " } else { b", " };
        let mut value = Vec::new();
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(separator);
            }
            value.extend_from_slice(v.as_bytes());
        }
        env.insert(key.into(), OsString::from_vec(value));
    }

    let conn = &request.conn;
    let uri = &request.uri;
    let path = uri.path();
    let route = request.route_path.as_str();
    let (script_name, path_info) = if route == "/" {
        ("", path)
    } else {
        (route, path.strip_prefix(route).unwrap_or(""))
    };
    let listener: Option<std::net::SocketAddr> = conn.listener.parse().ok();
    let host_header = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(strip_port)
        .filter(|h| !h.is_empty());
    let server_name = host_header
        .map(str::to_string)
        .or_else(|| uri.host().map(str::to_string))
        .or_else(|| listener.map(|l| l.ip().to_string()))
        .unwrap_or_default();
    let server_port = listener.map(|l| l.port().to_string()).unwrap_or_default();
    let remote = conn.peer.ip().to_canonical().to_string();

    let mut cgi = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        (
            "SERVER_SOFTWARE",
            format!("wssd/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("SERVER_NAME", server_name),
        ("SERVER_PORT", server_port),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_string()),
        ("REQUEST_METHOD", "GET".to_string()),
        (
            "REQUEST_URI",
            uri.path_and_query()
                .map_or(path, |pq| pq.as_str())
                .to_string(),
        ),
        ("SCRIPT_NAME", script_name.to_string()),
        ("PATH_INFO", path_info.to_string()),
        ("QUERY_STRING", uri.query().unwrap_or("").to_string()),
        ("REMOTE_ADDR", remote.clone()),
        ("REMOTE_HOST", remote),
        ("REMOTE_PORT", conn.peer.port().to_string()),
    ];
    if conn.tls {
        cgi.push(("HTTPS", "on".to_string()));
    }
    if let Some(subject) = &conn.client_subject {
        cgi.push(("SSL_CLIENT_S_DN", subject.to_string()));
        cgi.push(("SSL_CLIENT_VERIFY", "SUCCESS".to_string()));
    }
    for (key, value) in cgi {
        env.insert(key.into(), value.into());
    }
    env.into_iter().collect()
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
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

    #[test]
    fn host_port_stripping() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn exit_codes_map_to_close_codes() {
        use std::os::unix::process::ExitStatusExt;
        let (code, _) = exit_close(ExitStatus::from_raw(0));
        assert_eq!(code, CloseCode::Normal);
        let (code, reason) = exit_close(ExitStatus::from_raw(3 << 8));
        assert_eq!(code, CloseCode::Error);
        assert_eq!(reason, "process exited with status 3");
        let (code, reason) = exit_close(ExitStatus::from_raw(9));
        assert_eq!(code, CloseCode::Error);
        assert_eq!(reason, "process killed by signal 9");
    }
}
