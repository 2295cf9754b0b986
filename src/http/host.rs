//! Host names as the edge compares them: [`host_name`] normalizes a Host
//! value, [`HostAllow`] is the DNS-rebinding guard's list for plain
//! listeners.

use std::net::IpAddr;

/// The name part of a Host value: no port, no IPv6 brackets, lower case,
/// no trailing dot.
pub fn host_name(host: &str) -> String {
    let name = if host.parse::<IpAddr>().is_ok() {
        host
    } else if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.to_ascii_lowercase();
    name.strip_suffix('.').map(str::to_string).unwrap_or(name)
}

/// Host names a browser page may reach plain listeners by (`--allow-host`
/// plus the `--hostname` names). Always allowed whatever the list: IP
/// literals and `localhost` (and `*.localhost`): DNS rebinding needs a
/// name the attacker's DNS answers for, and these never go to DNS, so
/// `--http 0.0.0.0:8080` stays reachable by IP from a phone.
#[derive(Debug, Clone, Default)]
pub struct HostAllow {
    any: bool,
    /// Lower case, no trailing dot; `*.x` entries kept as `.x` suffixes.
    names: Vec<String>,
}

impl HostAllow {
    /// From `--allow-host` entries and the TLS hostnames.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a String>) -> Self {
        let mut allow = HostAllow::default();
        for e in entries {
            if e == "*" {
                allow.any = true;
            } else {
                let e = host_name(e);
                allow
                    .names
                    .push(e.strip_prefix('*').map(str::to_string).unwrap_or(e));
            }
        }
        allow
    }

    /// Whether a Host header value is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        if self.any
            || name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
        {
            return true;
        }
        !name.is_empty()
            && self.names.iter().any(|n| {
                if n.starts_with('.') {
                    name.ends_with(n.as_str())
                } else {
                    *n == name
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_allow_rules() {
        let a = HostAllow::new(&["box.lan".to_string(), "*.home.arpa".to_string()]);
        for ok in [
            "box.lan",
            "BOX.lan:8080",
            "box.lan.",
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "localhost:8080",
            "app.localhost",
            "pi.home.arpa",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "box.lan.evil",
            "",
            "home.arpa",
            "127.0.0.1.nip.io",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        assert!(HostAllow::new(&["*".to_string()]).allows("anything.example"));
    }
}
