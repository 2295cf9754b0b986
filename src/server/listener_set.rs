//! The running listeners, by the address the configuration names: started
//! with the server, then added and stopped by configuration reloads. A
//! reload first binds every new address ([`ListenerSet::plan`]: one that
//! cannot be bound fails the whole reload, nothing changed), then
//! [`ListenerSet::apply`] starts their accept loops and stops the loops of
//! the addresses no longer named (their open connections go on under the
//! usual rules, like after an upgrade's handover). The sockets a binary
//! upgrade hands over ([`HandoverList`]) follow every change.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use super::bind::BindError;
use super::listener::{self, Listener, Timeouts};
use crate::config::Config;
use crate::http::HttpContext;
use crate::upgrade::{Handover, HandoverList};

/// A listener's identity across reloads: the configured address (the
/// actual one for sockets handed over by a previous wssd) and whether it
/// speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = if self.tls { "--listen" } else { "--http" };
        write!(f, "{flag} {}", self.addr)
    }
}

/// What every accept loop shares.
pub struct Shared {
    pub ctx: Arc<HttpContext>,
    pub admission: Arc<Admission>,
    pub timeouts: Timeouts,
    pub proxy_protocol: bool,
    /// The per-listener caps (`--listen-max-connections`,
    /// `--http-max-connections`) as at start: a listener added by a reload
    /// gets the cap of its kind; changing a cap needs a restart.
    pub listener_options: crate::config::listeners::ListenerOptions,
    /// The parent of every loop's stop signal (cancelled at shutdown and at
    /// an upgrade's handover).
    pub accepting: CancellationToken,
    pub loops: TaskTracker,
    /// The TLS acceptor, when TLS is on.
    pub acceptor: Option<TlsAcceptor>,
}

struct Running {
    key: Key,
    label: Arc<str>,
    stop: CancellationToken,
    /// A copy for the upgrade handover.
    fd: OwnedFd,
}

/// The running listeners.
pub struct ListenerSet {
    running: Vec<Running>,
    shared: Shared,
    /// The admin socket, handed over too (not reloadable).
    admin: Option<OwnedFd>,
    handover: HandoverList,
    /// Socket activation by the service manager: the sockets are its to
    /// choose, so reloads leave them as they are.
    fixed: bool,
}

/// Why the listeners of a new configuration cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(
        "{0}: a TLS listener, but this server runs with TLS off; turning TLS on needs a restart (or SIGUSR2)"
    )]
    NoTls(Key),
}

/// New listeners already bound, and the ones to stop.
pub struct Plan {
    start: Vec<(Key, Listener)>,
    stop: Vec<Key>,
}

/// What [`ListenerSet::apply`] did, for the log.
#[derive(Debug, Default)]
pub struct ListenerChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl ListenerSet {
    /// Starts an accept loop per listener. `fixed` when the service
    /// manager passed the sockets.
    pub fn start(
        listeners: Vec<(Key, Listener)>,
        admin: Option<&tokio::net::TcpListener>,
        shared: Shared,
        fixed: bool,
    ) -> std::io::Result<ListenerSet> {
        let admin = admin.map(|a| a.as_fd().try_clone_to_owned()).transpose()?;
        let mut set = ListenerSet {
            running: Vec::new(),
            shared,
            admin,
            handover: HandoverList::default(),
            fixed,
        };
        for (key, l) in listeners {
            set.spawn(key, l)?;
        }
        set.refresh_handover()?;
        Ok(set)
    }

    /// The sockets an upgrade hands over (kept current).
    pub fn handover(&self) -> HandoverList {
        self.handover.clone()
    }

    /// The listeners of `config`: what to bind (bound here) and what to stop.
    pub fn plan(&self, config: &Config) -> Result<Plan, PlanError> {
        let mut plan = Plan {
            start: Vec::new(),
            stop: Vec::new(),
        };
        if self.fixed {
            return Ok(plan);
        }
        let wanted = wanted(config);
        for key in &wanted {
            if self.running.iter().any(|r| r.key == *key) {
                continue;
            }
            let tls = match (key.tls, &self.shared.acceptor) {
                (false, _) => None,
                (true, Some(a)) => Some(a.clone()),
                (true, None) => return Err(PlanError::NoTls(*key)),
            };
            let flag = if key.tls { "--listen" } else { "--http" };
            plan.start
                .push((*key, Listener::bind(key.addr, flag, tls)?));
        }
        plan.stop = self
            .running
            .iter()
            .map(|r| r.key)
            .filter(|k| !wanted.contains(k))
            .collect();
        Ok(plan)
    }

    /// Whether the service manager chose the sockets (reloads keep them).
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// Starts the planned listeners and stops the others.
    pub fn apply(&mut self, plan: Plan, config: &Config) -> ListenerChanges {
        let mut changes = ListenerChanges::default();
        for key in plan.stop {
            if let Some(i) = self.running.iter().position(|r| r.key == key) {
                let r = self.running.remove(i);
                r.stop.cancel();
                tracing::info!(
                    "reload: stopped listening on {} ({key}); its open connections go on",
                    r.label
                );
                changes.removed.push(key.to_string());
            }
        }
        for (key, l) in plan.start {
            log_listener(&l, config);
            let label = l.label.clone();
            match self.spawn(key, l) {
                Ok(()) => changes.added.push(format!("{key} (on {label})")),
                Err(e) => tracing::error!("reload: cannot start {key}: {e}"),
            }
        }
        if let Err(e) = self.refresh_handover() {
            tracing::error!(
                "cannot keep copies of the listening sockets for SIGUSR2 upgrades: {e}"
            );
        }
        changes
    }

    fn spawn(&mut self, key: Key, l: Listener) -> std::io::Result<()> {
        let l = l.capped(&self.shared.listener_options);
        let fd = l.socket.as_fd().try_clone_to_owned()?;
        let stop = self.shared.accepting.child_token();
        let label = l.label.clone();
        let s = &self.shared;
        s.loops.spawn(listener::accept_loop(
            l,
            s.ctx.clone(),
            s.admission.clone(),
            s.timeouts,
            s.proxy_protocol,
            stop.clone(),
        ));
        self.running.push(Running {
            key,
            label,
            stop,
            fd,
        });
        Ok(())
    }

    /// Rewrites the upgrade's handover list from the running listeners.
    fn refresh_handover(&self) -> std::io::Result<()> {
        let mut list = Vec::with_capacity(self.running.len() + 1);
        for r in &self.running {
            list.push(Handover {
                fd: r.fd.try_clone()?,
                name: if r.key.tls {
                    crate::upgrade::TLS_NAME
                } else {
                    crate::systemd::PLAIN_NAME
                },
            });
        }
        if let Some(a) = &self.admin {
            list.push(Handover {
                fd: a.try_clone()?,
                name: crate::upgrade::ADMIN_NAME,
            });
        }
        if let Ok(mut sockets) = self.handover.lock() {
            *sockets = list;
        }
        Ok(())
    }
}

/// The listeners `config` names.
pub fn wanted(config: &Config) -> Vec<Key> {
    let tls = config.listen.iter().map(|&addr| Key { addr, tls: true });
    let plain = config.http.iter().map(|&addr| Key { addr, tls: false });
    tls.chain(plain).collect()
}

/// The startup line of a listener: where a browser opens it.
pub fn log_listener(l: &Listener, config: &Config) {
    let addr = l.label.as_ref();
    crate::status::live::live().declare_listener(addr, l.tls.is_some());
    let host = browser_host(addr, config);
    match &l.tls {
        Some(_) => tracing::info!(
            "listening on {addr} (TLS): open https://{host}/ ; WebSockets at {}",
            ws_urls("wss", &host, config)
        ),
        None => tracing::info!(
            "listening on {addr} (plain): open http://{host}/ ; WebSockets at {}",
            ws_urls("ws", &host, config)
        ),
    }
}

/// `localhost:PORT` for loopback listeners (what browsers and the default
/// certificate expect), the address otherwise.
fn browser_host(addr: &str, config: &Config) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_loopback() || a.ip().is_unspecified() => {
            let name = config
                .tls
                .hostnames
                .iter()
                .find(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('*'))
                .cloned()
                .unwrap_or_else(|| "localhost".into());
            format!("{name}:{}", a.port())
        }
        _ => addr.to_string(),
    }
}

fn ws_urls(scheme: &str, host: &str, config: &Config) -> String {
    let list: Vec<String> = config
        .routes
        .iter()
        .filter(|r| r.kind.is_websocket())
        .map(|r| format!("{scheme}://{host}{} ({})", r.path, r.kind.name()))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}
