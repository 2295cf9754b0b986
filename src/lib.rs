//! wssd: a secure WebSocket server and TLS-terminating WebSocket gateway.
//!
//! # Layout
//!
//! The data path reads straight through, one module a stage:
//!
//! - [`server`]: binds listeners, accepts TCP, enforces connection limits and
//!   the handshake timeout, runs TLS, hands the stream to `http`; owns shutdown.
//! - [`tls`]: the rustls server config and the one certificate resolver that
//!   every handshake asks. It knows nothing of where certificates come from.
//! - [`certs`]: certificate sources (PEM files, self-signed), inspection and
//!   generation. They feed the resolver.
//! - [`http`]: the hyper service: request -> edge checks -> router -> route kind.
//! - [`routes`]: one module per route kind (`echo`, `static`).
//! - [`session`]: the WebSocket driver (limits, pings, idle, close, drain).
//! - [`secret`] compares secrets; [`backoff`] bounds how fast they can be
//!   guessed (per address and in total); [`names`] says which chat names
//!   are acceptable and when two are the same.
//! - [`budget`]: the global memory budget for received and queued messages.
//! - [`admin`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`config`]: flags, env, `.env` and TOML merged once into [`config::Config`].
//! - [`bench`]: the `wssd bench` load generator.

pub mod admin;
pub mod backoff;
pub mod bench;
pub mod broker;
pub mod budget;
pub mod certs;
pub mod cli;
pub mod config;
pub mod http;
pub mod keepalive;
pub mod metrics;
pub mod names;
pub mod publish;
pub mod routes;
pub mod secret;
pub mod server;
pub mod session;
pub mod tls;
