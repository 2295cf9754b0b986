//! The admin listener (plain HTTP, loopback by default): `/healthz`,
//! `/readyz`, `/metrics` (Prometheus text), the status page `/` and its
//! JSON `/status` (`crate::status::page`), with `--publish-token`
//! `POST /publish/...` (see `crate::publish`) and, with `--reload-token`,
//! `POST /reload` (see `crate::reload::endpoint`). It serves no user traffic.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Health};
use crate::certs::manager::CertManager;
use crate::http::reply::{Body, full_body, text_response};
use crate::metrics;
use crate::publish::Publish;
use crate::reload::endpoint::Endpoint as ReloadEndpoint;
use crate::status::{live, page, snapshot};

/// Whether the server is ready, for `/readyz`.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    draining: AtomicBool,
    certs: Option<Arc<CertManager>>,
    broker: Option<Broker>,
}

impl Readiness {
    /// Not ready until the listeners are bound; `certs` with TLS on,
    /// `broker` to report a degraded shared store.
    pub fn new(certs: Option<Arc<CertManager>>, broker: Option<Broker>) -> Readiness {
        Readiness {
            certs,
            broker,
            ..Readiness::default()
        }
    }

    /// Every listener is bound and serving.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Relaxed);
    }

    /// Shutdown started: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Why the server works only in part (the broker lost its shared
    /// store: local delivery only), if it does.
    pub fn degraded(&self) -> Option<String> {
        match self.broker.as_ref().map(Broker::health) {
            Some(Health::Degraded(why)) => Some(format!("broker {why}")),
            _ => None,
        }
    }

    /// What the status page shows besides the live figures.
    fn status_inputs(&self) -> snapshot::Inputs<'_> {
        snapshot::Inputs {
            ready: self.is_ready(),
            certs: self.certs.as_deref(),
            broker: self.broker.as_ref(),
        }
    }

    /// Ready: listeners bound, not draining, and (with TLS) a certificate loaded.
    pub fn is_ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down");
        }
        if !self.listening.load(Ordering::Relaxed) {
            return Err("listeners not bound yet");
        }
        if let Some(m) = &self.certs
            && !m.has_valid_default()
        {
            return Err("no valid certificate loaded");
        }
        Ok(())
    }
}

/// Serves admin requests until shutdown.
pub async fn serve(
    socket: TcpListener,
    readiness: Arc<Readiness>,
    publish: Option<Publish>,
    reload: Option<ReloadEndpoint>,
    shutdown: CancellationToken,
) {
    let publish = publish.map(Arc::new);
    tokio::spawn(sample_every_second(shutdown.clone()));
    let reload = reload.map(Arc::new);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let readiness = readiness.clone();
        let publish = publish.clone();
        let reload = reload.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let readiness = readiness.clone();
                let publish = publish.clone();
                let reload = reload.clone();
                async move {
                    if req.uri().path() == "/reload" {
                        return Ok::<_, Infallible>(
                            reload_arm(req, reload.as_deref(), peer.ip()).await,
                        );
                    }
                    Ok::<_, Infallible>(
                        handle(req, &readiness, publish.as_deref(), peer.ip()).await,
                    )
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}

/// Samples the live totals once a second, for the status page's rates.
async fn sample_every_second(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => live::live().sample(),
        }
    }
}

/// `/reload` (see `crate::reload::endpoint`).
async fn reload_arm(
    req: Request<Incoming>,
    reload: Option<&ReloadEndpoint>,
    peer: IpAddr,
) -> Response<Body> {
    match reload {
        Some(r) => r.handle(req, peer).await,
        None => text_response(
            StatusCode::NOT_FOUND,
            "POST /reload is disabled; start wssd with --reload-token TOKEN (or WSSD_RELOAD_TOKEN), or send SIGHUP\n",
        ),
    }
}

async fn handle(
    req: Request<Incoming>,
    readiness: &Readiness,
    publish: Option<&Publish>,
    peer: IpAddr,
) -> Response<Body> {
    let path = req.uri().path();
    if path.starts_with("/publish/") {
        return match publish {
            Some(p) => p.handle(req, peer).await,
            None => text_response(
                StatusCode::NOT_FOUND,
                "publishing is disabled; start wssd with --publish-token TOKEN (or WSSD_PUBLISH_TOKEN)\n",
            ),
        };
    }
    if page::is_page_path(path) {
        return page::respond(req.method(), path, readiness.status_inputs());
    }
    match path {
        "/healthz" => text_response(StatusCode::OK, "ok\n"),
        "/readyz" => match readiness.is_ready() {
            // Degraded still serves (local delivery works), so it stays 200.
            Ok(()) => match readiness.degraded() {
                Some(why) => text_response(
                    StatusCode::OK,
                    &format!("ready, degraded: {why} (local delivery only)\n"),
                ),
                None => text_response(StatusCode::OK, "ready\n"),
            },
            Err(why) => text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let mut r = Response::new(full_body(Bytes::from(metrics::render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "admin endpoints: / (status page) /status (JSON) /healthz /readyz /metrics POST /publish/<route> POST /reload\n",
        ),
    }
}
