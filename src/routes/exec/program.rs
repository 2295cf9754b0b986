//! The program's process: starting it in its own process group, logging
//! its stderr, and ending the whole group (SIGTERM, then SIGKILL).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

use super::environment::{ExecRequest, environment};
use crate::config::route::ExecSpec;

/// Time between SIGTERM and SIGKILL for the program's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Longest stderr line logged; the rest of the line is cut.
const STDERR_LINE_MAX: usize = 4 * 1024;

/// Poll interval while waiting for leftovers in the process group.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// The running program and its pipes.
pub(super) struct Program {
    pub(super) child: Child,
    pub(super) pgid: i32,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) stdout: Option<ChildStdout>,
    pub(super) exited: Option<ExitStatus>,
    /// Whether the group may still have members (SIGKILLed on drop).
    pub(super) armed: bool,
}

impl Program {
    /// SIGTERM to the group, SIGKILL after [`KILL_GRACE`] to whatever is
    /// left; reaps the program. Returns once the group is empty (or killed).
    pub(super) async fn stop_group(&mut self) {
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

pub(super) fn signal_group(pgid: i32, signal: i32) {
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

/// Logs the program's stderr line by line until it ends.
pub(super) async fn log_stderr(
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
pub(super) fn spawn(program: &Path, spec: &ExecSpec, request: &ExecRequest) -> io::Result<Child> {
    let Some((arg0, args)) = spec.command.split_first() else {
        return Err(io::Error::other("the route has no command"));
    };
    let mut cmd = Command::new(program);
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
pub(super) fn resolve_program(program: &str) -> PathBuf {
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
