//! Route specifications: `--route PATH=KIND[:ARG]` strings and `[[route]]`
//! tables, parsed into [`RouteSpec`]. Dispatch lives in `crate::routes`.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::limits::{RouteLimits, seconds};

/// What a route does. Later kinds (proxy, exec, chat, broadcast) are added
/// here and in `crate::routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// Every message comes back unchanged.
    Echo,
    /// Files from a folder, or the bundled client when `None`.
    Static { dir: Option<PathBuf> },
}

impl RouteKind {
    /// The kind's name as written in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            RouteKind::Echo => "echo",
            RouteKind::Static { .. } => "static",
        }
    }

    /// Whether this route speaks WebSocket (as opposed to plain HTTP).
    pub fn is_websocket(&self) -> bool {
        matches!(self, RouteKind::Echo)
    }
}

/// One route: a path prefix, a kind and per-route limit overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// Path prefix, always starting with `/`.
    pub path: String,
    pub kind: RouteKind,
    /// Overrides of the global limits for this route.
    pub limits: RouteLimits,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Static { dir: Some(dir) } => {
                write!(f, "{}=static:{}", self.path, dir.display())
            }
            RouteKind::Static { dir: None } => write!(f, "{}=static (bundled client)", self.path),
            kind => write!(f, "{}={}", self.path, kind.name()),
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
        },
        RouteSpec {
            path: "/ws/echo".into(),
            kind: RouteKind::Echo,
            limits: RouteLimits::default(),
        },
    ]
}

/// Parses `PATH=KIND[:ARG]`, e.g. `/ws/echo=echo` or `/=static:./public`.
pub fn parse_route_flag(text: &str) -> Result<RouteSpec, String> {
    let Some((path, rest)) = text.split_once('=') else {
        return Err(format!(
            "route `{text}` is not PATH=KIND[:ARG] (example: /ws/echo=echo)"
        ));
    };
    let (kind, arg) = match rest.split_once(':') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (rest, None),
    };
    let kind = build_kind(kind, arg.map(PathBuf::from), &format!("route `{text}`"))?;
    Ok(RouteSpec {
        path: check_path(path, &format!("route `{text}`"))?,
        kind,
        limits: RouteLimits::default(),
    })
}

/// A `[[route]]` table in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub path: String,
    pub kind: String,
    /// Folder for `static` routes.
    pub dir: Option<PathBuf>,
    /// Per-route override of `max_message_size`.
    pub max_message_size: Option<usize>,
    /// Per-route override of `ping_interval` (seconds, 0 = off).
    pub ping_interval: Option<f64>,
    /// Per-route override of `idle_timeout` (seconds, 0 = off).
    pub idle_timeout: Option<f64>,
}

impl RouteTable {
    /// Turns the table into a spec; `place` names it in errors (file and index).
    pub fn into_spec(self, place: &str) -> Result<RouteSpec, String> {
        let kind = build_kind(&self.kind, self.dir, place)?;
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
        };
        Ok(RouteSpec {
            path: check_path(&self.path, place)?,
            kind,
            limits,
        })
    }
}

fn build_kind(kind: &str, arg: Option<PathBuf>, place: &str) -> Result<RouteKind, String> {
    match kind {
        "echo" => match arg {
            None => Ok(RouteKind::Echo),
            Some(_) => Err(format!("{place}: kind `echo` takes no argument")),
        },
        "static" => Ok(RouteKind::Static {
            dir: arg.filter(|d| !d.as_os_str().is_empty()),
        }),
        "proxy" | "exec" | "chat" | "broadcast" => Err(format!(
            "{place}: route kind `{kind}` is not available in this build yet; available kinds: echo, static"
        )),
        other => Err(format!(
            "{place}: unknown route kind `{other}`; available kinds: echo, static"
        )),
    }
}

fn check_path(path: &str, place: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{place}: path `{path}` must start with `/` (example: /ws/echo)"
        ));
    }
    if path.contains(['?', '#', ' ']) {
        return Err(format!(
            "{place}: path `{path}` must not contain `?`, `#` or spaces"
        ));
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
        assert!(parse_route_flag("echo").unwrap_err().contains("PATH=KIND"));
        assert!(
            parse_route_flag("ws=echo")
                .unwrap_err()
                .contains("start with `/`")
        );
        assert!(
            parse_route_flag("/x=nope")
                .unwrap_err()
                .contains("unknown route kind")
        );
        assert!(
            parse_route_flag("/x=echo:arg")
                .unwrap_err()
                .contains("no argument")
        );
        assert!(
            parse_route_flag("/x=proxy:ws://a")
                .unwrap_err()
                .contains("not available")
        );
    }
}
