//! The headers a proxied request carries upstream: end-to-end headers
//! only, this hop's X-Forwarded-*, X-Real-IP and `Forwarded`, and who the
//! client is (`X-Wssd-Identity`, `X-Wssd-Identity-Source`).

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::metrics;
use crate::routes::env::Env;
use crate::routes::identity::encoded_name;

/// The authenticated caller's name (percent-encoded, see
/// `crate::routes::identity`), set only by wssd: a client's own copy is
/// always removed, so an upstream can trust it.
pub(super) const IDENTITY: &str = "x-wssd-identity";
/// How the caller was authenticated: `token`, `jwt`, `basic` or
/// `client-cert`; set and removed like [`IDENTITY`].
pub(super) const IDENTITY_SOURCE: &str = "x-wssd-identity-source";

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded.
pub(super) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies end-to-end headers and sets X-Forwarded-For/Proto/Host and
/// X-Real-IP. Incoming X-Forwarded-* are kept (appended to) only from
/// trusted proxies; otherwise they are replaced. `Forwarded` (RFC 7239) is
/// treated the same: dropped from other peers, and from a trusted proxy
/// kept with this hop's element appended. `X-Wssd-Identity` and
/// `X-Wssd-Identity-Source` come from the edge's identity only, never from
/// the client (not even a trusted proxy's).
pub(super) fn forwarded_headers(incoming: &HeaderMap, env: &Env<'_>, websocket: bool) -> HeaderMap {
    let conn = env.conn;
    let mut listed: Vec<String> = Vec::new();
    for v in incoming.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            listed.extend(s.split(',').map(|t| t.trim().to_ascii_lowercase()));
        }
    }
    let mut out = HeaderMap::new();
    let mut forged = false;
    for (name, value) in incoming {
        let n = name.as_str();
        if n == IDENTITY || n == IDENTITY_SOURCE {
            forged = true;
            continue;
        }
        if HOP_BY_HOP.contains(&n)
            || listed.iter().any(|l| l == n)
            || n.starts_with("x-forwarded-")
            || n == "x-real-ip"
            || n == "forwarded"
            || (websocket && n.starts_with("sec-websocket-") && n != "sec-websocket-protocol")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if forged {
        metrics::forged_identity_header();
        tracing::debug!(peer = %conn.peer, "removed the client's own X-Wssd-Identity header");
    }
    let peer_ip = match conn.peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    };
    let trusted = env.trusted_proxies.iter().any(|c| c.contains(peer_ip));
    let prior = |name: &str| {
        incoming
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let xff = match (trusted, prior("x-forwarded-for")) {
        (true, Some(list)) => format!("{list}, {peer_ip}"),
        _ => peer_ip.to_string(),
    };
    let real_ip = if trusted {
        prior("x-real-ip")
            .or_else(|| xff.split(',').next().map(|s| s.trim().to_string()))
            .unwrap_or_else(|| peer_ip.to_string())
    } else {
        peer_ip.to_string()
    };
    let proto = match (trusted, prior("x-forwarded-proto")) {
        (true, Some(p)) => p,
        _ => if conn.tls { "https" } else { "http" }.to_string(),
    };
    let host = match (trusted, prior("x-forwarded-host")) {
        (true, Some(h)) => Some(h),
        _ => prior("host"),
    };
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    if trusted {
        let prior: Vec<&str> = incoming
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !prior.is_empty() {
            let own = forwarded_element(peer_ip, conn.tls, prior_host(incoming).as_deref());
            set("forwarded", format!("{}, {own}", prior.join(", ")));
        }
    }
    set("x-forwarded-for", xff);
    set("x-forwarded-proto", proto);
    set("x-real-ip", real_ip);
    if let Some(h) = host {
        set("x-forwarded-host", h);
    }
    if let Some(identity) = env.identity {
        set(IDENTITY, encoded_name(identity).into_owned());
        set(IDENTITY_SOURCE, identity.source.label().to_string());
    }
    out
}

fn prior_host(incoming: &HeaderMap) -> Option<String> {
    incoming
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// This hop's `Forwarded` element: `for=` the peer (IPv6 quoted and
/// bracketed), `proto=`, and `host=` (quoted) when the Host is sane.
fn forwarded_element(peer: IpAddr, tls: bool, host: Option<&str>) -> String {
    let mut e = match peer {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    e.push_str(if tls { ";proto=https" } else { ";proto=http" });
    if let Some(h) = host.filter(|h| !h.contains(['"', '\\'])) {
        e.push_str(&format!(";host=\"{h}\""));
    }
    e
}
