//! The flags of `serve` and `check`: one clap definition per option, each
//! also read from `WSSD_<NAME>` (clap's `env`; `main` loads `.env` into the
//! environment first, without overriding it).
//!
//! Every field is an `Option` (or a list) with no clap default, so `load`
//! can tell "not given" apart and apply flag > env > .env > file > default;
//! the `[default: ...]` notes must match `config::defaults` (a test checks).
//! Nothing here validates values beyond their type; the sections do.

use std::path::PathBuf;

use clap::Args;

use super::types::{AcmeChallenge, ClientAuth, KeyType, LogFormat, TlsMode};

/// Options of `serve` and `check`. Every one also reads `WSSD_<NAME>`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file [default: ./wssd.toml when present]
    #[arg(long, env = "WSSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// TLS listener (https:// and wss://); repeatable [default: 127.0.0.1:8443]
    #[arg(long, env = "WSSD_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub listen: Vec<String>,

    /// Plain listener (http:// and ws://) beside the TLS one; repeatable [default: off]
    #[arg(long, env = "WSSD_HTTP", value_name = "ADDR", value_delimiter = ',')]
    pub http: Vec<String>,

    /// How certificates are obtained [default: self-signed, or files when --cert is given]
    #[arg(long, env = "WSSD_TLS", value_name = "MODE")]
    pub tls: Option<TlsMode>,

    /// PEM certificate chain (leaf first, then intermediates)
    #[arg(long, env = "WSSD_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "WSSD_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Name or IP address for generated certificates; repeatable [default: localhost, 127.0.0.1, ::1]
    #[arg(
        long,
        env = "WSSD_HOSTNAME",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub hostname: Vec<String>,

    /// Key algorithm for generated certificates [default: ecdsa-p256]
    #[arg(long, env = "WSSD_KEY_TYPE", value_name = "TYPE")]
    pub key_type: Option<KeyType>,

    /// Folder for generated certificates [default: $XDG_STATE_HOME/wssd or ~/.local/state/wssd]
    #[arg(long, env = "WSSD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Route PATH=KIND[:ARG], e.g. /ws/echo=echo or /=static:./public; repeatable
    #[arg(long, env = "WSSD_ROUTE", value_name = "PATH=KIND[:ARG]")]
    pub route: Vec<String>,

    /// Largest WebSocket message accepted, in bytes [default: 4194304]
    #[arg(long, env = "WSSD_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<usize>,

    /// Global budget for bytes of messages being received and queued for fan-out; past it
    /// connections are closed with 1013 and HTTP publish answers 503 [default: 268435456]
    #[arg(long, env = "WSSD_MEMORY_BUDGET", value_name = "BYTES")]
    pub memory_budget: Option<usize>,

    /// Most WebSocket connections at once; past it upgrades get 503 [default: 10000]
    #[arg(long, env = "WSSD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most connections from one IP address at once, each WebSocket over HTTP/2 counted as one; past it new connections are closed before TLS, HTTP/2 WebSockets get 503 [default: 4096]
    #[arg(long, env = "WSSD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    // The listener edge (issue 12): per-IP connection rate, PROXY protocol,
    // http -> https.
    /// New connections per second from one client IP (IPv6: per /64), each WebSocket over HTTP/2 counted as one, burst 2N; past it new connections are closed before TLS, HTTP/2 WebSockets get 503 [default: off]
    #[arg(long, env = "WSSD_CONNECTION_RATE_PER_IP", value_name = "N")]
    pub connection_rate_per_ip: Option<u32>,

    // Per-listener connection caps (issue 13: the device console's HTTPS 4 / HTTP 10).
    /// Most TCP connections open at once on each TLS (--listen) listener, HAProxy's `maxconn` on a `bind`; past it new ones are closed at accept, before TLS [default: off]
    #[arg(long, env = "WSSD_LISTEN_MAX_CONNECTIONS", value_name = "N")]
    pub listen_max_connections: Option<usize>,

    /// Most TCP connections open at once on each plain (--http) listener; past it new ones are closed at accept [default: off]
    #[arg(long, env = "WSSD_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<usize>,

    /// TLS and plain listeners expect a PROXY protocol v1/v2 header from --trusted-proxy peers (others are refused); the address it carries is the client's [default: off]
    #[arg(
        long,
        env = "WSSD_PROXY_PROTOCOL",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub proxy_protocol: Option<bool>,

    /// Plain (--http) listeners answer 308 to https:// on the first TLS listener, except ACME HTTP-01 and routes with plain = true [default: off]
    #[arg(
        long,
        env = "WSSD_REDIRECT_HTTP",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub redirect_http: Option<bool>,

    // HTTP/2 (issue 15).
    /// TLS listeners offer HTTP/2 (ALPN h2) besides HTTP/1.1, WebSockets over HTTP/2 (RFC 8441) included; off: HTTP/1.1 only [default: on]
    #[arg(
        long,
        env = "WSSD_HTTP2",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub http2: Option<bool>,

    /// Seconds from TCP accept to complete HTTP request headers (TLS included) [default: 10]
    #[arg(
        long,
        env = "WSSD_HANDSHAKE_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub handshake_timeout: Option<f64>,

    /// Seconds between server pings; a socket whose pong does not come back is closed; 0 = off [default: 30]
    #[arg(
        long,
        env = "WSSD_PING_INTERVAL",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub ping_interval: Option<f64>,

    /// Close a WebSocket that sent no message for this many seconds; 0 = off [default: off]
    #[arg(
        long,
        env = "WSSD_IDLE_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub idle_timeout: Option<f64>,

    /// Seconds to wait for WebSockets to close on shutdown; after a SIGUSR2
    /// upgrade, how long the old process's connections go on before 1001
    /// [default: 10]
    #[arg(
        long,
        env = "WSSD_DRAIN_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub drain_timeout: Option<f64>,

    /// Seconds a write may make no progress (a client, upstream or program not reading), and a proxied request body may pause; the peer is then closed [default: 10]
    #[arg(
        long,
        env = "WSSD_SEND_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub send_timeout: Option<f64>,

    /// Messages per second each WebSocket may send on every route (routes may override); past it
    /// (and the burst) the socket is closed with 1008; 0 = off [default: off]
    #[arg(long, env = "WSSD_MESSAGE_RATE", value_name = "N")]
    pub message_rate: Option<u32>,

    /// Messages a WebSocket may send at once (the bucket --message-rate refills) [default: twice the rate]
    #[arg(long, env = "WSSD_MESSAGE_BURST", value_name = "N")]
    pub message_burst: Option<u32>,

    /// Message bytes per second each WebSocket may send on every route (routes may override);
    /// past it (and the burst) the socket is closed with 1008; 0 = off [default: off]
    #[arg(long, env = "WSSD_BYTE_RATE", value_name = "BYTES")]
    pub byte_rate: Option<u32>,

    /// Message bytes a WebSocket may send at once (the bucket --byte-rate refills); at least the largest
    /// message (max_message_size) [default: twice the rate, at least max_message_size]
    #[arg(long, env = "WSSD_BYTE_BURST", value_name = "BYTES")]
    pub byte_burst: Option<u32>,

    /// Browser Origin allowed besides the server's own host; repeatable; * for any
    #[arg(
        long,
        env = "WSSD_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,

    /// Host a browser page may reach plain (--http) listeners by, against DNS rebinding; repeatable; *.NAME for subdomains, * for any [default: the --hostname names; IP addresses and localhost always]
    #[arg(
        long,
        env = "WSSD_ALLOW_HOST",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,

    /// Peers whose X-Forwarded-* headers (and, with --proxy-protocol, PROXY headers) are believed (CIDR); repeatable [default: none]
    #[arg(
        long,
        env = "WSSD_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,

    /// Metrics and health listener (plain HTTP), or "off" [default: 127.0.0.1:9099]
    #[arg(long, env = "WSSD_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,

    /// Where chat and broadcast messages travel: memory, or redis://HOST:PORT (rediss:// for TLS) to share rooms across instances [default: memory]
    #[arg(long, env = "WSSD_BROKER", value_name = "URL")]
    pub broker: Option<String>,

    /// PEM CA certificate(s) a rediss:// broker's certificate must chain to [default: Mozilla's roots]
    #[arg(long, env = "WSSD_BROKER_CA", value_name = "FILE")]
    pub broker_ca: Option<PathBuf>,

    /// Bearer token for POST /publish/<route> on the admin listener [default: off, endpoint disabled]
    #[arg(
        long,
        env = "WSSD_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub publish_token: Option<String>,

    /// Bearer token for POST /reload on the admin listener (reloads the configuration) [default: off, endpoint disabled]
    #[arg(
        long,
        env = "WSSD_RELOAD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub reload_token: Option<String>,

    /// Reload the configuration when its file changes (besides SIGHUP and POST /reload) [default: on]
    #[arg(
        long,
        env = "WSSD_WATCH_CONFIG",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub watch_config: Option<bool>,

    /// Log format [default: text]
    #[arg(long, env = "WSSD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log level or filter, e.g. info, debug, wssd=trace [default: info]
    #[arg(long, env = "WSSD_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Access log: one line per HTTP request and per WebSocket at its end, to stderr or FILE (reopened on SIGUSR1) [default: off]
    #[arg(long, env = "WSSD_ACCESS_LOG", value_name = "stderr|off|FILE")]
    pub access_log: Option<String>,

    /// Access log format [default: text]
    #[arg(long, env = "WSSD_ACCESS_LOG_FORMAT", value_name = "FORMAT")]
    pub access_log_format: Option<LogFormat>,

    /// PEM CA certificate(s) that client certificates must chain to (mTLS)
    #[arg(long, env = "WSSD_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Whether clients must present a certificate [default: required when --client-ca is given]
    #[arg(long, env = "WSSD_CLIENT_AUTH", value_name = "MODE")]
    pub client_auth: Option<ClientAuth>,

    /// ACME directory URL [default: Let's Encrypt production]
    #[arg(long, env = "WSSD_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,

    /// Contact e-mail for the ACME account
    #[arg(long, env = "WSSD_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,

    /// PEM root to trust for the ACME directory (a test CA such as Pebble)
    #[arg(long, env = "WSSD_ACME_CA_ROOT", value_name = "FILE")]
    pub acme_ca_root: Option<PathBuf>,

    /// Preferred ACME challenge; the other is tried when it fails [default: tls-alpn-01, or http-01 with --http]
    #[arg(long, env = "WSSD_ACME_CHALLENGE", value_name = "TYPE")]
    pub acme_challenge: Option<AcmeChallenge>,

    /// Seconds between checks of certificate files (a backstop for missed file events) [default: 30]
    #[arg(
        long,
        env = "WSSD_CERT_CHECK_INTERVAL",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub cert_check_interval: Option<f64>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// Flags whose TOML key lives in the `[tls]` table under the same name.
    const TLS_KEYS: [&str; 10] = [
        "cert",
        "key",
        "hostname",
        "key_type",
        "client_ca",
        "client_auth",
        "acme_directory",
        "acme_email",
        "acme_ca_root",
        "acme_challenge",
    ];

    /// The TOML key of a flag (`table.key` inside `[tls]`).
    fn file_key(flag: &str) -> Option<String> {
        match flag {
            "config" | "help" | "version" => None,
            "tls" => Some("tls.mode".into()),
            "cert_check_interval" => Some("tls.check_interval".into()),
            f if TLS_KEYS.contains(&f) => Some(format!("tls.{f}")),
            f => Some(f.into()),
        }
    }

    #[test]
    fn every_flag_has_a_file_key_and_back() {
        let flags: Vec<String> = Flags::command()
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let mut keys = crate::config::file::accepted_keys("");
        keys.extend(
            crate::config::file::accepted_keys("[tls]")
                .into_iter()
                .map(|k| format!("tls.{k}")),
        );
        assert!(keys.len() > 30, "{keys:?}");
        for flag in &flags {
            if let Some(key) = file_key(flag) {
                assert!(keys.contains(&key), "--{flag}: no key {key} in wssd.toml");
            }
        }
        // Keys with no flag: the `[tls]` table itself and SNI certificates.
        for key in keys {
            if key == "tls" || key == "tls.certificate" {
                continue;
            }
            assert!(
                flags
                    .iter()
                    .any(|f| file_key(f).as_deref() == Some(key.as_str())),
                "wssd.toml key {key} has no flag"
            );
        }
    }
}
