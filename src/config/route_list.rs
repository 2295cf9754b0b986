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
    let mut routes = parse(src, env, problems);
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
        if r.kind.is_websocket() {
            check_rates(r, limits, problems);
        }
    }
    routes
}

/// A route's rate keys against the global rates (issue 12): a burst needs
/// a rate, and a byte burst must hold the route's largest message (or the
/// byte limiter could never admit it).
fn check_rates(r: &RouteSpec, limits: &Limits, problems: &mut Vec<ConfigError>) {
    use super::rate::SetBy;
    let pairs = [
        (
            r.limits.message_rate,
            limits.message_rate,
            "message_burst",
            "message_rate",
            "--message-rate",
        ),
        (
            r.limits.byte_rate,
            limits.byte_rate,
            "byte_burst",
            "byte_rate",
            "--byte-rate",
        ),
    ];
    for (route, global, burst_key, rate_key, rate_flag) in pairs {
        if route.burst.is_some() && route.per_second.is_none() && global.per_second.is_none() {
            problems.push(ConfigError::RouteBurstWithoutRate {
                path: r.path.clone(),
                burst_key,
                rate_key,
                rate_flag,
            });
        }
    }
    let fanout = matches!(r.kind, RouteKind::Chat(_) | RouteKind::Broadcast);
    let session = limits.for_route(&r.limits, fanout);
    if let Some(rate) = session.byte_rate
        && (rate.burst.get() as usize) < session.max_message_size
    {
        let explicit = r.limits.byte_rate.burst.is_some() || limits.byte_rate.burst.is_some();
        let source_key = match (rate.set_by, explicit) {
            (SetBy::Route, _) => "byte_burst",
            (SetBy::Global, true) => "--byte-burst",
            // A default burst falls short only of a message size above 4 GiB.
            (SetBy::Global, false) => "--byte-burst (default)",
        };
        problems.push(ConfigError::ByteBurstBelowMessageSize {
            path: r.path.clone(),
            burst: rate.burst.get(),
            source_key,
            message: session.max_message_size,
        });
    }
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
fn parse(src: &Sources<'_>, env: &Environment, problems: &mut Vec<ConfigError>) -> Vec<RouteSpec> {
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
                Ok(mut spec) => {
                    // The route's `auth`: files read and secrets taken now.
                    if let Some(auth) = &t.get_ref().auth {
                        match auth.load(&format!("{place} {}", spec.path), env) {
                            Ok(loaded) => spec.auth = Some(loaded),
                            Err(e) => problems.push(ConfigError::Auth(e)),
                        }
                    }
                    routes.push(spec);
                }
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::config::route_table::RouteTable;

    fn route(toml_text: &str) -> RouteSpec {
        let table: RouteTable = toml::from_str(toml_text).unwrap();
        table.into_spec("test").unwrap()
    }

    fn problems(r: &RouteSpec, limits: &Limits) -> Vec<String> {
        let mut problems = Vec::new();
        check_rates(r, limits, &mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_route_burst_needs_a_rate_somewhere() {
        let burst_only = route("path = '/a'\nkind = 'echo'\nmessage_burst = 5\n");
        let mut limits = Limits::default();
        let found = problems(&burst_only, &limits);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("message_burst is given but neither"),
            "{found:?}"
        );
        limits.message_rate.per_second = NonZeroU32::new(10);
        assert!(problems(&burst_only, &limits).is_empty());
    }

    #[test]
    fn a_byte_burst_must_hold_the_routes_largest_message() {
        let limits = Limits::default();
        let small = route(
            "path = '/b'\nkind = 'echo'\nbyte_rate = 100\nbyte_burst = 1000\nmax_message_size = 2000\n",
        );
        let found = problems(&small, &limits);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("(1000 bytes, byte_burst)") && found[0].contains("(2000 bytes"),
            "{found:?}"
        );
        // Without a burst, the default holds a whole message.
        let default = route("path = '/c'\nkind = 'echo'\nbyte_rate = 100\n");
        assert!(problems(&default, &limits).is_empty());
    }
}
