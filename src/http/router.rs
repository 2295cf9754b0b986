//! The route table: longest-prefix matching on whole path segments, built
//! from the configuration at start and again at each reload
//! ([`Router::rebuild`]: unchanged routes are kept as they are). It only
//! matches; what a route does is `crate::routes`' business.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::{Limits, RouteSpec};
use crate::routes::{BuildError, Route};

/// Routes sorted by descending prefix length.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

/// What a reload did to the routes, by path.
#[derive(Debug, Default)]
pub struct RouteChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// The old routes that are no longer served (changed or removed): their
    /// sessions get 1001 when [`Route::stop`] is cancelled.
    pub retired: Vec<Arc<Route>>,
}

impl RouteChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// A match: the route and the part of the path below its prefix.
pub struct Matched<'a> {
    pub route: &'a Arc<Route>,
    pub rest: &'a str,
}

impl Router {
    /// Builds every route (see [`Route::build`]; each one's stop signal a
    /// child of `shutdown`) and sorts them for matching.
    pub fn new(
        specs: &[RouteSpec],
        limits: &Limits,
        broker: &Broker,
        shutdown: &CancellationToken,
    ) -> Result<Router, BuildError> {
        let routes = specs
            .iter()
            .map(|spec| Route::build(spec, limits, broker, shutdown).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Router::sorted(routes))
    }

    /// The router for a reloaded configuration: a route whose spec (auth
    /// included) and resolved limits are unchanged is the same `Arc<Route>`
    /// (its sessions, rooms, hub and process state untouched); the others
    /// are built anew. Every build problem, or the router and the changes.
    pub fn rebuild(
        &self,
        specs: &[RouteSpec],
        limits: &Limits,
        broker: &Broker,
        shutdown: &CancellationToken,
    ) -> Result<(Router, RouteChanges), Vec<BuildError>> {
        let mut changes = RouteChanges::default();
        let mut routes = Vec::with_capacity(specs.len());
        let mut problems = Vec::new();
        for spec in specs {
            let old = self.routes.iter().find(|r| r.spec.path == spec.path);
            match old {
                Some(old)
                    if old.spec == *spec && old.limits == Route::resolved_limits(spec, limits) =>
                {
                    routes.push(old.clone());
                    continue;
                }
                Some(_) => changes.changed.push(spec.path.clone()),
                None => changes.added.push(spec.path.clone()),
            }
            match Route::build(spec, limits, broker, shutdown) {
                Ok(route) => routes.push(Arc::new(route)),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for old in &self.routes {
            let kept = routes.iter().any(|r| Arc::ptr_eq(r, old));
            if !kept {
                changes.retired.push(old.clone());
                if !specs.iter().any(|s| s.path == old.spec.path) {
                    changes.removed.push(old.spec.path.clone());
                }
            }
        }
        Ok((Router::sorted(routes), changes))
    }

    fn sorted(mut routes: Vec<Arc<Route>>) -> Router {
        routes.sort_by_key(|r| std::cmp::Reverse(r.spec.path.len()));
        Router { routes }
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
        Router::new(
            &specs,
            &Limits::default(),
            &Broker::memory(),
            &CancellationToken::new(),
        )
        .unwrap()
    }

    #[test]
    fn rebuild_keeps_unchanged_routes_and_retires_the_rest() {
        let shutdown = CancellationToken::new();
        let old = router(&["/a=echo", "/b=echo", "/c=broadcast"]);
        let specs: Vec<_> = ["/a=echo", "/b=broadcast", "/d=echo"]
            .iter()
            .map(|s| parse_route_flag(s).unwrap())
            .collect();
        let (new, changes) = old
            .rebuild(&specs, &Limits::default(), &Broker::memory(), &shutdown)
            .unwrap();
        let a_old = old.find("/a").unwrap().route;
        let a_new = new.find("/a").unwrap().route;
        assert!(Arc::ptr_eq(a_old, a_new), "an unchanged route is kept");
        assert!(!Arc::ptr_eq(
            old.find("/b").unwrap().route,
            new.find("/b").unwrap().route
        ));
        assert_eq!(changes.added, ["/d"]);
        assert_eq!(changes.changed, ["/b"]);
        assert_eq!(changes.removed, ["/c"]);
        let mut retired: Vec<_> = changes
            .retired
            .iter()
            .map(|r| r.spec.path.as_str())
            .collect();
        retired.sort();
        assert_eq!(retired, ["/b", "/c"]);
        assert!(new.find("/c").is_none());
    }

    #[test]
    fn rebuild_with_a_changed_limit_is_a_changed_route() {
        let old = router(&["/a=echo"]);
        let specs = vec![parse_route_flag("/a=echo").unwrap()];
        let limits = Limits {
            max_message_size: 1234,
            ..Limits::default()
        };
        let (_, changes) = old
            .rebuild(
                &specs,
                &limits,
                &Broker::memory(),
                &CancellationToken::new(),
            )
            .unwrap();
        assert_eq!(changes.changed, ["/a"]);
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
