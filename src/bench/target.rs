//! What a bench run aims at: parsing `ws://` / `wss://` URLs and resolving
//! them, refusing anything but loopback unless `WSSD_BENCH_ALLOW_REMOTE=1`.

use std::net::{IpAddr, SocketAddr};

use tokio_tungstenite::tungstenite::http::Uri;

use super::error::BenchError;
use super::limits::ALLOW_REMOTE_ENV;

/// A parsed bench URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL exactly as given (for reports).
    pub url: String,
    /// The parsed URL, used as the upgrade request (Host header, path, query).
    pub uri: Uri,
    /// `wss://`.
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    /// Port, defaulting to 80 (`ws://`) or 443 (`wss://`).
    pub port: u16,
}

/// Parses a `ws://HOST[:PORT]/PATH` or `wss://HOST[:PORT]/PATH` URL.
pub fn parse_url(url: &str) -> Result<Target, BenchError> {
    let bad = |reason: String| BenchError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.trim().parse().map_err(|e| bad(format!("{e}")))?;
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("wss") => true,
        Some(s) if s.eq_ignore_ascii_case("ws") => false,
        Some(other) => {
            return Err(bad(format!(
                "scheme {other}:// is not supported, only ws:// and wss://"
            )));
        }
        None => return Err(bad("missing scheme".to_owned())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| bad("missing host".to_owned()))?;
    if authority.as_str().contains('@') {
        return Err(bad("user info (user@host) is not supported".to_owned()));
    }
    let raw_host = authority.host();
    let host = raw_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(raw_host)
        .to_owned();
    if host.is_empty() {
        return Err(bad("empty host".to_owned()));
    }
    // Not `authority.port()`: it silently returns None for a port that is
    // out of range, which would send the bench to port 80/443.
    let port = authority
        .as_str()
        .get(raw_host.len()..)
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(bad(format!("port {p} is not in 1-65535")));
            }
            Ok(n) => n,
        },
    };
    Ok(Target {
        url: url.trim().to_owned(),
        uri,
        tls,
        host,
        port,
    })
}

/// Whether `WSSD_BENCH_ALLOW_REMOTE=1` is set.
pub fn remote_allowed() -> bool {
    std::env::var(ALLOW_REMOTE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// Resolves the target's host; every address must be loopback unless `allow_remote`.
pub async fn resolve(target: &Target, allow_remote: bool) -> Result<Vec<SocketAddr>, BenchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|source| BenchError::Resolve {
            host: target.host.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(BenchError::Resolve {
            host: target.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        });
    }
    check_loopback(&target.host, &addrs, allow_remote)?;
    Ok(addrs)
}

/// Refuses any address outside 127.0.0.0/8 and ::1 (IPv4-mapped loopback counts).
pub fn check_loopback(
    host: &str,
    addrs: &[SocketAddr],
    allow_remote: bool,
) -> Result<(), BenchError> {
    if allow_remote {
        return Ok(());
    }
    match addrs.iter().find(|a| !is_loopback(a.ip())) {
        Some(addr) => Err(BenchError::NotLoopback {
            host: host.to_owned(),
            addr: addr.ip(),
        }),
        None => Ok(()),
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wss_with_port_and_path() {
        let t = parse_url("wss://127.0.0.1:8443/ws/echo").unwrap();
        assert!(t.tls);
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8443);
        assert_eq!(t.uri.path(), "/ws/echo");
    }

    #[test]
    fn default_ports() {
        assert_eq!(parse_url("ws://localhost/x").unwrap().port, 80);
        assert_eq!(parse_url("wss://localhost/x").unwrap().port, 443);
        assert_eq!(parse_url("WSS://localhost").unwrap().port, 443);
    }

    #[test]
    fn ipv6_brackets_are_stripped() {
        let t = parse_url("ws://[::1]:9000/echo?x=1").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 9000);
        assert!(!t.tls);
        assert_eq!(t.uri.query(), Some("x=1"));
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "http://127.0.0.1/ws",
            "127.0.0.1:8443/ws",
            "wss://",
            "wss://user@127.0.0.1/ws",
            "ws://127.0.0.1:0/",
            "ws://127.0.0.1:70000/",
            "ws://127.0.0.1:abc/",
            "ws://[::1]:99999/",
            "",
        ] {
            let err = parse_url(url).expect_err(url);
            assert!(matches!(err, BenchError::BadUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains("ws://"), "{url}: {err}");
        }
    }

    #[test]
    fn loopback_only() {
        let lo: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.9.9.9:1".parse().unwrap(),
            "[::1]:1".parse().unwrap(),
            "[::ffff:127.0.0.1]:1".parse().unwrap(),
        ];
        assert!(check_loopback("localhost", &lo, false).is_ok());
        let remote: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "10.0.0.1:1".parse().unwrap(),
        ];
        let err = check_loopback("example", &remote, false).unwrap_err();
        assert!(err.to_string().contains(ALLOW_REMOTE_ENV), "{err}");
        assert!(check_loopback("example", &remote, true).is_ok());
    }
}
