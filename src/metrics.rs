//! Every metric wssd exports: names, label sets and the Prometheus recorder.
//! Other modules call these functions instead of naming metrics themselves,
//! so the list below is the whole `/metrics` vocabulary. Labels are bounded:
//! route paths and listener addresses come from configuration, never from
//! clients.
//!
//! - `wssd_connections_open{route,listener}` gauge
//! - `wssd_connections_total{route,listener}` counter
//! - `wssd_messages_total{route,direction}` and `wssd_bytes_total{route,direction}`
//! - `wssd_handshake_failures_total{reason}` (tls, http, limit, timeout,
//!   auth, plain_http: an HTTP request on a TLS port, answered 400)
//! - `wssd_connections_refused_total{reason}` connections closed at accept
//!   (reason: total, per_ip, rate, proxy_protocol, listener), and WebSockets
//!   over HTTP/2 refused at the upgrade (per_ip, rate: they count as
//!   connections)
//! - `wssd_connection_rate_addresses` gauge: client addresses the per-IP
//!   connection rate remembers
//! - `wssd_auth_failures_total{route,reason}` requests refused by a route's
//!   `auth` (reason: `crate::auth::Reason::label`: missing, malformed,
//!   unknown_token, bad_signature, expired, not_yet_valid, wrong_audience,
//!   wrong_issuer, missing_claim, wrong_algorithm, bad_password,
//!   unknown_user, throttled)
//! - `wssd_guesses_refused_total{what}` secrets refused unchecked by the
//!   guessing backoff (`crate::backoff`; what: moderator_password,
//!   publish_token, reload_token; a route's `auth` counts its own as
//!   `wssd_auth_failures_total{reason="throttled"}`)
//! - `wssd_auth_success_total{route,source}` requests a route's `auth`
//!   accepted (source: token, jwt, basic)
//! - `wssd_close_codes_total{code}` close codes sent or received
//! - `wssd_upgrades_total{result}` binary upgrades on SIGUSR2 (result:
//!   started, ok, failed)
//! - `wssd_config_reloads_total{result}` configuration reloads (SIGHUP, a
//!   change to the file, `POST /reload`; result: ok, partial (applied, some
//!   settings need a restart), invalid (refused, the running one stays),
//!   unauthorized (`POST /reload` with a missing or wrong token))
//! - `wssd_http_requests_total{status}` plain HTTP responses
//! - `wssd_write_timeouts_total{peer}` sockets closed because a write made no
//!   progress for the send timeout (peer: client, upstream)
//! - `wssd_body_timeouts_total` proxied request bodies that paused longer
//!   than the send timeout (answered 408)
//! - `wssd_upstream_max_conns_refused_total{route,request}` proxied requests
//!   answered 503 because every upstream not marked down had
//!   `upstream_max_conns` connections open (request: websocket, http)
//! - `wssd_forged_identity_headers_total` proxied requests (upgrades and
//!   plain HTTP) whose client sent its own `X-Wssd-Identity` or
//!   `X-Wssd-Identity-Source`, removed before forwarding
//! - `wssd_subscribers_dropped_total{route,reason}` chat/broadcast subscribers
//!   cut off (reason: slow)
//! - `wssd_rate_limited_total{route,limit}` WebSockets closed with 1008 for
//!   sending faster than their rate (limit: messages, bytes)
//! - `wssd_budget_exceeded_total{kind}` charges refused by the memory budget
//!   (kind: receive, a connection closed with 1013; queue, a publish refused)
//! - `wssd_broker_published_total{route}`, `wssd_broker_forward_errors_total`
//!   and gauge `wssd_broker_up` (1 connected, 0 degraded; redis only)
//! - `wssd_private_keys_refused_total` files a static route refused to
//!   serve because they hold a PEM private key (answered 403)
//! - `wssd_access_log_dropped_total` access log lines dropped because the
//!   writer's queue was full (`crate::access_log`)
//! - `wssd_certificate_not_after_seconds{name}` gauge (Unix time)
//! - `wssd_certificate_reloads_total{name,result}` (result: ok, error)
//! - `wssd_certificate_last_reload_success{name}` gauge (1 or 0)
//! - `wssd_certificate_last_reload_timestamp_seconds{name}` gauge (Unix time)
//!
//! The admin `/status` page reads live figures kept beside these
//! (`crate::status::live`): a session's [`SessionMetrics`] also counts
//! there (relaxed atomics per message).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::status::live::{self, OpenSession};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once; later calls return the same handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Some(h);
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get();
    }
    Some(HANDLE.get_or_init(|| handle))
}

/// Renders the Prometheus text format (empty when no recorder is installed).
pub fn render() -> String {
    match HANDLE.get() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// Why a connection failed before it became a WebSocket or got an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// TLS handshake failed (bad client hello, unknown CA on the client, ...).
    Tls,
    /// Malformed HTTP or WebSocket upgrade request.
    Http,
    /// Refused by a connection limit.
    Limit,
    /// The handshake timeout passed.
    Timeout,
    /// Plain HTTP on a TLS port (answered 400 with the https:// URL).
    PlainHttp,
    /// Refused by the route's `auth` (401 or 429).
    Auth,
}

impl HandshakeFailure {
    fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::Http => "http",
            HandshakeFailure::Limit => "limit",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::PlainHttp => "plain_http",
            HandshakeFailure::Auth => "auth",
        }
    }
}

/// A connection was closed at accept (`reason`: total, per_ip, rate,
/// proxy_protocol).
pub fn connection_refused(reason: &'static str) {
    counter!("wssd_connections_refused_total", "reason" => reason).increment(1);
}

/// A guessed secret refused unchecked by the backoff (`what`:
/// moderator_password, publish_token).
pub fn guess_refused(what: &'static str) {
    counter!("wssd_guesses_refused_total", "what" => what).increment(1);
}

/// Client addresses the per-IP connection rate remembers now.
pub fn connection_rate_addresses(n: usize) {
    gauge!("wssd_connection_rate_addresses").set(n as f64);
}

pub fn handshake_failed(reason: HandshakeFailure) {
    counter!("wssd_handshake_failures_total", "reason" => reason.label()).increment(1);
}

/// A request refused by `route`'s auth, for `reason`.
pub fn auth_failure(route: &str, reason: &'static str) {
    counter!("wssd_auth_failures_total", "route" => route.to_string(), "reason" => reason)
        .increment(1);
}

/// A request accepted by `route`'s auth (`source`: token, jwt, basic).
pub fn auth_success(route: &str, source: &'static str) {
    counter!("wssd_auth_success_total", "route" => route.to_string(), "source" => source)
        .increment(1);
}

pub fn close_code(code: u16) {
    counter!("wssd_close_codes_total", "code" => code.to_string()).increment(1);
}

/// A charge to the memory budget was refused (`kind`: receive or queue).
pub fn budget_exceeded(kind: &'static str) {
    counter!("wssd_budget_exceeded_total", "kind" => kind).increment(1);
}

pub fn write_timeout(peer: &'static str) {
    counter!("wssd_write_timeouts_total", "peer" => peer).increment(1);
}

pub fn private_key_refused() {
    counter!("wssd_private_keys_refused_total").increment(1);
}

pub fn body_timeout() {
    counter!("wssd_body_timeouts_total").increment(1);
}

/// A proxy route answered 503: every upstream was at `upstream_max_conns`
/// (`request`: websocket, http).
pub fn upstream_max_conns_refused(route: &str, request: &'static str) {
    counter!("wssd_upstream_max_conns_refused_total", "route" => route.to_string(), "request" => request)
        .increment(1);
}

/// A proxied request arrived with its own identity header (removed).
pub fn forged_identity_header() {
    counter!("wssd_forged_identity_headers_total").increment(1);
}

pub fn subscriber_dropped(route: &str, reason: &'static str) {
    counter!("wssd_subscribers_dropped_total", "route" => route.to_string(), "reason" => reason)
        .increment(1);
}

pub fn broker_up(up: bool) {
    gauge!("wssd_broker_up").set(if up { 1.0 } else { 0.0 });
}

pub fn broker_forward_error() {
    counter!("wssd_broker_forward_errors_total").increment(1);
}

/// An access log line was dropped: the writer's queue was full.
pub fn access_log_dropped() {
    counter!("wssd_access_log_dropped_total").increment(1);
}

pub fn http_response(status: u16) {
    counter!("wssd_http_requests_total", "status" => status.to_string()).increment(1);
}

pub fn certificate_not_after(name: &str, unix_seconds: i64) {
    gauge!("wssd_certificate_not_after_seconds", "name" => name.to_string())
        .set(unix_seconds as f64);
}

/// A WebSocket handshake accepted, by HTTP version (`1.1`: Upgrade and
/// 101; `2`: RFC 8441 extended CONNECT and 200).
pub fn websocket_accepted(http: &'static str) {
    counter!("wssd_websocket_upgrades_total", "http" => http).increment(1);
}

/// An HTTP/2 connection was opened (ALPN `h2`).
pub fn http2_connection() {
    counter!("wssd_http2_connections_total").increment(1);
}

/// An HTTP/2 connection closed with an error (`reason`: the HTTP/2 error
/// code sent in GOAWAY, e.g. `enhance_your_calm` for a reset flood, or
/// `io` / `other`).
pub fn http2_connection_error(reason: &'static str) {
    counter!("wssd_http2_connection_errors_total", "reason" => reason).increment(1);
}

/// A binary upgrade (SIGUSR2): `started`, `ok` or `failed`.
pub fn upgrade(result: &'static str) {
    counter!("wssd_upgrades_total", "result" => result).increment(1);
}

/// A configuration reload: `ok`, `partial`, `invalid` or `unauthorized`.
pub fn config_reload(result: &'static str) {
    counter!("wssd_config_reloads_total", "result" => result).increment(1);
}

pub fn certificate_reload(name: &str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!("wssd_certificate_reloads_total", "name" => name.to_string(), "result" => result)
        .increment(1);
    gauge!("wssd_certificate_last_reload_success", "name" => name.to_string()).set(if ok {
        1.0
    } else {
        0.0
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!("wssd_certificate_last_reload_timestamp_seconds", "name" => name.to_string()).set(now);
}

/// Counters one WebSocket session updates; fetched once per session so the
/// per-message path is an atomic add, not a registry lookup. It also keeps
/// this session's own totals, for its access log line.
pub struct SessionMetrics {
    messages_in: Counter,
    messages_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    /// This session's messages in, messages out, bytes in, bytes out.
    own: [AtomicU64; 4],
    open: Gauge,
    /// The same figures for `/status` (open until dropped).
    live: OpenSession,
    /// The route's label, for the rare counters looked up when needed.
    route: Arc<str>,
}

impl SessionMetrics {
    /// Counts a new session and returns its counters; the open gauge goes
    /// down again when this is dropped.
    pub fn open(route_label: &Arc<str>, listener: &str) -> Self {
        let live = live::live().open(route_label, listener);
        let handles = SessionHandles::of(route_label, listener);
        handles.connections.increment(1);
        handles.open.increment(1.0);
        SessionMetrics {
            messages_in: handles.messages_in,
            messages_out: handles.messages_out,
            bytes_in: handles.bytes_in,
            bytes_out: handles.bytes_out,
            own: Default::default(),
            open: handles.open,
            live,
            route: route_label.clone(),
        }
    }

    /// A message of `len` bytes came from the client.
    pub fn received(&self, len: u64) {
        self.messages_in.increment(1);
        self.bytes_in.increment(len);
        self.live.route().received(len);
        self.own[0].fetch_add(1, Ordering::Relaxed);
        self.own[2].fetch_add(len, Ordering::Relaxed);
    }

    /// A message of `len` bytes went to the client.
    pub fn sent(&self, len: u64) {
        self.messages_out.increment(1);
        self.bytes_out.increment(len);
        self.live.route().sent(len);
        self.own[1].fetch_add(1, Ordering::Relaxed);
        self.own[3].fetch_add(len, Ordering::Relaxed);
    }

    /// This session's totals so far.
    pub fn traffic(&self) -> Traffic {
        let get = |i: usize| self.own[i].load(Ordering::Relaxed);
        Traffic {
            messages_in: get(0),
            messages_out: get(1),
            bytes_in: get(2),
            bytes_out: get(3),
        }
    }

    /// The session is closed for exceeding a rate (`limit`: messages, bytes).
    pub fn rate_limited(&self, limit: &'static str) {
        counter!("wssd_rate_limited_total", "route" => self.route.to_string(), "limit" => limit)
            .increment(1);
    }
}

#[cfg(test)]
impl SessionMetrics {
    /// Counters in no registry, for unit tests that read them back:
    /// `messages_in` and `bytes_in` as given, the rest no-ops.
    pub fn detached(messages_in: Counter, bytes_in: Counter) -> Self {
        SessionMetrics {
            messages_in,
            messages_out: Counter::noop(),
            bytes_in,
            bytes_out: Counter::noop(),
            own: Default::default(),
            open: Gauge::noop(),
            live: live::Live::new().open("/test", "test"),
            route: Arc::from("/test"),
        }
    }
}

impl Drop for SessionMetrics {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// The registry's handles of one route on one listener, looked up once and
/// then cloned for each session (six labelled lookups, each with its owned
/// label strings, cost 13 allocations per WebSocket before).
#[derive(Clone)]
struct SessionHandles {
    connections: Counter,
    open: Gauge,
    messages_in: Counter,
    messages_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
}

/// Most (route, listener) pairs kept; beyond (routes renamed by many
/// reloads) the handles are looked up per session, as before.
const MAX_CACHED_HANDLES: usize = 1024;

/// Route label -> (listener label, handles); a route has a few listeners.
type HandleCache = HashMap<Arc<str>, Vec<(Box<str>, SessionHandles)>>;

static HANDLES: Mutex<Option<HandleCache>> = Mutex::new(None);

impl SessionHandles {
    fn of(route: &Arc<str>, listener: &str) -> SessionHandles {
        let mut cache = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        if let Some(found) = cache
            .get(&**route)
            .and_then(|ls| ls.iter().find(|(l, _)| &**l == listener))
        {
            return found.1.clone();
        }
        let handles = SessionHandles::lookup(route, listener);
        if cache.values().map(Vec::len).sum::<usize>() < MAX_CACHED_HANDLES {
            cache
                .entry(route.clone())
                .or_default()
                .push((listener.into(), handles.clone()));
        }
        handles
    }

    fn lookup(route: &str, listener: &str) -> SessionHandles {
        let route = route.to_string();
        let listener = listener.to_string();
        SessionHandles {
            connections: counter!("wssd_connections_total", "route" => route.clone(), "listener" => listener.clone()),
            open: gauge!("wssd_connections_open", "route" => route.clone(), "listener" => listener),
            messages_in: counter!("wssd_messages_total", "route" => route.clone(), "direction" => "in"),
            messages_out: counter!("wssd_messages_total", "route" => route.clone(), "direction" => "out"),
            bytes_in: counter!("wssd_bytes_total", "route" => route.clone(), "direction" => "in"),
            bytes_out: counter!("wssd_bytes_total", "route" => route, "direction" => "out"),
        }
    }
}

/// Messages and bytes of one WebSocket, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}
