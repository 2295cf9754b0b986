//! The command line: clap definitions for `serve`, `check`, `cert`, `bench`,
//! `completions` and the hidden `man` (the packages' manual page).
//!
//! The options of `serve` and `check` are defined once, in `config::flags`
//! (flag, env and help) and `config::file` (TOML); their defaults in
//! `config::defaults`. This file holds the command tree and the options of
//! the one-shot commands (`cert`, `bench`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The options of `serve` and `check` and their values live in `config`
/// (one definition each); re-exported here for the old paths.
pub use crate::config::{AcmeChallenge, ClientAuth, KeyType, LogFormat, ServeArgs, TlsMode};

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
    /// Print shell completions, e.g. `wssd completions bash > /etc/bash_completion.d/wssd`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), as shipped in the packages.
    #[command(hide = true)]
    Man,
}

/// `wssd completions SHELL`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Writes `shell`'s completion script for the whole command tree.
pub fn completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // clap_complete panics on a failed write (a closed pipe): write to
    // memory, then copy with errors returned.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "wssd", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the manual page: the top-level options (those of `serve`), the
/// commands, then the environment variables and files clap_mangen leaves out.
pub fn man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    writeln!(out, ".SH ENVIRONMENT")?;
    writeln!(
        out,
        "Every option also reads a variable (flag > environment > .env in the working folder > file > default):"
    )?;
    for arg in cmd.get_arguments() {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            writeln!(out, ".TP\n\\fB{}\\fR", roff_escape(&env.to_string_lossy()))?;
            writeln!(out, "\\-\\-{}", roff_escape(long))?;
        }
    }
    writeln!(out, ".SH FILES")?;
    writeln!(
        out,
        ".TP\n\\fI./wssd.toml\\fR\nread when present and no \\fB\\-\\-config\\fR is given; keys are the long options with _"
    )?;
    writeln!(
        out,
        ".TP\n\\fI/usr/share/doc/wssd/examples/wssd.toml\\fR\nevery option of the file, commented (the package's; examples/wssd.toml in the source)"
    )?;
    writeln!(
        out,
        ".TP\n\\fI/usr/lib/systemd/system/wssd.service\\fR, \\fIwssd.socket\\fR, \\fIwssd\\-http.socket\\fR\nsystemd units: Type=notify, socket activation (a socket named http is plain, any other TLS)"
    )?;
    man.render_version_section(out)?;
    out.flush()
}

/// Escapes text for roff: backslashes and hyphens.
fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('-', "\\-")
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
    // issue 13 (seed helper): hand the CA to other devices.
    /// Write the CA certificate (public part only, never the key) for other devices.
    Export(CaExportArgs),
}

/// `wssd cert ca export`
#[derive(Debug, Clone, Args)]
pub struct CaExportArgs {
    #[command(flatten)]
    pub ca: CaArgs,
    /// DER (binary, `.crt`/`.cer`: Android, Windows) instead of PEM
    #[arg(long)]
    pub der: bool,
    /// Write to FILE (mode 0644) instead of standard output (DER needs a file)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
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
    /// Flush after every message (one TLS record and one write each, as a
    /// browser sends), not once per burst of --inflight messages
    #[arg(long)]
    pub flush_each: bool,
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
