//! The route table: longest-prefix matching on whole path segments, built
//! once from the configuration. It only matches; `http` dispatches.

use std::sync::Arc;

use crate::broker::Broker;
use crate::config::{Limits, RouteKind, RouteSpec, SessionLimits};
use crate::routes::broadcast::BroadcastRoute;
use crate::routes::chat::ChatRoute;
use crate::routes::exec::ExecRoute;
use crate::routes::proxy::ProxyRoute;
use crate::routes::static_files::Source;

/// A route ready to serve: its spec, resolved limits and prepared source.
#[derive(Debug)]
pub struct Route {
    pub spec: RouteSpec,
    pub limits: SessionLimits,
    /// For static routes: where files come from.
    pub files: Option<Source>,
    /// Per-route state of kinds that keep some (process cap, upstream pool).
    pub runtime: RouteRuntime,
}

/// State a route kind keeps across connections.
#[derive(Debug)]
pub enum RouteRuntime {
    None,
    Proxy(Arc<ProxyRoute>),
    Exec(Arc<ExecRoute>),
    Chat(Arc<ChatRoute>),
    Broadcast(Arc<BroadcastRoute>),
}

/// Routes sorted by descending prefix length.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

/// A match: the route and the part of the path below its prefix.
pub struct Matched<'a> {
    pub route: &'a Arc<Route>,
    pub rest: &'a str,
}

impl Router {
    /// Builds the table; static folders are canonicalized here.
    pub fn new(specs: &[RouteSpec], limits: &Limits, broker: &Broker) -> Result<Router, String> {
        let mut routes = Vec::with_capacity(specs.len());
        for spec in specs {
            let files = match &spec.kind {
                RouteKind::Static { dir: None } => Some(Source::Bundled),
                RouteKind::Static { dir: Some(dir) } => {
                    let real = std::fs::canonicalize(dir).map_err(|e| {
                        format!(
                            "route {}: cannot open folder {}: {e}",
                            spec.path,
                            dir.display()
                        )
                    })?;
                    Some(Source::Dir(real))
                }
                RouteKind::Echo
                | RouteKind::Proxy(_)
                | RouteKind::Exec(_)
                | RouteKind::Chat(_)
                | RouteKind::Broadcast => None,
            };
            let runtime = match &spec.kind {
                RouteKind::Proxy(p) => RouteRuntime::Proxy(Arc::new(
                    ProxyRoute::new(&spec.path, p.clone(), limits.send_timeout)
                        .map_err(|e| format!("route {}: {e}", spec.path))?,
                )),
                RouteKind::Exec(e) => RouteRuntime::Exec(Arc::new(ExecRoute::new(e.clone()))),
                RouteKind::Chat(c) => RouteRuntime::Chat(Arc::new(ChatRoute::new(
                    &spec.path,
                    c.clone(),
                    broker.clone(),
                ))),
                RouteKind::Broadcast => RouteRuntime::Broadcast(Arc::new(BroadcastRoute::new(
                    &spec.path,
                    broker.clone(),
                ))),
                RouteKind::Echo | RouteKind::Static { .. } => RouteRuntime::None,
            };
            routes.push(Arc::new(Route {
                limits: limits.for_route(
                    &spec.limits,
                    matches!(spec.kind, RouteKind::Broadcast | RouteKind::Chat(_)),
                ),
                spec: spec.clone(),
                files,
                runtime,
            }));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.spec.path.len()));
        Ok(Router { routes })
    }

    /// The longest route prefix of `path` on a segment boundary.
    pub fn find<'a>(&'a self, path: &'a str) -> Option<Matched<'a>> {
        self.routes.iter().find_map(|route| {
            let prefix = route.spec.path.as_str();
            if prefix == "/" {
                return Some(Matched { route, rest: path });
            }
            let rest = path.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with('/')).then_some(Matched { route, rest })
        })
    }

    /// Every route, longest first.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::route::parse_route_flag;

    fn router(list: &[&str]) -> Router {
        let specs: Vec<_> = list.iter().map(|s| parse_route_flag(s).unwrap()).collect();
        Router::new(&specs, &Limits::default(), &Broker::memory()).unwrap()
    }

    #[test]
    fn longest_prefix_on_segments() {
        let r = router(&["/=static", "/ws/echo=echo", "/ws=echo"]);
        assert_eq!(r.find("/ws/echo").unwrap().route.spec.path, "/ws/echo");
        assert_eq!(r.find("/ws/echo/x").unwrap().rest, "/x");
        assert_eq!(r.find("/ws/echoes").unwrap().route.spec.path, "/ws");
        assert_eq!(r.find("/wsx").unwrap().route.spec.path, "/");
        assert_eq!(r.find("/index.html").unwrap().rest, "/index.html");
    }

    #[test]
    fn no_match_without_root() {
        let r = router(&["/ws/echo=echo"]);
        assert!(r.find("/").is_none());
        assert!(r.find("/ws").is_none());
    }
}
