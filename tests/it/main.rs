//! The one integration test binary: every test starts the real `wssd` on
//! loopback and talks to it with real clients.

mod certs; // reload under load, SNI, mTLS
mod echo; // text and binary echo over ws:// and wss://, big messages
mod harness; // start/stop the binary, TLS/WebSocket/HTTP clients
mod http; // static files, 404, clear errors for wrong request kinds
mod limits; // 1009, 503 past the limit, handshake timeout, metrics
mod shutdown; // SIGTERM: close 1001 and exit 0
mod startup; // every startup error, config precedence, check, cert commands
