//! Zero-downtime binary upgrade (SIGUSR2), like nginx's USR2: the running
//! wssd starts the binary at the path it was started with (`argv[0]`, so a
//! file replaced on disk is the NEW binary; `/proc/self/exe` would name the
//! old, deleted one) with the same arguments and environment, handing it its
//! listening sockets (TLS, plain and admin) with systemd's socket-activation
//! protocol: fds 3.., `LISTEN_FDS`, `LISTEN_FDNAMES` (`https`, `http`,
//! `admin`). The new process adopts them (`server::bind::adopt`), so the
//! kernel's accept queues are shared and never closed: no connection attempt
//! is refused during the switch.
//!
//! `LISTEN_PID` cannot be set to the child's pid between fork and exec
//! (setenv is not async-signal-safe in a multi-threaded parent), so the old
//! process sets `WSSD_UPGRADE_PARENT` to its own pid and the new one, still
//! single-threaded, sets `LISTEN_PID` to itself when its parent is that pid.
//!
//! The new process reports ready on a socket pair (`WSSD_UPGRADE_READY_FD`)
//! when its `/readyz` would answer 200; only then does the old one stop
//! accepting (and tell systemd `MAINPID=` the new pid). If the new binary
//! exits, closes the pair or is not ready within [`READY_DEADLINE`], the old
//! one kills it, logs why and keeps serving.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::systemd::Notifier;

/// How long the new binary has to report ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Variables of the handover (besides `LISTEN_FDS` and `LISTEN_FDNAMES`).
const PARENT_VAR: &str = "WSSD_UPGRADE_PARENT";
const READY_VAR: &str = "WSSD_UPGRADE_READY_FD";
/// The message of readiness.
const READY: &[u8] = b"READY\n";

/// `FileDescriptorName` of the admin listener in a handover.
pub const ADMIN_NAME: &str = "admin";
/// `FileDescriptorName` of a TLS listener in a handover.
pub const TLS_NAME: &str = "https";

/// Why an upgrade did not happen; the old process keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot prepare the handover: {0}")]
    Prepare(io::Error),
    #[error("cannot start {}: {source}", .path.to_string_lossy())]
    Spawn {
        path: OsString,
        #[source]
        source: io::Error,
    },
    #[error("the new process (pid {pid}) exited before it was ready ({status})")]
    Exited { pid: u32, status: String },
    #[error("the new process (pid {pid}) was not ready within {deadline:?}; killed it")]
    Timeout { pid: u32, deadline: Duration },
    #[error("the new process (pid {pid}) failed to report ready: {reason}; killed it")]
    Broken { pid: u32, reason: String },
}

/// The sockets an upgrade hands over, kept current by configuration
/// reloads that add or remove listeners (`crate::server::reload`).
pub type HandoverList = std::sync::Arc<std::sync::Mutex<Vec<Handover>>>;

/// A listening socket to hand over, with its name.
#[derive(Debug)]
pub struct Handover {
    pub fd: OwnedFd,
    pub name: &'static str,
}

/// Where the new process says it is ready (set in an upgrade child only).
#[derive(Debug)]
pub struct ReadyPipe(std::os::unix::net::UnixStream);

impl ReadyPipe {
    /// Tells the old process this one serves; it then stops accepting.
    pub fn ready(mut self) {
        if let Err(e) = self.0.write_all(READY) {
            tracing::warn!(error = %e, "cannot tell the old process that this one is ready");
        }
    }
}

/// In a process started by an upgrade: takes the ready pipe and makes the
/// handed-over listeners this process's (`LISTEN_PID`), for
/// [`crate::systemd::Systemd::from_environment`]. Removes the variables.
///
/// # Safety
///
/// Changes the environment: call it before any other thread exists.
pub unsafe fn take_from_environment() -> Option<ReadyPipe> {
    let parent = std::env::var(PARENT_VAR).ok();
    let ready = std::env::var(READY_VAR).ok();
    // SAFETY: the caller promises no other thread exists.
    unsafe {
        std::env::remove_var(PARENT_VAR);
        std::env::remove_var(READY_VAR);
    }
    let parent: u32 = parent?.parse().ok()?;
    if parent != std::os::unix::process::parent_id() {
        // Not started by that wssd (e.g. a grandchild): nothing was passed.
        return None;
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("LISTEN_PID", std::process::id().to_string()) };
    let fd: RawFd = ready?.parse().ok()?;
    // The fd must be open before it is owned.
    // SAFETY: fcntl on any number is harmless; the answer says if it is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the parent (checked above) passed this fd to us alone.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: as above (fd is open).
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(ReadyPipe(std::os::unix::net::UnixStream::from(owned)))
}

/// What the old process needs to start its successor.
#[derive(Debug)]
pub struct Upgrader {
    /// The program and its arguments ([`Upgrader::this_program`]).
    pub program: OsString,
    pub args: Vec<OsString>,
    /// How long the new process has to report ready.
    pub deadline: Duration,
    /// What is listening now (listeners a reload added included).
    pub sockets: HandoverList,
    pub notifier: Notifier,
    /// `WATCHDOG_USEC` to pass on (systemd's watchdog follows MAINPID).
    pub watchdog: Option<Duration>,
}

impl Upgrader {
    /// The path this process was started with (`argv[0]`, looked up in
    /// `PATH` again when it has no slash) and its arguments.
    pub fn this_program() -> (OsString, Vec<OsString>) {
        let mut args = std::env::args_os();
        let program = args.next().unwrap_or_else(|| OsString::from("wssd"));
        (program, args.collect())
    }

    /// Answers SIGUSR2 until an upgrade succeeds (returns the new pid); a
    /// failed one is logged and the old process keeps serving.
    pub async fn serve(&self, mut usr2: tokio::signal::unix::Signal) -> u32 {
        loop {
            if usr2.recv().await.is_none() {
                return std::future::pending().await;
            }
            tracing::info!("SIGUSR2: starting the new binary and handing over the listeners");
            crate::metrics::upgrade("started");
            match self.upgrade().await {
                Ok(pid) => {
                    crate::metrics::upgrade("ok");
                    tracing::info!(pid, "the new process is ready; this one stops accepting");
                    self.notifier.notify(&[
                        crate::systemd::NotifyState::MainPid(pid),
                        crate::systemd::NotifyState::Status(&format!(
                            "upgraded: pid {pid} serves; pid {} drains",
                            std::process::id()
                        )),
                    ]);
                    return pid;
                }
                Err(e) => {
                    crate::metrics::upgrade("failed");
                    tracing::error!("upgrade failed, this process keeps serving: {e}");
                }
            }
        }
    }

    /// Starts the successor and waits until it is ready.
    async fn upgrade(&self) -> Result<u32, UpgradeError> {
        let (mut ours, theirs) = tokio::net::UnixStream::pair().map_err(UpgradeError::Prepare)?;
        let theirs = theirs
            .into_std()
            .map(OwnedFd::from)
            .map_err(UpgradeError::Prepare)?;
        let (mut command, sources) = self.command(&theirs)?;
        let spawned = command.spawn();
        // The child has its copies now (or never will).
        drop((sources, theirs));
        let mut child = spawned.map_err(|source| UpgradeError::Spawn {
            path: self.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(
            pid,
            "new process started; waiting up to {:?} for it to be ready",
            self.deadline
        );
        let mut buf = [0u8; 16];
        let outcome = tokio::select! {
            read = tokio::time::timeout(self.deadline, ours.read(&mut buf)) => match read {
                Err(_) => Err(UpgradeError::Timeout { pid, deadline: self.deadline }),
                Ok(Ok(n)) if buf[..n].starts_with(READY) => Ok(pid),
                Ok(Ok(0)) => Err(self.exited(&mut child, pid).await),
                Ok(Ok(_)) => Err(UpgradeError::Broken { pid, reason: "unexpected message".into() }),
                Ok(Err(e)) => Err(UpgradeError::Broken { pid, reason: e.to_string() }),
            },
            status = child.wait() => Err(UpgradeError::Exited {
                pid,
                status: status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            }),
        };
        match outcome {
            Ok(pid) => {
                // The successor lives on: not killed when the handle drops.
                std::mem::forget(child);
                Ok(pid)
            }
            Err(e) => {
                let _ = child.kill().await;
                Err(e)
            }
        }
    }

    /// The pair closed: say how the child ended if it did.
    async fn exited(&self, child: &mut tokio::process::Child, pid: u32) -> UpgradeError {
        match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            Ok(Ok(status)) => UpgradeError::Exited {
                pid,
                status: status.to_string(),
            },
            _ => UpgradeError::Broken {
                pid,
                reason: "it closed the ready pipe".into(),
            },
        }
    }

    /// The same program, arguments and environment, plus the handover.
    /// The fds returned must stay open until the command is spawned.
    fn command(
        &self,
        ready: &OwnedFd,
    ) -> Result<(tokio::process::Command, Vec<OwnedFd>), UpgradeError> {
        let sockets = self
            .sockets
            .lock()
            .map_err(|_| UpgradeError::Prepare(io::Error::other("handover list poisoned")))?;
        let count = sockets.len();
        // Place every fd above its target range first (3..=3+count), so the
        // dup2 calls in the child never overwrite a source.
        let floor = 3 + count as RawFd + 1;
        let mut sources: Vec<OwnedFd> = Vec::with_capacity(count + 1);
        for fd in sockets
            .iter()
            .map(|s| s.fd.as_raw_fd())
            .chain([ready.as_raw_fd()])
        {
            // SAFETY: fd is open (owned by self or `ready`); F_DUPFD_CLOEXEC
            // returns a new fd we then own.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
            if dup < 0 {
                return Err(UpgradeError::Prepare(io::Error::last_os_error()));
            }
            // SAFETY: just created, owned by nobody else.
            sources.push(unsafe { OwnedFd::from_raw_fd(dup) });
        }
        let raw: Vec<RawFd> = sources.iter().map(AsRawFd::as_raw_fd).collect();
        let names: Vec<&str> = sockets.iter().map(|s| s.name).collect();
        drop(sockets);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env("LISTEN_FDS", count.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env(PARENT_VAR, std::process::id().to_string())
            .env(READY_VAR, (3 + count).to_string())
            .kill_on_drop(true);
        if let Some(path) = self.notifier.path() {
            command.env("NOTIFY_SOCKET", path);
        }
        if let Some(period) = self.watchdog {
            command.env("WATCHDOG_USEC", (period * 2).as_micros().to_string());
        }
        // SAFETY: only dup2 (async-signal-safe) runs between fork and exec;
        // dup2 leaves the new fd without FD_CLOEXEC, so exactly these fds
        // are inherited.
        unsafe {
            command.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok((command, sources))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    /// An upgrader that runs `sh -c SCRIPT` with one TLS listener.
    fn upgrader(script: &str, deadline: Duration) -> (Upgrader, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = OwnedFd::from(listener.try_clone().unwrap());
        let upgrader = Upgrader {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            deadline,
            sockets: std::sync::Arc::new(std::sync::Mutex::new(vec![Handover {
                fd,
                name: TLS_NAME,
            }])),
            notifier: Notifier::default(),
            watchdog: None,
        };
        (upgrader, listener)
    }

    fn socket_inode(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[tokio::test]
    async fn the_new_process_gets_the_same_listener_at_fd_3_and_reports_ready() {
        let (up, listener) = upgrader("", Duration::from_secs(10));
        let inode = socket_inode(listener.as_raw_fd());
        let script = format!(
            r#"test "$LISTEN_FDS" = 1 && test "$LISTEN_FDNAMES" = https && test -z "$LISTEN_PID" \
            && test "$WSSD_UPGRADE_PARENT" = "$PPID" && test "$WSSD_UPGRADE_READY_FD" = 4 \
            && test "$(readlink /proc/self/fd/3)" = "{inode}" && printf 'READY\n' >&4 && exec sleep 5"#
        );
        let up = Upgrader {
            args: vec!["-c".into(), script.into()],
            ..up
        };
        let pid = up.upgrade().await.unwrap();
        assert!(alive(pid), "the new process lives on");
        // SAFETY: ends the sleep this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }

    #[tokio::test]
    async fn a_new_process_that_exits_is_reported_with_its_status() {
        let (up, _l) = upgrader("echo broken >&2; exit 3", Duration::from_secs(10));
        let err = up.upgrade().await.unwrap_err();
        assert!(
            matches!(&err, UpgradeError::Exited { status, .. } if status.contains('3')),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_new_process_not_ready_in_time_is_killed() {
        let (up, _l) = upgrader("exec sleep 30", Duration::from_millis(300));
        let err = up.upgrade().await.unwrap_err();
        let UpgradeError::Timeout { pid, .. } = err else {
            panic!("expected a timeout, got {err}");
        };
        assert!(!alive(pid), "the late process was killed and reaped");
    }

    #[tokio::test]
    async fn a_wrong_message_is_refused_and_the_process_killed() {
        let (up, _l) = upgrader(
            "printf 'nope\\n' >&4; exec sleep 30",
            Duration::from_secs(10),
        );
        let err = up.upgrade().await.unwrap_err();
        let UpgradeError::Broken { pid, .. } = err else {
            panic!("expected a refusal, got {err}");
        };
        assert!(!alive(pid));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let (mut up, _l) = upgrader("", Duration::from_secs(1));
        up.program = "/nonexistent/wssd".into();
        let err = up.upgrade().await.unwrap_err();
        assert!(
            err.to_string().contains("cannot start /nonexistent/wssd"),
            "{err}"
        );
    }
}
