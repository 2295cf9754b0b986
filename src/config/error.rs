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
    // The listener edge (issue 12).
    #[error(
        "--redirect-http sends plain listeners to https://, but there is no TLS listener; add --listen ADDR (and turn TLS on) or drop --redirect-http"
    )]
    RedirectWithoutTls,
    #[error(
        "--redirect-http applies to plain listeners, but there is none; add --http ADDR (e.g. --http :80) or drop --redirect-http"
    )]
    RedirectWithoutPlain,
    #[error(
        "--proxy-protocol believes PROXY headers only from --trusted-proxy peers, and none is given (every connection would be refused); add --trusted-proxy CIDR naming the load balancer's addresses"
    )]
    ProxyProtocolWithoutTrustedProxy,
    #[error(
        "--connection-rate-per-ip must be between 1 and {max} new connections per second (the burst is twice it); leave it out to turn the limit off"
    )]
    ConnectionRateRange { max: u32 },
    #[error("{flag} must be at least 1 connection per listener; leave it out to turn the cap off")]
    ListenerCapZero { flag: &'static str },
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
    #[error(
        "route {path}: kind `ca` (the local CA's install page) needs --tls local-ca, but --tls is {mode}: with another mode there is no local CA to hand out; use --tls local-ca or drop the route"
    )]
    CaPageNeedsLocalCa { path: String, mode: TlsMode },
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
    #[error(transparent)]
    Route(#[from] RouteSpecError),
    /// A route's `auth` table that cannot be used (issue 12).
    #[error(transparent)]
    Auth(#[from] super::auth::AuthConfigError),
    #[error("route path {0} is defined twice; each path prefix can have one route")]
    RouteTwice(String),
    // Rates (issue 12, per-WebSocket rate limits).
    #[error("{burst} must be at least 1; to turn the limit off, leave out {rate} or set it to 0")]
    ZeroBurst {
        burst: &'static str,
        rate: &'static str,
    },
    #[error(
        "{burst} is given without {rate}: a burst needs its rate (e.g. {rate} 50 {burst} 100); give {rate} or drop {burst}"
    )]
    BurstWithoutRate {
        burst: &'static str,
        rate: &'static str,
    },
    #[error(
        "route {path}: {burst_key} is given but neither the route's {rate_key} nor {rate_flag} is set; give a rate or drop {burst_key}"
    )]
    RouteBurstWithoutRate {
        path: String,
        burst_key: &'static str,
        rate_key: &'static str,
        rate_flag: &'static str,
    },
    #[error(
        "route {path}: the byte burst ({burst} bytes, {source_key}) is smaller than the route's largest message ({message} bytes, max_message_size): such a message could never pass; raise {source_key} to at least {message} or lower the message size limit"
    )]
    ByteBurstBelowMessageSize {
        path: String,
        burst: u32,
        source_key: &'static str,
        message: usize,
    },
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
    #[error(
        "--reload-token must be at least 16 characters (it guards POST /reload); generate one with `openssl rand -hex 24`"
    )]
    ReloadTokenTooShort,
    #[error("--log-level `{level}` is not a level or filter: {problem}")]
    BadLogLevel { level: String, problem: String },
    #[error("no state folder: set --state-dir DIR (neither XDG_STATE_HOME nor HOME is set)")]
    NoStateDir,
    #[error("--access-log is empty: give off, stderr or a file path")]
    BadAccessLog,
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

/// Why a `--route PATH=KIND[:ARG]` or a `[[route]]` table cannot be used.
/// `place` names the route as written (for example route `/x=echo:a`, or
/// the file and the table's index); each message says what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum RouteSpecError {
    #[error("route `{text}` is not PATH=KIND[:ARG] (example: /ws/echo=echo)")]
    NotPathKind { text: String },
    #[error("{place}: path `{path}` must start with `/` (example: /ws/echo)")]
    PathNotAbsolute { place: String, path: String },
    #[error("{place}: path `{path}` must not contain `?`, `#`, whitespace or control characters")]
    PathBadCharacters { place: String, path: String },
    #[error(
        "{place}: unknown route kind `{kind}`; available kinds: echo, static, proxy, exec, chat, broadcast, ca"
    )]
    UnknownKind { place: String, kind: String },
    /// `echo` or `broadcast` with `:ARG`.
    #[error("{place}: kind `{kind}` takes no argument")]
    TakesNoArgument { place: String, kind: &'static str },
    #[error(
        "{place}: kind `chat` takes no argument (set history, max_text, rate, burst or moderator_password_env in a [[route]] table)"
    )]
    ChatTakesNoArgument { place: String },
    /// A `[[route]]` key of another kind.
    #[error("{place}: `{key}` applies to {kinds} routes only")]
    Misplaced {
        place: String,
        key: &'static str,
        kinds: &'static str,
    },
    #[error("{place}: {source}")]
    Upstream {
        place: String,
        #[source]
        source: UpstreamError,
    },
    #[error("{place}: a proxy route needs at least one upstream, e.g. proxy:http://127.0.0.1:8000")]
    NoUpstream { place: String },
    #[error("{place}: health_path `{health_path}` must start with /")]
    HealthPathNotAbsolute { place: String, health_path: String },
    /// An exec command line that does not split like a shell's.
    #[error("{place}: command `{line}`: {source}")]
    BadCommand {
        place: String,
        line: String,
        #[source]
        source: shell_words::ParseError,
    },
    #[error("{place}: an exec route needs a command, e.g. exec:./count.sh")]
    NoCommand { place: String },
    #[error("{place}: program {program} is not executable; run chmod +x {program}")]
    NotExecutable { place: String, program: String },
    #[error("{place}: program {program} is not a file")]
    ProgramNotAFile { place: String, program: String },
    #[error("{place}: program {program}: {source}")]
    ProgramUnreadable {
        place: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{place}: program `{program}` was not found in PATH; give its full path")]
    ProgramNotInPath { place: String, program: String },
    #[error("{place}: max_processes must be at least 1")]
    ZeroMaxProcesses { place: String },
    /// Pooled upstream HTTP (issue 15, gateway).
    #[error(
        "{place}: upstream_idle_timeout must be above 0 seconds (to keep no idle upstream connection, set upstream_keepalive = 0)"
    )]
    ZeroUpstreamIdleTimeout { place: String },
    #[error("{place}: history must be at most 10000, not {history}")]
    HistoryTooLong { place: String, history: usize },
    #[error("{place}: max_text must be at least 1")]
    ZeroMaxText { place: String },
    #[error("{place}: rate must be a positive number of messages per second")]
    BadRate { place: String },
    #[error("{place}: burst must be at least 1")]
    BadBurst { place: String },
    #[error("{place}: moderator_password_env must name an environment variable")]
    BadModeratorPasswordEnv { place: String },
    #[error("{place}: default_room: {source}")]
    BadDefaultRoom {
        place: String,
        source: crate::names::BadRoom,
    },
    // Rates (issue 12, per-WebSocket rate limits).
    #[error(
        "{place}: {key} must be at least 1; to turn the limit off on this route, set {rate_key} = 0"
    )]
    ZeroRateBurst {
        place: String,
        key: &'static str,
        rate_key: &'static str,
    },
    // -- identity in chat and exec (issue 12, "ident") --
    #[error(
        "{place}: moderators must list identities (non-empty names, as the route's auth or client certificate gives them)"
    )]
    EmptyModerator { place: String },
    #[error("{place}: moderator_claim `{rule}`: {source}")]
    BadModeratorClaim {
        place: String,
        rule: String,
        source: super::claim::BadClaimRule,
    },
    #[error(
        "{place}: pass_env cannot list {name}: wssd sets REMOTE_USER and AUTH_TYPE from the caller's identity only (the route's auth or a client certificate); remove it"
    )]
    IdentityInPassEnv { place: String, name: String },
    // -- end of identity in chat and exec --
    /// `ping_interval` or `idle_timeout` out of range (the message names
    /// the place itself).
    #[error(transparent)]
    Seconds(#[from] SecondsError),
}

/// Why an upstream URL of a proxy route cannot be used; each message quotes
/// the URL and the form it must take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{url}` needs a scheme: ws://, wss://, http:// or https://")]
    NoScheme { url: String },
    #[error("upstream `{url}`: scheme `{scheme}` is not ws, wss, http or https")]
    UnknownScheme { url: String, scheme: String },
    #[error(
        "upstream `{url}` must look like ws://HOST:PORT[/PATH] (no user info, query or fragment)"
    )]
    BadShape { url: String },
    #[error("upstream `{url}`: unclosed [ in the address")]
    UnclosedBracket { url: String },
    #[error("upstream `{url}`: bad port `{port}`")]
    BadPort { url: String, port: String },
    #[error("upstream `{url}`: junk after the address")]
    JunkAfterAddress { url: String },
    #[error("upstream `{url}` has no host")]
    NoHost { url: String },
    #[error("upstream `{url}`: an IPv6 address goes in brackets, as in ws://[::1]:8080")]
    Ipv6NeedsBrackets { url: String },
    #[error("upstream `{url}`: `{host}` in brackets is not an IPv6 address")]
    NotIpv6 { url: String, host: String },
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
