//! systemd integration, read once from the environment by `main` before
//! any thread exists: the notification socket (`NOTIFY_SOCKET`: READY,
//! RELOADING, STOPPING, STATUS and WATCHDOG messages), the watchdog period
//! (`WATCHDOG_USEC`, `WATCHDOG_PID`) and socket-activated listeners
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`; fds from 3 on, marked
//! close-on-exec). Every one of these variables is removed from the
//! environment, so no program started later inherits them.
//!
//! `sd-notify` reads the variables and the passed fds; messages go out on a
//! non-blocking datagram socket of our own (sd-notify's `notify` opens a
//! blocking one per call and reads `NOTIFY_SOCKET` each time, which rules
//! out removing it): a service manager that stops reading costs a dropped
//! message, logged, never a blocked runtime worker.

use std::ffi::OsString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use sd_notify::NotifyState;

/// The name of a passed fd that is a plain (http:// and ws://) listener;
/// every other name is a TLS one.
pub const PLAIN_NAME: &str = "http";

/// A listening socket passed by the service manager.
#[derive(Debug)]
pub struct PassedListener {
    pub fd: OwnedFd,
    /// Its number in this process (3, 4, ...), for messages.
    pub number: RawFd,
    /// `FileDescriptorName=` of the socket unit (`unknown` when unnamed).
    pub name: String,
}

impl PassedListener {
    /// Named `http`: plain; any other name: TLS.
    pub fn is_plain(&self) -> bool {
        self.name == PLAIN_NAME
    }
}

/// The systemd environment is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "socket activation: {0}; LISTEN_FDS must count the passed fds and LISTEN_FDNAMES name each of them (colon-separated), as systemd sets them from the .socket unit"
    )]
    ListenFds(io::Error),
    #[error(
        "NOTIFY_SOCKET={}: {source}; it must be the path (or @abstract name) of the service manager's datagram socket",
        .path.to_string_lossy()
    )]
    NotifySocket {
        path: OsString,
        #[source]
        source: io::Error,
    },
}

/// What the service manager gave this process.
#[derive(Debug, Default)]
pub struct Systemd {
    pub notifier: Notifier,
    /// Socket-activated listeners, in fd order.
    pub listeners: Vec<PassedListener>,
    /// Send WATCHDOG=1 at least this often (half of `WATCHDOG_USEC`).
    pub watchdog: Option<Duration>,
}

impl Systemd {
    /// Reads and removes the variables, takes ownership of the passed fds.
    ///
    /// # Safety
    ///
    /// Removes environment variables: call it before any other thread
    /// exists (before the tokio runtime starts).
    pub unsafe fn from_environment() -> Result<Systemd, SystemdError> {
        // sd-notify pairs LISTEN_FDNAMES with no fds (an error) when
        // LISTEN_PID names another process: check the PID first, as
        // sd_listen_fds(3) does.
        let ours = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            == Some(std::process::id());
        // SAFETY: the caller promises no other thread exists.
        let passed: io::Result<Vec<(RawFd, String)>> = unsafe {
            let passed = sd_notify::listen_fds_with_names_and_unset_env();
            if ours {
                passed.map(Iterator::collect)
            } else {
                Ok(Vec::new())
            }
        };
        // SAFETY: as above.
        let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
        let notify_path = std::env::var_os("NOTIFY_SOCKET");
        // SAFETY: as above.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let listeners = passed
            .map_err(SystemdError::ListenFds)?
            .into_iter()
            .map(|(number, name)| PassedListener {
                // SAFETY: LISTEN_PID named this process, so fds 3.. were
                // passed to it and nothing else owns them; sd-notify has
                // checked each is open (it set FD_CLOEXEC on it).
                fd: unsafe { OwnedFd::from_raw_fd(number) },
                number,
                name,
            })
            .collect();
        let notifier = match notify_path {
            Some(path) if !path.is_empty() => Notifier::open(&path)
                .map_err(|source| SystemdError::NotifySocket { path, source })?,
            _ => Notifier::default(),
        };
        Ok(Systemd {
            notifier,
            listeners,
            watchdog: watchdog.filter(|d| !d.is_zero()).map(|d| d / 2),
        })
    }
}

/// Sends sd_notify messages; does nothing when not started by a service
/// manager. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for a binary upgrade's new process.
    path: OsString,
    /// The last "serving ..." status, repeated with READY=1 after a reload.
    serving: Mutex<String>,
}

impl Notifier {
    fn open(path: &std::ffi::OsStr) -> io::Result<Notifier> {
        let addr = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr,
                path: path.to_os_string(),
                serving: Mutex::new(String::new()),
            })),
        })
    }

    /// `NOTIFY_SOCKET` as this process received it.
    pub fn path(&self) -> Option<&std::ffi::OsStr> {
        self.target.as_ref().map(|t| t.path.as_os_str())
    }

    /// A service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram with every state; a failure is logged, not fatal.
    pub fn notify(&self, states: &[NotifyState]) {
        let Some(target) = &self.target else { return };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(e) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            tracing::warn!(error = %e, message = message.trim_end(), "cannot notify the service manager");
        }
    }

    /// READY=1 with the status line (kept for [`Notifier::reloaded`]).
    pub fn ready(&self, status: &str) {
        if let Some(target) = &self.target
            && let Ok(mut serving) = target.serving.lock()
        {
            serving.clear();
            serving.push_str(status);
        }
        self.notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// RELOADING=1 with the monotonic time systemd (>= 253) asks for.
    pub fn reloading(&self, what: &str) {
        let mut states = vec![NotifyState::Reloading, NotifyState::Status(what)];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.notify(&states);
    }

    /// READY=1 after a reload, with the last serving status.
    pub fn reloaded(&self) {
        let status = self
            .target
            .as_ref()
            .and_then(|t| t.serving.lock().ok().map(|s| s.clone()))
            .unwrap_or_default();
        self.notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// STOPPING=1 with a status line.
    pub fn stopping(&self, status: &str) {
        self.notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// Sends WATCHDOG=1 every `period` from a runtime task, so the pings stop
/// when the runtime stops making progress. Ends with the runtime.
pub fn spawn_watchdog(notifier: Notifier, period: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            notifier.notify(&[NotifyState::Watchdog]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str) -> PassedListener {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        PassedListener {
            fd: OwnedFd::from(socket),
            number: 3,
            name: name.into(),
        }
    }

    #[test]
    fn only_http_is_plain() {
        assert!(listener("http").is_plain());
        for name in ["https", "unknown", "", "HTTP", "http2"] {
            assert!(!listener(name).is_plain(), "{name:?} must be TLS");
        }
    }

    #[test]
    fn notifier_sends_every_state_in_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::open(path.as_os_str()).unwrap();
        notifier.ready("serving 2 routes");
        notifier.reloading("reloading certificates");
        notifier.reloaded();
        notifier.stopping("draining");
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        for _ in 0..4 {
            let n = receiver.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got[0], "READY=1\nSTATUS=serving 2 routes\n");
        assert!(
            got[1].starts_with("RELOADING=1\nSTATUS=reloading certificates\nMONOTONIC_USEC="),
            "{:?}",
            got[1]
        );
        assert_eq!(got[2], "READY=1\nSTATUS=serving 2 routes\n");
        assert_eq!(got[3], "STOPPING=1\nSTATUS=draining\n");
    }

    #[test]
    fn a_manager_that_stops_reading_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::open(path.as_os_str()).unwrap();
        // Far more than a datagram queue holds; each send returns at once.
        for _ in 0..10_000 {
            notifier.notify(&[NotifyState::Watchdog]);
        }
    }

    #[test]
    fn disabled_notifier_does_nothing() {
        let n = Notifier::default();
        assert!(!n.is_enabled());
        n.ready("x");
    }
}
