//! The one integration test binary: every test starts the real `wssd` on
//! loopback and talks to it with real clients.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "blocking tests against a real process: std clocks and sleeps are the right ones, and a failed unwrap is a failed test"
)]

mod access_log; // one line per request and per WebSocket end, text and JSON, escaping, SIGUSR1 reopen, off
mod acme; // --tls acme against pebble: HTTP-01, TLS-ALPN-01, restart, renewal, CA outage
mod auth; // route auth at the handshake: tokens, JWTs, basic, backoff, bad configs
mod budget; // memory: fan-out without per-subscriber copies, the global memory budget
mod certs; // reload under load, SNI, mTLS
mod echo; // text and binary echo over ws:// and wss://, big messages
mod edge_l4; // PROXY protocol, per-IP rate and cap with summarised refusals, redirect to https, HTTP on the TLS port
mod exec; // CGI environment, line/binary relay, kill and reap, exit codes, cap, backpressure
mod harness; // start/stop the binary, TLS/WebSocket/HTTP clients
mod http; // static files, 404, clear errors for wrong request kinds
mod identity; // the identity (client certificate) to proxy upstreams, exec programs and logs
mod limits; // 1009, 503 past the limit, handshake timeout, metrics
mod listener_caps; // issue 13: per-listener caps (--listen-max-connections, --http-max-connections)
mod proxy; // proxy routes in front of real echo backends, upstream_max_conns for WebSockets
mod proxy_pool; // issue 15: pooled upstream HTTP: reuse, idle timeout, closing upstreams, idle bound, h2c, header timeout, upstream_max_conns
mod rates; // per-WebSocket message and byte rates on every route kind: 1008 past them
mod redis; // a real redis-server for tests; the redis backend across instances, outages
mod scaleout; // two wssd instances on one redis: chat, broadcast, outage, SIGKILL
mod seed; // issue 13: local CA export and install page, no private keys served, seed hints
mod shutdown; // SIGTERM: close 1001 and exit 0
mod stall; // peers that stop reading (or sending a body) are closed within the send timeout
mod startup; // every startup error, config precedence, check, cert commands
mod static_files; // issue 15: Range, ETag/304, precompressed and on-the-fly compression, with no escape and no private key
mod status; // the admin status page and GET /status: counts under load, closes, certificates, upstreams, degraded broker, no secrets, documented schema
mod test_ca; // a throwaway CA signing server and client certificates
mod tls_handshake; // issue 16: the server's suite choice, the post-quantum group, one ticket per handshake and resumption, the ClientHello read before the handshake
