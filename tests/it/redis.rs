//! A real `redis-server` for tests ([`Redis`]), and the `redis` backend
//! tested directly: two or three `RedisBackend`s (different instance ids)
//! over one Redis, each in its own `Broker`.
//!
//! Every test skips (with a notice on stderr) when `redis-server` is not on
//! PATH; `scripts/install-test-deps` installs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use wssd::broker::redis::RedisBackend;
use wssd::broker::{
    Backend, Broker, Delivery, Envelope, Health, InstanceId, JoinOutcome, Payload, Subscription,
};

use crate::harness::free_port;
use crate::test_ca::TestCa;

/// A `redis-server` on a free loopback port, without persistence; killed
/// (by PID) when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    /// TLS only (`start_tls`): the PEM of the CA that signed its certificate.
    pub ca_pem: Option<String>,
}

/// Where `redis-server` is, if installed.
fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

impl Redis {
    /// Starts a server; `None` (after printing a skip notice naming `test`)
    /// when `redis-server` is not installed.
    pub async fn start(test: &str) -> Option<Redis> {
        if redis_server().is_none() {
            eprintln!(
                "SKIPPED {test}: redis-server is not on PATH (scripts/install-test-deps installs it)"
            );
            return None;
        }
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            ca_pem: None,
        };
        redis.spawn().await;
        Some(redis)
    }

    /// Starts a server that speaks only TLS, with a certificate for
    /// 127.0.0.1 and localhost from a throwaway CA (`ca_pem`, also written
    /// to [`Redis::ca_file`]).
    pub async fn start_tls(test: &str) -> Option<Redis> {
        if redis_server().is_none() {
            eprintln!(
                "SKIPPED {test}: redis-server is not on PATH (scripts/install-test-deps installs it)"
            );
            return None;
        }
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::aws_lc_rs::default_provider(),
        );
        let ca = TestCa::new("redis test CA");
        let leaf = ca.leaf(&["127.0.0.1", "localhost"], 1, false);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
        std::fs::write(dir.path().join("redis.pem"), &leaf.cert_pem).expect("write cert");
        std::fs::write(dir.path().join("redis.key"), &leaf.key_pem).expect("write key");
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir,
            ca_pem: Some(ca.pem()),
        };
        redis.spawn().await;
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA file of a TLS server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(redis_server().expect("redis-server"));
        if self.ca_pem.is_some() {
            let file = |name: &str| self.dir.path().join(name);
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("redis.pem"))
                .arg("--tls-key-file")
                .arg(file("redis.key"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        // Ready when PING answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server on port {} exited early: {status}", self.port);
            }
            if self.ping().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the server answers PING now.
    pub async fn ping(&self) -> bool {
        let client = match &self.ca_pem {
            None => ::redis::Client::open(self.url()),
            Some(pem) => ::redis::Client::build_with_tls(
                self.url(),
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone().into_bytes()),
                },
            ),
        };
        let Ok(client) = client else {
            return false;
        };
        let attempt = async {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(pong)) if pong == "PONG"
        )
    }

    /// Kills the server (SIGKILL by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, sig);
            }
        }
    }

    /// Starts a fresh server (empty: no persistence) on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

/// A TCP relay on a free loopback port in front of a Redis server, which a
/// test can cut (every relayed connection closed, new ones refused) and
/// restore: one instance loses Redis while the others keep it.
pub struct Relay {
    pub port: u16,
    state: Arc<std::sync::Mutex<RelayState>>,
    stop: CancellationToken,
}

struct RelayState {
    cut: bool,
    /// Cancelled by `cut`, ending the connections relayed so far.
    conns: CancellationToken,
}

impl Relay {
    pub async fn start(target_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let state = Arc::new(std::sync::Mutex::new(RelayState {
            cut: false,
            conns: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        let (st, stopped) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut inbound = tokio::select! {
                    _ = stopped.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let conns = {
                    let st = st.lock().expect("relay state");
                    if st.cut {
                        continue; // dropped: refused
                    }
                    st.conns.clone()
                };
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = conns.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Relay { port, state, stop }
    }

    /// `redis://127.0.0.1:PORT` through the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        let mut st = self.state.lock().expect("relay state");
        st.cut = true;
        st.conns.cancel();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        let mut st = self.state.lock().expect("relay state");
        st.cut = false;
        st.conns = CancellationToken::new();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Polls `cond` every 25 ms until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not true within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One instance: its broker, the backend itself and its shutdown token.
struct Instance {
    broker: Broker,
    backend: Arc<RedisBackend>,
    shutdown: CancellationToken,
}

impl Instance {
    /// Starts a backend with instance id `id` and waits until it is up.
    async fn start(redis: &Redis, id: u64, presence_ttl: Option<Duration>) -> Instance {
        Instance::start_at(&redis.url(), id, presence_ttl).await
    }

    async fn start_at(url: &str, id: u64, presence_ttl: Option<Duration>) -> Instance {
        let instance = Instance::unstarted(url, id, presence_ttl, None);
        instance.wait_up().await;
        instance
    }

    /// Starts a backend without waiting for it to connect; with `ca`, a
    /// rediss:// server must chain to it.
    fn unstarted(url: &str, id: u64, presence_ttl: Option<Duration>, ca: Option<&str>) -> Instance {
        let mut backend =
            RedisBackend::with_ca(url, InstanceId(id), ca.map(str::as_bytes)).expect("backend");
        if let Some(ttl) = presence_ttl {
            backend = backend.with_presence_ttl(ttl);
        }
        let backend = Arc::new(backend);
        let broker = Broker::with_backend(backend.clone(), InstanceId(id));
        let shutdown = CancellationToken::new();
        broker.start(shutdown.clone());
        Instance {
            broker,
            backend,
            shutdown,
        }
    }

    async fn wait_up(&self) {
        eventually(Duration::from_secs(20), "backend up", || async {
            self.backend.health() == Health::Ok
        })
        .await;
    }

    fn sub(&self, topic: &str) -> Subscription {
        self.broker.subscribe(topic.into(), topic)
    }

    fn publish(&self, topic: &str, sender: u64, payload: Payload) -> usize {
        self.broker.publish(Envelope {
            topic: topic.into(),
            sender,
            payload,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The next message on a subscription (bounded).
async fn next(sub: &mut Subscription) -> Payload {
    match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
        Ok(Delivery::Message(payload)) => payload,
        Ok(other) => panic!("expected a message, got {other:?}"),
        Err(_) => panic!("no message within 5 s on {}", sub.topic()),
    }
}

/// Asserts nothing arrives on `sub` for a short while.
async fn quiet(sub: &mut Subscription) {
    if let Ok(d) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        panic!("expected nothing on {}, got {d:?}", sub.topic());
    }
}

fn text(t: &str) -> Payload {
    Payload::Text(t.into())
}

fn joined_members(outcome: JoinOutcome) -> Vec<String> {
    match outcome {
        JoinOutcome::Joined { members, .. } => members,
        other => panic!("expected Joined, got {other:?}"),
    }
}

const ROOM: &str = "/ws/chat#lobby";

#[tokio::test]
async fn redis_delivers_text_and_binary_across_instances_once() {
    let Some(redis) = Redis::start("redis_delivers_text_and_binary_across_instances_once").await
    else {
        return;
    };
    let a = Instance::start(&redis, 1, None).await;
    let b = Instance::start(&redis, 2, None).await;
    let sender = a.sub("/news");
    let mut on_a = a.sub("/news");
    let mut on_b = b.sub("/news");
    let mut other_topic = b.sub("/other");

    assert_eq!(a.publish("/news", sender.id(), text("héllo")), 1);
    // (A crossed envelope's sender is 0: broker::wire's unit test.)
    assert_eq!(next(&mut on_b).await, text("héllo"));
    assert_eq!(next(&mut on_a).await, text("héllo"));

    let bin = Payload::Binary(Bytes::from_static(&[0, 1, 2, 255]));
    b.publish("/news", 0, bin.clone());
    assert_eq!(next(&mut on_a).await, bin, "binary stays binary");
    assert_eq!(next(&mut on_b).await, bin);

    // Exactly once each: an instance ignores its own envelopes coming back
    // from Redis, and other topics get nothing.
    quiet(&mut on_a).await;
    quiet(&mut on_b).await;
    quiet(&mut other_topic).await;
    let mut sender = sender;
    // The sender got the binary from B, but never its own text.
    assert_eq!(next(&mut sender).await, bin);
    quiet(&mut sender).await;
}

#[tokio::test]
async fn redis_names_are_unique_across_instances() {
    let Some(redis) = Redis::start("redis_names_are_unique_across_instances").await else {
        return;
    };
    let a = Instance::start(&redis, 1, None).await;
    let b = Instance::start(&redis, 2, None).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());

    assert_eq!(
        joined_members(ab.join(ROOM, "alice").await.unwrap()),
        ["alice"]
    );
    assert_eq!(
        bb.join(ROOM, "alice").await.unwrap(),
        JoinOutcome::NameTaken
    );
    assert_eq!(
        ab.join(ROOM, "alice").await.unwrap(),
        JoinOutcome::NameTaken
    );
    assert_eq!(
        joined_members(bb.join(ROOM, "bob").await.unwrap()),
        ["alice", "bob"]
    );
    assert_eq!(ab.members(ROOM).await.unwrap(), ["alice", "bob"]);
    // Another room is another namespace.
    assert_eq!(
        joined_members(bb.join("/ws/chat#other", "alice").await.unwrap()),
        ["alice"]
    );
    // Leaving frees the name for the other instance; leave is idempotent
    // and never frees another instance's member.
    ab.leave(ROOM, "alice").await;
    ab.leave(ROOM, "alice").await;
    ab.leave(ROOM, "bob").await;
    assert_eq!(bb.members(ROOM).await.unwrap(), ["bob"]);
    assert_eq!(
        joined_members(bb.join(ROOM, "alice").await.unwrap()),
        ["alice", "bob"]
    );
}

#[tokio::test]
async fn redis_names_clash_case_insensitively_also_after_redis_lost_its_data() {
    let Some(mut redis) = Redis::start("redis_names_clash_case_insensitively").await else {
        return;
    };
    let ttl = Some(Duration::from_millis(900));
    let a = Instance::start(&redis, 1, ttl).await;
    let b = Instance::start(&redis, 2, ttl).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());
    assert_eq!(
        joined_members(ab.join(ROOM, "alice").await.unwrap()),
        ["alice"]
    );
    // The name key is claimed in Redis: other cases and widths clash on B.
    for same in ["Alice", "ALICE", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"] {
        assert_eq!(
            bb.join(ROOM, same).await.unwrap(),
            JoinOutcome::NameTaken,
            "{same}"
        );
    }
    // A ban by one case holds for every case, on every instance.
    bb.ban(ROOM, "EVE").await;
    assert_eq!(ab.join(ROOM, "eve").await.unwrap(), JoinOutcome::Banned);
    // Redis restarts empty: A's refresh claims alice's key again.
    redis.restart().await;
    a.wait_up().await;
    b.wait_up().await;
    eventually(
        Duration::from_secs(10),
        "alice registered again",
        || async { bb.members(ROOM).await.is_ok_and(|m| m == ["alice"]) },
    )
    .await;
    assert_eq!(
        bb.join(ROOM, "ALICE").await.unwrap(),
        JoinOutcome::NameTaken,
        "the refresh restores name keys too"
    );
}

#[tokio::test]
async fn redis_history_is_shared_capped_and_ends_with_the_room() {
    let Some(redis) = Redis::start("redis_history_is_shared_capped_and_ends_with_the_room").await
    else {
        return;
    };
    let a = Instance::start(&redis, 1, None).await;
    let b = Instance::start(&redis, 2, None).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());

    // No room, no history (as in memory).
    ab.record(ROOM, "lost".into(), 3).await;
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    for i in 0..5 {
        let on = if i % 2 == 0 { ab } else { bb };
        on.record(ROOM, format!("m{i}").into(), 3).await;
    }
    match bb.join(ROOM, "bob").await.unwrap() {
        JoinOutcome::Joined { members, history } => {
            assert_eq!(members, ["alice", "bob"]);
            let h: Vec<&str> = history.iter().map(|m| m.as_str()).collect();
            assert_eq!(h, ["m2", "m3", "m4"], "last 3, oldest first");
        }
        other => panic!("{other:?}"),
    }
    // Everyone leaves: the room ends, its history with it.
    ab.leave(ROOM, "alice").await;
    bb.leave(ROOM, "bob").await;
    match bb.join(ROOM, "carol").await.unwrap() {
        JoinOutcome::Joined { members, history } => {
            assert_eq!(members, ["carol"]);
            assert!(history.is_empty(), "{history:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redis_bans_are_shared() {
    let Some(redis) = Redis::start("redis_bans_are_shared").await else {
        return;
    };
    let a = Instance::start(&redis, 1, None).await;
    let b = Instance::start(&redis, 2, None).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());

    joined_members(ab.join(ROOM, "mod").await.unwrap());
    joined_members(bb.join(ROOM, "eve").await.unwrap());
    ab.ban(ROOM, "eve").await;
    bb.leave(ROOM, "eve").await;
    assert_eq!(bb.join(ROOM, "eve").await.unwrap(), JoinOutcome::Banned);
    assert_eq!(ab.join(ROOM, "eve").await.unwrap(), JoinOutcome::Banned);
    // Only in that room, and only while it lives.
    joined_members(bb.join("/ws/chat#other", "eve").await.unwrap());
    ab.leave(ROOM, "mod").await;
    joined_members(bb.join(ROOM, "eve").await.unwrap());
}

#[tokio::test]
async fn redis_sweep_reports_a_stopped_instance_members_exactly_once() {
    let Some(redis) =
        Redis::start("redis_sweep_reports_a_stopped_instance_members_exactly_once").await
    else {
        return;
    };
    let ttl = Some(Duration::from_millis(1200));
    let a = Instance::start(&redis, 1, ttl).await;
    let b = Instance::start(&redis, 2, ttl).await;
    let c = Instance::start(&redis, 3, ttl).await;
    let (ab, bb, cb) = (a.broker.backend(), b.broker.backend(), c.broker.backend());
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    joined_members(bb.join(ROOM, "bob").await.unwrap());
    joined_members(bb.join(ROOM, "bea").await.unwrap());

    // Live members (refreshed) are never swept, even past the TTL.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(ab.sweep(ROOM).await.is_empty());
    assert!(cb.sweep(ROOM).await.is_empty());

    // B stops without leaving (as if it died): its entries expire.
    b.shutdown.cancel();
    let mut swept: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while swept.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "B's members not swept within 10 s: {swept:?}"
        );
        // Two sweepers at once: each name goes to exactly one of them.
        let (x, y) = tokio::join!(ab.sweep(ROOM), cb.sweep(ROOM));
        swept.extend(x);
        swept.extend(y);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And nobody gets them again.
    for _ in 0..5 {
        swept.extend(ab.sweep(ROOM).await);
        swept.extend(cb.sweep(ROOM).await);
    }
    swept.sort();
    assert_eq!(swept, ["bea", "bob"], "each name exactly once");
    assert_eq!(ab.members(ROOM).await.unwrap(), ["alice"]);
    assert_eq!(
        joined_members(cb.join(ROOM, "bob").await.unwrap()),
        ["alice", "bob"],
        "the name is free again"
    );
}

#[tokio::test]
async fn redis_outage_keeps_local_delivery_then_cross_instance_resumes() {
    let Some(mut redis) =
        Redis::start("redis_outage_keeps_local_delivery_then_cross_instance_resumes").await
    else {
        return;
    };
    let a = Instance::start(&redis, 1, None).await;
    let b = Instance::start(&redis, 2, None).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    let mut a1 = a.sub(ROOM);
    let mut a2 = a.sub(ROOM);
    let mut b1 = b.sub(ROOM);

    redis.kill();
    for (name, i) in [("A", &a), ("B", &b)] {
        eventually(Duration::from_secs(10), &format!("{name} degraded"), || async {
            matches!(i.broker.health(), Health::Degraded(why) if why.starts_with("redis unreachable"))
        })
        .await;
    }
    // Local delivery goes on.
    assert_eq!(a.publish(ROOM, a1.id(), text("during outage")), 1);
    assert_eq!(next(&mut a2).await, text("during outage"));
    // Room state falls back to this instance's own view, bounded in time.
    let started = Instant::now();
    assert_eq!(
        joined_members(ab.join(ROOM, "bob").await.unwrap()),
        ["alice", "bob"]
    );
    assert_eq!(ab.join(ROOM, "bob").await.unwrap(), JoinOutcome::NameTaken);
    ab.record(ROOM, "kept locally".into(), 10).await;
    assert!(ab.sweep(ROOM).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));

    redis.restart().await;
    a.wait_up().await;
    b.wait_up().await;
    // What was published during the outage is not replayed.
    quiet(&mut b1).await;
    // Cross-instance delivery resumes, both ways.
    a.publish(ROOM, a1.id(), text("after"));
    assert_eq!(next(&mut b1).await, text("after"));
    assert_eq!(next(&mut a2).await, text("after"));
    b.publish(ROOM, 0, text("back"));
    // a1 sent the others, so "back" is the first thing it sees.
    assert_eq!(next(&mut a1).await, text("back"));
    assert_eq!(next(&mut a2).await, text("back"));
    assert_eq!(next(&mut b1).await, text("back"));
    // A's members, including the one that joined during the outage, were
    // registered again in the fresh Redis.
    assert_eq!(bb.members(ROOM).await.unwrap(), ["alice", "bob"]);
    assert_eq!(
        bb.join(ROOM, "alice").await.unwrap(),
        JoinOutcome::NameTaken
    );
    assert_eq!(bb.join(ROOM, "bob").await.unwrap(), JoinOutcome::NameTaken);
}

#[tokio::test]
async fn redis_unresponsive_server_is_bounded_and_degrades() {
    let Some(redis) = Redis::start("redis_unresponsive_server_is_bounded_and_degrades").await
    else {
        return;
    };
    let ttl = Some(Duration::from_millis(1500));
    let a = Instance::start(&redis, 1, ttl).await;
    let b = Instance::start(&redis, 2, ttl).await;
    let ab = a.broker.backend();
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    let mut a1 = a.sub(ROOM);
    let mut b1 = b.sub(ROOM);

    redis.pause();
    // Every call is bounded by BROKER_TIMEOUT and falls back to local
    // state instead of failing.
    let started = Instant::now();
    let outcome = ab.join(ROOM, "bob").await.unwrap();
    assert!(
        started.elapsed() < wssd::config::limits::BROKER_TIMEOUT,
        "join took {:?}",
        started.elapsed()
    );
    assert_eq!(joined_members(outcome), ["alice", "bob"]);
    // Local delivery goes on, and publishing never blocks.
    for i in 0..100 {
        a.publish(ROOM, 0, text(&i.to_string()));
        assert_eq!(next(&mut a1).await, text(&i.to_string()));
    }
    let started = Instant::now();
    for i in 0..20_000 {
        a.publish("/elsewhere", 0, text(&i.to_string()));
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // The periodic refresh notices without any traffic.
    eventually(Duration::from_secs(10), "B degraded", || async {
        matches!(b.broker.health(), Health::Degraded(_))
    })
    .await;

    redis.resume();
    a.wait_up().await;
    b.wait_up().await;
    let mut seen = Vec::new();
    while let Ok(Delivery::Message(e)) =
        tokio::time::timeout(Duration::from_millis(300), b1.recv()).await
    {
        seen.push(e);
    }
    assert!(
        seen.is_empty(),
        "messages A published while Redis was frozen are dropped, not replayed; B got {}",
        seen.len()
    );
    a.publish(ROOM, 0, text("thawed"));
    loop {
        if next(&mut b1).await == text("thawed") {
            break;
        }
    }
    assert_eq!(
        b.broker.backend().members(ROOM).await.unwrap(),
        ["alice", "bob"]
    );
}

/// Waits until `instance`'s backend reports it cannot reach Redis.
async fn wait_degraded(name: &str, instance: &Instance) {
    eventually(
        Duration::from_secs(10),
        &format!("{name} degraded"),
        || async { matches!(instance.broker.health(), Health::Degraded(_)) },
    )
    .await;
}

/// Takes `instance`'s presence changes until there are `n` of the kind
/// asked for (`local_only`: for its own clients; else for everyone) within
/// 15 s (they are held until the link has been up for a while), as sorted
/// `(event, name)` pairs; changes of the other kind are dropped.
async fn changes(instance: &Instance, n: usize, local_only: bool) -> Vec<(&'static str, String)> {
    let mut got = Vec::new();
    eventually(
        Duration::from_secs(15),
        &format!("{n} presence changes (local only: {local_only})"),
        || {
            got.extend(
                instance
                    .backend
                    .presence_changes("/ws/chat#")
                    .into_iter()
                    .filter(|c| c.local_only == local_only)
                    .map(|c| {
                        assert_eq!(c.topic, ROOM);
                        (if c.joined { "join" } else { "leave" }, c.username)
                    }),
            );
            let done = got.len() >= n;
            async move { done }
        },
    )
    .await;
    got.sort();
    got
}

#[tokio::test]
async fn redis_presence_changed_while_cut_off_is_announced_after() {
    let Some(redis) = Redis::start("redis_presence_changed_while_cut_off_is_announced_after").await
    else {
        return;
    };
    let relay = Relay::start(redis.port).await;
    // A long TTL: nobody is swept while A is cut off.
    let ttl = Some(Duration::from_secs(30));
    let a = Instance::start_at(&relay.url(), 1, ttl).await;
    let b = Instance::start(&redis, 2, ttl).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    joined_members(ab.join(ROOM, "bob").await.unwrap());
    joined_members(bb.join(ROOM, "bea").await.unwrap());

    relay.cut();
    wait_degraded("A", &a).await;
    assert_eq!(b.broker.health(), Health::Ok, "only A lost Redis");
    // While A is cut off: carol joins, bob leaves, dan comes and goes.
    joined_members(ab.join(ROOM, "carol").await.unwrap());
    ab.leave(ROOM, "bob").await;
    joined_members(ab.join(ROOM, "dan").await.unwrap());
    ab.leave(ROOM, "dan").await;
    assert_eq!(bb.members(ROOM).await.unwrap(), ["alice", "bea", "bob"]);
    assert!(
        ab.presence_changes("/ws/chat#").is_empty(),
        "nothing before the reconnect"
    );

    relay.restore();
    a.wait_up().await;
    // Exactly what B's members missed: carol came, bob went (dan never
    // reached anyone, alice never changed).
    assert_eq!(
        changes(&a, 2, false).await,
        [("join", "carol".to_string()), ("leave", "bob".to_string())]
    );
    assert_eq!(bb.members(ROOM).await.unwrap(), ["alice", "bea", "carol"]);
    // Once: later refreshes find nothing new.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(for_everyone(&a).is_empty());
    assert!(for_everyone(&b).is_empty());
    // Only this route's rooms are handed out under its prefix.
    assert!(ab.presence_changes("/ws/other#").is_empty());
}

#[tokio::test]
async fn redis_swept_members_of_a_cut_off_instance_are_announced_when_it_returns() {
    let Some(redis) =
        Redis::start("redis_swept_members_of_a_cut_off_instance_are_announced_when_it_returns")
            .await
    else {
        return;
    };
    let relay = Relay::start(redis.port).await;
    let ttl = Some(Duration::from_millis(1200));
    let a = Instance::start_at(&relay.url(), 1, ttl).await;
    let b = Instance::start(&redis, 2, ttl).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    joined_members(ab.join(ROOM, "ann").await.unwrap());
    joined_members(bb.join(ROOM, "bea").await.unwrap());

    relay.cut();
    wait_degraded("A", &a).await;
    // A stops refreshing: B sweeps (and would announce) its members.
    let mut swept: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while swept.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "A's members not swept by B within 10 s: {swept:?}"
        );
        swept.extend(bb.sweep(ROOM).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    swept.sort();
    assert_eq!(swept, ["alice", "ann"]);
    // ann leaves while A is still cut off: B already announced her gone.
    ab.leave(ROOM, "ann").await;
    assert_eq!(bb.members(ROOM).await.unwrap(), ["bea"]);

    relay.restore();
    a.wait_up().await;
    // alice was never gone: A announces her again; ann's leave is not
    // announced twice.
    assert_eq!(changes(&a, 1, false).await, [("join", "alice".to_string())]);
    assert_eq!(bb.members(ROOM).await.unwrap(), ["alice", "bea"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(for_everyone(&a).is_empty());
    assert!(bb.sweep(ROOM).await.is_empty(), "alice is refreshed again");
}

#[tokio::test]
async fn redis_tls_shares_rooms_and_never_falls_back_to_plain() {
    let Some(redis) =
        Redis::start_tls("redis_tls_shares_rooms_and_never_falls_back_to_plain").await
    else {
        return;
    };
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = redis.ca_pem.clone();
    let a = Instance::unstarted(&url, 1, None, ca.as_deref());
    let b = Instance::unstarted(&url, 2, None, ca.as_deref());
    a.wait_up().await;
    b.wait_up().await;
    // Room state and delivery across instances, over TLS.
    let (ab, bb) = (a.broker.backend(), b.broker.backend());
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    assert_eq!(
        bb.join(ROOM, "alice").await.unwrap(),
        JoinOutcome::NameTaken
    );
    let mut on_b = b.sub("/news");
    a.publish("/news", 0, text("over tls"));
    assert_eq!(next(&mut on_b).await, text("over tls"));

    // Without the CA (Mozilla's roots only) the certificate is refused: the
    // backend stays degraded and says what to do; it never talks in plain.
    let untrusted = Instance::unstarted(&url, 3, None, None);
    eventually(
        Duration::from_secs(10),
        "untrusted degraded with a reason",
        || async {
            matches!(untrusted.broker.health(), Health::Degraded(why)
            if why.contains("certificate") && why.contains("--broker-ca"))
        },
    )
    .await;
    // redis:// (plain) to the TLS port gets nowhere either.
    let plain = Instance::unstarted(&format!("redis://127.0.0.1:{}", redis.port), 4, None, None);
    eventually(
        Duration::from_secs(10),
        "plain: a failed attempt",
        || async {
            matches!(plain.broker.health(), Health::Degraded(why) if !why.contains("connecting to"))
        },
    )
    .await;
    assert!(
        matches!(plain.broker.health(), Health::Degraded(_)),
        "a plain client must not reach a TLS-only Redis"
    );
    assert!(matches!(untrusted.broker.health(), Health::Degraded(_)));
    // And the trusted ones are unaffected.
    assert_eq!(a.broker.health(), Health::Ok);
    assert_eq!(bb.members(ROOM).await.unwrap(), ["alice"]);
}

/// The changes for everyone in the room that `instance` has now.
fn for_everyone(instance: &Instance) -> Vec<String> {
    instance
        .backend
        .presence_changes("/ws/chat#")
        .into_iter()
        .filter(|c| !c.local_only)
        .map(|c| c.username)
        .collect()
}

#[tokio::test]
async fn redis_changes_elsewhere_while_cut_off_reach_this_instance_clients_after() {
    let Some(redis) =
        Redis::start("redis_changes_elsewhere_while_cut_off_reach_this_instance_clients_after")
            .await
    else {
        return;
    };
    let relay = Relay::start(redis.port).await;
    // Refresh every second, settle after 3 s; the cut stays well under the
    // TTL, so nobody is swept.
    let ttl = Some(Duration::from_secs(3));
    let a = Instance::start_at(&relay.url(), 1, ttl).await;
    let b = Instance::start(&redis, 2, ttl).await;
    let (ab, bb) = (a.broker.backend(), b.broker.backend());
    joined_members(ab.join(ROOM, "alice").await.unwrap());
    joined_members(bb.join(ROOM, "bob").await.unwrap());
    joined_members(bb.join(ROOM, "bea").await.unwrap());
    // A has seen B's members (what its clients were told).
    eventually(Duration::from_secs(10), "A sees bea and bob", || async {
        a.backend.seen_elsewhere(ROOM) == Some(vec!["bea".into(), "bob".into()])
    })
    .await;

    relay.cut();
    wait_degraded("A", &a).await;
    // On B, which still has Redis: bea leaves, carl joins. B announces both
    // as usual, but A is not listening.
    bb.leave(ROOM, "bea").await;
    joined_members(bb.join(ROOM, "carl").await.unwrap());
    relay.restore();
    a.wait_up().await;

    // Once settled, A hands its own clients exactly what they missed.
    assert_eq!(
        changes(&a, 2, true).await,
        [("join", "carl".to_string()), ("leave", "bea".to_string())]
    );
    assert_eq!(
        a.backend.seen_elsewhere(ROOM),
        Some(vec!["bob".into(), "carl".into()])
    );
    // Once: the next refreshes find nothing to reconcile, and A itself had
    // nothing for the others.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(ab.presence_changes("/ws/chat#").is_empty());
}
