//! wssd: a secure WebSocket server and TLS-terminating WebSocket gateway.
//!
//! # Crate map
//!
//! The data path reads straight through, one module a stage:
//! listener -> TLS -> HTTP -> router -> route kind -> WebSocket session.
//!
//! - [`server`]: binds listeners or adopts socket-activated ones (`bind`,
//!   `listener`; the running set, added to and stopped by reloads, and the
//!   sockets an upgrade hands over: `listener_set`), applies configuration
//!   reloads (`reload`: swap the router, retire changed routes), reads
//!   the PROXY protocol header of trusted balancers (`proxy_protocol`),
//!   admits connections per IP, per IP per second
//!   (`rate`) and in total (`admission`; a WebSocket carried as an HTTP/2
//!   stream counts per IP as a connection), counting and summarising refusals
//!   (`refusals`), puts a stall timer under every socket and over every
//!   WebSocket's upgraded connection, an HTTP/2 stream included (`stall`:
//!   the send timeout), answers plain HTTP on a TLS port (`sniff`), serves
//!   small reads from one socket read (`read_ahead`), runs TLS (its
//!   session ticket held to leave with the first reply: `ticket_hold`), hands
//!   the stream to `http`; tells systemd when it is ready; owns startup of
//!   background tasks and shutdown.
//! - [`tls`]: the rustls server config and the one certificate resolver that
//!   every handshake asks (`resolver`), the TLS-ALPN-01 answers
//!   (`challenge`), ALPN (`h2`, `http/1.1`, `acme-tls/1`). It knows
//!   nothing of where certificates come from.
//! - [`certs`]: certificate sources that feed the resolver: PEM files
//!   (`files`, `watch`), self-signed (`self_signed`), the local CA
//!   (`local_ca/`: CA, issuance, commands, system and NSS trust stores and
//!   their status, the public face for other devices (`public`, `qr`,
//!   `announce`: export, iOS profile, QR codes, true startup hints)),
//!   ACME (`acme/`: storage, transport, client, order, challenges, ARI,
//!   schedule, maintain), one reuse-or-regenerate check (`reuse`), one key
//!   generator (`generate`), inspection (`inspect`, `info`), the loaded
//!   pair (`loaded`), the slots (`manager`), the state folder (`store`) and
//!   typed errors (`error`).
//! - [`http`]: the hyper service, one connection: clean the path (`path`),
//!   match (`router`), the route's auth (`gate`: 401/429, the credential
//!   taken out, the identity), the access log's view of a request
//!   (`logged`), then the upgrade checks (`edge`: RFC 6455,
//!   Origin, Host allowlist in `host`, permit, an HTTP/2 WebSocket's own
//!   per-IP slot) or plain HTTP; `redirect`
//!   sends plain listeners to https:// (`--redirect-http`); `http2` serves
//!   connections that negotiated ALPN `h2` (its limits, `:authority` as
//!   Host; WebSockets over HTTP/2 are RFC 8441 extended CONNECTs, checked
//!   in `edge`); `upgraded` is a WebSocket's upgraded connection under its
//!   own send timeout (an HTTP/2 stream and what it holds of its
//!   connection); `reply` is the leaf both `http` and `routes` use (bodies,
//!   `ConnInfo`, text replies, the 101 or HTTP/2's 200).
//! - [`routes`]: route kinds as plug-ins: `Route`/`RouteRuntime` and the
//!   per-kind dispatch in `routes/mod.rs`, one file or folder per kind
//!   (`echo`, `static_files` (tower-http's `ServeDir`) + `static_fs` (the
//!   folder confined, for every file it opens) + `bundled` + `key_guard`
//!   (never a private key), `proxy/` (`http` + `client`: plain requests
//!   over pooled keep-alive connections; `cap`: connections per upstream,
//!   `upstream_max_conns`, its refusals summarised by `full_log`), `exec/`, `chat/`, `broadcast`, `ca_page/` (the local
//!   CA's install page)); `open` starts a kind's session after the 101;
//!   `identity` is how kinds pass the caller's identity on (one encoding
//!   for a header value and an environment variable, the session's log
//!   span).
//! - [`auth`]: who a request is (`identity`), decided at the edge before
//!   the route kind runs: a route's loaded `auth` (`spec`), where
//!   credentials are read (`extract`), the verifiers (`token`, `jwt`,
//!   `basic` for htpasswd), the orchestrator (`check`), refusal reasons
//!   (`reason`) and load errors (`error`).
//! - [`session`]: the WebSocket driver (limits, drain; `write`: writes
//!   under the send deadline, large messages written from their shared
//!   buffer; `close`: the closing handshake for every reason; `ending`: how
//!   a session ended; `link`: the codec held only while there is something
//!   to read, so an idle session holds no read buffer); [`keepalive`]: the one ping/pong/idle rule and close-reason
//!   table used by the session, exec and proxy drivers; [`stop`]: a
//!   route's stop signal, fired by the shutdown or by a reload retiring the
//!   route, and the close reason each means; [`rates`]: the
//!   per-WebSocket message and byte rate limits the same three enforce.
//! - [`budget`]: the global memory budget for messages being received and
//!   queued for fan-out.
//! - [`broker`]: what is carried (`envelope`, and `wire` between
//!   instances), topics and subscribers (`hub`, and `queue`: one
//!   subscriber's bounded queue), the
//!   `Backend` trait (`backend`) and its two sources (`memory`, `redis/`:
//!   link, reconnect, transport, outbox, scripts, rooms, presence, catchup).
//! - [`publish`]: `POST /publish/...` on the admin listener.
//! - [`secret`] compares secrets; [`backoff`] bounds how fast they can be
//!   guessed (per address and in total); [`names`] says which chat names
//!   are acceptable and when two are the same.
//! - [`access_log`]: one line per HTTP request (written when its body ends:
//!   `http::logged`) and per WebSocket at its end (`routes::open::log_end`,
//!   for every session driver), text or JSON, through a bounded queue to one
//!   writer thread (drops counted), reopened on SIGUSR1.
//! - [`admin`] (`/healthz`, `/readyz` with `Readiness`, `/metrics`, the
//!   status page) and [`metrics`] (every counter's name); [`status`]: the
//!   status page's live figures (`live`: per route and listener, relaxed
//!   atomics, bounded tables), its JSON `/status` (`snapshot`, schema in
//!   docs/status.md) and the page itself (`page`, assets compiled in).
//! - [`config`]: flags (`flags`), env, `.env` and TOML (`file`) merged once
//!   (`sources`: the one precedence rule) into [`config::Config`] by
//!   per-section functions; one default per option (`defaults`), domain
//!   types (`types`), route kinds and specs (`route`) and the `[[route]]`
//!   table that becomes one (`route_table`), the per-WebSocket rate limits
//!   per route (`rate`),
//!   typed errors (`error`), trust roots (`trust`), a route's `auth` table
//!   loaded once (`auth`), rules on JWT claims (`claim`: chat's
//!   `moderator_claim`), the identity keys of routes (`route_identity`) and
//!   hints for other servers' settings and flags (`seed`).
//! - [`cli`]: the command tree (serve, check, cert, bench, completions and
//!   the hidden man) for clap.
//! - [`systemd`]: what the service manager gives (notification socket,
//!   watchdog, socket-activated listeners), read once in `main`; sd_notify
//!   messages.
//! - [`early_signals`]: SIGHUP and SIGUSR2 caught (ignored, then logged)
//!   while `serve` starts, before the server's handlers exist.
//! - [`nofile`]: the open-file limit, raised to the hard limit at start.
//! - [`reload`]: configuration reloads asked for (SIGHUP, the file changing
//!   (`file_watch`), `POST /reload` on the admin listener (`endpoint`)),
//!   their outcome, and the settings only a restart applies (`restart`);
//!   `server::reload` applies them.
//! - [`upgrade`]: zero-downtime binary upgrade on SIGUSR2 (start the new
//!   binary with the listeners handed over, wait until it is ready).
//! - [`bench`]: the `wssd bench` load generator (`echo`, `connect`, `idle`,
//!   `fanout/`), its checks, limits, errors and reports.
//!
//! Test builds only: property tests (`proptest`) sit next to the parsers an
//! attacker reaches, one `*_props.rs` file per parser (`names_props` here),
//! all set up by `props` (cases per property, `PROPTEST_CASES`).

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod backoff;
pub mod bench;
pub mod broker;
pub mod budget;
pub mod certs;
pub mod cli;
pub mod config;
pub mod early_signals;
pub mod http;
pub mod keepalive;
pub mod metrics;
pub mod names;
pub mod nofile;
pub mod publish;
pub mod rates;
pub mod reload;
pub mod routes;
pub mod secret;
pub mod server;
pub mod session;
pub mod status;
pub mod stop;
pub mod systemd;
pub mod tls;
pub mod upgrade;

#[cfg(test)]
mod names_props;
#[cfg(test)]
mod props;
