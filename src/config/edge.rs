//! The edge section: which browser Origins and Host names are let in, and
//! which peers' `X-Forwarded-*` headers are believed.

use super::cidr::Cidr;
use super::error::ConfigError;
use super::sources::{Sources, pick_list};
use super::tls::is_hostname;

/// Who may reach the server, as the HTTP edge checks it.
pub struct Edge {
    pub allow_origin: Vec<String>,
    pub allow_host: Vec<String>,
    pub trusted_proxies: Vec<Cidr>,
}

/// `--allow-origin`, `--allow-host` (host names, `*.NAME` or `*`) and
/// `--trusted-proxy` (CIDR networks).
pub fn section(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> Edge {
    let (args, file) = (src.args, src.file);
    let allow_origin = pick_list(&args.allow_origin, file.allow_origin.as_ref());
    let allow_host = pick_list(&args.allow_host, file.allow_host.as_ref());
    for h in &allow_host {
        if h != "*" && !is_hostname(h) {
            problems.push(ConfigError::BadAllowHost(h.clone()));
        }
    }
    let mut trusted_proxies = Vec::new();
    for t in pick_list(&args.trusted_proxy, file.trusted_proxy.as_ref()) {
        match Cidr::parse(&t) {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => problems.push(e.into()),
        }
    }
    Edge {
        allow_origin,
        allow_host,
        trusted_proxies,
    }
}
