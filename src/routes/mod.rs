//! Route kinds: what a matched route does with a request. [`Route`] owns a
//! route's spec, limits and per-kind state ([`RouteRuntime`]) and is the one
//! place that dispatches each per-kind step: build from the spec, serve
//! plain HTTP, admit and open a WebSocket session, run background tasks,
//! take a published message. One file per kind holds the behaviour.
//!
//! The HTTP layer only matches the path (`crate::http::router`) and checks
//! the upgrade itself (`crate::http::edge`: RFC 6455, Origin/Host, the
//! connection limit) before handing over here; nothing here imports it.
//!
//! # Adding a route kind
//!
//! 1. Its spec: a `RouteKind` variant and its parsing in `config/route.rs`.
//! 2. Its file here: the state it keeps across connections (`FooRoute`) and
//!    its behaviour (a `session::Handler` for a WebSocket kind, a `serve`
//!    function for an HTTP kind).
//! 3. A [`RouteRuntime`] variant, and its arm in each `match` below (the
//!    compiler lists them): [`Route::build`], then whichever of
//!    [`Route::serve_http`], [`Route::upgrade`] (and `open::Opened`),
//!    [`Route::spawn_background`], [`Route::publish`] apply.

pub mod body_timeout;
pub mod broadcast;
pub mod bundled;
pub mod ca_page;
pub mod chat;
pub mod echo;
pub mod env;
pub mod exec;
mod file_answer;
pub mod identity;
pub mod key_guard;
pub mod open;
pub mod proxy;
pub mod static_files;
mod static_fs;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Payload};
use crate::config::{Limits, RouteKind, RouteSpec, SessionLimits};
use crate::http::reply::{Body, Handshake, refused, text_response};
use crate::metrics::HandshakeFailure;
use crate::stop::StopSignal;
use broadcast::BroadcastRoute;
use chat::{ChatRoute, PostError};
pub use env::Env;
use exec::ExecRoute;
use open::Opened;
use proxy::ProxyRoute;
use static_files::Source;

/// A route ready to serve: its spec, resolved limits and per-kind state.
#[derive(Debug)]
pub struct Route {
    pub spec: RouteSpec,
    pub limits: SessionLimits,
    pub runtime: RouteRuntime,
    /// The path, shared by the logs and metrics of the route's sessions.
    label: Arc<str>,
    /// A child of the server's shutdown: fired at shutdown, or when a
    /// configuration reload retires the route (changed or removed) and its
    /// grace ends. Its sessions and background tasks watch it; sessions
    /// close with 1001 and the reason it gives (`crate::stop`).
    pub stop: StopSignal,
}

/// The state each route kind keeps across connections.
#[derive(Debug)]
pub enum RouteRuntime {
    Echo,
    /// Where the files come from.
    Static(Source),
    Proxy(Arc<ProxyRoute>),
    Exec(Arc<ExecRoute>),
    Chat(Arc<ChatRoute>),
    Broadcast(Arc<BroadcastRoute>),
    /// The local CA's install page.
    Ca(ca_page::CaPage),
}

/// Why a route could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("route {path}: cannot open folder {}: {source}", .dir.display())]
    StaticDir {
        path: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("route {path}: {source}")]
    Proxy {
        path: String,
        source: proxy::SetupError,
    },
}

/// Why a published message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not a chat or broadcast route")]
    NotPublishable,
    #[error("a chat route: say which room with ?room=NAME")]
    NeedsRoom,
    #[error("a chat message must be UTF-8 text")]
    NotText,
    #[error("{0}")]
    Invalid(String),
    #[error(
        "server busy: the memory budget for queued messages is spent (--memory-budget); try again later"
    )]
    Busy,
    #[error("{0}")]
    Broker(String),
}

impl Route {
    /// Builds a route's state from its spec (static folders are
    /// canonicalized, proxy CAs loaded, exec programs resolved here); its
    /// [`Route::stop`] is a child of `shutdown`.
    pub fn build(
        spec: &RouteSpec,
        limits: &Limits,
        broker: &Broker,
        shutdown: &CancellationToken,
    ) -> Result<Route, BuildError> {
        let path = &spec.path;
        let runtime = match &spec.kind {
            RouteKind::Echo => RouteRuntime::Echo,
            RouteKind::Static { dir: None } => RouteRuntime::Static(Source::Bundled),
            RouteKind::Static { dir: Some(dir) } => {
                let real = std::fs::canonicalize(dir).map_err(|source| BuildError::StaticDir {
                    path: path.clone(),
                    dir: dir.clone(),
                    source,
                })?;
                RouteRuntime::Static(Source::Dir(real))
            }
            RouteKind::Proxy(p) => RouteRuntime::Proxy(Arc::new(
                ProxyRoute::new(path, p.clone(), limits.send_timeout).map_err(|source| {
                    BuildError::Proxy {
                        path: path.clone(),
                        source,
                    }
                })?,
            )),
            RouteKind::Exec(e) => RouteRuntime::Exec(Arc::new(ExecRoute::new(e.clone()))),
            RouteKind::Chat(c) => {
                RouteRuntime::Chat(Arc::new(ChatRoute::new(path, c.clone(), broker.clone())))
            }
            RouteKind::Broadcast => {
                RouteRuntime::Broadcast(Arc::new(BroadcastRoute::new(path, broker.clone())))
            }
            RouteKind::Ca { state_dir } => {
                RouteRuntime::Ca(ca_page::CaPage::new(path, state_dir.clone()))
            }
        };
        // The status page lists WebSocket routes before their first session.
        if spec.kind.is_websocket() {
            crate::status::live::live().declare_route(path, spec.kind.name());
        }
        Ok(Route {
            limits: Route::resolved_limits(spec, limits),
            label: spec.path.as_str().into(),
            spec: spec.clone(),
            runtime,
            stop: StopSignal::child_of(shutdown),
        })
    }

    /// The session limits a route of `spec` gets under the global `limits`
    /// (fan-out kinds have their own message-size default): a reload keeps
    /// a route only when these and its spec are unchanged.
    pub fn resolved_limits(spec: &RouteSpec, limits: &Limits) -> SessionLimits {
        let fanout = matches!(spec.kind, RouteKind::Chat(_) | RouteKind::Broadcast);
        limits.for_route(&spec.limits, fanout)
    }

    /// Answers a plain HTTP request on an HTTP kind (`spec.kind.is_http()`);
    /// `rest` is the path below the route prefix, `path` the whole one.
    pub async fn serve_http(
        &self,
        req: Request<Incoming>,
        rest: &str,
        path: &str,
        env: &Env<'_>,
    ) -> Response<Body> {
        match &self.runtime {
            RouteRuntime::Proxy(proxy) => proxy::forward_http(req, proxy.clone(), env, rest).await,
            RouteRuntime::Static(source) => {
                static_files::serve(source, req.method(), req.headers(), rest, path).await
            }
            RouteRuntime::Ca(page) => page.serve(req.method(), req.headers(), rest, env.conn),
            RouteRuntime::Echo
            | RouteRuntime::Exec(_)
            | RouteRuntime::Chat(_)
            | RouteRuntime::Broadcast(_) => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Takes over a WebSocket upgrade the edge checked (`key` is its valid
    /// Sec-WebSocket-Key, `permit` its connection slot): the kind's own
    /// admission (exec's process cap; the proxy connects upstream first),
    /// then the 101 and the session, or a refusal.
    pub async fn upgrade(
        &self,
        req: Request<Incoming>,
        handshake: Handshake,
        permit: OwnedSemaphorePermit,
        env: &Env<'_>,
    ) -> Response<Body> {
        let opened = match &self.runtime {
            RouteRuntime::Proxy(proxy) => {
                let slot = open::SessionSlot::new(&self.label, self.limits, permit);
                let stop = self.stop.clone();
                return proxy::upgrade(req, proxy.clone(), slot, stop, env, handshake).await;
            }
            RouteRuntime::Exec(exec) => {
                match exec.admit(&req, &self.spec.path, env.conn, env.identity) {
                    Some(admitted) => Opened::Exec(Box::new(admitted)),
                    None => {
                        return refused(
                            StatusCode::SERVICE_UNAVAILABLE,
                            HandshakeFailure::Limit,
                            "too many processes on this route (max_processes reached); try again later\n",
                        );
                    }
                }
            }
            RouteRuntime::Chat(chat) => {
                Opened::Chat(Box::new(chat.session(env.conn.peer.ip(), env.identity)))
            }
            // Subscribed before the 101, so nothing published once the
            // client sees the upgrade is missed.
            RouteRuntime::Broadcast(b) => Opened::Broadcast(Box::new(b.session())),
            RouteRuntime::Echo => Opened::Echo,
            RouteRuntime::Static(_) | RouteRuntime::Ca(_) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    HandshakeFailure::Http,
                    "this route serves files, not WebSockets\n",
                );
            }
        };
        let slot = open::SessionSlot::new(&self.label, self.limits, permit);
        open::spawn(req, slot, opened, &handshake, self.stop.clone(), env)
    }

    /// Starts the kind's background tasks (proxy health probes, chat's
    /// sweep of idle rooms) on `tasks`; they end with [`Route::stop`].
    pub fn spawn_background(&self, tasks: &TaskTracker) {
        let shutdown = self.stop.token();
        match &self.runtime {
            RouteRuntime::Proxy(proxy) => {
                tasks.spawn(proxy::probe_loop(proxy.clone(), shutdown.clone()));
            }
            RouteRuntime::Chat(chat) => {
                tasks.spawn(chat.clone().sweep_loop(shutdown.clone()));
            }
            RouteRuntime::Echo
            | RouteRuntime::Static(_)
            | RouteRuntime::Exec(_)
            | RouteRuntime::Broadcast(_)
            | RouteRuntime::Ca(_) => {}
        }
    }

    /// Delivers a message from outside (the admin listener's publish
    /// endpoint); returns how many local connections got it.
    pub async fn publish(
        &self,
        body: Bytes,
        binary: bool,
        room: Option<&str>,
        from: &str,
    ) -> Result<usize, PublishError> {
        match &self.runtime {
            RouteRuntime::Broadcast(b) => {
                let payload = if binary {
                    Payload::Binary(body)
                } else {
                    match Utf8Bytes::try_from(body.clone()) {
                        Ok(text) => Payload::Text(text),
                        Err(_) => Payload::Binary(body),
                    }
                };
                b.publish(payload).await.map_err(|_| PublishError::Busy)
            }
            RouteRuntime::Chat(chat) => {
                let room = room.ok_or(PublishError::NeedsRoom)?;
                let text = std::str::from_utf8(&body).map_err(|_| PublishError::NotText)?;
                chat.post(room, from, text).await.map_err(|e| match e {
                    PostError::Invalid(why) => PublishError::Invalid(why),
                    PostError::Broker(e) => PublishError::Broker(e.to_string()),
                })
            }
            RouteRuntime::Echo
            | RouteRuntime::Static(_)
            | RouteRuntime::Proxy(_)
            | RouteRuntime::Exec(_)
            | RouteRuntime::Ca(_) => Err(PublishError::NotPublishable),
        }
    }
}
