//! The server: binds every listener (or adopts the ones systemd passed),
//! runs the accept loops (`listener_set`) and the admin listener, tells the
//! service manager it is ready, applies configuration reloads (`reload`),
//! waits for SIGTERM/SIGINT, then drains: stop accepting, close every
//! WebSocket with 1001, wait up to the drain timeout.
//!
//! Certificates arrive already loaded (see `certs`); this module only puts
//! them in the resolver.

pub mod admission;
pub mod bind;
pub mod listener;
pub mod listener_set;
pub mod proxy_protocol;
pub mod rate;
pub mod read_ahead;
pub mod refusals;
pub mod reload;
pub mod sniff;
pub mod stall;
pub mod ticket_hold;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::admin::Readiness;
use crate::broker::redis::RedisBackend;
use crate::broker::{Broker, InstanceId};
use crate::certs::manager::{CertManager, Source};
use crate::config::BrokerConfig;
use crate::config::Config;
use crate::config::limits::HANDSHAKE_HEADROOM;
use crate::http::HttpContext;
use crate::http::router::Router;
use crate::systemd::{PassedListener, Systemd};
use crate::tls::resolver::{CertResolver, CertSet};
use crate::{admin, certs, tls};
use admission::Admission;
use bind::{AdoptError, BindError};
use listener::Listener;
use listener_set::{Key, ListenerSet};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Adopt(#[from] AdoptError),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error(transparent)]
    Routes(#[from] crate::routes::BuildError),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot keep copies of the listening sockets for SIGUSR2 upgrades: {0}")]
    Handover(std::io::Error),
    #[error("--broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
}

/// With socket activation the passed fds are the TLS and plain listeners
/// (`http` plain, any other name TLS) and `--listen`/`--http` are ignored
/// (logged): `config` gets their addresses, so certificates and messages
/// follow the sockets actually served. Call before `certs::startup`.
pub fn use_passed_listeners(
    config: &mut Config,
    passed: &[PassedListener],
) -> Result<(), AdoptError> {
    if passed.is_empty() {
        return Ok(());
    }
    let (mut listen, mut http) = (Vec::new(), Vec::new());
    for p in passed {
        let addr = bind::passed_addr(p)?;
        if p.name == crate::upgrade::ADMIN_NAME {
            config.admin = Some(addr);
        } else if p.is_plain() {
            http.push(addr);
        } else if config.tls.mode == crate::config::types::TlsMode::Off {
            return Err(AdoptError {
                number: p.number,
                name: p.name.clone(),
                problem: format!(
                    "every name but `{}` is a TLS listener, but TLS is off (--tls off); set FileDescriptorName={} in the .socket unit or turn TLS on",
                    crate::systemd::PLAIN_NAME,
                    crate::systemd::PLAIN_NAME
                ),
            });
        } else {
            listen.push(addr);
        }
    }
    tracing::info!(
        "socket activation: {} listener(s) passed by the service manager (or the previous wssd, on an upgrade) replace --listen {:?} and --http {:?}",
        passed.len(),
        config.listen,
        config.http
    );
    config.listen = listen;
    config.http = http;
    Ok(())
}

/// Runs until `shutdown` resolves (a signal in `main`), then drains.
/// `load` reads the configuration again for reloads.
pub async fn run(
    config: Config,
    load: reload::Load,
    prepared: certs::startup::Prepared,
    systemd: Systemd,
    upgraded: Option<crate::upgrade::ReadyPipe>,
    shutdown_signal: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let Systemd {
        notifier,
        listeners: passed,
        watchdog,
    } = systemd;
    if let Some(period) = watchdog {
        crate::systemd::spawn_watchdog(notifier.clone(), period);
    }
    crate::budget::install(config.limits.memory_budget);
    let broker = match &config.broker {
        BrokerConfig::Memory => Broker::memory(),
        BrokerConfig::Redis { url, ca } => {
            let instance = InstanceId::random();
            let ca = ca.as_ref().map(|c| c.pem.as_slice());
            Broker::with_backend(
                Arc::new(RedisBackend::with_ca(url, instance, ca)?),
                instance,
            )
        }
    };
    let shutdown = CancellationToken::new();
    let router = Router::new(&config.routes, &config.limits, &broker, &shutdown)?;
    let resolver = Arc::new(CertResolver::new(CertSet::default()));
    let challenges = resolver.challenges().clone();
    let tls_on = prepared.default.is_some();
    let manager = tls_on.then(|| CertManager::new(resolver.clone()));
    let mut acme_slot = None;
    if let Some(m) = &manager {
        if let Some(d) = prepared.default {
            let id = m.add(&d.label, d.source.clone(), d.names, true, Some(d.cert));
            if d.source == Source::Acme {
                acme_slot = Some(id);
            }
        }
        for s in prepared.sni {
            m.add(&s.label, s.source, s.names, false, Some(s.cert));
        }
    }
    let acceptor = match &manager {
        Some(_) => Some(TlsAcceptor::from(Arc::new(tls::server_config(
            resolver.clone(),
            config.tls.client_auth.as_ref(),
            prepared.acme.is_some(),
            config.listener_options.http2,
        )?))),
        None => None,
    };
    if let Some(auth) = &config.tls.client_auth {
        tracing::info!(
            "client certificates {} (CA {})",
            if auth.required {
                "required"
            } else {
                "verified when presented"
            },
            auth.ca.display()
        );
    }

    // Bind everything before serving anything. SIGHUP's default ends the
    // process: from here on it never does (tokio keeps the handler).
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(ServerError::Signals)?;
    let usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
        .map_err(ServerError::Signals)?;
    let (passed_admin, passed): (Vec<_>, Vec<_>) = passed
        .into_iter()
        .partition(|p| p.name == crate::upgrade::ADMIN_NAME);
    // Sockets from the service manager are its to choose; ones from the
    // previous wssd (an upgrade) follow the configuration again.
    let fixed = !passed.is_empty() && upgraded.is_none();
    let listeners = open_listeners(&config, acceptor.as_ref(), passed)?;
    let admin_socket = match (passed_admin.into_iter().next(), config.admin) {
        (Some(p), _) => Some(bind::adopt(p)?.0),
        (None, Some(addr)) => Some(bind::bind(addr, "--admin")?),
        (None, None) => None,
    };
    let status = serving_status(&config, &listeners, admin_socket.as_ref());

    let (allow_origin, allow_host) = reload::live_parts(&config);
    let ctx = Arc::new(HttpContext {
        router: arc_swap::ArcSwap::from_pointee(router),
        allow_origin,
        allow_host,
        hsts: matches!(
            config.tls.mode,
            crate::config::types::TlsMode::Acme | crate::config::types::TlsMode::Files
        ),
        sessions: Arc::new(Semaphore::new(config.limits.max_connections)),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        challenges: challenges.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        redirect_https: config
            .listener_options
            .redirect_http
            .then(|| listeners.iter().map(|(_, l)| l).find(|l| l.tls.is_some()))
            .flatten()
            .and_then(|l| l.socket.local_addr().ok())
            .map(|a| a.port()),
        auth_backoff: crate::backoff::Backoff::new(crate::auth::check::BACKOFF),
    });
    let admission = Admission::new(
        config.limits.max_connections + HANDSHAKE_HEADROOM,
        config.limits.max_connections_per_ip,
        config.listener_options.connection_rate_per_ip,
    );
    let readiness = Arc::new(Readiness::new(manager.clone(), Some(broker.clone())));
    // The broker outlives the sessions: they announce their departures
    // while draining.
    let broker_shutdown = CancellationToken::new();
    broker.start(broker_shutdown.clone());
    tracing::info!(backend = broker.backend().name(), instance = %broker.instance(), "broker started");

    let loops = TaskTracker::new();
    // Accepting stops at shutdown, or earlier at a binary upgrade's handover.
    let accepting = shutdown.child_token();
    let timeouts = listener::Timeouts {
        handshake: config.limits.handshake_timeout,
        send: config.limits.send_timeout,
    };
    for (_, l) in &listeners {
        listener_set::log_listener(l, &config);
    }
    let listener_set = ListenerSet::start(
        listeners,
        admin_socket.as_ref(),
        listener_set::Shared {
            ctx: ctx.clone(),
            admission: admission.clone(),
            timeouts,
            proxy_protocol: config.listener_options.proxy_protocol,
            listener_options: config.listener_options,
            accepting: accepting.clone(),
            loops: loops.clone(),
            acceptor: acceptor.clone(),
        },
        fixed,
    )
    .map_err(ServerError::Handover)?;
    let (program, args) = crate::upgrade::Upgrader::this_program();
    let upgrader = crate::upgrade::Upgrader {
        program,
        args,
        deadline: crate::upgrade::READY_DEADLINE,
        sockets: listener_set.handover(),
        notifier: notifier.clone(),
        watchdog,
    };
    loops.spawn(admission.clone().upkeep(shutdown.clone()));
    let (reload_requests, reload_queue) = crate::reload::queue();
    if let Some(socket) = admin_socket {
        if let Ok(addr) = socket.local_addr() {
            tracing::info!("admin listener: http://{addr}/metrics, /healthz, /readyz");
        }
        let publish = config
            .publish_token
            .clone()
            .map(|token| crate::publish::Publish::new(token, ctx.clone()));
        let reload = config
            .reload_token
            .clone()
            .map(|token| crate::reload::endpoint::Endpoint::new(token, reload_requests.clone()));
        loops.spawn(admin::serve(
            socket,
            readiness.clone(),
            publish,
            reload,
            accepting.clone(),
        ));
    }
    for route in ctx.router.load().routes() {
        route.spawn_background(&loops);
    }
    if let Some(file) = config.config_file.as_ref().filter(|_| config.watch_config) {
        let watching = crate::reload::file_watch::start(
            file.clone(),
            config.tls.check_interval,
            reload_requests.clone(),
            accepting.clone(),
        )
        .await;
        if let Some(watching) = watching {
            loops.spawn(watching);
        }
    }
    drop(reload_requests);
    let mut cert_reloads = None;
    if let Some(m) = &manager {
        let refresh_config = config.clone();
        let refresh_manager = m.clone();
        let tick: certs::watch::Tick = Arc::new(move || {
            if let Some(result) = certs::startup::refresh(&refresh_config) {
                for id in refresh_manager
                    .slots_of(&Source::SelfSigned)
                    .into_iter()
                    .chain(refresh_manager.slots_of(&Source::LocalCa))
                {
                    match &result {
                        Ok(cert) => refresh_manager.install(id, cert.clone()),
                        Err(e) => refresh_manager.fail(id, &e.to_string()),
                    }
                }
            }
        });
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        cert_reloads = Some(tx);
        loops.spawn(certs::watch::run(
            m.clone(),
            config.tls.check_interval,
            Some(tick),
            rx,
            shutdown.clone(),
        ));
        if let (Some((settings, _)), Some(slot)) = (prepared.acme, acme_slot) {
            loops.spawn(certs::acme::run(
                settings,
                m.clone(),
                slot,
                challenges.clone(),
                shutdown.clone(),
            ));
        }
    }
    let drain_timeout = config.limits.drain_timeout;
    let reloader = reload::Reloader {
        load,
        running: config,
        ctx: ctx.clone(),
        broker: broker.clone(),
        listeners: listener_set,
        shutdown: shutdown.clone(),
        accepting: accepting.clone(),
        loops: loops.clone(),
        notifier: notifier.clone(),
        certs: cert_reloads,
    };
    loops.spawn(reloader.run(hangup, reload_queue));
    readiness.set_listening();
    tracing::info!("wssd is ready: {status}");
    loops.spawn(notify_ready(
        readiness.clone(),
        notifier.clone(),
        status,
        upgraded,
        shutdown.clone(),
    ));
    loops.close();

    tokio::pin!(shutdown_signal);
    let handed_over = tokio::select! {
        () = &mut shutdown_signal => false,
        _ = upgrader.serve(usr2) => true,
    };
    if handed_over {
        handover_grace(&accepting, &ctx.tracker, drain_timeout, shutdown_signal).await;
    }
    tracing::info!(
        open = admission.open(),
        "shutting down: no new connections; closing WebSockets with 1001 (drain timeout {:?})",
        drain_timeout
    );
    // After a handover the service goes on (its MAINPID moved): no STOPPING.
    if !handed_over {
        notifier.stopping(&format!(
            "draining {} connection(s) (up to {:?})",
            admission.open(),
            drain_timeout
        ));
    }
    readiness.set_draining();
    shutdown.cancel();
    loops.wait().await;
    ctx.tracker.close();
    if tokio::time::timeout(drain_timeout, ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "drain timeout passed with {} connections still open; closing them",
            admission.open()
        );
    }
    broker_shutdown.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// After a handover: stop accepting (the new process accepts from the same
/// queues), let every connection already accepted go on for up to `grace`
/// (handshakes in flight complete, WebSockets that end by themselves end),
/// cut short by SIGTERM; the caller then closes what is left with 1001.
async fn handover_grace(
    accepting: &CancellationToken,
    tracker: &TaskTracker,
    grace: std::time::Duration,
    signal: impl std::future::Future<Output = ()>,
) {
    accepting.cancel();
    tracker.close();
    tracing::info!(
        open = tracker.len(),
        "handed over: no longer accepting; open connections go on for up to {grace:?}, then get 1001"
    );
    tokio::select! {
        () = signal => {}
        () = tracker.wait() => {}
        _ = tokio::time::sleep(grace) => {}
    }
}

/// READY=1 the moment `/readyz` turns ready: at once, or (an ACME
/// certificate still on its way) when it arrives, with a STATUS meanwhile.
async fn notify_ready(
    readiness: Arc<Readiness>,
    notifier: crate::systemd::Notifier,
    status: String,
    mut upgraded: Option<crate::upgrade::ReadyPipe>,
    shutdown: CancellationToken,
) {
    if !notifier.is_enabled() && upgraded.is_none() {
        return;
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut waiting = None;
    loop {
        match readiness.is_ready() {
            Ok(()) => {
                notifier.ready(&status);
                if let Some(pipe) = upgraded.take() {
                    pipe.ready();
                }
                return;
            }
            Err(why) if waiting != Some(why) => {
                notifier.notify(&[crate::systemd::NotifyState::Status(&format!(
                    "not ready: {why}"
                ))]);
                waiting = Some(why);
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
    }
}

/// The TLS and plain listeners, each with its key across reloads: the
/// passed ones under socket activation (checked by
/// [`use_passed_listeners`]; keyed by their address), else bound from the
/// config (keyed by the configured address).
fn open_listeners(
    config: &Config,
    acceptor: Option<&TlsAcceptor>,
    passed: Vec<PassedListener>,
) -> Result<Vec<(Key, Listener)>, ServerError> {
    let mut listeners = Vec::new();
    if !passed.is_empty() {
        for p in passed {
            let tls = match (p.is_plain(), acceptor) {
                (true, _) => None,
                (false, Some(a)) => Some(a.clone()),
                (false, None) => {
                    return Err(AdoptError {
                        number: p.number,
                        name: p.name,
                        problem: "a TLS listener, but no certificate is configured".into(),
                    }
                    .into());
                }
            };
            let (socket, addr) = bind::adopt(p)?;
            let label = addr.to_string().into();
            let key = Key {
                addr,
                tls: tls.is_some(),
            };
            listeners.push((
                key,
                Listener {
                    socket,
                    tls,
                    label,
                    cap: None,
                },
            ));
        }
        return Ok(listeners);
    }
    for &addr in &config.listen {
        let key = Key { addr, tls: true };
        listeners.push((key, Listener::bind(addr, "--listen", acceptor.cloned())?));
    }
    for &addr in &config.http {
        let key = Key { addr, tls: false };
        listeners.push((key, Listener::bind(addr, "--http", None)?));
    }
    Ok(listeners)
}

/// One line for `systemctl status`: routes, listeners, admin.
fn serving_status(
    config: &Config,
    listeners: &[(Key, Listener)],
    admin: Option<&tokio::net::TcpListener>,
) -> String {
    let on: Vec<String> = listeners
        .iter()
        .map(|(_, l)| {
            let kind = if l.tls.is_some() { "TLS" } else { "plain" };
            format!("{} ({kind})", l.label)
        })
        .collect();
    let admin = admin
        .and_then(|a| a.local_addr().ok())
        .map(|a| format!("; admin {a}"))
        .unwrap_or_default();
    format!(
        "serving {} route(s) on {}{admin}",
        config.routes.len(),
        on.join(", ")
    )
}
