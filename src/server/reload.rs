//! Applies configuration reloads, one at a time, whatever asked
//! (`crate::reload`: SIGHUP, the file changing, `POST /reload`): load the
//! configuration again (flags and environment as at start, the file and
//! the files it names read afresh), build the routes that changed and bind
//! the new listeners; any problem refuses the whole reload with every
//! problem, nothing changed. Then commit: swap the router and the browser
//! allowlists, start and stop listeners, and retire the routes that
//! changed or went away: their sessions go on for the grace
//! (`--drain-timeout`, the bound shutdown and upgrades already use), then
//! get 1001 as at shutdown, saying "route changed by reload" or "route
//! removed by reload" (their route's stop signal, `crate::stop`). Routes that did
//! not change are the same objects: their sessions never notice. The
//! certificates are reloaded after, as SIGHUP always did, and systemd
//! hears RELOADING=1 ... READY=1 around the whole.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener_set::ListenerSet;
use crate::broker::Broker;
use crate::config::Config;
use crate::http::HttpContext;
use crate::http::host::HostAllow;
use crate::http::router::{RouteChanges, Router};
use crate::reload::{Outcome, Request, Trigger, restart};
use crate::stop::Retired;
use crate::systemd::Notifier;

/// Loads the configuration again (blocking: it reads files).
pub type Load = Arc<dyn Fn() -> Result<Config, Vec<String>> + Send + Sync>;

/// Asks the certificate watcher to reload (the label names the trigger in
/// its log); it answers when done.
pub type CertReloads = mpsc::Sender<(String, oneshot::Sender<()>)>;

/// A reload ready to commit.
struct Prepared {
    new: Config,
    restart: Vec<String>,
    old_router: Arc<Router>,
    router: Router,
    routes: RouteChanges,
    plan: super::listener_set::Plan,
}

/// Everything a reload reads and changes.
pub struct Reloader {
    pub load: Load,
    /// The configuration running: reloadable parts as last applied, the
    /// others as at start (so "needs a restart" stays said until one).
    pub running: Config,
    pub ctx: Arc<HttpContext>,
    pub broker: Broker,
    pub listeners: ListenerSet,
    /// The server's shutdown: the parent of every route's stop signal.
    pub shutdown: CancellationToken,
    /// Reloads end with accepting (at shutdown, or at an upgrade's
    /// handover: the new process reloads from then on, and two processes
    /// binding the same new address would race).
    pub accepting: CancellationToken,
    /// Background tasks of new routes and the retirement timers.
    pub loops: TaskTracker,
    pub notifier: Notifier,
    /// With TLS on.
    pub certs: Option<CertReloads>,
}

impl Reloader {
    /// Takes reload requests (and SIGHUP, registered before READY) until
    /// shutdown.
    pub async fn run(
        mut self,
        mut hangup: tokio::signal::unix::Signal,
        mut requests: mpsc::Receiver<Request>,
    ) {
        loop {
            let request = tokio::select! {
                _ = self.accepting.cancelled() => return,
                Some(()) = hangup.recv() => Request { trigger: Trigger::Signal, reply: None },
                Some(r) = requests.recv() => r,
            };
            let trigger = request.trigger;
            let started = Instant::now();
            tracing::info!("{trigger}: reloading the configuration");
            self.notifier
                .reloading(&format!("reloading the configuration ({trigger})"));
            let outcome = self.reload().await;
            crate::metrics::config_reload(outcome.result());
            log(trigger, &outcome, started);
            self.reload_certs(trigger).await;
            self.notifier.reloaded();
            if let Some(reply) = request.reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// One reload: prepare everything that can fail, then commit.
    async fn reload(&mut self) -> Outcome {
        match self.prepare().await {
            Ok(prepared) => {
                let restart = prepared.restart.clone();
                let changes = self.commit(prepared);
                Outcome::Applied { changes, restart }
            }
            Err(problems) => Outcome::Refused { problems },
        }
    }

    /// Loads the configuration, builds the routes that changed and binds
    /// the new listeners; every problem found, or all of it ready.
    async fn prepare(&self) -> Result<Prepared, Vec<String>> {
        let load = self.load.clone();
        let mut new = match tokio::task::spawn_blocking(move || load()).await {
            Ok(loaded) => loaded?,
            Err(e) => return Err(vec![format!("loading the configuration failed: {e}")]),
        };
        for w in new.warnings() {
            tracing::warn!("reload: {w}");
        }
        let mut restart = restart::needs_restart(&self.running, &new);
        if self.listeners.is_fixed() {
            if (&new.listen, &new.http) != (&self.running.listen, &self.running.http) {
                restart.push(
                    "listeners (passed by the service manager: its .socket unit says which)".into(),
                );
            }
            new.listen.clone_from(&self.running.listen);
            new.http.clone_from(&self.running.http);
        }
        let old_router = self.ctx.router.load_full();
        let routes = old_router.rebuild(&new.routes, &new.limits, &self.broker, &self.shutdown);
        let plan = self.listeners.plan(&new);
        match (routes, plan) {
            (Ok((router, routes)), Ok(plan)) => Ok(Prepared {
                new,
                restart,
                old_router,
                router,
                routes,
                plan,
            }),
            (routes, plan) => {
                let mut problems: Vec<String> = match routes {
                    Err(e) => e.iter().map(ToString::to_string).collect(),
                    Ok(_) => Vec::new(),
                };
                problems.extend(plan.err().map(|e| e.to_string()));
                Err(problems)
            }
        }
    }

    /// Puts a prepared reload in place (nothing here fails); what changed.
    fn commit(&mut self, p: Prepared) -> Vec<String> {
        let new = p.new;
        let mut changes = Vec::new();
        self.commit_routes(p.router, &p.old_router, p.routes, &new, &mut changes);
        if new.allow_origin != self.running.allow_origin {
            changes.push(format!("--allow-origin now {:?}", new.allow_origin));
        }
        if new.allow_host != self.running.allow_host {
            changes.push(format!("--allow-host now {:?}", new.allow_host));
        }
        self.ctx
            .allow_origin
            .store(Arc::new(new.allow_origin.clone()));
        self.ctx.allow_host.store(Arc::new(HostAllow::new(
            new.allow_host.iter().chain(&self.running.tls.hostnames),
        )));
        let listeners = self.listeners.apply(p.plan, &new);
        for l in &listeners.added {
            changes.push(format!("listener added: {l}"));
        }
        for l in &listeners.removed {
            changes.push(format!(
                "listener removed: {l} (its open connections go on)"
            ));
        }
        self.keep_reloadable(new);
        changes
    }

    /// Swaps the router in, starts the new routes' background tasks and
    /// retires the old routes after the grace.
    fn commit_routes(
        &self,
        router: Router,
        old: &Router,
        routes: RouteChanges,
        new: &Config,
        changes: &mut Vec<String>,
    ) {
        for r in router.routes() {
            if !old.routes().iter().any(|o| Arc::ptr_eq(o, r)) {
                r.spawn_background(&self.loops);
            }
        }
        self.ctx.router.store(Arc::new(router));
        let grace = new.limits.drain_timeout;
        for path in &routes.added {
            changes.push(format!("route added: {path}"));
        }
        for path in &routes.changed {
            changes.push(format!(
                "route changed: {path} (its open WebSockets get 1001 in {grace:?})"
            ));
        }
        for path in &routes.removed {
            changes.push(format!(
                "route removed: {path} (its open WebSockets get 1001 in {grace:?})"
            ));
        }
        if !routes.retired.is_empty() {
            let shutdown = self.shutdown.clone();
            let retired: Vec<_> = routes
                .retired
                .into_iter()
                .map(|r| {
                    let how = if routes.removed.contains(&r.spec.path) {
                        Retired::Removed
                    } else {
                        Retired::Changed
                    };
                    (r, how)
                })
                .collect();
            self.loops.spawn(async move {
                tokio::select! {
                    // The shutdown fires every route's signal itself: its
                    // sessions say "server shutting down".
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(grace) => {}
                }
                for (r, how) in &retired {
                    tracing::info!(route = %r.spec.path, "reload: grace over; closing the retired route's WebSockets with 1001 ({})", how.reason().text());
                    r.stop.retire(*how);
                }
            });
        }
    }

    /// The running configuration after a reload: the new routes,
    /// listeners, allowlists and per-session limits; the rest as it runs.
    fn keep_reloadable(&mut self, new: Config) {
        let r = &mut self.running;
        r.routes = new.routes;
        r.listen = new.listen;
        r.http = new.http;
        r.allow_origin = new.allow_origin;
        r.allow_host = new.allow_host;
        r.limits.max_message_size = new.limits.max_message_size;
        r.limits.ping_interval = new.limits.ping_interval;
        r.limits.idle_timeout = new.limits.idle_timeout;
        r.limits.message_rate = new.limits.message_rate;
        r.limits.byte_rate = new.limits.byte_rate;
    }

    /// The certificate reload every trigger also does (with TLS on).
    async fn reload_certs(&self, trigger: Trigger) {
        let Some(certs) = &self.certs else { return };
        let (tx, rx) = oneshot::channel();
        if certs.send((trigger.to_string(), tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The log lines of one reload.
fn log(trigger: Trigger, outcome: &Outcome, started: Instant) {
    let took = started.elapsed();
    match outcome {
        Outcome::Applied { changes, restart } => {
            if changes.is_empty() {
                tracing::info!("configuration reloaded ({trigger}, {took:?}): nothing changed");
            } else {
                tracing::info!(
                    "configuration reloaded ({trigger}, {took:?}): {}",
                    changes.join("; ")
                );
            }
            for setting in restart {
                tracing::warn!(
                    "reload: {setting} changed but needs a restart (or SIGUSR2 for a zero-downtime upgrade, which re-reads the configuration); still running with the old value"
                );
            }
        }
        Outcome::Refused { problems } => {
            tracing::error!(
                "configuration reload refused ({trigger}, {} problem(s)); the running configuration stays",
                problems.len()
            );
            for p in problems {
                tracing::error!("reload: {p}");
            }
        }
    }
}

/// The swappable parts of the HTTP context, at start.
pub fn live_parts(config: &Config) -> (ArcSwap<Vec<String>>, ArcSwap<HostAllow>) {
    (
        ArcSwap::from_pointee(config.allow_origin.clone()),
        ArcSwap::from_pointee(HostAllow::new(
            config.allow_host.iter().chain(&config.tls.hostnames),
        )),
    )
}
