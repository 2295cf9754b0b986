//! Property tests of the browser checks at the edge: Host names
//! (`host::host_name`, `HostAllow`, the DNS-rebinding guard), the Origin
//! rule (`edge::browser_allowed`) and the `Sec-WebSocket-Key` shape
//! (`edge::valid_key`), against small reference models.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hyper::header::{HOST, HeaderMap, HeaderValue};
use proptest::prelude::*;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::context::HttpContext;
use super::edge::{browser_allowed, valid_key};
use super::host::{HostAllow, host_name};
use super::reply::ConnInfo;
use super::router::Router;
use crate::config::cidr::Cidr;
use crate::props::base64;
use crate::server::admission::Admission;
use crate::tls::challenge::Challenges;

/// Labels host names are made of: listed names, an attacker's, localhost,
/// digits that look like an address.
const LABELS: &[&str] = &[
    "box",
    "lan",
    "home",
    "arpa",
    "evil",
    "example",
    "localhost",
    "127",
    "0",
    "1",
    "boxlan",
];

/// `--allow-host` entries the tests choose from.
const ALLOW_HOST: &[&str] = &["box.lan", "*.home.arpa", "*.box.lan"];

/// A generated Host value and what it means.
#[derive(Debug, Clone)]
struct HostCase {
    /// Lower-case labels (a DNS name) or an IP literal.
    name: HostName,
    /// As sent: random case, maybe a trailing dot, maybe a port.
    sent: String,
}

#[derive(Debug, Clone)]
enum HostName {
    Dns(Vec<String>),
    Ip(IpAddr),
}

fn random_case(s: &str, flips: &[bool]) -> String {
    s.chars()
        .zip(flips.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

fn host_case() -> impl Strategy<Value = HostCase> {
    let dns = (
        prop::collection::vec(prop::sample::select(LABELS), 1..5),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<bool>(),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(labels, flips, dot, port)| {
            let name = labels.join(".");
            let mut sent = random_case(&name, &flips);
            if dot {
                sent.push('.');
            }
            if let Some(p) = port {
                sent.push_str(&format!(":{p}"));
            }
            HostCase {
                name: HostName::Dns(labels.iter().map(|l| l.to_string()).collect()),
                sent,
            }
        });
    let ip = (any::<IpAddr>(), prop::option::of(any::<u16>())).prop_map(|(ip, port)| {
        let sent = match (ip, port) {
            (IpAddr::V4(v4), Some(p)) => format!("{v4}:{p}"),
            (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
            (IpAddr::V4(v4), None) => v4.to_string(),
            (IpAddr::V6(v6), None) => {
                if p_bracket(&v6) {
                    format!("[{v6}]")
                } else {
                    v6.to_string()
                }
            }
        };
        HostCase {
            name: HostName::Ip(ip),
            sent,
        }
    });
    prop_oneof![4 => dns, 1 => ip]
}

/// Half the bare IPv6 literals are sent in brackets.
fn p_bracket(v6: &std::net::Ipv6Addr) -> bool {
    v6.segments()[7].is_multiple_of(2)
}

/// Reference rule for the DNS-rebinding guard: IP literals, `localhost`
/// and `*.localhost` always; else an exact entry, or a `*.` entry whose
/// labels are a proper suffix of the name's.
fn allowed_by_model(name: &HostName, entries: &[&str]) -> bool {
    let labels = match name {
        HostName::Ip(_) => return true,
        HostName::Dns(labels) => labels,
    };
    let joined = labels.join(".");
    if joined.parse::<IpAddr>().is_ok() || labels.last().is_some_and(|l| l == "localhost") {
        return true;
    }
    entries.iter().any(|e| match e.strip_prefix("*.") {
        Some(suffix) => {
            let suffix: Vec<&str> = suffix.split('.').collect();
            labels.len() > suffix.len() && labels[labels.len() - suffix.len()..] == suffix[..]
        }
        None => *e == joined,
    })
}

fn ctx(allow_origin: Vec<String>, allow_host: &[&str], trusted: bool) -> HttpContext {
    let entries: Vec<String> = allow_host.iter().map(|s| s.to_string()).collect();
    HttpContext {
        router: arc_swap::ArcSwap::from_pointee(Router::default()),
        allow_origin: arc_swap::ArcSwap::from_pointee(allow_origin),
        allow_host: arc_swap::ArcSwap::from_pointee(HostAllow::new(&entries)),
        hsts: false,
        sessions: Arc::new(Semaphore::new(1)),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        trusted_proxies: if trusted {
            vec![Cidr::parse("10.0.0.0/8").unwrap()]
        } else {
            Vec::new()
        },
        challenges: Arc::new(Challenges::default()),
        redirect_https: None,
        auth_backoff: crate::backoff::Backoff::new(crate::auth::check::BACKOFF),
    }
}

fn conn(tls: bool) -> ConnInfo {
    let peer: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let ticket = Admission::new(10, 10, None).admit(peer.ip()).unwrap();
    ConnInfo {
        peer,
        listener: "test".into(),
        tls,
        ticket: Arc::new(ticket),
        client_subject: None,
    }
}

/// One browser request at the edge.
#[derive(Debug, Clone)]
struct BrowserCase {
    host: HostCase,
    /// The Origin's scheme and host part.
    origin_scheme: &'static str,
    origin_host: String,
    allow_origin: Vec<String>,
    allow_host: Vec<&'static str>,
    tls: bool,
    trusted: bool,
    forwarded_host: Option<String>,
    forwarded_proto: Option<&'static str>,
}

fn browser_case() -> impl Strategy<Value = BrowserCase> {
    (
        host_case(),
        host_case(),
        any::<bool>(),
        prop::sample::select(&["https", "http", "HTTPS", "ws", "null"][..]),
        prop::sample::subsequence(&["*", "https://box.lan", "http://EVIL.example/"][..], 0..=2),
        prop::sample::subsequence(ALLOW_HOST, 0..=3),
        (any::<bool>(), any::<bool>()),
        prop::option::of(host_case()),
        prop::option::of(prop::sample::select(&["https", "http"][..])),
    )
        .prop_map(
            |(
                host,
                other,
                same,
                origin_scheme,
                allow_origin,
                allow_host,
                (tls, trusted),
                fh,
                fp,
            )| {
                let origin_host = if same {
                    host.sent.to_ascii_uppercase()
                } else {
                    other.sent
                };
                BrowserCase {
                    host,
                    origin_scheme,
                    origin_host,
                    allow_origin: allow_origin.iter().map(|s| s.to_string()).collect(),
                    allow_host,
                    tls,
                    trusted,
                    forwarded_host: fh.map(|h| h.sent),
                    forwarded_proto: fp,
                }
            },
        )
}

impl BrowserCase {
    fn origin(&self) -> String {
        format!("{}://{}", self.origin_scheme, self.origin_host)
    }

    fn headers(&self, forwarded: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(&self.host.sent).unwrap());
        if forwarded {
            if let Some(fh) = &self.forwarded_host {
                h.insert("x-forwarded-host", HeaderValue::from_str(fh).unwrap());
            }
            if let Some(fp) = self.forwarded_proto {
                h.insert("x-forwarded-proto", HeaderValue::from_static(fp));
            }
        }
        h
    }

    fn run(&self, forwarded: bool) -> bool {
        let ctx = ctx(self.allow_origin.clone(), &self.allow_host, self.trusted);
        let origin = HeaderValue::from_str(&self.origin()).unwrap();
        browser_allowed(&origin, &self.headers(forwarded), &ctx, &conn(self.tls)).is_ok()
    }

    /// Listed exactly in `--allow-origin` (not `*`).
    fn listed(&self) -> bool {
        let origin = self.origin();
        self.allow_origin
            .iter()
            .any(|a| a != "*" && a.trim_end_matches('/').eq_ignore_ascii_case(&origin))
    }
}

proptest! {
    #![proptest_config(crate::props::config(512))]

    /// Catches: a panic on odd Host values; an upper-case letter kept (a
    /// list entry would then miss it).
    #[test]
    fn host_name_never_panics_and_is_lower_case(host in any::<String>()) {
        let name = host_name(&host);
        prop_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{host:?} -> {name:?}");
        let _ = HostAllow::new(std::slice::from_ref(&host)).allows(&host);
    }

    /// Catches: a port, a trailing dot, brackets or letter case changing
    /// which name a Host value is.
    #[test]
    fn host_name_strips_port_dot_and_case(case in host_case()) {
        let expected = match &case.name {
            HostName::Dns(labels) => labels.join("."),
            HostName::Ip(ip) => ip.to_string(),
        };
        prop_assert_eq!(host_name(&case.sent), expected);
    }

    /// Catches: the DNS-rebinding guard letting an attacker's name through
    /// (suffix matched without a label boundary, a port or case trick), or
    /// refusing a listed name, an IP literal or localhost.
    #[test]
    fn host_allow_matches_the_model(case in host_case(), entries in prop::sample::subsequence(ALLOW_HOST, 0..=3)) {
        let list: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        let allow = HostAllow::new(&list);
        prop_assert_eq!(allow.allows(&case.sent), allowed_by_model(&case.name, &entries), "{:?} with {:?}", case.sent, entries);
    }

    /// Catches: X-Forwarded-Host/-Proto believed from a peer that is not
    /// a trusted proxy (a page could then claim any Host).
    #[test]
    fn forwarded_headers_from_untrusted_peers_change_nothing(mut case in browser_case()) {
        case.trusted = false;
        prop_assert_eq!(case.run(true), case.run(false), "{:?}", case);
    }

    /// Catches: a cross-origin page let in (its host differs from the
    /// request's, or its scheme from the listener's), the rebinding guard
    /// skipped on plain listeners, or a same-origin page refused.
    #[test]
    fn origin_rule_holds(case in browser_case()) {
        let allowed = case.run(true);
        let trusted = case.trusted;
        let fwd_host = case.forwarded_host.clone().filter(|_| trusted);
        let host = fwd_host.clone().unwrap_or_else(|| case.host.sent.clone());
        let https = match case.forwarded_proto.filter(|_| trusted) {
            Some(p) => p == "https",
            None => case.tls,
        };
        let scheme = if https { "https" } else { "http" };
        let host_ok = case.tls || {
            let list: Vec<String> = case.allow_host.iter().map(|s| s.to_string()).collect();
            HostAllow::new(&list).allows(&host)
        };
        if case.listed() {
            prop_assert!(allowed, "{case:?}");
        } else if !host_ok {
            prop_assert!(!allowed, "rebinding guard skipped: {case:?}");
        } else if case.allow_origin.iter().any(|a| a == "*") {
            prop_assert!(allowed, "{case:?}");
        } else {
            let same = case.origin_scheme.eq_ignore_ascii_case(scheme)
                && case.origin_host.eq_ignore_ascii_case(&host);
            prop_assert_eq!(allowed, same, "{:?}", case);
        }
        if !case.tls
            && fwd_host.is_none()
            && matches!(case.host.name, HostName::Dns(_))
            && !allowed_by_model(&case.host.name, &case.allow_host)
            && !case.listed()
        {
            prop_assert!(!allowed, "{case:?}");
        }
    }

    /// Catches: a key a client may send refused, or one of the wrong
    /// length or alphabet accepted.
    #[test]
    fn websocket_key_is_base64_of_16_bytes(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let key = base64(&bytes);
        prop_assert_eq!(valid_key(key.as_bytes()), bytes.len() == 16, "{}", key);
    }

    /// Catches: a byte outside the base64 alphabet accepted in a key.
    #[test]
    fn websocket_key_with_a_foreign_byte_is_refused(bytes in any::<[u8; 16]>(), (at, byte) in foreign_byte()) {
        let mut key = base64(&bytes).into_bytes();
        key[at] = byte;
        prop_assert!(!valid_key(&key), "{:?}", String::from_utf8_lossy(&key));
    }
}

/// A position in a 24-byte key and a byte that does not belong there:
/// outside the base64 alphabet in the first 22, anything but `=` in the
/// last two.
fn foreign_byte() -> impl Strategy<Value = (usize, u8)> {
    let not_base64: Vec<u8> = (0..=255u8)
        .filter(|b| !(b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'))
        .collect();
    let not_padding: Vec<u8> = (0..=255u8).filter(|b| *b != b'=').collect();
    prop_oneof![
        3 => (0usize..22, prop::sample::select(not_base64)),
        1 => (22usize..24, prop::sample::select(not_padding)),
    ]
}

#[test]
fn real_client_keys_are_valid() {
    for _ in 0..64 {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        assert!(valid_key(key.as_bytes()), "{key}");
    }
}
