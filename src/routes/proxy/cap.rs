//! The per-upstream connection cap (`upstream_max_conns`, like nginx's
//! `max_conns` on an upstream server and HAProxy's `maxconn` on a
//! `server`): a [`Hold`] on one upstream is taken before it is dialed (a
//! WebSocket) or asked (a plain request) and given back when the proxied
//! WebSocket's relay ends or the response body has been sent (or either
//! is dropped). An upstream at its cap is skipped like one marked down;
//! when every upstream left is at its cap the client gets 503 before any
//! upgrade. Holds are also the open-connection count least-connections
//! balancing sorts by.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Response, StatusCode};

use super::pool::ProxyRoute;
use crate::http::reply::{Body, text_response};
use crate::metrics;

/// One slot of upstream `index` of a route, given back when dropped.
#[derive(Debug)]
pub(super) struct Hold {
    route: Arc<ProxyRoute>,
    index: usize,
}

impl Hold {
    /// A slot of upstream `index`, or `None` when `upstream_max_conns` of
    /// its connections are open or opening already (0: no cap).
    pub(super) fn take(route: &Arc<ProxyRoute>, index: usize) -> Option<Hold> {
        let cap = route.spec.max_conns;
        let active = &route.members[index].active;
        if cap == 0 {
            active.fetch_add(1, Ordering::AcqRel);
        } else {
            active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < cap).then_some(n + 1)
                })
                .ok()?;
        }
        Some(Hold {
            route: route.clone(),
            index,
        })
    }

    /// The upstream's URL, for logs.
    pub(super) fn url(&self) -> &str {
        &self.route.members[self.index].upstream.url
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.route.members[self.index]
            .active
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// The 503 when every upstream not marked down is at its cap, counted
/// (`what`: `websocket` or `http`), and summarised in the log at most every
/// 10 s per route.
pub(super) fn all_full(route: &ProxyRoute, what: &'static str) -> Response<Body> {
    metrics::upstream_max_conns_refused(&route.path, what);
    metrics::http_response(503);
    if let Some(count) = route.full.refused(route.now_ms()) {
        tracing::warn!(
            route = %route.path,
            "every upstream is at upstream_max_conns ({}): {count} request(s) refused with 503 since the last report; raise upstream_max_conns if the backends can take more",
            route.spec.max_conns
        );
    }
    text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "every upstream of this route has {} connections open (upstream_max_conns); try again later, or raise upstream_max_conns\n",
            route.spec.max_conns
        ),
    )
}

/// A response body that keeps its upstream's [`Hold`] until it is done
/// (the upstream connection is busy until then): given back as soon as
/// the last frame or an error was read, before the client has it all, or
/// when the body is dropped.
pub(super) struct HeldBody<B> {
    body: B,
    hold: Option<Hold>,
}

impl<B> HeldBody<B> {
    pub(super) fn new(body: B, hold: Hold) -> Self {
        HeldBody {
            body,
            hold: Some(hold),
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for HeldBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let done = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.body.is_end_stream(),
            Poll::Pending => false,
        };
        if done {
            self.hold = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::config::route::RouteKind;
    use crate::config::route::parse_route_flag;

    fn route(cap: usize) -> Arc<ProxyRoute> {
        let spec = parse_route_flag("/=proxy:http://127.0.0.1:1,http://127.0.0.1:2").unwrap();
        let RouteKind::Proxy(mut p) = spec.kind else {
            panic!("not a proxy")
        };
        p.max_conns = cap;
        Arc::new(ProxyRoute::new("/", p, std::time::Duration::from_secs(1)).unwrap())
    }

    fn active(r: &ProxyRoute, i: usize) -> usize {
        r.members[i].active.load(Ordering::Acquire)
    }

    #[test]
    fn holds_stop_at_the_cap_per_upstream_and_come_back_when_dropped() {
        let r = route(2);
        let a = Hold::take(&r, 0).unwrap();
        let _b = Hold::take(&r, 0).unwrap();
        assert!(Hold::take(&r, 0).is_none());
        // The other upstream has its own cap.
        let _c = Hold::take(&r, 1).unwrap();
        drop(a);
        assert_eq!(active(&r, 0), 1);
        assert!(Hold::take(&r, 0).is_some());
        // 0: no cap.
        let r = route(0);
        let many: Vec<Hold> = (0..100).map(|_| Hold::take(&r, 0).unwrap()).collect();
        assert_eq!(active(&r, 0), 100);
        drop(many);
        assert_eq!(active(&r, 0), 0);
    }

    #[tokio::test]
    async fn a_body_gives_its_hold_back_once_read_to_the_end() {
        let r = route(1);
        let hold = Hold::take(&r, 0).unwrap();
        let full = Full::new(Bytes::from_static(b"ok")).map_err(|never| match never {});
        let mut body = HeldBody::new(full, hold);
        assert_eq!(active(&r, 0), 1);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ok");
        assert_eq!(active(&r, 0), 0, "released with the last frame");
    }
}
