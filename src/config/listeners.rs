//! The listeners section: TLS (`--listen`) and plain (`--http`) addresses,
//! their defaults (which depend on the TLS mode), the address syntax, and
//! what every listener does before HTTP ([`ListenerOptions`]: PROXY
//! protocol, per-IP connection rate, the redirect to https).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};

use super::defaults;
use super::error::ConfigError;
use super::sources::{Sources, pick, pick_list};
use super::types::TlsMode;

/// The addresses to listen on.
pub struct Listeners {
    /// TLS listeners (empty when TLS is off).
    pub listen: Vec<SocketAddr>,
    /// Plain listeners.
    pub http: Vec<SocketAddr>,
    pub options: ListenerOptions,
}

/// What the listeners do with a connection before HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerOptions {
    /// `--proxy-protocol`: a PROXY v1/v2 header comes first, from
    /// `--trusted-proxy` peers only.
    pub proxy_protocol: bool,
    /// `--connection-rate-per-ip`: new connections per second per client
    /// address (burst twice it); `None` = off.
    pub connection_rate_per_ip: Option<NonZeroU32>,
    /// `--redirect-http`: plain listeners answer 308 to https://.
    pub redirect_http: bool,
    /// `--listen-max-connections`: open TCP connections per TLS listener;
    /// `None` = no cap of its own.
    pub listen_max_connections: Option<NonZeroUsize>,
    /// `--http-max-connections`: the same per plain listener.
    pub http_max_connections: Option<NonZeroUsize>,
    // HTTP/2 (issue 15).
    /// `--http2`: TLS listeners offer ALPN `h2` (else `http/1.1` only).
    pub http2: bool,
}

impl ListenerOptions {
    /// The cap of one listener: TLS (`tls`) or plain.
    pub fn max_connections(&self, tls: bool) -> Option<NonZeroUsize> {
        if tls {
            self.listen_max_connections
        } else {
            self.http_max_connections
        }
    }
}

/// Largest `--connection-rate-per-ip`: its burst (twice it) must fit a u32.
pub const MAX_CONNECTION_RATE: u32 = u32::MAX / 2;

/// `--proxy-protocol`, `--connection-rate-per-ip`, `--redirect-http` and
/// the per-listener caps, checked against the listeners and
/// `--trusted-proxy`.
fn options(
    src: &Sources<'_>,
    listen: &[SocketAddr],
    http: &[SocketAddr],
    problems: &mut Vec<ConfigError>,
) -> ListenerOptions {
    let (args, file) = (src.args, src.file);
    let proxy_protocol = pick(&args.proxy_protocol, file.proxy_protocol.as_ref())
        .unwrap_or(defaults::PROXY_PROTOCOL);
    if proxy_protocol && pick_list(&args.trusted_proxy, file.trusted_proxy.as_ref()).is_empty() {
        problems.push(ConfigError::ProxyProtocolWithoutTrustedProxy);
    }
    let rate = pick(
        &args.connection_rate_per_ip,
        file.connection_rate_per_ip.as_ref(),
    )
    .or(defaults::CONNECTION_RATE_PER_IP);
    let connection_rate_per_ip = match rate {
        None => None,
        Some(n) if n > MAX_CONNECTION_RATE => {
            problems.push(ConfigError::ConnectionRateRange {
                max: MAX_CONNECTION_RATE,
            });
            None
        }
        Some(n) => {
            let nonzero = NonZeroU32::new(n);
            if nonzero.is_none() {
                problems.push(ConfigError::ConnectionRateRange {
                    max: MAX_CONNECTION_RATE,
                });
            }
            nonzero
        }
    };
    let redirect_http =
        pick(&args.redirect_http, file.redirect_http.as_ref()).unwrap_or(defaults::REDIRECT_HTTP);
    if redirect_http && listen.is_empty() {
        problems.push(ConfigError::RedirectWithoutTls);
    }
    if redirect_http && http.is_empty() {
        problems.push(ConfigError::RedirectWithoutPlain);
    }
    ListenerOptions {
        proxy_protocol,
        connection_rate_per_ip,
        redirect_http,
        listen_max_connections: cap(
            pick(
                &args.listen_max_connections,
                file.listen_max_connections.as_ref(),
            ),
            "--listen-max-connections",
            problems,
        ),
        http_max_connections: cap(
            pick(
                &args.http_max_connections,
                file.http_max_connections.as_ref(),
            ),
            "--http-max-connections",
            problems,
        ),
        // HTTP/2 (issue 15).
        http2: pick(&args.http2, file.http2.as_ref()).unwrap_or(defaults::HTTP2),
    }
}

/// A per-listener cap (`flag`): none given is the default, 0 a problem.
fn cap(
    given: Option<usize>,
    flag: &'static str,
    problems: &mut Vec<ConfigError>,
) -> Option<NonZeroUsize> {
    let n = given.or(defaults::LISTENER_MAX_CONNECTIONS)?;
    let nonzero = NonZeroUsize::new(n);
    if nonzero.is_none() {
        problems.push(ConfigError::ListenerCapZero { flag });
    }
    nonzero
}

/// `--listen` and `--http`: with `--tls off` only plain listeners (by
/// default [`defaults::PLAIN_LISTEN`]), else [`defaults::LISTEN`] unless
/// listeners are given; each address at most once.
pub fn section(src: &Sources<'_>, mode: TlsMode, problems: &mut Vec<ConfigError>) -> Listeners {
    let (args, file) = (src.args, src.file);
    let listen_given = !args.listen.is_empty() || file.listen.is_some();
    let given = src.spanned_list(&args.listen, file.listen.as_ref(), "--listen", "listen");
    let mut listen = parse_all(given, problems);
    let given = src.spanned_list(&args.http, file.http.as_ref(), "--http", "http");
    let mut http = parse_all(given, problems);
    if mode == TlsMode::Off {
        if listen_given && !listen.is_empty() {
            problems.push(ConfigError::TlsListenerWithoutTls);
        }
        listen.clear();
        if http.is_empty() && !listen_given {
            http.push(defaults::PLAIN_LISTEN);
        }
    } else if !listen_given {
        listen.push(defaults::LISTEN);
    }
    let mut all: Vec<SocketAddr> = listen.iter().chain(http.iter()).copied().collect();
    all.sort();
    for pair in all.windows(2) {
        if pair[0] == pair[1] && pair[0].port() != 0 {
            problems.push(ConfigError::AddressTwice(pair[0]));
        }
    }
    let options = options(src, &listen, &http, problems);
    Listeners {
        listen,
        http,
        options,
    }
}

/// Parses `(text, place)` pairs; each bad one is a problem at its place.
fn parse_all(given: Vec<(String, String)>, problems: &mut Vec<ConfigError>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (text, place) in given {
        match parse_addr(&text) {
            Ok(a) => out.push(a),
            Err(e) => problems.push(e.at(place)),
        }
    }
    out
}

/// Parses a listen address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or
/// `:PORT` (all IPv4 interfaces).
pub fn parse_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || ConfigError::BadAddress(text.to_string());
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Environment, ServeArgs, load};

    /// The serve flags alone, as clap parses them (env included).
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn load_args(list: &[&str], toml: &str) -> Result<crate::config::Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let mut v = vec!["wssd", "--config", path.to_str().unwrap()];
        v.extend_from_slice(list);
        let env = Environment {
            xdg_state_home: None,
            home: Some("/home/u".into()),
            secrets: Default::default(),
            dotenv_keys: Vec::new(),
        };
        load(&Flags::parse_from(v).serve, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn per_listener_caps_from_flags_and_file() {
        let c = load_args(&[], "").unwrap();
        assert_eq!(c.listener_options.max_connections(true), None);
        assert_eq!(c.listener_options.max_connections(false), None);
        let c = load_args(
            &["--listen-max-connections", "4"],
            "http = [\"127.0.0.1:1\"]\nhttp_max_connections = 10\nlisten_max_connections = 7\n",
        )
        .unwrap();
        let o = c.listener_options;
        assert_eq!(
            o.max_connections(true).map(|n| n.get()),
            Some(4),
            "the flag wins"
        );
        assert_eq!(o.max_connections(false).map(|n| n.get()), Some(10));
        let e = load_args(&["--http-max-connections", "0"], "").unwrap_err();
        assert!(
            e.contains("--http-max-connections must be at least 1"),
            "{e}"
        );
    }
}
