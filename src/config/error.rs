//! Why a configuration cannot be used: one [`ConfigError`] per problem, each
//! naming the option (flag spelling, or `file:line` for the TOML file) and
//! the fix; [`ConfigErrors`] carries every problem found in one load.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::types::TlsMode;

/// One problem in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The problem at a place: a `file:line` of the TOML file, or a flag.
    #[error("{place}: {problem}")]
    At {
        place: String,
        problem: Box<ConfigError>,
    },
    #[error("{}: cannot read the configuration file: {source}", .path.display())]
    FileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type.
    #[error("{}{}: {message}", .path.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    FileSyntax {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("`{0}` is not an address; use IP:PORT, [IPv6]:PORT, localhost:PORT or :PORT")]
    BadAddress(String),
    #[error(
        "--listen is a TLS listener but --tls is off; use --http ADDR for a plain listener, or drop --tls off"
    )]
    TlsListenerWithoutTls,
    #[error(
        "{0} is given twice (as --listen and --http, or twice in one); each address can have one listener"
    )]
    AddressTwice(SocketAddr),
    #[error("no listeners: give --listen ADDR (TLS) or --http ADDR (plain)")]
    NoListeners,
    #[error("--tls files needs {flag} FILE ({what})")]
    FilesModeNeeds {
        flag: &'static str,
        what: &'static str,
    },
    #[error(
        "--cert/--key are only used with --tls files, but --tls is {0}; drop them or use --tls files"
    )]
    CertWithoutFilesMode(TlsMode),
    #[error(
        "--hostname `{0}` is not a DNS name or IP address (example: --hostname example.lan --hostname 192.168.1.20)"
    )]
    BadHostname(String),
    #[error("[[tls.certificate]] is given but --tls is off; remove them or turn TLS on")]
    SniWithoutTls,
    #[error("--client-auth needs --client-ca FILE (the CA that signs client certificates)")]
    ClientAuthWithoutCa,
    #[error("--client-ca needs TLS, but --tls is off")]
    ClientCaWithoutTls,
    #[error("--acme-directory `{0}` must be an https:// URL")]
    AcmeDirectoryNotHttps(String),
    #[error(
        "--acme-challenge http-01 needs a plain listener (--http ADDR, port 80 for public CAs)"
    )]
    AcmeHttp01WithoutPlainListener,
    #[error(
        "--tls acme cannot validate wildcard names (*.example.com) with HTTP-01 or TLS-ALPN-01; list the names"
    )]
    AcmeWildcard,
    #[error("--tls acme needs public DNS names in --hostname (not localhost or IP addresses)")]
    AcmeNotPublic,
    /// A number of seconds outside 0..=31536000.
    #[error(transparent)]
    Seconds(#[from] SecondsError),
    /// A timeout that must not be off.
    #[error("{flag} cannot be 0{why}")]
    ZeroSeconds { flag: String, why: &'static str },
    #[error("--max-message-size must be at least 16 bytes, not {0}")]
    MessageSizeTooSmall(usize),
    #[error(
        "--memory-budget ({budget} bytes) is smaller than --max-message-size ({message} bytes): one message could never be received; raise --memory-budget or lower --max-message-size"
    )]
    BudgetBelowMessageSize { budget: usize, message: usize },
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
    /// A `--route` or `[[route]]` the route-spec parser refused.
    #[error("{0}")]
    Route(String),
    #[error("route path {0} is defined twice; each path prefix can have one route")]
    RouteTwice(String),
    #[error("route {0}: max_message_size must be at least 16 bytes")]
    RouteMessageSizeTooSmall(String),
    #[error(
        "route {path}: max_message_size ({size} bytes) is larger than --memory-budget ({budget} bytes); raise --memory-budget or lower the route's max_message_size"
    )]
    RouteMessageOverBudget {
        path: String,
        size: usize,
        budget: usize,
    },
    #[error("route {path}: {} is not a folder; static routes serve a folder", .dir.display())]
    StaticNotAFolder { path: String, dir: PathBuf },
    #[error("route {path}: cannot open folder {}: {source}", .dir.display())]
    StaticUnreadable {
        path: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--allow-host `{0}` is not a host name (examples: --allow-host box.lan, --allow-host '*.box.lan', --allow-host '*')"
    )]
    BadAllowHost(String),
    #[error("--trusted-proxy: {0}")]
    TrustedProxy(#[from] super::cidr::CidrError),
    #[error("--broker {0}: no host; write redis://HOST:PORT (example: redis://127.0.0.1:6379)")]
    BrokerWithoutHost(String),
    #[error(
        "--broker {0}: unknown broker; use `memory`, `redis://HOST:PORT` or `rediss://HOST:PORT` (TLS)"
    )]
    UnknownBroker(String),
    #[error("--broker-ca {}: {source}", .path.display())]
    BrokerCaUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--broker-ca {}: holds no CERTIFICATE block; give the PEM file of the CA that signed the Redis server's certificate",
        .path.display()
    )]
    BrokerCaEmpty { path: PathBuf },
    #[error("--broker-ca {}: {source}", .path.display())]
    BrokerCaUnusable {
        path: PathBuf,
        source: super::trust::CaPemError,
    },
    #[error(
        "--broker-ca {} applies only to a rediss:// broker (TLS to Redis); remove it, or use --broker rediss://HOST:PORT",
        .path.display()
    )]
    BrokerCaWithoutTls { path: PathBuf },
    #[error(
        "--publish-token must be at least 16 characters (it guards POST /publish); generate one with `openssl rand -hex 24`"
    )]
    PublishTokenTooShort,
    #[error("--log-level `{level}` is not a level or filter: {problem}")]
    BadLogLevel { level: String, problem: String },
    #[error("no state folder: set --state-dir DIR (neither XDG_STATE_HOME nor HOME is set)")]
    NoStateDir,
}

impl ConfigError {
    /// This problem, placed at `place` (`file:line: key`, or a flag).
    pub fn at(self, place: impl Into<String>) -> ConfigError {
        ConfigError::At {
            place: place.into(),
            problem: Box::new(self),
        }
    }
}

/// A number of seconds outside the accepted range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{place}: `{key}` must be a number of seconds between 0 and 31536000, not {value}")]
pub struct SecondsError {
    pub place: String,
    pub key: String,
    pub value: f64,
}

/// The route-spec parser words its problems as text; this keeps its `?`
/// working on `limits::seconds`.
impl From<SecondsError> for String {
    fn from(e: SecondsError) -> String {
        e.to_string()
    }
}

/// Every problem found in the configuration, one line each.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

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
