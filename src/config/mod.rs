//! Configuration: flags, `WSSD_*` environment variables (and `.env`, which
//! `main` loads into the environment before anything else runs), and the TOML
//! file, merged once with precedence flag > env > file > default into one
//! validated [`Config`]. Nothing downstream reads the environment or files.
//!
//! Flags and environment arrive together through clap (`env = "WSSD_..."`);
//! this module adds the file and the defaults, and collects every problem.

pub mod cidr;
pub mod file;
pub mod limits;
pub mod route;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{AcmeChallenge, KeyType, LogFormat, ServeArgs, TlsMode};
use file::LoadedFile;
pub use limits::{Limits, SessionLimits};
pub use route::{ChatSpec, RouteKind, RouteSpec};

/// Default TLS listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Plain listener used when `--tls off` is given without `--http`.
pub const DEFAULT_PLAIN_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9099";
/// Configuration file read when present and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "wssd.toml";

/// The whole validated configuration of `serve` and `check`.
///
/// Defaults: TLS listener 127.0.0.1:8443, no plain listener, `self-signed`
/// TLS (or `files` when a certificate is given) for localhost, 127.0.0.1 and
/// ::1, routes `/` (bundled client) and `/ws/echo`, limits as in
/// [`limits::Limits::default`], admin on 127.0.0.1:9099.
#[derive(Debug, Clone)]
pub struct Config {
    /// TLS listeners (empty when TLS is off).
    pub listen: Vec<SocketAddr>,
    /// Plain listeners.
    pub http: Vec<SocketAddr>,
    pub tls: TlsConfig,
    pub state_dir: PathBuf,
    pub routes: Vec<RouteSpec>,
    pub limits: Limits,
    /// Browser Origins allowed besides the server's own host (`*` = any).
    pub allow_origin: Vec<String>,
    /// Host names browser pages may use on plain listeners besides the TLS
    /// hostnames, IP literals and localhost (`*` = any, `*.NAME` = subdomains).
    pub allow_host: Vec<String>,
    /// Peers whose X-Forwarded-* headers are kept (appended to).
    pub trusted_proxies: Vec<cidr::Cidr>,
    /// Admin listener, or `None` when off.
    pub admin: Option<SocketAddr>,
    /// Where chat and broadcast messages travel.
    pub broker: BrokerConfig,
    /// Bearer token of the admin publish endpoint; `None` disables it.
    pub publish_token: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Certificate settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// The default certificate's files (`--tls files`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Names for generated, local-CA and ACME certificates.
    pub hostnames: Vec<String>,
    pub key_type: KeyType,
    /// Further certificates chosen by SNI (`[[tls.certificate]]`).
    pub sni: Vec<CertEntry>,
    /// Client certificates (mTLS), when configured.
    pub client_auth: Option<ClientAuthConfig>,
    pub acme: AcmeConfig,
    /// How often certificate files are re-checked besides file events.
    pub check_interval: Duration,
}

/// A PEM pair served for some SNI names.
#[derive(Debug, Clone, PartialEq)]
pub struct CertEntry {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Explicit names; empty means "the certificate's SANs".
    pub names: Vec<String>,
}

/// mTLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAuthConfig {
    pub ca: PathBuf,
    pub required: bool,
}

/// ACME settings (used with `--tls acme`).
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    pub directory: String,
    pub email: Option<String>,
    pub ca_root: Option<PathBuf>,
    pub challenge: AcmeChallenge,
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Default interval of the certificate-file backstop check.
pub const DEFAULT_CERT_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The `--broker` setting.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum BrokerConfig {
    /// In-process (one instance).
    #[default]
    Memory,
    /// A Redis server shared by instances:
    /// `redis[s]://[:PASSWORD@]HOST:PORT[/DB]`; for `rediss://` (TLS), the
    /// CA its certificate must chain to, when not a public one.
    Redis { url: String, ca: Option<BrokerCa> },
}

/// `--broker-ca`: the file and its PEM, read and checked once at load.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerCa {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerConfig::Memory => write!(f, "Memory"),
            BrokerConfig::Redis { url, ca: None } => write!(f, "Redis({})", redact_url(url)),
            BrokerConfig::Redis { url, ca: Some(ca) } => {
                write!(f, "Redis({}, ca {})", redact_url(url), ca.path.display())
            }
        }
    }
}

/// Reads `--broker-ca`: at least one PEM certificate, usable as a root.
fn read_broker_ca(path: &Path) -> Result<BrokerCa, String> {
    use crate::tls::CaPemError;
    let p = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("--broker-ca {p}: {e}"))?;
    crate::tls::ca_roots(&pem).map_err(|e| match e {
        CaPemError::Empty => format!(
            "--broker-ca {p}: holds no CERTIFICATE block; give the PEM file of the CA that signed the Redis server's certificate"
        ),
        other => format!("--broker-ca {p}: {other}"),
    })?;
    Ok(BrokerCa {
        path: path.to_path_buf(),
        pem,
    })
}

/// A URL with any `user:password@` replaced by `***@`.
fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_string(),
    }
}

/// Parses `--broker`.
pub fn parse_broker(text: &str) -> Result<BrokerConfig, String> {
    let url = text.trim();
    if url.is_empty() || url == "memory" {
        return Ok(BrokerConfig::Memory);
    }
    // Error messages show the URL without its password.
    let t = &redact_url(url);
    if let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    {
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = host.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!(
                "--broker {t}: no host; write redis://HOST:PORT (example: redis://127.0.0.1:6379)"
            ));
        }
        return Ok(BrokerConfig::Redis {
            url: url.to_string(),
            ca: None,
        });
    }
    Err(format!(
        "--broker {t}: unknown broker; use `memory`, `redis://HOST:PORT` or `rediss://HOST:PORT` (TLS)"
    ))
}

/// Every problem found in the configuration, one line each.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Where the environment-derived defaults come from (so tests can pass them).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub xdg_state_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// Secrets named by the configuration (moderator passwords), by name.
    pub secrets: std::collections::HashMap<String, String>,
}

impl Environment {
    /// Reads `XDG_STATE_HOME` and `HOME` once.
    pub fn from_process() -> Self {
        Environment {
            xdg_state_home: std::env::var_os("XDG_STATE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            // Any variable may be named by `moderator_password_env`; keep the
            // non-empty ones so `load` never reads the process environment.
            secrets: std::env::vars().filter(|(_, v)| !v.is_empty()).collect(),
        }
    }
}

/// Merges flags/env (`args`), the configuration file and defaults.
pub fn load(args: &ServeArgs, env: &Environment) -> Result<Config, ConfigErrors> {
    let mut problems = Vec::new();
    let file = match read_file(args) {
        Ok(file) => file,
        Err(e) => return Err(ConfigErrors(vec![e])),
    };
    let empty = file::FileConfig::default();
    let fc = file.as_ref().map(|f| &f.config).unwrap_or(&empty);
    let tls_table = fc.tls.as_ref();
    let place = |offset: usize| match &file {
        Some(f) => f.place(offset),
        None => "config".to_string(),
    };

    // TLS first: it decides the default listeners.
    let cert = args
        .cert
        .clone()
        .or_else(|| tls_table.and_then(|t| t.cert.clone()));
    let key = args
        .key
        .clone()
        .or_else(|| tls_table.and_then(|t| t.key.clone()));
    let mode = args
        .tls
        .or_else(|| tls_table.and_then(|t| t.mode))
        .unwrap_or(if cert.is_some() {
            TlsMode::Files
        } else {
            TlsMode::SelfSigned
        });
    let hostnames = if !args.hostname.is_empty() {
        args.hostname.clone()
    } else if let Some(h) = tls_table.and_then(|t| t.hostname.clone()) {
        h
    } else {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    };
    let key_type = args
        .key_type
        .or_else(|| tls_table.and_then(|t| t.key_type))
        .unwrap_or_default();
    match mode {
        TlsMode::Files => {
            if cert.is_none() {
                problems.push("--tls files needs --cert FILE (the PEM certificate chain)".into());
            }
            if key.is_none() {
                problems.push("--tls files needs --key FILE (the PEM private key)".into());
            }
        }
        TlsMode::SelfSigned | TlsMode::LocalCa | TlsMode::Acme | TlsMode::Off => {
            if cert.is_some() || key.is_some() {
                problems.push(format!(
                    "--cert/--key are only used with --tls files, but --tls is {}; drop them or use --tls files",
                    mode_name(mode)
                ));
            }
        }
    }
    for h in &hostnames {
        if let Err(e) = check_hostname(h) {
            problems.push(e);
        }
    }

    // Listeners.
    let mut listen = Vec::new();
    let listen_given = !args.listen.is_empty() || fc.listen.is_some();
    if !args.listen.is_empty() {
        for a in &args.listen {
            push_addr(&mut listen, &mut problems, a, "--listen");
        }
    } else if let Some(list) = &fc.listen {
        for a in list {
            push_addr(
                &mut listen,
                &mut problems,
                a.get_ref(),
                &format!("{}: listen", place(a.span().start)),
            );
        }
    }
    let mut http = Vec::new();
    if !args.http.is_empty() {
        for a in &args.http {
            push_addr(&mut http, &mut problems, a, "--http");
        }
    } else if let Some(list) = &fc.http {
        for a in list {
            push_addr(
                &mut http,
                &mut problems,
                a.get_ref(),
                &format!("{}: http", place(a.span().start)),
            );
        }
    }
    if mode == TlsMode::Off {
        if listen_given && !listen.is_empty() {
            problems.push(
                "--listen is a TLS listener but --tls is off; use --http ADDR for a plain listener, or drop --tls off"
                    .into(),
            );
        }
        listen.clear();
        if http.is_empty() && !listen_given {
            http.push(
                parse_addr(DEFAULT_PLAIN_LISTEN)
                    .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)),
            );
        }
    } else if !listen_given {
        listen.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443));
    }
    let mut all: Vec<SocketAddr> = listen.iter().chain(http.iter()).copied().collect();
    all.sort();
    for pair in all.windows(2) {
        if pair[0] == pair[1] && pair[0].port() != 0 {
            problems.push(format!(
                "{} is given twice (as --listen and --http, or twice in one); each address can have one listener",
                pair[0]
            ));
        }
    }

    // Admin.
    let admin_text = args
        .admin
        .clone()
        .or_else(|| fc.admin.as_ref().map(|a| a.get_ref().clone()))
        .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
    let admin = if matches!(admin_text.as_str(), "off" | "none" | "") {
        None
    } else {
        match parse_addr(&admin_text) {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(format!("--admin: {e}"));
                None
            }
        }
    };

    // Limits.
    let mut limits = Limits::default();
    if let Some(n) = args.max_message_size.or(fc.max_message_size) {
        if n < 16 {
            problems.push(format!(
                "--max-message-size must be at least 16 bytes, not {n}"
            ));
        }
        limits.max_message_size = n;
    }
    if let Some(n) = args.memory_budget.or(fc.memory_budget) {
        limits.memory_budget = n;
    }
    if limits.memory_budget < limits.max_message_size {
        problems.push(format!(
            "--memory-budget ({} bytes) is smaller than --max-message-size ({} bytes): one message could never be received; raise --memory-budget or lower --max-message-size",
            limits.memory_budget, limits.max_message_size
        ));
    }
    if let Some(n) = args.max_connections.or(fc.max_connections) {
        if n == 0 {
            problems.push("--max-connections must be at least 1".into());
        }
        limits.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_ip.or(fc.max_connections_per_ip) {
        if n == 0 {
            problems.push("--max-connections-per-ip must be at least 1".into());
        }
        limits.max_connections_per_ip = n;
    }
    let secs = |flag: Option<f64>, file: &Option<toml::Spanned<f64>>, key: &str| {
        let (value, where_) = match (flag, file) {
            (Some(v), _) => (v, format!("--{}", key.replace('_', "-"))),
            (None, Some(s)) => (*s.get_ref(), place(s.span().start)),
            (None, None) => return Ok(None),
        };
        limits::seconds(value, &where_, key).map(Some)
    };
    match secs(args.handshake_timeout, &fc.handshake_timeout, "handshake_timeout") {
        Ok(Some(Some(d))) => limits.handshake_timeout = d,
        Ok(Some(None)) => problems.push(
            "--handshake-timeout cannot be 0 (it protects against slow clients); give seconds, e.g. 10"
                .into(),
        ),
        Ok(None) => {}
        Err(e) => problems.push(e),
    }
    match secs(args.ping_interval, &fc.ping_interval, "ping_interval") {
        Ok(Some(d)) => limits.ping_interval = d,
        Ok(None) => {}
        Err(e) => problems.push(e),
    }
    match secs(args.idle_timeout, &fc.idle_timeout, "idle_timeout") {
        Ok(Some(d)) => limits.idle_timeout = d,
        Ok(None) => {}
        Err(e) => problems.push(e),
    }
    match secs(args.drain_timeout, &fc.drain_timeout, "drain_timeout") {
        Ok(Some(d)) => limits.drain_timeout = d.unwrap_or_default(),
        Ok(None) => {}
        Err(e) => problems.push(e),
    }
    match secs(args.send_timeout, &fc.send_timeout, "send_timeout") {
        Ok(Some(Some(d))) => limits.send_timeout = d,
        Ok(Some(None)) => problems.push(
            "--send-timeout cannot be 0 (it closes clients that stop reading); give seconds, e.g. 10"
                .into(),
        ),
        Ok(None) => {}
        Err(e) => problems.push(e),
    }

    // Routes.
    let mut routes = Vec::new();
    if !args.route.is_empty() {
        for r in &args.route {
            match route::parse_route_flag(r) {
                Ok(spec) => routes.push(spec),
                Err(e) => problems.push(format!("--route: {e}")),
            }
        }
    } else if let Some(tables) = &fc.route {
        for t in tables {
            let where_ = format!("{}: [[route]]", place(t.span().start));
            match t.get_ref().clone().into_spec(&where_) {
                Ok(spec) => routes.push(spec),
                Err(e) => problems.push(e),
            }
        }
    } else {
        routes = route::default_routes();
    }
    for r in &mut routes {
        if let RouteKind::Chat(chat) = &mut r.kind {
            chat.moderator_password = env.secrets.get(&chat.moderator_password_env).cloned();
        }
    }
    let mut paths: Vec<&str> = routes.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    for pair in paths.windows(2) {
        if pair[0] == pair[1] {
            problems.push(format!(
                "route path {} is defined twice; each path prefix can have one route",
                pair[0]
            ));
        }
    }
    for r in &routes {
        if let Some(n) = r.limits.max_message_size
            && n < 16
        {
            problems.push(format!(
                "route {}: max_message_size must be at least 16 bytes",
                r.path
            ));
        }
        if let Some(n) = r.limits.max_message_size
            && n > limits.memory_budget
        {
            problems.push(format!(
                "route {}: max_message_size ({n} bytes) is larger than --memory-budget ({} bytes); raise --memory-budget or lower the route's max_message_size",
                r.path, limits.memory_budget
            ));
        }
        if let RouteKind::Static { dir: Some(dir) } = &r.kind {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => problems.push(format!(
                    "route {}: {} is not a folder; static routes serve a folder",
                    r.path,
                    dir.display()
                )),
                Err(e) => problems.push(format!(
                    "route {}: cannot open folder {}: {e}",
                    r.path,
                    dir.display()
                )),
            }
        }
    }

    let allow_origin = if !args.allow_origin.is_empty() {
        args.allow_origin.clone()
    } else {
        fc.allow_origin.clone().unwrap_or_default()
    };
    let allow_host = if !args.allow_host.is_empty() {
        args.allow_host.clone()
    } else {
        fc.allow_host.clone().unwrap_or_default()
    };
    for h in &allow_host {
        if h != "*" && check_hostname(h).is_err() {
            problems.push(format!(
                "--allow-host `{h}` is not a host name (examples: --allow-host box.lan, --allow-host '*.box.lan', --allow-host '*')"
            ));
        }
    }
    let mut trusted_proxies = Vec::new();
    let trusted_text = if !args.trusted_proxy.is_empty() {
        args.trusted_proxy.clone()
    } else {
        fc.trusted_proxy.clone().unwrap_or_default()
    };
    for t in &trusted_text {
        match cidr::Cidr::parse(t) {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => problems.push(format!("--trusted-proxy: {e}")),
        }
    }
    let broker_text = args
        .broker
        .clone()
        .or_else(|| fc.broker.as_ref().map(|b| b.get_ref().clone()));
    let mut broker_ok = true;
    let mut broker = match broker_text.as_deref().map(parse_broker).transpose() {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => {
            problems.push(e);
            broker_ok = false;
            BrokerConfig::Memory
        }
    };
    let broker_ca = args.broker_ca.clone().or_else(|| fc.broker_ca.clone());
    if let Some(path) = broker_ca {
        match &mut broker {
            BrokerConfig::Redis { url, ca } if url.starts_with("rediss://") => {
                match read_broker_ca(&path) {
                    Ok(read) => *ca = Some(read),
                    Err(e) => problems.push(e),
                }
            }
            // The --broker problem is reported already.
            _ if !broker_ok => {}
            _ => problems.push(format!(
                "--broker-ca {} applies only to a rediss:// broker (TLS to Redis); remove it, or use --broker rediss://HOST:PORT",
                path.display()
            )),
        }
    }
    let publish_token = args
        .publish_token
        .clone()
        .or_else(|| fc.publish_token.clone());
    if let Some(t) = &publish_token
        && t.trim().len() < 16
    {
        problems.push(
            "--publish-token must be at least 16 characters (it guards POST /publish); generate one with `openssl rand -hex 24`".into(),
        );
    }
    let log_format = args.log_format.or(fc.log_format).unwrap_or_default();
    let log_level = args
        .log_level
        .clone()
        .or_else(|| fc.log_level.clone())
        .unwrap_or_else(|| "info".into());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        problems.push(format!(
            "--log-level `{log_level}` is not a level or filter: {e}"
        ));
    }

    let state_dir = match args.state_dir.clone().or_else(|| fc.state_dir.clone()) {
        Some(d) => d,
        None => match default_state_dir(env) {
            Some(d) => d,
            None => {
                problems.push(
                    "no state folder: set --state-dir DIR (neither XDG_STATE_HOME nor HOME is set)"
                        .into(),
                );
                PathBuf::new()
            }
        },
    };

    if listen.is_empty() && http.is_empty() {
        problems.push("no listeners: give --listen ADDR (TLS) or --http ADDR (plain)".into());
    }

    // SNI certificates, mTLS, ACME.
    let mut sni = Vec::new();
    for t in tls_table
        .and_then(|t| t.certificate.as_ref())
        .into_iter()
        .flatten()
    {
        let where_ = format!("{}: [[tls.certificate]]", place(t.span().start));
        let table = t.get_ref();
        let names = table.names.clone().unwrap_or_default();
        for n in &names {
            if let Err(e) = check_hostname(n) {
                problems.push(format!("{where_}: {e}"));
            }
        }
        sni.push(CertEntry {
            cert: table.cert.clone(),
            key: table.key.clone(),
            names,
        });
    }
    if mode == TlsMode::Off && !sni.is_empty() {
        problems.push(
            "[[tls.certificate]] is given but --tls is off; remove them or turn TLS on".into(),
        );
    }
    let client_ca = args
        .client_ca
        .clone()
        .or_else(|| tls_table.and_then(|t| t.client_ca.clone()));
    let client_auth_mode = args
        .client_auth
        .or_else(|| tls_table.and_then(|t| t.client_auth));
    let client_auth = match (client_ca, client_auth_mode) {
        (Some(ca), mode_) => Some(ClientAuthConfig {
            ca,
            required: mode_ != Some(crate::cli::ClientAuth::Optional),
        }),
        (None, Some(_)) => {
            problems.push(
                "--client-auth needs --client-ca FILE (the CA that signs client certificates)"
                    .into(),
            );
            None
        }
        (None, None) => None,
    };
    if client_auth.is_some() && mode == TlsMode::Off {
        problems.push("--client-ca needs TLS, but --tls is off".into());
    }
    let acme = AcmeConfig {
        directory: args
            .acme_directory
            .clone()
            .or_else(|| tls_table.and_then(|t| t.acme_directory.clone()))
            .unwrap_or_else(|| LETS_ENCRYPT_DIRECTORY.to_string()),
        email: args
            .acme_email
            .clone()
            .or_else(|| tls_table.and_then(|t| t.acme_email.clone())),
        ca_root: args
            .acme_ca_root
            .clone()
            .or_else(|| tls_table.and_then(|t| t.acme_ca_root.clone())),
        challenge: args
            .acme_challenge
            .or_else(|| tls_table.and_then(|t| t.acme_challenge))
            .unwrap_or(if http.is_empty() {
                AcmeChallenge::TlsAlpn01
            } else {
                AcmeChallenge::Http01
            }),
    };
    if mode == TlsMode::Acme {
        if !acme.directory.starts_with("https://") {
            problems.push(format!(
                "--acme-directory `{}` must be an https:// URL",
                acme.directory
            ));
        }
        if acme.challenge == AcmeChallenge::Http01 && http.is_empty() {
            problems.push(
                "--acme-challenge http-01 needs a plain listener (--http ADDR, port 80 for public CAs)".into(),
            );
        }
        if hostnames.iter().any(|h| h.starts_with("*.")) {
            problems.push(
                "--tls acme cannot validate wildcard names (*.example.com) with HTTP-01 or TLS-ALPN-01; list the names".into(),
            );
        }
        if hostnames
            .iter()
            .any(|h| h.parse::<IpAddr>().is_ok() || h == "localhost")
        {
            problems.push(
                "--tls acme needs public DNS names in --hostname (not localhost or IP addresses)"
                    .into(),
            );
        }
    }
    let mut check_interval = DEFAULT_CERT_CHECK_INTERVAL;
    let file_check = tls_table.and_then(|t| t.check_interval.clone());
    match secs(args.cert_check_interval, &file_check, "cert_check_interval") {
        Ok(Some(Some(d))) => check_interval = d,
        Ok(Some(None)) => problems.push("--cert-check-interval cannot be 0".into()),
        Ok(None) => {}
        Err(e) => problems.push(e),
    }

    if !problems.is_empty() {
        return Err(ConfigErrors(problems));
    }
    Ok(Config {
        listen,
        http,
        tls: TlsConfig {
            mode,
            cert,
            key,
            hostnames,
            key_type,
            sni,
            client_auth,
            acme,
            check_interval,
        },
        state_dir,
        routes,
        limits,
        allow_origin,
        allow_host,
        trusted_proxies,
        admin,
        broker,
        publish_token,
        log_format,
        log_level,
        config_file: file.map(|f| f.path),
    })
}

fn read_file(args: &ServeArgs) -> Result<Option<LoadedFile>, String> {
    match &args.config {
        Some(path) => LoadedFile::read(path.clone()).map(Some),
        None => {
            let path = Path::new(DEFAULT_CONFIG_FILE);
            if path.exists() {
                LoadedFile::read(path.to_path_buf()).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}

/// `$XDG_STATE_HOME/wssd` or `~/.local/state/wssd`.
pub fn default_state_dir(env: &Environment) -> Option<PathBuf> {
    if let Some(x) = &env.xdg_state_home {
        return Some(x.join("wssd"));
    }
    env.home
        .as_ref()
        .map(|h| h.join(".local").join("state").join("wssd"))
}

fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::SelfSigned => "self-signed",
        TlsMode::LocalCa => "local-ca",
        TlsMode::Files => "files",
        TlsMode::Acme => "acme",
        TlsMode::Off => "off",
    }
}

fn push_addr(out: &mut Vec<SocketAddr>, problems: &mut Vec<String>, text: &str, what: &str) {
    match parse_addr(text) {
        Ok(a) => out.push(a),
        Err(e) => problems.push(format!("{what}: {e}")),
    }
}

/// Parses a listen address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or
/// `:PORT` (all IPv4 interfaces).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad =
        || format!("`{text}` is not an address; use IP:PORT, [IPv6]:PORT, localhost:PORT or :PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "[::]" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Err(bad()),
    };
    Ok(SocketAddr::new(ip, port))
}

fn check_hostname(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (!label.is_empty() && label.len() <= 63)
                && (label == "*" && i == 0
                    || label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--hostname `{name}` is not a DNS name or IP address (example: --hostname example.lan --hostname 192.168.1.20)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(list: &[&str]) -> ServeArgs {
        let mut v = vec!["wssd"];
        v.extend_from_slice(list);
        crate::cli::Cli::parse_from(v).serve
    }

    fn env() -> Environment {
        Environment {
            xdg_state_home: None,
            home: Some(PathBuf::from("/home/u")),
            secrets: [("WSSD_MOD_PASSWORD".to_string(), "pw".to_string())].into(),
        }
    }

    #[test]
    fn broker_urls() {
        assert_eq!(parse_broker("memory"), Ok(BrokerConfig::Memory));
        assert_eq!(
            parse_broker("redis://127.0.0.1:6379"),
            Ok(BrokerConfig::Redis {
                url: "redis://127.0.0.1:6379".into(),
                ca: None
            })
        );
        assert!(parse_broker("redis://").unwrap_err().contains("no host"));
        let e = parse_broker("rediss://:s3cret@/0").unwrap_err();
        assert!(e.contains("no host") && !e.contains("s3cret"), "{e}");
        let c = parse_broker("redis://:s3cret@h:1").unwrap();
        assert_eq!(format!("{c:?}"), "Redis(redis://***@h:1)");
        let c = parse_broker("rediss://:s3cret@h:1").unwrap();
        assert_eq!(format!("{c:?}"), "Redis(rediss://***@h:1)");
        assert!(
            parse_broker("nats://x")
                .unwrap_err()
                .contains("unknown broker")
        );
        let short = load(
            &args(&["--config", "/dev/null", "--publish-token", "abc"]),
            &env(),
        );
        assert!(short.unwrap_err().to_string().contains("at least 16"));
    }

    #[test]
    fn defaults() {
        let c = load(&args(&["--config", "/dev/null"]), &env()).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert!(c.http.is_empty());
        assert_eq!(c.tls.mode, TlsMode::SelfSigned);
        assert_eq!(c.tls.hostnames, ["localhost", "127.0.0.1", "::1"]);
        let paths: Vec<_> = c.routes.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/", "/ws/echo", "/ws/chat"]);
        match &c.routes[2].kind {
            RouteKind::Chat(chat) => {
                assert_eq!(chat.history, 50);
                assert_eq!(chat.moderator_password.as_deref(), Some("pw"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.broker, BrokerConfig::Memory);
        assert_eq!(c.publish_token, None);
        assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/wssd"));
        assert_eq!(c.admin, Some("127.0.0.1:9099".parse().unwrap()));
    }

    #[test]
    fn memory_budget_is_merged_and_validated() {
        let c = load(&args(&["--config", "/dev/null"]), &env()).unwrap();
        assert_eq!(c.limits.memory_budget, 256 * 1024 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "memory_budget = 8388608\n").unwrap();
        let p = path.to_str().unwrap();
        let c = load(&args(&["--config", p]), &env()).unwrap();
        assert_eq!(c.limits.memory_budget, 8 * 1024 * 1024);
        let c = load(
            &args(&["--config", p, "--memory-budget", "9000000"]),
            &env(),
        )
        .unwrap();
        assert_eq!(c.limits.memory_budget, 9_000_000);
        let small = load(
            &args(&["--config", "/dev/null", "--memory-budget", "1000"]),
            &env(),
        );
        let text = small.unwrap_err().to_string();
        assert!(
            text.contains("--memory-budget") && text.contains("--max-message-size"),
            "{text}"
        );
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "max_message_size = 1000\nmax_connections = 7\n[tls]\nhostname = [\"a.lan\"]\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = load(
            &args(&["--config", p, "--max-message-size", "2000"]),
            &env(),
        )
        .unwrap();
        assert_eq!(c.limits.max_message_size, 2000);
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.tls.hostnames, ["a.lan"]);
        assert_eq!(c.limits.max_connections_per_ip, 256);
    }

    #[test]
    fn allow_host_from_flag_or_file_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "allow_host = [\"box.lan\", \"*.home.arpa\"]\n").unwrap();
        let p = path.to_str().unwrap();
        let c = load(&args(&["--config", p]), &env()).unwrap();
        assert_eq!(c.allow_host, ["box.lan", "*.home.arpa"]);
        let c = load(&args(&["--config", p, "--allow-host", "*"]), &env()).unwrap();
        assert_eq!(c.allow_host, ["*"]);
        let e = load(
            &args(&["--config", "/dev/null", "--allow-host", "http://box.lan"]),
            &env(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("--allow-host `http://box.lan`"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let e = load(
            &args(&[
                "--config",
                "/dev/null",
                "--listen",
                "nonsense",
                "--tls",
                "files",
                "--route",
                "/x=bogus",
                "--ping-interval",
                "-3",
            ]),
            &env(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("nonsense"), "{text}");
        assert!(text.contains("--cert"), "{text}");
        assert!(text.contains("--key"), "{text}");
        assert!(text.contains("bogus"), "{text}");
        assert!(text.contains("ping_interval"), "{text}");
    }

    #[test]
    fn send_timeout_from_file_or_flag_and_never_zero() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "send_timeout = 2.5\n").unwrap();
        let p = path.to_str().unwrap();
        let c = load(&args(&["--config", "/dev/null"]), &env()).unwrap();
        assert_eq!(c.limits.send_timeout, Duration::from_secs(10));
        let c = load(&args(&["--config", p]), &env()).unwrap();
        assert_eq!(c.limits.send_timeout, Duration::from_millis(2500));
        assert_eq!(
            c.limits.for_route(&Default::default(), false).send_timeout,
            Duration::from_millis(2500)
        );
        let c = load(&args(&["--config", p, "--send-timeout", "1"]), &env()).unwrap();
        assert_eq!(c.limits.send_timeout, Duration::from_secs(1));
        let e = load(&args(&["--config", p, "--send-timeout", "0"]), &env()).unwrap_err();
        assert!(e.to_string().contains("--send-timeout cannot be 0"), "{e}");
        let e = load(&args(&["--config", p, "--send-timeout", "-1"]), &env()).unwrap_err();
        assert!(e.to_string().contains("send_timeout"), "{e}");
    }

    #[test]
    fn tls_off_uses_plain_listener_and_refuses_tls_listen() {
        let c = load(&args(&["--config", "/dev/null", "--tls", "off"]), &env()).unwrap();
        assert!(c.listen.is_empty());
        assert_eq!(c.http, vec!["127.0.0.1:8080".parse().unwrap()]);
        let e = load(
            &args(&[
                "--config",
                "/dev/null",
                "--tls",
                "off",
                "--listen",
                "127.0.0.1:1",
            ]),
            &env(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--http"));
    }

    #[test]
    fn cert_implies_files_mode() {
        let c = load(
            &args(&["--config", "/dev/null", "--cert", "c.pem", "--key", "k.pem"]),
            &env(),
        )
        .unwrap();
        assert_eq!(c.tls.mode, TlsMode::Files);
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr(":80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(
            parse_addr("localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert!(parse_addr("1.2.3.4").is_err());
    }
}
