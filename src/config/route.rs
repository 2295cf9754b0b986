//! Route specifications: `--route PATH=KIND[:ARG]` strings and `[[route]]`
//! tables, parsed into [`RouteSpec`]. Dispatch lives in `crate::routes`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::claim::ClaimRule;
use super::error::{RouteSpecError, UpstreamError};
use super::limits::{
    DEFAULT_CHAT_BURST, DEFAULT_CHAT_HISTORY, DEFAULT_CHAT_MAX_TEXT, DEFAULT_CHAT_RATE,
    DEFAULT_CHAT_ROOM, RouteLimits,
};
use crate::auth::AuthSpec;

/// What a route does; each kind's behaviour lives in `crate::routes`.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    /// Every message comes back unchanged.
    Echo,
    /// Files from a folder, or the bundled client when `None`.
    Static { dir: Option<PathBuf> },
    /// WebSocket upgrades and HTTP requests forwarded to upstreams.
    Proxy(ProxySpec),
    /// One process per WebSocket connection.
    Exec(ExecSpec),
    /// Rooms with names, moderators and history (docs/chat.md).
    Chat(ChatSpec),
    /// Every message goes to every other connection on the route.
    Broadcast,
    /// The local CA's install page (issue 13): fingerprint, per-OS steps,
    /// `ca.pem`/`ca.crt`/`.mobileconfig` and a QR code. Only with `--tls
    /// local-ca`; `state_dir` (where the CA lives) is set when the
    /// configuration is resolved (empty until then).
    Ca { state_dir: PathBuf },
}

impl RouteKind {
    /// The kind's name as written in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            RouteKind::Echo => "echo",
            RouteKind::Static { .. } => "static",
            RouteKind::Proxy(_) => "proxy",
            RouteKind::Exec(_) => "exec",
            RouteKind::Chat(_) => "chat",
            RouteKind::Broadcast => "broadcast",
            RouteKind::Ca { .. } => "ca",
        }
    }

    /// Whether this route accepts WebSocket upgrades.
    pub fn is_websocket(&self) -> bool {
        matches!(
            self,
            RouteKind::Echo
                | RouteKind::Proxy(_)
                | RouteKind::Exec(_)
                | RouteKind::Chat(_)
                | RouteKind::Broadcast
        )
    }

    /// Whether this route answers plain HTTP requests.
    pub fn is_http(&self) -> bool {
        matches!(
            self,
            RouteKind::Static { .. } | RouteKind::Proxy(_) | RouteKind::Ca { .. }
        )
    }
}

/// How a proxy route picks an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConnections,
}

/// Scheme of an upstream URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    Ws,
    Wss,
    Http,
    Https,
}

impl UpstreamScheme {
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamScheme::Wss | UpstreamScheme::Https)
    }
}

/// One upstream of a proxy route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// As written, for logs and metrics.
    pub url: String,
    pub scheme: UpstreamScheme,
    pub host: String,
    pub port: u16,
    /// Path prefix on the upstream ("" for none); the request path below the
    /// route is appended.
    pub base_path: String,
}

/// A proxy route's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    pub upstreams: Vec<Upstream>,
    pub balance: Balance,
    /// Probed with GET every few seconds when set (active health checks).
    pub health_path: Option<String>,
    /// PEM CA for `wss://`/`https://` upstreams instead of the system roots.
    pub ca: Option<PathBuf>,
    // -- pooled upstream HTTP (issue 15, gateway) --
    /// Plain HTTP requests go over HTTP/2: h2c with prior knowledge to
    /// `http://`/`ws://` upstreams, ALPN `h2` (else HTTP/1.1) to TLS ones.
    /// WebSockets always use their own HTTP/1.1 connection.
    pub http2: bool,
    /// Idle keep-alive connections kept per upstream (0: none, a new
    /// connection per request).
    pub keepalive: usize,
    /// An idle pooled connection is closed after this long.
    pub idle_timeout: Duration,
    /// Longest wait for the upstream's response headers once the request
    /// is sent (`None`: no limit).
    pub header_timeout: Option<Duration>,
    // -- end of pooled upstream HTTP --
    /// Most connections open or opening to each upstream: proxied
    /// WebSockets and plain requests in flight (0: no cap). Past it the
    /// upstream is skipped; when all are, 503 (`upstream_max_conns`).
    pub max_conns: usize,
}

/// Idle connections kept per upstream by default (nginx's `keepalive`
/// suggestion; hyper's own default is unbounded).
pub const DEFAULT_UPSTREAM_KEEPALIVE: usize = 32;
/// Idle pooled connections close after this (nginx's upstream
/// `keepalive_timeout`).
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait for response headers (nginx's `proxy_read_timeout`).
pub const DEFAULT_UPSTREAM_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open or opening to each upstream (`upstream_max_conns`):
/// the `--max-connections` default, so a default deployment's WebSockets
/// never meet it first, while plain requests (many per HTTP/2 client
/// connection) can no longer open an unbounded number. nginx's `max_conns`
/// and HAProxy's server `maxconn` default to no cap; a backend that takes
/// fewer (uvicorn's `--limit-concurrency`) sets its own number.
pub const DEFAULT_UPSTREAM_MAX_CONNS: usize = super::defaults::MAX_CONNECTIONS;

/// An exec route's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Relay raw bytes (binary messages) instead of text lines.
    pub binary: bool,
    /// Environment variables passed through from wssd's environment.
    pub pass_env: Vec<String>,
    /// Most processes at once on this route (503 past it).
    pub max_processes: usize,
}

/// A chat route's settings.
#[derive(Clone, PartialEq)]
pub struct ChatSpec {
    /// Messages kept per room and sent on join.
    pub history: usize,
    /// Longest message text, in characters.
    pub max_text: usize,
    /// Sustained messages per second per connection.
    pub rate: f64,
    /// Messages a connection may send at once.
    pub burst: f64,
    /// The room a join without `room` goes to (`default_room`).
    pub default_room: String,
    /// The environment variable holding the moderator password.
    pub moderator_password_env: String,
    /// Its value, read once at load; `None` disables the password.
    pub moderator_password: Option<String>,
    /// The username is the connection's identity (`identity_username`).
    pub identity_username: bool,
    /// Identities that are moderators without the password, compared
    /// exactly with the identity's name (`moderators`).
    pub moderators: Vec<String>,
    /// A JWT claim rule that makes its identity a moderator
    /// (`moderator_claim`).
    pub moderator_claim: Option<ClaimRule>,
}

impl Default for ChatSpec {
    fn default() -> Self {
        ChatSpec {
            history: DEFAULT_CHAT_HISTORY,
            max_text: DEFAULT_CHAT_MAX_TEXT,
            rate: DEFAULT_CHAT_RATE,
            burst: DEFAULT_CHAT_BURST,
            default_room: DEFAULT_CHAT_ROOM.into(),
            moderator_password_env: DEFAULT_MODERATOR_PASSWORD_ENV.into(),
            moderator_password: None,
            identity_username: false,
            moderators: Vec::new(),
            moderator_claim: None,
        }
    }
}

impl fmt::Debug for ChatSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatSpec")
            .field("history", &self.history)
            .field("max_text", &self.max_text)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("default_room", &self.default_room)
            .field("moderator_password_env", &self.moderator_password_env)
            .field(
                "moderator_password",
                &self.moderator_password.as_ref().map(|_| "<set>"),
            )
            .field("identity_username", &self.identity_username)
            .field("moderators", &self.moderators)
            .field("moderator_claim", &self.moderator_claim)
            .finish()
    }
}

/// Where the moderator password is read from unless a route names another.
pub const DEFAULT_MODERATOR_PASSWORD_ENV: &str = "WSSD_MOD_PASSWORD";

/// Default `max_processes` of exec routes.
pub const DEFAULT_MAX_PROCESSES: usize = 64;

/// Parses `ws://`, `wss://`, `http://` or `https://` upstream URLs.
pub fn parse_upstream(url: &str) -> Result<Upstream, UpstreamError> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| UpstreamError::NoScheme { url: url.into() })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" => UpstreamScheme::Ws,
        "wss" => UpstreamScheme::Wss,
        "http" => UpstreamScheme::Http,
        "https" => UpstreamScheme::Https,
        other => {
            return Err(UpstreamError::UnknownScheme {
                url: url.into(),
                scheme: other.into(),
            });
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['@', '?', '#']) || path.contains(['?', '#']) {
        return Err(UpstreamError::BadShape { url: url.into() });
    }
    let default_port = if scheme.is_tls() { 443 } else { 80 };
    let bad_port = |port: &str| UpstreamError::BadPort {
        url: url.into(),
        port: port.into(),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| UpstreamError::UnclosedBracket { url: url.into() })?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None if after.is_empty() => default_port,
            None => return Err(UpstreamError::JunkAfterAddress { url: url.into() }),
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UpstreamError::NotIpv6 {
                url: url.into(),
                host: h.into(),
            });
        }
        (h.to_string(), port)
    } else {
        let (h, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad_port(p))?),
            None => (authority, default_port),
        };
        if h.contains(':') {
            return Err(UpstreamError::Ipv6NeedsBrackets { url: url.into() });
        }
        (h.to_string(), port)
    };
    if host.is_empty() {
        return Err(UpstreamError::NoHost { url: url.into() });
    }
    Ok(Upstream {
        url: url.to_string(),
        scheme,
        host,
        port,
        base_path: path.trim_end_matches('/').to_string(),
    })
}

pub(super) fn proxy_spec(list: &[String], place: &str) -> Result<ProxySpec, RouteSpecError> {
    let mut upstreams = Vec::new();
    for u in list
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
    {
        upstreams.push(
            parse_upstream(u).map_err(|source| RouteSpecError::Upstream {
                place: place.into(),
                source,
            })?,
        );
    }
    if upstreams.is_empty() {
        return Err(RouteSpecError::NoUpstream {
            place: place.into(),
        });
    }
    Ok(ProxySpec {
        upstreams,
        balance: Balance::default(),
        health_path: None,
        ca: None,
        http2: false,
        keepalive: DEFAULT_UPSTREAM_KEEPALIVE,
        idle_timeout: DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        header_timeout: Some(DEFAULT_UPSTREAM_HEADER_TIMEOUT),
        max_conns: DEFAULT_UPSTREAM_MAX_CONNS,
    })
}

pub(super) fn exec_spec(command: Vec<String>, place: &str) -> Result<ExecSpec, RouteSpecError> {
    let Some(program) = command.first() else {
        return Err(RouteSpecError::NoCommand {
            place: place.into(),
        });
    };
    if program.contains('/') {
        let path = std::path::Path::new(program);
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o111 == 0 {
                    return Err(RouteSpecError::NotExecutable {
                        place: place.into(),
                        program: program.clone(),
                    });
                }
            }
            Ok(_) => {
                return Err(RouteSpecError::ProgramNotAFile {
                    place: place.into(),
                    program: program.clone(),
                });
            }
            Err(source) => {
                return Err(RouteSpecError::ProgramUnreadable {
                    place: place.into(),
                    program: program.clone(),
                    source,
                });
            }
        }
    } else if find_in_path(program).is_none() {
        return Err(RouteSpecError::ProgramNotInPath {
            place: place.into(),
            program: program.clone(),
        });
    }
    Ok(ExecSpec {
        command,
        binary: false,
        pass_env: Vec::new(),
        max_processes: DEFAULT_MAX_PROCESSES,
    })
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// One route: a path prefix, a kind and per-route limit overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// Path prefix, always starting with `/`.
    pub path: String,
    pub kind: RouteKind,
    /// Overrides of the global limits for this route.
    pub limits: RouteLimits,
    // The listener edge (issue 12): `plain = true` keeps the route on
    // plain listeners when `--redirect-http` sends the rest to https.
    /// Served on plain listeners even with `--redirect-http`.
    pub plain: bool,
    /// Authentication at the handshake (`[[route]]` `auth` table only),
    /// loaded by the routes section (`route_list`), which has the secrets.
    pub auth: Option<AuthSpec>,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Static { dir: Some(dir) } => {
                write!(f, "{}=static:{}", self.path, dir.display())
            }
            RouteKind::Static { dir: None } => write!(f, "{}=static (bundled client)", self.path),
            kind => write!(f, "{}={}", self.path, kind.name()),
        }?;
        match &self.auth {
            Some(auth) => write!(f, " (auth {}: {})", auth.method.name(), auth.source),
            None => Ok(()),
        }
    }
}

/// The routes served when none are configured.
pub fn default_routes() -> Vec<RouteSpec> {
    vec![
        RouteSpec {
            path: "/".into(),
            kind: RouteKind::Static { dir: None },
            limits: RouteLimits::default(),
            plain: false,
            auth: None,
        },
        RouteSpec {
            path: "/ws/echo".into(),
            kind: RouteKind::Echo,
            limits: RouteLimits::default(),
            plain: false,
            auth: None,
        },
        RouteSpec {
            path: "/ws/chat".into(),
            kind: RouteKind::Chat(ChatSpec::default()),
            limits: RouteLimits::default(),
            plain: false,
            auth: None,
        },
    ]
}

/// Parses `PATH=KIND[:ARG]`, e.g. `/ws/echo=echo` or `/=static:./public`.
pub fn parse_route_flag(text: &str) -> Result<RouteSpec, RouteSpecError> {
    let Some((path, rest)) = text.split_once('=') else {
        return Err(RouteSpecError::NotPathKind { text: text.into() });
    };
    let (kind, arg) = match rest.split_once(':') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (rest, None),
    };
    let kind = build_kind(kind, arg, &format!("route `{text}`"))?;
    Ok(RouteSpec {
        path: check_path(path, &format!("route `{text}`"))?,
        kind,
        limits: RouteLimits::default(),
        plain: false,
        auth: None,
    })
}

pub(super) fn build_kind(
    kind: &str,
    arg: Option<&str>,
    place: &str,
) -> Result<RouteKind, RouteSpecError> {
    match kind {
        "echo" => match arg {
            None => Ok(RouteKind::Echo),
            Some(_) => Err(RouteSpecError::TakesNoArgument {
                place: place.into(),
                kind: "echo",
            }),
        },
        "static" => Ok(RouteKind::Static {
            dir: arg.filter(|d| !d.is_empty()).map(PathBuf::from),
        }),
        "proxy" => Ok(RouteKind::Proxy(proxy_spec(
            &arg.map(|a| vec![a.to_string()]).unwrap_or_default(),
            place,
        )?)),
        "exec" => {
            let line = arg.unwrap_or_default();
            Ok(RouteKind::Exec(exec_spec(
                split_command(line, place)?,
                place,
            )?))
        }
        "chat" => match arg {
            None => Ok(RouteKind::Chat(ChatSpec::default())),
            Some(_) => Err(RouteSpecError::ChatTakesNoArgument {
                place: place.into(),
            }),
        },
        "broadcast" => match arg {
            None => Ok(RouteKind::Broadcast),
            Some(_) => Err(RouteSpecError::TakesNoArgument {
                place: place.into(),
                kind: "broadcast",
            }),
        },
        "ca" => match arg {
            None => Ok(RouteKind::Ca {
                state_dir: PathBuf::new(),
            }),
            Some(_) => Err(RouteSpecError::TakesNoArgument {
                place: place.into(),
                kind: "ca",
            }),
        },
        other => Err(RouteSpecError::UnknownKind {
            place: place.into(),
            kind: other.into(),
        }),
    }
}

/// An exec command line split like a shell would.
pub(crate) fn split_command(line: &str, place: &str) -> Result<Vec<String>, RouteSpecError> {
    shell_words::split(line).map_err(|source| RouteSpecError::BadCommand {
        place: place.into(),
        line: line.into(),
        source,
    })
}

pub(crate) fn check_path(path: &str, place: &str) -> Result<String, RouteSpecError> {
    if !path.starts_with('/') {
        return Err(RouteSpecError::PathNotAbsolute {
            place: place.into(),
            path: path.into(),
        });
    }
    // Whitespace and control characters never reach here in a request
    // path (HTTP refuses them): such a route could never match.
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RouteSpecError::PathBadCharacters {
            place: place.into(),
            path: path.into(),
        });
    }
    // A trailing slash is not significant for prefix matching ("/a/" == "/a").
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_whitespace_or_control_characters_are_refused() {
        for bad in [
            "/a b",
            "/a\tb",
            "/a\u{7f}",
            "/a\nb",
            "/a\u{a0}b",
            "/a?x",
            "/a#x",
        ] {
            let e = check_path(bad, "route").unwrap_err().to_string();
            assert!(e.contains("control characters"), "{bad:?}: {e}");
        }
        assert_eq!(check_path("/ws/<b>/x", "route").unwrap(), "/ws/<b>/x");
    }

    #[test]
    fn parses_echo_and_static() {
        let r = parse_route_flag("/ws/echo=echo").unwrap();
        assert_eq!(r.path, "/ws/echo");
        assert_eq!(r.kind, RouteKind::Echo);
        let r = parse_route_flag("/files/=static:./public").unwrap();
        assert_eq!(r.path, "/files");
        assert_eq!(
            r.kind,
            RouteKind::Static {
                dir: Some(PathBuf::from("./public"))
            }
        );
        let r = parse_route_flag("/=static").unwrap();
        assert_eq!(r.kind, RouteKind::Static { dir: None });
    }

    #[test]
    fn rejects_bad_routes() {
        assert!(
            parse_route_flag("echo")
                .unwrap_err()
                .to_string()
                .contains("PATH=KIND")
        );
        assert!(
            parse_route_flag("ws=echo")
                .unwrap_err()
                .to_string()
                .contains("start with `/`")
        );
        assert!(
            parse_route_flag("/x=nope")
                .unwrap_err()
                .to_string()
                .contains("unknown route kind")
        );
        assert!(
            parse_route_flag("/x=echo:arg")
                .unwrap_err()
                .to_string()
                .contains("no argument")
        );
        assert!(
            parse_route_flag("/x=chat:x")
                .unwrap_err()
                .to_string()
                .contains("no argument")
        );
        assert_eq!(
            parse_route_flag("/x=broadcast").unwrap().kind,
            RouteKind::Broadcast
        );
        assert!(
            parse_route_flag("/x=proxy:ftp://a")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
        assert!(
            parse_route_flag("/x=proxy:")
                .unwrap_err()
                .to_string()
                .contains("at least one")
        );
        assert!(
            parse_route_flag("/x=exec:/nonexistent/prog")
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/prog")
        );
        assert!(
            parse_route_flag("/x=exec:no-such-program-xyz")
                .unwrap_err()
                .to_string()
                .contains("PATH")
        );
    }

    #[test]
    fn parses_proxy_and_exec() {
        let r = parse_route_flag("/=proxy:http://127.0.0.1:8000,ws://[::1]:9000/base/").unwrap();
        let RouteKind::Proxy(p) = r.kind else {
            panic!()
        };
        assert_eq!(p.upstreams.len(), 2);
        assert_eq!(p.upstreams[0].port, 8000);
        assert_eq!(p.upstreams[1].host, "::1");
        assert_eq!(p.upstreams[1].base_path, "/base");
        let r = parse_route_flag("/run=exec:cat -u 'a b'").unwrap();
        let RouteKind::Exec(e) = r.kind else { panic!() };
        assert_eq!(e.command, ["cat", "-u", "a b"]);
        assert_eq!(parse_upstream("https://example.com").unwrap().port, 443);
    }

    /// Found by `route_props`: a query or fragment with no path, a colon
    /// in the host and a non-address in brackets were taken as host names.
    #[test]
    fn upstream_hosts_are_names_or_addresses() {
        for url in [
            "ws://a?q",
            "ws://a#f",
            "ws://a:1:2",
            "ws://::1",
            "ws://[a:b]:80",
        ] {
            assert!(parse_upstream(url).is_err(), "{url}");
        }
        assert!(
            parse_upstream("ws://::1:8080")
                .unwrap_err()
                .to_string()
                .contains("ws://[::1]:8080")
        );
        assert_eq!(parse_upstream("ws://[::1]:9").unwrap().host, "::1");
    }
}
