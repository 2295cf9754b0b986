//! Admission at accept time: counts open TCP connections in total and per
//! client IP, limits how fast one client IP opens new ones
//! (`--connection-rate-per-ip`, see `rate`), and refuses past the limits
//! before any TLS work is done. Every refusal is counted and summarised in
//! the log (`refusals`). (The WebSocket limit with its 503 is applied at the
//! upgrade, in `http::edge`.)
//!
//! Two steps, because behind a load balancer speaking the PROXY protocol
//! the client's address is only known once the header is read:
//! [`Admission::admit_total`] at accept (the total cap, so a flood of
//! connections that never send a header is bounded too), then
//! [`Admission::admit_client`] with the client's address (the rate, then
//! the per-IP cap). Without the PROXY protocol both run at accept
//! ([`Admission::admit`]), before the task of the connection is spawned.
//!
//! A listener may have a cap of its own (`--listen-max-connections`,
//! `--http-max-connections`: HAProxy's `maxconn` on a `bind`), checked
//! first ([`Admission::admit_listener`]): a connection past it is closed at
//! accept like the others, counted with reason `listener`, and costs the
//! other limits nothing.
//!
//! A WebSocket carried as an HTTP/2 stream counts as one on its own
//! connection would ([`Ticket::admit_stream`], asked by `http::edge`): the
//! TCP connection holds its per-IP slot from accept, and each WebSocket
//! stream takes one more slot (and one token of the per-IP rate) for its
//! life, so N WebSockets over one h2 connection cost the per-IP cap N + 1,
//! where N over HTTP/1.1 cost N. nginx's `limit_conn` counts each HTTP/2
//! request the same way. Past the cap the stream gets 503; the connection
//! and its other streams go on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::rate::ConnectionRate;
pub use super::refusals::Refusal;
use super::refusals::Refusals;
use crate::metrics::{self, HandshakeFailure};

/// How often the rate table is swept and refusals are summarised.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Shared counters; hand out a [`Ticket`] per admitted connection.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
    rate: Option<ConnectionRate>,
    refusals: Refusals,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Held for the life of a TCP connection, or of a WebSocket carried as an
/// HTTP/2 stream ([`Ticket::admit_stream`]); releases its slots on drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    /// The client address counted per IP, once known.
    ip: Option<IpAddr>,
    /// The slot on its listener's own cap, if it has one.
    listener: Option<ListenerSlot>,
    /// A stream's ticket: the connection it is carried on, kept (with its
    /// slots) while the stream lives. A stream is not counted in the total,
    /// which counts TCP connections.
    carrier: Option<Arc<Ticket>>,
}

/// One listener's own cap: open connections accepted by it.
#[derive(Debug)]
pub struct ListenerCap {
    max: usize,
    open: AtomicUsize,
}

impl ListenerCap {
    /// At most `max` open connections on the listener.
    pub fn new(max: NonZeroUsize) -> Arc<Self> {
        Arc::new(ListenerCap {
            max: max.get(),
            open: AtomicUsize::new(0),
        })
    }

    /// Open connections on the listener right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A slot, or `None` when `max` are open.
    fn take(self: &Arc<Self>) -> Option<ListenerSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(ListenerSlot(self.clone()))
    }
}

/// A connection's place on its listener's cap; freed on drop.
#[derive(Debug)]
pub struct ListenerSlot(Arc<ListenerCap>);

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// `max_total` open connections, `max_per_ip` from one address, and
    /// optionally `rate_per_ip` new ones per second per address.
    pub fn new(max_total: usize, max_per_ip: usize, rate_per_ip: Option<NonZeroU32>) -> Arc<Self> {
        let why = [
            format!("--max-connections reached ({max_total} open, handshakes included)"),
            format!("--max-connections-per-ip {max_per_ip} reached"),
            match rate_per_ip {
                Some(n) => format!(
                    "--connection-rate-per-ip {n} exceeded (burst {})",
                    u64::from(n.get()) * 2
                ),
                None => "--connection-rate-per-ip exceeded".to_string(),
            },
            "--proxy-protocol: not a --trusted-proxy peer, or no valid PROXY header in time"
                .to_string(),
            "its listener's cap (--listen-max-connections or --http-max-connections) reached"
                .to_string(),
        ];
        Arc::new(Admission {
            max_total,
            max_per_ip,
            state: Mutex::new(State::default()),
            rate: rate_per_ip.map(ConnectionRate::new),
            refusals: Refusals::new(why),
        })
    }

    /// Admits a connection from `ip` (total, rate, per IP), or says which
    /// limit refused it (counted and logged).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let mut ticket = self.admit_total(ip)?;
        self.admit_client(&mut ticket, ip)?;
        Ok(ticket)
    }

    /// Counts a connection from `peer` in the total only (its client
    /// address is not known yet).
    pub fn admit_total(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.total >= self.max_total {
            drop(state);
            return Err(self.refuse(Refusal::Total, peer));
        }
        state.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip: None,
            listener: None,
            carrier: None,
        })
    }

    /// A place on the listener's own cap (`None`: it has none), taken
    /// before the other limits so that a refusal here costs them nothing;
    /// past the cap the refusal is counted and logged.
    pub fn admit_listener(
        &self,
        cap: Option<&Arc<ListenerCap>>,
        peer: IpAddr,
    ) -> Result<Option<ListenerSlot>, Refusal> {
        let Some(cap) = cap else { return Ok(None) };
        match cap.take() {
            Some(slot) => Ok(Some(slot)),
            None => Err(self.refuse(Refusal::Listener, peer)),
        }
    }

    /// Charges the connection of `ticket` to its client address `ip`: the
    /// new-connection rate, then the per-IP cap.
    pub fn admit_client(&self, ticket: &mut Ticket, ip: IpAddr) -> Result<(), Refusal> {
        let ip = normalize(ip);
        if ticket.ip.is_some() {
            return Ok(());
        }
        self.charge(ticket, ip)
            .map_err(|reason| self.refuse(reason, ip))
    }

    /// The new-connection rate, then one more slot on the per-IP cap for
    /// `ip`, held by `ticket`; the limit met otherwise (not yet counted).
    fn charge(&self, ticket: &mut Ticket, ip: IpAddr) -> Result<(), Refusal> {
        if let Some(rate) = &self.rate
            && !rate.allow(ip)
        {
            return Err(Refusal::Rate);
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let count = state.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            if *count == 0 {
                state.per_ip.remove(&ip);
            }
            return Err(Refusal::PerIp);
        }
        *count += 1;
        ticket.ip = Some(ip);
        Ok(())
    }

    /// The limit a refusal for `reason` met, e.g.
    /// "--max-connections-per-ip 4096 reached".
    pub fn why(&self, reason: Refusal) -> &str {
        self.refusals.why(reason)
    }

    /// Counts and logs (summarised) a refused connection from `ip`.
    pub fn refuse(&self, reason: Refusal, ip: IpAddr) -> Refusal {
        if reason != Refusal::ProxyProtocol {
            metrics::handshake_failed(HandshakeFailure::Limit);
        }
        self.refusals.record(reason, normalize(ip));
        reason
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Every second until shutdown: sweeps the rate table and writes the
    /// refusal summary when one is due.
    pub async fn upkeep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Connections let through unremembered (the rate table was full),
        // reported at most once per summary interval.
        let mut unremembered = 0u64;
        let mut reported = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Some(rate) = &self.rate {
                unremembered += rate.sweep();
                if unremembered > 0 && reported.elapsed() >= super::refusals::SUMMARY_INTERVAL {
                    tracing::warn!(
                        "the --connection-rate-per-ip table was full ({} addresses): {unremembered} connections from addresses it did not know were not rate-limited",
                        super::rate::MAX_ADDRESSES
                    );
                    unremembered = 0;
                    reported = tokio::time::Instant::now();
                }
            }
            self.refusals.tick();
        }
    }
}

impl Ticket {
    /// Keeps `slot` (from [`Admission::admit_listener`]) for the life of the
    /// connection.
    pub fn hold(&mut self, slot: Option<ListenerSlot>) {
        self.listener = slot;
    }

    /// Admits a WebSocket carried as an HTTP/2 stream of this connection as
    /// if it were a connection of its own from the same client address
    /// (behind the PROXY protocol, the header's): a token of the per-IP
    /// rate, then one more slot on the per-IP cap, held until the returned
    /// ticket is dropped (with the session). A refusal is counted and
    /// logged like one at accept; the caller answers it (503), which counts
    /// it as a failed handshake.
    pub fn admit_stream(self: &Arc<Self>) -> Result<Ticket, Refusal> {
        let admission = &self.admission;
        let mut stream = Ticket {
            admission: admission.clone(),
            ip: None,
            listener: None,
            carrier: Some(self.clone()),
        };
        // Served connections have their address charged already.
        let Some(ip) = self.ip else {
            return Ok(stream);
        };
        // Counted and logged here; the caller's 503 counts the handshake.
        admission
            .charge(&mut stream, ip)
            .inspect_err(|&reason| admission.refusals.record(reason, ip))?;
        Ok(stream)
    }

    /// The admission that issued this ticket.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.carrier.is_none() {
            state.total = state.total.saturating_sub(1);
        }
        if let Some(ip) = self.ip
            && let Some(count) = state.per_ip.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                state.per_ip.remove(&ip);
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let a = Admission::new(3, 2, None);
        let ip1: IpAddr = "127.0.0.1".parse().unwrap();
        let ip2: IpAddr = "127.0.0.2".parse().unwrap();
        let t1 = a.admit(ip1).unwrap();
        let _t2 = a.admit(ip1).unwrap();
        assert_eq!(a.admit(ip1).unwrap_err(), Refusal::PerIp);
        let _t3 = a.admit(ip2).unwrap();
        assert_eq!(a.admit(ip2).unwrap_err(), Refusal::Total);
        drop(t1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(ip1).is_ok());
    }

    #[test]
    fn client_address_is_charged_after_the_total() {
        let a = Admission::new(10, 1, None);
        let balancer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut t1 = a.admit_total(balancer).unwrap();
        let mut t2 = a.admit_total(balancer).unwrap();
        a.admit_client(&mut t1, "192.0.2.1".parse().unwrap())
            .unwrap();
        a.admit_client(&mut t2, "192.0.2.2".parse().unwrap())
            .unwrap();
        let mut t3 = a.admit_total(balancer).unwrap();
        assert_eq!(
            a.admit_client(&mut t3, "192.0.2.1".parse().unwrap()),
            Err(Refusal::PerIp)
        );
        drop(t3);
        drop(t1);
        let mut t4 = a.admit_total(balancer).unwrap();
        a.admit_client(&mut t4, "192.0.2.1".parse().unwrap())
            .unwrap();
        assert_eq!(a.open(), 2);
        let state = a.state.lock().unwrap();
        assert_eq!(state.per_ip.len(), 2, "{:?}", state.per_ip);
    }

    #[test]
    fn listener_cap_refuses_past_it_and_frees_on_drop() {
        let a = Admission::new(100, 100, None);
        let cap = ListenerCap::new(NonZeroUsize::new(2).unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            let slot = a.admit_listener(Some(&cap), ip).unwrap();
            let mut t = a.admit(ip).unwrap();
            t.hold(slot);
            held.push(t);
        }
        assert_eq!(
            a.admit_listener(Some(&cap), ip).unwrap_err(),
            Refusal::Listener
        );
        assert!(a.admit_listener(None, ip).unwrap().is_none());
        assert_eq!((cap.open(), a.open()), (2, 2));
        held.pop();
        assert_eq!(cap.open(), 1, "closing one frees its slot");
        assert!(a.admit_listener(Some(&cap), ip).unwrap().is_some());
    }

    #[test]
    fn http2_websockets_take_per_ip_slots_of_the_client_address() {
        let a = Admission::new(10, 3, None);
        let balancer: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        // Behind the PROXY protocol: the connection is the header's client.
        let mut conn = a.admit_total(balancer).unwrap();
        a.admit_client(&mut conn, client).unwrap();
        let conn = Arc::new(conn);
        let s1 = conn.admit_stream().unwrap();
        let s2 = conn.admit_stream().unwrap();
        assert_eq!(conn.admit_stream().unwrap_err(), Refusal::PerIp);
        // Counted per IP, not in the total (TCP connections).
        assert_eq!(a.open(), 1);
        assert_eq!(a.state.lock().unwrap().per_ip.get(&client), Some(&3));
        assert_eq!(a.admit(client).unwrap_err(), Refusal::PerIp);
        assert!(a.admit(balancer).is_ok(), "the balancer is not charged");
        drop(s1);
        let s3 = conn.admit_stream().unwrap();
        // A stream keeps its connection's slots: dropped last, all go.
        let held = Arc::downgrade(&conn);
        drop(conn);
        assert!(held.upgrade().is_some());
        drop((s2, s3));
        assert_eq!(a.open(), 0);
        assert!(a.state.lock().unwrap().per_ip.is_empty());
    }

    #[test]
    fn http2_websockets_take_a_token_of_the_rate() {
        let a = Admission::new(100, 100, NonZeroU32::new(1));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let conn = Arc::new(a.admit(ip).unwrap());
        let _s = conn.admit_stream().unwrap();
        assert_eq!(conn.admit_stream().unwrap_err(), Refusal::Rate);
        assert_eq!(a.state.lock().unwrap().per_ip.get(&ip), Some(&2));
    }

    #[test]
    fn rate_refuses_before_the_per_ip_count() {
        let a = Admission::new(100, 100, NonZeroU32::new(2));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let kept: Vec<_> = (0..4).map(|_| a.admit(ip).unwrap()).collect();
        assert_eq!(a.admit(ip).unwrap_err(), Refusal::Rate);
        assert_eq!(a.open(), 4, "a refused connection holds no slot");
        assert!(a.admit("127.0.0.2".parse().unwrap()).is_ok());
        drop(kept);
    }
}
