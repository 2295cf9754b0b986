//! At start with `--tls local-ca`: the install page's URL (and its QR code
//! in the terminal) for each `ca` route, and a trust hint that is true.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

use super::ca::load_ca;
use super::layout::paths;
use super::public::fingerprint;
use super::qr;
use super::trust::{Trust, TrustStatus, status};
use crate::config::{Config, RouteKind};

/// The URL a phone on the LAN should open for the page at `route_path`:
/// the plain listener first (the phone does not trust the CA yet), else the
/// TLS one; the listener's IP, or this machine's LAN address when it listens
/// on all of them. The second value says why other devices cannot reach it,
/// if they cannot.
pub fn page_url(config: &Config, route_path: &str) -> Option<(String, Option<String>)> {
    let (scheme, addr) = match (config.http.first(), config.listen.first()) {
        (Some(a), _) => ("http", *a),
        (None, Some(a)) => ("https", *a),
        (None, None) => return None,
    };
    let ip = if addr.ip().is_unspecified() {
        lan_address().unwrap_or(addr.ip())
    } else {
        addr.ip()
    };
    let host = SocketAddr::new(ip, addr.port()).to_string();
    let path = if route_path.is_empty() {
        "/"
    } else {
        route_path
    };
    let note = ip.is_loopback().then(|| {
        format!(
            "{addr} is a loopback address: other devices cannot reach it; listen on the LAN too, e.g. --http 0.0.0.0:{}",
            if scheme == "http" { addr.port() } else { 8080 }
        )
    });
    Some((format!("{scheme}://{host}{path}"), note))
}

/// The IP literal in a URL made by [`page_url`] (without brackets).
fn url_ip(url: &str) -> Option<String> {
    let host_port = url.split("://").nth(1)?.split('/').next()?;
    let addr: SocketAddr = host_port.parse().ok()?;
    Some(addr.ip().to_string())
}

/// This machine's address on the default route (no packet is sent: a UDP
/// `connect` only picks the source address).
fn lan_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).ok()?;
    // TEST-NET-1 (RFC 5737): never routed anywhere.
    socket.connect(("192.0.2.1", 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// Logs each install page's URL and fingerprint, and prints its QR code on
/// standard error (outside the log format: it is a picture).
pub fn announce_pages(config: &Config) {
    let Ok(Some(ca)) = load_ca(&paths(&config.state_dir)) else {
        return;
    };
    let fp = fingerprint(ca.der.as_ref());
    for route in &config.routes {
        if !matches!(route.kind, RouteKind::Ca { .. }) {
            continue;
        }
        let Some((url, note)) = page_url(config, &route.path) else {
            continue;
        };
        tracing::info!(
            "local CA install page: {url} (open it on a phone or scan the QR code below; CA SHA-256 fingerprint {fp})"
        );
        if let Some(note) = note {
            tracing::warn!("install page {url}: {note}");
        }
        if let Some(ip) = config
            .http
            .first()
            .or(config.listen.first())
            .map(|a| a.ip())
            && !ip.is_loopback()
            && let Some(lan) = url_ip(&url)
            && !config.tls.hostnames.iter().any(|h| h == &lan)
        {
            tracing::warn!(
                "the server certificate does not name {lan}: once the CA is installed, https://{lan}:... still fails on other devices; add --hostname {lan}"
            );
        }
        if let Some(code) = qr::terminal(&url) {
            eprintln!("{code}\n  {url}\n");
        }
    }
}

/// The startup hint about trust on this machine, checked against the
/// system bundle and the user's NSS database (`home`).
pub fn trust_hint(state_dir: &Path, home: Option<std::path::PathBuf>) -> String {
    let Ok(Some(ca)) = load_ca(&paths(state_dir)) else {
        return String::new();
    };
    let t = Trust::system(home);
    let TrustStatus { system, nss } = status(&ca, &t);
    let install = format!("wssd cert ca install --state-dir {}", state_dir.display());
    match (system, nss) {
        (Some(true), Some(true)) => "the local CA is trusted on this machine (system store and Chromium's NSS database); Firefox has its own store".into(),
        (Some(true), Some(false)) => format!("the local CA is in the system store but not in Chromium's NSS database: run `{install}` so Chromium trusts it too"),
        (Some(true), None) => "the local CA is in the system store (curl, most programs); Chromium's NSS database was not checked (certutil missing: apt-get install libnss3-tools)".into(),
        (Some(false), Some(true)) => format!("the local CA is in Chromium's NSS database but not in the system store: run `{install}` so curl and other programs trust it too"),
        _ => format!("the local CA is not trusted on this machine yet: run `{install}` once so browsers and curl trust it"),
    }
}
