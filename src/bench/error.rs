//! Why a bench run could not start or produce results: one [`BenchError`]
//! for every mode, each variant naming what failed and what to do.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::limits::ALLOW_REMOTE_ENV;
use super::sys;

/// Why a bench run could not start or produce results.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad URL {url:?}: {reason}; expected ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH")]
    BadUrl { url: String, reason: String },

    #[error("{0}")]
    InvalidArgs(String),

    #[error("cannot resolve {host}: {source}; check the host name in the URL")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "refusing to benchmark {host} ({addr}): only loopback targets (127.0.0.0/8, ::1) are allowed; \
         set {ALLOW_REMOTE_ENV}=1 to load a remote server you own"
    )]
    NotLoopback { host: String, addr: IpAddr },

    #[error(
        "connection refused by {addr}: is the server running and listening on that address and port?"
    )]
    ConnectRefused { addr: SocketAddr },

    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "TLS certificate verification failed for {host}: {detail}; pass --ca FILE with the server's \
         certificate or its CA, or --insecure to skip verification"
    )]
    TlsVerify { host: String, detail: String },

    #[error(
        "TLS handshake with {host} failed: {detail}; does that port serve TLS? \
         (use ws:// for a plain listener)"
    )]
    TlsHandshake { host: String, detail: String },

    #[error("cannot use CA file {}: {detail}; --ca expects a PEM file with CERTIFICATE blocks", path.display())]
    CaFile { path: PathBuf, detail: String },

    #[error("TLS client setup failed: {0}")]
    TlsConfig(String),

    #[error("WebSocket upgrade at {url} refused with HTTP {status}{hint}")]
    UpgradeRefused {
        url: String,
        status: u16,
        hint: &'static str,
    },

    #[error("WebSocket upgrade at {url} failed: {detail}")]
    Upgrade { url: String, detail: String },

    #[error(
        "connecting to {url} timed out after {secs} s (TCP connect, TLS handshake and WebSocket \
         upgrade); is the server overloaded or not answering?"
    )]
    ConnectTimeout { url: String, secs: u64 },

    #[error("echo from {url} failed: {detail}; is this an echo endpoint (e.g. /ws/echo)?")]
    Echo { url: String, detail: String },

    #[error("none of {attempted} connections could be opened; first error: {first}")]
    NoConnections {
        attempted: usize,
        first: Box<BenchError>,
    },

    #[error(
        "cannot read the memory of PID {pid}: {reason}; pass the PID of a running server process with --pid"
    )]
    Pid {
        pid: u32,
        /// Not a `#[source]`: the message already includes it once.
        reason: sys::RssError,
    },

    #[error(
        "{wanted} connections need about {needed} open files but the limit is {limit} (hard \
         limit, already raised to it); raise it (ulimit -Hn as root, or LimitNOFILE= in systemd) \
         or use fewer"
    )]
    FdLimit {
        wanted: usize,
        needed: u64,
        limit: u64,
    },

    #[error(
        "{missing} of {live} subscribers on {url} received none of {sent} warm-up messages sent to \
         {publish_url} within {secs} s; is that a broadcast route (--route PATH=broadcast)? An echo \
         route answers only the sender; with two instances, do both use the same --broker?"
    )]
    WarmUp {
        missing: usize,
        live: usize,
        sent: u64,
        url: String,
        publish_url: String,
        secs: f64,
    },

    #[error("the publisher connection to {url} failed: {detail}")]
    Publish { url: String, detail: String },

    #[error("every subscriber connection was closed before the measurement started: {closes}")]
    SubscribersGone { closes: String },

    #[error("internal error: {0}")]
    Internal(String),
}

impl BenchError {
    pub(super) fn no_connections(attempted: usize, first: Option<BenchError>) -> BenchError {
        BenchError::NoConnections {
            attempted,
            first: Box::new(
                first.unwrap_or_else(|| BenchError::Internal("no error was recorded".into())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_suggest_a_fix() {
        let e = BenchError::TlsVerify {
            host: "localhost".into(),
            detail: "UnknownIssuer".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("--insecure") && text.contains("--ca"),
            "{text}"
        );
        let e = BenchError::no_connections(
            3,
            Some(BenchError::ConnectRefused {
                addr: "127.0.0.1:1".parse().unwrap(),
            }),
        );
        assert!(e.to_string().contains("is the server running"), "{e}");
    }
}
