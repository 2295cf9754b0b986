//! The command line: clap definitions for `serve`, `check`, `cert` and `bench`.
//!
//! Serving options are `Option`s with no clap defaults, so `config` can tell
//! "not given" apart and apply the precedence flag > env > file > default.
//! Nothing here validates values beyond their type; `config` does that.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// wssd: a secure WebSocket server and TLS-terminating WebSocket gateway.
///
/// With no arguments, serves https://localhost:8443 with a self-signed
/// certificate, the bundled browser client at / and an echo socket at /ws/echo.
#[derive(Debug, Parser)]
#[command(name = "wssd", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options for the default `serve` command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    Serve(ServeArgs),
    /// Validate the configuration and certificates; print every problem, exit 1 on any.
    Check(ServeArgs),
    /// Generate or inspect certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// A WebSocket load generator (msgs/s, MB/s, latency percentiles).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// How TLS certificates are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Generate a self-signed certificate in the state folder and reuse it.
    SelfSigned,
    /// Certificates issued by the local CA (`wssd cert ca init`).
    LocalCa,
    /// PEM files given with --cert and --key.
    Files,
    /// Certificates from an ACME CA (Let's Encrypt).
    Acme,
    /// No TLS: only plain listeners (--http).
    Off,
}

/// Key algorithm for generated certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA with curve P-256 (default).
    #[default]
    #[value(name = "ecdsa-p256", alias = "p256", alias = "ecdsa")]
    #[serde(alias = "p256", alias = "ecdsa")]
    EcdsaP256,
    /// RSA with a 2048-bit modulus.
    #[value(name = "rsa2048", alias = "rsa")]
    #[serde(rename = "rsa2048", alias = "rsa")]
    Rsa2048,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

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

    /// Most connections from one IP address at once [default: 256]
    #[arg(long, env = "WSSD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

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

    /// Seconds to wait for WebSockets to close on shutdown [default: 10]
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

    /// Peers whose X-Forwarded-* headers are believed (CIDR); repeatable [default: none]
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

    /// Log format [default: text]
    #[arg(long, env = "WSSD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log level or filter, e.g. info, debug, wssd=trace [default: info]
    #[arg(long, env = "WSSD_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

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

/// Client certificate policy on TLS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Handshakes without a valid client certificate fail.
    Required,
    /// A client certificate is verified when presented, but not needed.
    Optional,
}

/// ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeChallenge {
    /// Answered by the plain listener (port 80 for public CAs).
    #[value(name = "http-01")]
    #[serde(rename = "http-01")]
    Http01,
    /// Answered by the TLS listener (port 443 for public CAs).
    #[value(name = "tls-alpn-01")]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write a self-signed certificate and key (PEM).
    Generate(CertGenerateArgs),
    /// Show subject, SANs, issuer, validity, days left and (with --key) whether the key matches.
    Inspect(CertInspectArgs),
    /// A local certificate authority (mkcert-style) for LAN and localhost names.
    #[command(subcommand)]
    Ca(CaCommand),
}

/// `wssd cert ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the local CA in the state folder (once; later calls reuse it).
    Init(CaArgs),
    /// Issue a certificate signed by the local CA.
    Issue(CaIssueArgs),
    /// Add the local CA to the system trust store and the browsers' NSS database.
    Install(CaArgs),
    /// Remove exactly what `install` added.
    Uninstall(CaArgs),
}

/// Where the local CA lives.
#[derive(Debug, Clone, Args)]
pub struct CaArgs {
    /// State folder holding the CA [default: $XDG_STATE_HOME/wssd or ~/.local/state/wssd]
    #[arg(long, env = "WSSD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CaIssueArgs {
    #[command(flatten)]
    pub ca: CaArgs,
    /// Name or IP address; repeatable [default: localhost, 127.0.0.1, ::1]
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub hostname: Vec<String>,
    /// Days of validity
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Key algorithm
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256")]
    pub key_type: KeyType,
    /// Where to write the certificate (with the CA certificate after it)
    #[arg(long, value_name = "FILE", default_value = "cert.pem")]
    pub out_cert: PathBuf,
    /// Where to write the private key (mode 0600)
    #[arg(long, value_name = "FILE", default_value = "key.pem")]
    pub out_key: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertGenerateArgs {
    /// Name or IP address; repeatable [default: localhost, 127.0.0.1, ::1]
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub hostname: Vec<String>,
    /// Days of validity
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Key algorithm
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256")]
    pub key_type: KeyType,
    /// Where to write the certificate
    #[arg(long, value_name = "FILE", default_value = "cert.pem")]
    pub out_cert: PathBuf,
    /// Where to write the private key (mode 0600)
    #[arg(long, value_name = "FILE", default_value = "key.pem")]
    pub out_key: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertInspectArgs {
    /// PEM certificate (chain) to inspect
    pub file: PathBuf,
    /// PEM private key to match against the certificate
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Echo load: CONNS connections each sending SIZE-byte messages for SECS seconds.
    Echo(BenchEchoArgs),
    /// Connection rate: WORKERS loops that connect (TCP, TLS, upgrade) and close for SECS seconds.
    Connect(BenchConnectArgs),
    /// Idle connections: open CONNS and hold them HOLD seconds (reports RSS of --pid).
    Idle(BenchIdleArgs),
    /// Fan-out on a broadcast route: N subscribers, one publisher sending M messages at RATE/s; delivery latency and losses.
    Fanout(BenchFanoutArgs),
}

/// Client options shared by every bench mode.
#[derive(Debug, Clone, Args)]
pub struct BenchClientArgs {
    /// ws:// or wss:// URL of an echo endpoint (of a broadcast route for fanout)
    pub url: String,
    /// Skip certificate verification (wss:// only)
    #[arg(long)]
    pub insecure: bool,
    /// Trust this PEM CA/certificate in addition to the system roots
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchEchoArgs {
    #[command(flatten)]
    pub client: BenchClientArgs,
    /// Connections
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Message size in bytes
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Duration in seconds
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Send binary messages instead of text
    #[arg(long)]
    pub binary: bool,
    /// Messages in flight per connection
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchConnectArgs {
    #[command(flatten)]
    pub client: BenchClientArgs,
    /// Concurrent connect loops
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Duration in seconds
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchIdleArgs {
    #[command(flatten)]
    pub client: BenchClientArgs,
    /// Connections to open and hold
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Seconds to hold them open after the last one connected
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// PIDs whose resident memory is measured before and after (repeatable; summed)
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub pid: Vec<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchFanoutArgs {
    #[command(flatten)]
    pub client: BenchClientArgs,
    /// ws:// or wss:// URL the publisher connects to, e.g. another instance sharing the broker [default: URL]
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// Subscriber connections opened to URL
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages the publisher sends (after the warm-up)
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Messages per second the publisher sends; 0 = as fast as --window allows
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Message size in bytes (binary frames; at least 16: sequence number and send time)
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Subscriber handshakes in progress at once
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// With --rate 0: most messages sent but not yet received by every subscriber
    #[arg(long, default_value_t = 256)]
    pub window: u64,
    /// Seconds to wait for every subscriber to receive a warm-up message
    #[arg(long, default_value_t = 30.0)]
    pub warmup_timeout: f64,
    /// Seconds to wait for late deliveries after the last message was sent
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Print only one JSON object on stdout (progress goes to stderr)
    #[arg(long)]
    pub json: bool,
}
