//! Configuration: flags, `WSSD_*` environment variables (and `.env`, which
//! `main` loads into the environment before anything else runs, never over
//! a variable already set), and the TOML file, merged once with precedence
//! flag > env > .env > file > default into one validated [`Config`].
//! Options reach the rest of the crate only through `Config`; what else
//! reads the process environment does so for its own purpose (`exec`
//! routes: `PATH` and the variables a route passes on; `main`: `NO_COLOR`;
//! the local CA's commands: `HOME`).
//!
//! One place per concern: each option's flag, env name and help are in
//! [`flags`], its TOML key in [`file`] (a test keeps the two in step), its
//! default in [`defaults`] (a test checks `--help` against it), its value
//! type in [`types`]; [`sources`] holds the one precedence rule. [`load`]
//! orchestrates one function per section (listeners, TLS, admin, limits,
//! routes, edge, broker, logging, state folder), each returning its part
//! and pushing its problems ([`ConfigError`]), so every problem is reported
//! at once. CA files are read by [`trust`], a leaf that `tls` re-exports:
//! `tls` depends on `config`, never the other way round.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod cidr;
pub mod claim;
pub mod defaults;
pub mod edge;
pub mod environment;
pub mod error;
#[cfg(test)]
mod example_tests;
pub mod file;
pub mod flags;
pub mod limits;
pub mod limits_section;
pub mod listeners;
pub mod rate;
pub mod route;
pub mod route_identity;
pub mod route_list;
pub mod route_table;
pub mod seed;
pub mod sources;
pub mod tls;
pub mod trust;
pub mod types;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use broker::{BrokerCa, BrokerConfig, parse_broker};
pub use environment::{Environment, default_state_dir};
pub use error::{ConfigError, ConfigErrors};
pub use file::FileConfig;
pub use flags::ServeArgs;
pub use limits::{Limits, SessionLimits};
pub use listeners::parse_addr;
pub use route::{ChatSpec, RouteKind, RouteSpec};
pub use tls::{AcmeConfig, CertEntry, ClientAuthConfig, TlsConfig};
pub use types::{AcmeChallenge, ClientAuth, KeyType, LogFormat, TlsMode};

use sources::{Sources, pick};

/// The whole validated configuration of `serve` and `check`.
///
/// Defaults ([`defaults`]): TLS listener 127.0.0.1:8443, no plain listener,
/// `self-signed` TLS (or `files` when a certificate is given) for
/// localhost, 127.0.0.1 and ::1, routes `/` (bundled client), `/ws/echo`
/// and `/ws/chat`, limits as in [`Limits::default`], admin on
/// 127.0.0.1:9099.
#[derive(Debug, Clone)]
pub struct Config {
    /// TLS listeners (empty when TLS is off).
    pub listen: Vec<SocketAddr>,
    /// Plain listeners.
    pub http: Vec<SocketAddr>,
    /// PROXY protocol, per-IP connection rate, redirect to https.
    pub listener_options: listeners::ListenerOptions,
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
    /// Bearer token of the admin reload endpoint; `None` disables it.
    pub reload_token: Option<String>,
    /// Reload when the configuration file changes.
    pub watch_config: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `--access-log` and `--access-log-format`.
    pub access_log: types::AccessLogConfig,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Settings of other servers (TinyChat `.env`, uvicorn) found and not
    /// read, each with wssd's equivalent; logged at WARN (`seed`).
    pub seed_hints: Vec<String>,
}

/// Merges flags/env (`args`), the configuration file and defaults; every
/// problem of every section, or the configuration.
pub fn load(args: &ServeArgs, env: &Environment) -> Result<Config, ConfigErrors> {
    let loaded = sources::read_file(args).map_err(|e| ConfigErrors(vec![e]))?;
    let empty = FileConfig::default();
    let src = Sources {
        args,
        file: loaded.as_ref().map_or(&empty, |f| &f.config),
        loaded: loaded.as_ref(),
    };
    let mut problems = Vec::new();
    // TLS first: the mode decides the default listeners.
    let basics = tls::basics(&src, &mut problems);
    let listeners = listeners::section(&src, basics.mode, &mut problems);
    let admin = admin::section(&src, &mut problems);
    let limits = limits_section::section(&src, &mut problems);
    let mut routes = route_list::section(&src, env, &limits, &mut problems);
    let edge = edge::section(&src, &mut problems);
    let broker = broker::section(&src, &mut problems);
    let (log_format, log_level) = logging(&src, &mut problems);
    let access_log = access_log(&src, &mut problems);
    let state_dir = state_dir(&src, env, &mut problems);
    route_list::bind_ca_pages(&mut routes, basics.mode, &state_dir, &mut problems);
    if listeners.listen.is_empty() && listeners.http.is_empty() {
        problems.push(ConfigError::NoListeners);
    }
    let tls = tls::section(&src, basics, &listeners.http, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigErrors(problems));
    }
    Ok(Config {
        listen: listeners.listen,
        http: listeners.http,
        listener_options: listeners.options,
        tls,
        state_dir,
        routes,
        limits,
        allow_origin: edge.allow_origin,
        allow_host: edge.allow_host,
        trusted_proxies: edge.trusted_proxies,
        admin: admin.addr,
        broker,
        publish_token: admin.publish_token,
        reload_token: admin.reload_token,
        watch_config: admin.watch_config,
        log_format,
        log_level,
        access_log,
        config_file: loaded.map(|f| f.path),
        seed_hints: seed::hints(&env.dotenv_keys, env.secrets.keys()),
    })
}

impl Config {
    /// What is valid but cannot work as meant (printed by `wssd check`,
    /// logged at start): other servers' settings found in the environment
    /// (`seed`) and chat identity keys no identity can satisfy.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.seed_hints.clone();
        warnings.extend(route_identity::identity_warnings(
            &self.routes,
            self.tls.client_auth.is_some(),
        ));
        warnings
    }
}

/// `--log-format` and `--log-level` (a level or an `EnvFilter` directive).
fn logging(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> (LogFormat, String) {
    let format =
        pick(&src.args.log_format, src.file.log_format.as_ref()).unwrap_or(defaults::LOG_FORMAT);
    let level = pick(&src.args.log_level, src.file.log_level.as_ref())
        .unwrap_or_else(|| defaults::LOG_LEVEL.to_string());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        problems.push(ConfigError::BadLogLevel {
            level: level.clone(),
            problem: e.to_string(),
        });
    }
    (format, level)
}

/// `--access-log` (`off`, `stderr` or a file path) and its format.
fn access_log(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> types::AccessLogConfig {
    use types::{AccessLogConfig, AccessLogTarget as Target};
    let value = pick(&src.args.access_log, src.file.access_log.as_ref())
        .unwrap_or_else(|| defaults::ACCESS_LOG.to_string());
    let target = Target::parse(&value).unwrap_or_else(|| {
        problems.push(ConfigError::BadAccessLog);
        Target::Off
    });
    let format = pick(
        &src.args.access_log_format,
        src.file.access_log_format.as_ref(),
    )
    .unwrap_or(defaults::ACCESS_LOG_FORMAT);
    AccessLogConfig { target, format }
}

/// `--state-dir`, else [`default_state_dir`].
fn state_dir(src: &Sources<'_>, env: &Environment, problems: &mut Vec<ConfigError>) -> PathBuf {
    pick(&src.args.state_dir, src.file.state_dir.as_ref())
        .or_else(|| default_state_dir(env))
        .unwrap_or_else(|| {
            problems.push(ConfigError::NoStateDir);
            PathBuf::new()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The serve flags alone, as clap parses them (env included).
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(list: &[&str]) -> ServeArgs {
        let mut v = vec!["wssd"];
        v.extend_from_slice(list);
        Flags::parse_from(v).serve
    }

    fn env() -> Environment {
        Environment {
            xdg_state_home: None,
            home: Some(PathBuf::from("/home/u")),
            secrets: [("WSSD_MOD_PASSWORD".to_string(), "pw".to_string())].into(),
            dotenv_keys: Vec::new(),
        }
    }

    #[test]
    fn short_publish_token_is_refused() {
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
        assert_eq!(c.limits.max_connections_per_ip, 4096);
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
    fn listener_options_are_merged_and_checked() {
        let c = load(&args(&["--config", "/dev/null"]), &env()).unwrap();
        let defaults = listeners::ListenerOptions {
            http2: defaults::HTTP2,
            ..Default::default()
        };
        assert_eq!(c.listener_options, defaults);
        let c = load(&args(&["--config", "/dev/null", "--http2", "off"]), &env()).unwrap();
        assert!(!c.listener_options.http2);
        let c = load(&args(&["--config", "/dev/null", "--http2"]), &env()).unwrap();
        assert!(c.listener_options.http2);
        let c = load(
            &args(&[
                "--config",
                "/dev/null",
                "--http",
                "127.0.0.1:1",
                "--redirect-http",
                "--proxy-protocol",
                "--trusted-proxy",
                "10.0.0.0/8",
                "--connection-rate-per-ip",
                "20",
            ]),
            &env(),
        )
        .unwrap();
        let o = c.listener_options;
        assert!(o.redirect_http && o.proxy_protocol);
        assert_eq!(o.connection_rate_per_ip.map(|n| n.get()), Some(20));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "http = [\"127.0.0.1:1\"]\nredirect_http = true\nconnection_rate_per_ip = 5\n",
        )
        .unwrap();
        let c = load(&args(&["--config", path.to_str().unwrap()]), &env()).unwrap();
        assert!(c.listener_options.redirect_http);
        assert_eq!(
            c.listener_options.connection_rate_per_ip.map(|n| n.get()),
            Some(5)
        );
        let e = load(
            &args(&[
                "--config",
                "/dev/null",
                "--redirect-http",
                "--proxy-protocol",
                "--connection-rate-per-ip",
                "0",
            ]),
            &env(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--redirect-http") && e.contains("--http ADDR"),
            "{e}"
        );
        assert!(e.contains("--trusted-proxy CIDR"), "{e}");
        assert!(e.contains("--connection-rate-per-ip must be"), "{e}");
        let e = load(
            &args(&["--config", "/dev/null", "--tls", "off", "--redirect-http"]),
            &env(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no TLS listener"), "{e}");
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

#[cfg(test)]
mod cidr_props;
#[cfg(test)]
mod file_props;
#[cfg(test)]
mod route_props;
