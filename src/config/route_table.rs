//! A `[[route]]` table of the TOML file and how it becomes a
//! [`RouteSpec`]: which keys each kind takes (a key of another kind is an
//! error naming it), the kind's settings and the per-route overrides. The
//! kinds and specs themselves are `route`'s.

use std::path::PathBuf;

use serde::Deserialize;

use super::auth::AuthTable;
use super::error::RouteSpecError;
use super::limits::{RouteLimits, seconds};
use super::route::{
    Balance, ProxySpec, RouteKind, RouteSpec, build_kind, check_path, exec_spec, proxy_spec,
    split_command,
};

/// A TOML value that may be one string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// A `[[route]]` table in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub path: String,
    pub kind: String,
    /// Folder for `static` routes.
    pub dir: Option<PathBuf>,
    /// Upstream URL(s) for `proxy` routes.
    pub upstream: Option<StringOrList>,
    /// `round-robin` (default) or `least-connections`.
    pub balance: Option<Balance>,
    /// Path probed on each upstream for active health checks.
    pub health_path: Option<String>,
    /// PEM CA for TLS upstreams.
    pub ca: Option<PathBuf>,
    // -- pooled upstream HTTP (issue 15, gateway): `proxy` only --
    /// HTTP/2 to the upstream for plain requests (h2c / ALPN h2).
    pub upstream_http2: Option<bool>,
    /// Idle keep-alive connections kept per upstream.
    pub upstream_keepalive: Option<usize>,
    /// Seconds an idle pooled connection is kept.
    pub upstream_idle_timeout: Option<f64>,
    /// Seconds to wait for response headers (0 = no limit).
    pub upstream_header_timeout: Option<f64>,
    // -- end of pooled upstream HTTP --
    /// Most connections open or opening per upstream (0 = no cap).
    pub upstream_max_conns: Option<usize>,
    /// Command for `exec` routes: a string (split like a shell) or a list.
    pub command: Option<StringOrList>,
    /// Relay raw bytes instead of lines (`exec`).
    pub binary: Option<bool>,
    /// Environment variables passed to `exec` programs.
    pub pass_env: Option<Vec<String>>,
    /// Most processes at once (`exec`).
    pub max_processes: Option<usize>,
    /// Messages kept per room (`chat`).
    pub history: Option<usize>,
    /// Longest message text in characters (`chat`).
    pub max_text: Option<usize>,
    /// Sustained messages per second per connection (`chat`).
    pub rate: Option<f64>,
    /// Message burst per connection (`chat`).
    pub burst: Option<f64>,
    /// The room a join without `room` goes to (`chat`, default `lobby`).
    pub default_room: Option<String>,
    /// Environment variable with the moderator password (`chat`).
    pub moderator_password_env: Option<String>,
    // -- identity in chat (issue 12, "ident": where the identity goes) --
    /// The chat username is the connection's identity (`chat`).
    pub identity_username: Option<bool>,
    /// Identities that are moderators without the password (`chat`).
    pub moderators: Option<Vec<String>>,
    /// A JWT claim that makes a moderator: `NAME` or `NAME=VALUE` (`chat`).
    pub moderator_claim: Option<String>,
    // -- end of identity in chat --
    /// Per-route override of `max_message_size`.
    pub max_message_size: Option<usize>,
    /// Per-route override of `ping_interval` (seconds, 0 = off).
    pub ping_interval: Option<f64>,
    /// Per-route override of `idle_timeout` (seconds, 0 = off).
    pub idle_timeout: Option<f64>,
    // The listener edge (issue 12).
    /// Served on plain listeners even with `--redirect-http`.
    pub plain: Option<bool>,
    // --- auth (issue 12: authentication at the handshake) ---
    /// `auth = { kind = "token" | "jwt" | "basic", ... }` (config/auth.rs).
    pub auth: Option<AuthTable>,
    // Rates (issue 12, per-WebSocket rate limits): overrides of
    // --message-rate/--message-burst/--byte-rate/--byte-burst; a rate of 0
    // turns that limit off on this route (see `config::rate`).
    pub message_rate: Option<u32>,
    pub message_burst: Option<u32>,
    pub byte_rate: Option<u32>,
    pub byte_burst: Option<u32>,
}

impl RouteTable {
    /// Pooled upstream HTTP (issue 15, gateway): the `upstream_*` keys.
    fn upstream_pool(&self, p: &mut ProxySpec, place: &str) -> Result<(), RouteSpecError> {
        if let Some(on) = self.upstream_http2 {
            p.http2 = on;
        }
        if let Some(n) = self.upstream_keepalive {
            p.keepalive = n;
        }
        if let Some(s) = self.upstream_idle_timeout {
            p.idle_timeout = seconds(s, place, "upstream_idle_timeout")?.ok_or_else(|| {
                RouteSpecError::ZeroUpstreamIdleTimeout {
                    place: place.into(),
                }
            })?;
        }
        if let Some(s) = self.upstream_header_timeout {
            p.header_timeout = seconds(s, place, "upstream_header_timeout")?;
        }
        if let Some(n) = self.upstream_max_conns {
            p.max_conns = n;
        }
        Ok(())
    }

    /// Turns the table into a spec; `place` names it in errors (file and index).
    pub fn into_spec(self, place: &str) -> Result<RouteSpec, RouteSpecError> {
        let mut kind = match self.kind.as_str() {
            "static" => RouteKind::Static {
                dir: self.dir.clone().filter(|d| !d.as_os_str().is_empty()),
            },
            "proxy" => {
                let list = self
                    .upstream
                    .clone()
                    .map(StringOrList::into_vec)
                    .unwrap_or_default();
                RouteKind::Proxy(proxy_spec(&list, place)?)
            }
            "exec" => {
                let command = match self.command.clone() {
                    Some(StringOrList::One(line)) => split_command(&line, place)?,
                    Some(StringOrList::Many(v)) => v,
                    None => Vec::new(),
                };
                RouteKind::Exec(exec_spec(command, place)?)
            }
            other => build_kind(other, None, place)?,
        };
        let misplaced = |key: &'static str, present: bool, kinds: &'static str| {
            if present {
                Err(RouteSpecError::Misplaced {
                    place: place.into(),
                    key,
                    kinds,
                })
            } else {
                Ok(())
            }
        };
        let is = |k: &str| self.kind == k;
        misplaced("dir", self.dir.is_some() && !is("static"), "static")?;
        for (key, present) in [
            ("upstream", self.upstream.is_some()),
            ("balance", self.balance.is_some()),
            ("health_path", self.health_path.is_some()),
            ("ca", self.ca.is_some()),
            ("upstream_http2", self.upstream_http2.is_some()),
            ("upstream_keepalive", self.upstream_keepalive.is_some()),
            (
                "upstream_idle_timeout",
                self.upstream_idle_timeout.is_some(),
            ),
            (
                "upstream_header_timeout",
                self.upstream_header_timeout.is_some(),
            ),
            ("upstream_max_conns", self.upstream_max_conns.is_some()),
        ] {
            misplaced(key, present && !is("proxy"), "proxy")?;
        }
        for (key, present) in [
            ("command", self.command.is_some()),
            ("binary", self.binary.is_some()),
            ("pass_env", self.pass_env.is_some()),
            ("max_processes", self.max_processes.is_some()),
        ] {
            misplaced(key, present && !is("exec"), "exec")?;
        }
        for (key, present) in [
            ("history", self.history.is_some()),
            ("max_text", self.max_text.is_some()),
            ("rate", self.rate.is_some()),
            ("burst", self.burst.is_some()),
            ("default_room", self.default_room.is_some()),
            (
                "moderator_password_env",
                self.moderator_password_env.is_some(),
            ),
            ("identity_username", self.identity_username.is_some()),
            ("moderators", self.moderators.is_some()),
            ("moderator_claim", self.moderator_claim.is_some()),
        ] {
            misplaced(key, present && !is("chat"), "chat")?;
        }
        let rates = super::rate::route_overrides(
            [
                self.message_rate,
                self.message_burst,
                self.byte_rate,
                self.byte_burst,
            ],
            place,
            kind.is_websocket(),
        )?;
        match &mut kind {
            RouteKind::Proxy(p) => {
                p.balance = self.balance.unwrap_or_default();
                if let Some(h) = &self.health_path
                    && !h.starts_with('/')
                {
                    return Err(RouteSpecError::HealthPathNotAbsolute {
                        place: place.into(),
                        health_path: h.clone(),
                    });
                }
                p.health_path = self.health_path.clone();
                p.ca = self.ca.clone();
                self.upstream_pool(p, place)?;
            }
            RouteKind::Chat(c) => {
                if let Some(n) = self.history {
                    if n > 10_000 {
                        return Err(RouteSpecError::HistoryTooLong {
                            place: place.into(),
                            history: n,
                        });
                    }
                    c.history = n;
                }
                if let Some(n) = self.max_text {
                    if n == 0 {
                        return Err(RouteSpecError::ZeroMaxText {
                            place: place.into(),
                        });
                    }
                    c.max_text = n;
                }
                if let Some(r) = self.rate {
                    if !(r.is_finite() && r > 0.0) {
                        return Err(RouteSpecError::BadRate {
                            place: place.into(),
                        });
                    }
                    c.rate = r;
                }
                if let Some(b) = self.burst {
                    if !(b.is_finite() && b >= 1.0) {
                        return Err(RouteSpecError::BadBurst {
                            place: place.into(),
                        });
                    }
                    c.burst = b;
                }
                if let Some(room) = &self.default_room {
                    crate::names::room(room).map_err(|source| RouteSpecError::BadDefaultRoom {
                        place: place.into(),
                        source,
                    })?;
                    c.default_room = room.clone();
                }
                if let Some(v) = &self.moderator_password_env {
                    if v.is_empty() || v.contains('=') {
                        return Err(RouteSpecError::BadModeratorPasswordEnv {
                            place: place.into(),
                        });
                    }
                    c.moderator_password_env = v.clone();
                }
                self.chat_identity(c, place)?;
            }
            RouteKind::Exec(e) => {
                e.binary = self.binary.unwrap_or(false);
                e.pass_env = self.pass_env.clone().unwrap_or_default();
                // Identity (issue 12, "ident"): only the edge's identity sets these.
                self.check_pass_env(place)?;
                if let Some(n) = self.max_processes {
                    if n == 0 {
                        return Err(RouteSpecError::ZeroMaxProcesses {
                            place: place.into(),
                        });
                    }
                    e.max_processes = n;
                }
            }
            _ => {}
        }
        let limits = RouteLimits {
            max_message_size: self.max_message_size,
            ping_interval: self
                .ping_interval
                .map(|s| seconds(s, place, "ping_interval"))
                .transpose()?,
            idle_timeout: self
                .idle_timeout
                .map(|s| seconds(s, place, "idle_timeout"))
                .transpose()?,
            message_rate: rates.0,
            byte_rate: rates.1,
        };
        Ok(RouteSpec {
            path: check_path(&self.path, place)?,
            kind,
            limits,
            plain: self.plain.unwrap_or(false),
            // Loaded by `route_list` from `self.auth`, with the secrets.
            auth: None,
        })
    }
}

/// Pooled upstream HTTP keys (issue 15, gateway).
#[cfg(test)]
mod upstream_pool_tests {
    use std::time::Duration;

    use super::*;
    use crate::config::route::{
        DEFAULT_UPSTREAM_HEADER_TIMEOUT, DEFAULT_UPSTREAM_IDLE_TIMEOUT, DEFAULT_UPSTREAM_KEEPALIVE,
        DEFAULT_UPSTREAM_MAX_CONNS,
    };

    fn spec(extra: &str) -> Result<RouteSpec, RouteSpecError> {
        let text = format!("path = '/'\nkind = 'proxy'\nupstream = 'http://127.0.0.1:1'\n{extra}");
        let table: RouteTable = toml::from_str(&text).unwrap();
        table.into_spec("route 1")
    }

    fn proxy(r: RouteSpec) -> ProxySpec {
        match r.kind {
            RouteKind::Proxy(p) => p,
            other => panic!("not a proxy: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let p = proxy(spec("").unwrap());
        assert!(!p.http2);
        assert_eq!(p.keepalive, DEFAULT_UPSTREAM_KEEPALIVE);
        assert_eq!(p.idle_timeout, DEFAULT_UPSTREAM_IDLE_TIMEOUT);
        assert_eq!(p.header_timeout, Some(DEFAULT_UPSTREAM_HEADER_TIMEOUT));
        assert_eq!(p.max_conns, DEFAULT_UPSTREAM_MAX_CONNS);
        assert_eq!(
            proxy(spec("upstream_max_conns = 2\n").unwrap()).max_conns,
            2
        );
        assert_eq!(
            proxy(spec("upstream_max_conns = 0\n").unwrap()).max_conns,
            0
        );
        let p = proxy(
            spec("upstream_http2 = true\nupstream_keepalive = 0\nupstream_idle_timeout = 1.5\nupstream_header_timeout = 0\n")
                .unwrap(),
        );
        assert!(p.http2);
        assert_eq!(p.keepalive, 0);
        assert_eq!(p.idle_timeout, Duration::from_millis(1500));
        assert_eq!(p.header_timeout, None);
    }

    #[test]
    fn bad_values_and_other_kinds_are_named() {
        let e = spec("upstream_idle_timeout = 0\n").unwrap_err().to_string();
        assert!(
            e.contains("upstream_idle_timeout must be above 0")
                && e.contains("upstream_keepalive = 0"),
            "{e}"
        );
        let e = spec("upstream_header_timeout = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream_header_timeout"), "{e}");
        let table: RouteTable =
            toml::from_str("path = '/'\nkind = 'echo'\nupstream_keepalive = 4\n").unwrap();
        let e = table.into_spec("route 2").unwrap_err().to_string();
        assert!(
            e.contains("upstream_keepalive") && e.contains("proxy"),
            "{e}"
        );
    }
}
