//! The listeners section: TLS (`--listen`) and plain (`--http`) addresses,
//! their defaults (which depend on the TLS mode), and the address syntax.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::defaults;
use super::error::ConfigError;
use super::sources::Sources;
use super::types::TlsMode;

/// The addresses to listen on.
pub struct Listeners {
    /// TLS listeners (empty when TLS is off).
    pub listen: Vec<SocketAddr>,
    /// Plain listeners.
    pub http: Vec<SocketAddr>,
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
    Listeners { listen, http }
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
