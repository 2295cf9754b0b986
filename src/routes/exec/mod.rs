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
//!   `HTTPS=on` on TLS, `SSL_CLIENT_S_DN` with `SSL_CLIENT_VERIFY=SUCCESS`
//!   for a verified client certificate (mod_ssl's names), and, only when the
//!   edge authenticated the client, `REMOTE_USER` (the identity,
//!   percent-encoded as in `crate::routes::identity`) with `AUTH_TYPE`
//!   (`Bearer`, `Basic`, `JWT` or `TLS`); `pass_env` cannot list these two
//!   (an error at load), and a header can only become `HTTP_*`. Headers are
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

mod environment;
mod program;
mod pump;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stop::StopSignal;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument;

use crate::auth::Identity;
use crate::config::SessionLimits;
use crate::config::route::ExecSpec;
use crate::http::reply::ConnInfo;
use crate::keepalive::CloseReason;
use crate::metrics::SessionMetrics;
use crate::session::{self, Ending};
pub use environment::{DEFAULT_PATH, ExecRequest, environment};
pub use program::KILL_GRACE;
use program::{Program, log_stderr, resolve_program, spawn};
use pump::{Ctx, Stop, relay};

/// How long the stderr logger may take to finish after the program ended.
const STDERR_FINISH: Duration = Duration::from_secs(1);

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

    /// Admission before the 101: a process slot and the request facts the
    /// program will see (`identity`: who the edge says the client is);
    /// `None` when `max_processes` run already.
    pub fn admit<B>(
        self: &Arc<Self>,
        req: &hyper::Request<B>,
        route_path: &str,
        conn: &ConnInfo,
        identity: Option<&Identity>,
    ) -> Option<Admitted> {
        let process = self.try_reserve()?;
        Some(Admitted {
            route: self.clone(),
            request: ExecRequest {
                uri: req.uri().clone(),
                headers: req.headers().clone(),
                conn: conn.clone(),
                route_path: route_path.to_string(),
                identity: identity.cloned(),
            },
            process,
        })
    }
}

/// An admitted exec session: its slot and request, waiting for the upgrade.
pub struct Admitted {
    route: Arc<ExecRoute>,
    request: ExecRequest,
    process: OwnedSemaphorePermit,
}

/// Runs the program of an admitted session for its upgraded socket until
/// either side ends: start it, relay, close the socket for the reason the
/// relay stopped while the process group ends, then log how it ended.
pub async fn run<S>(
    mut ws: WebSocketStream<S>,
    Admitted {
        route,
        request,
        process,
    }: Admitted,
    limits: SessionLimits,
    stop: StopSignal,
    counters: &SessionMetrics,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut log = Log {
        conn: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        peer: request.conn.peer,
        route: request.route_path.as_str().into(),
        pid: 0,
    };
    let Some((mut program, stderr_task)) = start(&route, &request, &mut log) else {
        let ending = session::close_for(ws, CloseReason::ProgramNotStarted).await;
        drop(process);
        return ending;
    };
    let ctx = Ctx {
        binary: route.spec.binary,
        limits: &limits,
        stop: &stop,
        counters,
    };
    let stop = relay(&mut ws, &mut program, &ctx).await;
    let ending = close_after(ws, stop, program.stop_group(), &log, &limits).await;
    finish(&program, stderr_task, &log).await;
    drop(process);
    ending
}

/// Who a session's log lines are about.
struct Log {
    /// The session's number in logs.
    conn: u64,
    peer: std::net::SocketAddr,
    route: Arc<str>,
    pid: u32,
}

/// Starts the program and its stderr logger; `None` (logged) when it
/// could not be started.
fn start(
    route: &ExecRoute,
    request: &ExecRequest,
    log: &mut Log,
) -> Option<(Program, Option<tokio::task::JoinHandle<()>>)> {
    let Log { conn, peer, .. } = *log;
    let program = route.spec.command.first().cloned().unwrap_or_default();
    let spawned = spawn(&route.program, &route.spec, request).and_then(|child| match child.id() {
        Some(pid) => Ok((child, pid)),
        None => Err(io::Error::other("the program exited at once")),
    });
    let (mut child, pid) = match spawned {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(conn, %peer, route = %log.route, %program, %error, "exec: could not start the program");
            return None;
        }
    };
    log.pid = pid;
    tracing::info!(conn, %peer, route = %log.route, %program, pid, "exec: program started");
    let stderr_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(log_stderr(e, conn, peer, log.route.clone()).in_current_span()));
    let program = Program {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        pgid: pid as i32,
        child,
        exited: None,
        armed: true,
    };
    Some((program, stderr_task))
}

/// Closes the socket for the reason the relay stopped, while `terminate`
/// ends the program's process group.
async fn close_after<S>(
    ws: WebSocketStream<S>,
    stop: Stop,
    terminate: impl Future<Output = ()>,
    log: &Log,
    limits: &SessionLimits,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Log {
        conn, peer, pid, ..
    } = *log;
    let route = &log.route;
    let reason = match stop {
        Stop::Exited(status) => {
            let (code, reason) = exit_close(status);
            return tokio::join!(session::close(ws, code, &reason), terminate)
                .0
                .by_program();
        }
        Stop::PeerClosed(code, reason) => {
            terminate.await;
            return Ending::ClosedByPeer(code, reason);
        }
        Stop::Dropped => {
            terminate.await;
            return Ending::Dropped;
        }
        Stop::ReadError(error) => return tokio::join!(session::fail(ws, error), terminate).0,
        Stop::Stalled => {
            tracing::info!(conn, %peer, %route, "exec: client stopped reading; closing the connection");
            CloseReason::NotReading
        }
        Stop::StdinStalled => {
            tracing::info!(conn, %peer, %route, "exec: program stopped reading its stdin; closing the connection");
            CloseReason::ProgramNotReading
        }
        Stop::Closed(reason) => reason,
        Stop::OutputTooLong => {
            tracing::warn!(conn, %peer, %route, max = limits.max_message_size, "exec: program wrote a line longer than max_message_size");
            CloseReason::OutputTooLong
        }
        Stop::WaitFailed(error) => {
            tracing::error!(conn, %peer, %route, pid, %error, "exec: lost track of the program");
            CloseReason::ProgramLost
        }
    };
    tokio::join!(session::close_for(ws, reason), terminate).0
}

/// Logs how the program ended and lets its stderr logger finish.
async fn finish(program: &Program, stderr_task: Option<tokio::task::JoinHandle<()>>, log: &Log) {
    let Log {
        conn, peer, pid, ..
    } = *log;
    let route = &log.route;
    match program.exited {
        Some(status) => tracing::info!(conn, %peer, %route, pid, %status, "exec: program ended"),
        None => tracing::warn!(conn, %peer, %route, pid, "exec: program ended, status unknown"),
    }
    if let Some(mut task) = stderr_task {
        let _ = tokio::time::timeout(STDERR_FINISH, &mut task).await;
        task.abort();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
