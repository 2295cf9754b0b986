//! The routes section: `--route` flags, else `[[route]]` tables, else the
//! default routes; secrets filled in from the environment; checks across
//! routes (one route per path, sizes within the memory budget, static
//! folders that exist). Parsing one route is `route`'s job.

use super::environment::Environment;
use super::error::ConfigError;
use super::limits::Limits;
use super::route::{self, RouteKind, RouteSpec};
use super::sources::Sources;
use super::types::TlsMode;
use std::path::Path;

/// Every route, checked against each other and the global `limits`.
pub fn section(
    src: &Sources<'_>,
    env: &Environment,
    limits: &Limits,
    problems: &mut Vec<ConfigError>,
) -> Vec<RouteSpec> {
    let mut routes = parse(src, problems);
    for r in &mut routes {
        if let RouteKind::Chat(chat) = &mut r.kind {
            chat.moderator_password = env.secrets.get(&chat.moderator_password_env).cloned();
        }
    }
    let mut paths: Vec<&str> = routes.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    for pair in paths.windows(2) {
        if pair[0] == pair[1] {
            problems.push(ConfigError::RouteTwice(pair[0].to_string()));
        }
    }
    for r in &routes {
        check(r, limits, problems);
    }
    routes
}

/// Install pages of the local CA (issue 13): only with `--tls local-ca`;
/// each learns the state folder the CA lives in.
pub fn bind_ca_pages(
    routes: &mut [RouteSpec],
    mode: TlsMode,
    state_dir: &Path,
    problems: &mut Vec<ConfigError>,
) {
    for r in routes {
        if let RouteKind::Ca { state_dir: dir } = &mut r.kind {
            if mode != TlsMode::LocalCa {
                problems.push(ConfigError::CaPageNeedsLocalCa {
                    path: r.path.clone(),
                    mode,
                });
            }
            *dir = state_dir.to_path_buf();
        }
    }
}

/// The flags' routes, else the file's, else the defaults.
fn parse(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> Vec<RouteSpec> {
    let mut routes = Vec::new();
    if !src.args.route.is_empty() {
        for r in &src.args.route {
            match route::parse_route_flag(r) {
                Ok(spec) => routes.push(spec),
                Err(e) => problems.push(ConfigError::Route(e).at("--route")),
            }
        }
    } else if let Some(tables) = &src.file.route {
        for t in tables {
            let place = format!("{}: [[route]]", src.place(t.span().start));
            match t.get_ref().clone().into_spec(&place) {
                Ok(spec) => routes.push(spec),
                Err(e) => problems.push(ConfigError::Route(e)),
            }
        }
    } else {
        routes = route::default_routes();
    }
    routes
}

/// One route's size limit and folder.
fn check(r: &RouteSpec, limits: &Limits, problems: &mut Vec<ConfigError>) {
    if let Some(n) = r.limits.max_message_size {
        if n < 16 {
            problems.push(ConfigError::RouteMessageSizeTooSmall(r.path.clone()));
        }
        if n > limits.memory_budget {
            problems.push(ConfigError::RouteMessageOverBudget {
                path: r.path.clone(),
                size: n,
                budget: limits.memory_budget,
            });
        }
    }
    if let RouteKind::Static { dir: Some(dir) } = &r.kind {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => problems.push(ConfigError::StaticNotAFolder {
                path: r.path.clone(),
                dir: dir.clone(),
            }),
            Err(source) => problems.push(ConfigError::StaticUnreadable {
                path: r.path.clone(),
                dir: dir.clone(),
                source,
            }),
        }
    }
}
