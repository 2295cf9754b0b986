//! The route table: longest-prefix matching on whole path segments, built
//! once from the configuration. It only matches; what a route does is
//! `crate::routes`' business.

use std::sync::Arc;

use crate::broker::Broker;
use crate::config::{Limits, RouteSpec};
use crate::routes::{BuildError, Route};

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
    /// Builds every route (see [`Route::build`]) and sorts them for matching.
    pub fn new(
        specs: &[RouteSpec],
        limits: &Limits,
        broker: &Broker,
    ) -> Result<Router, BuildError> {
        let mut routes = specs
            .iter()
            .map(|spec| Route::build(spec, limits, broker).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
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
