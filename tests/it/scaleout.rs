//! Scale-out: two real `wssd` processes sharing one real `redis-server`
//! (`--broker redis://...`): chat and broadcast across instances, a Redis
//! outage and recovery, and an instance killed with SIGKILL.
//!
//! Skipped (with a notice) when `redis-server` is not on PATH.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::Wssd;
use crate::redis::{Redis, Relay, eventually};

type Ws = WebSocketStream<TcpStream>;

const MOD_PASSWORD: &str = "scaleout-moderator";

/// A `wssd` with a chat and a broadcast route on the shared Redis, once its
/// broker is connected (`/readyz` no longer says degraded).
async fn instance(redis: &Redis) -> Wssd {
    let server = unready_instance(redis, true).await;
    wait_degraded(&server, false).await;
    server
}

/// As [`instance`], without waiting for the broker; `trust_ca`: pass the
/// TLS Redis server's CA with `--broker-ca`.
async fn unready_instance(redis: &Redis, trust_ca: bool) -> Wssd {
    instance_at(&redis.url(), redis, trust_ca).await
}

/// A `wssd` whose broker URL is `url` (Redis itself, or a relay to it).
async fn instance_at(url: &str, redis: &Redis, trust_ca: bool) -> Wssd {
    let mut builder = Wssd::builder()
        .plain_only()
        .env("WSSD_MOD_PASSWORD", MOD_PASSWORD)
        .args(["--broker", url])
        .args(["--route", "/ws/chat=chat", "--route", "/ws/news=broadcast"]);
    if trust_ca && redis.ca_pem.is_some() {
        let ca = redis.ca_file();
        builder = builder.args(["--broker-ca", ca.to_str().expect("utf-8 path")]);
    }
    builder.spawn().await
}

async fn readyz(server: &Wssd) -> String {
    server.admin_get("/readyz").await.body_text()
}

/// Waits until `/readyz` says degraded (or no longer does); it stays 200.
async fn wait_degraded(server: &Wssd, degraded: bool) {
    let what = if degraded { "degraded" } else { "not degraded" };
    eventually(
        Duration::from_secs(30),
        &format!("/readyz {what}"),
        || async {
            let r = server.admin_get("/readyz").await;
            r.status == 200 && r.body_text().contains("degraded") == degraded
        },
    )
    .await;
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next data message (pings skipped), within `limit`.
async fn next_msg(ws: &mut Ws, limit: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(None) => panic!("connection ended"),
            Ok(Some(Err(e))) => panic!("read: {e}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Some(m),
        }
    }
}

/// The next JSON event (bounded).
async fn next_json(ws: &mut Ws) -> Value {
    match next_msg(ws, Duration::from_secs(10)).await {
        Some(Message::Text(t)) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("expected a JSON text message, got {other:?}"),
    }
}

/// Reads events until one matches `want` (others are skipped), within `limit`.
async fn until(ws: &mut Ws, limit: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_msg(ws, left).await {
            Some(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if want(&v) {
                    return v;
                }
            }
            Some(other) => panic!("unexpected {other:?} while waiting for {what}"),
            None => panic!("no {what} within {limit:?}"),
        }
    }
}

/// The next `message` event (presence events skipped).
async fn next_chat(ws: &mut Ws) -> Value {
    until(ws, Duration::from_secs(10), "a message", |v| {
        v["type"] == "message"
    })
    .await
}

async fn presence(ws: &mut Ws, event: &str, username: &str, limit: Duration) -> Value {
    until(ws, limit, &format!("presence {event} {username}"), |v| {
        v["type"] == "presence" && v["event"] == event && v["username"] == username
    })
    .await
}

/// Reads presence events (other events skipped) until each `(event,
/// username)` of `want` has come, in any order and possibly more than once;
/// any presence event outside `want` and `also` fails the test.
async fn presences(ws: &mut Ws, want: &[(&str, &str)], also: &[(&str, &str)], limit: Duration) {
    let mut missing = want.to_vec();
    let deadline = Instant::now() + limit;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = until(ws, left, &format!("presence {missing:?}"), |v| {
            v["type"] == "presence"
        })
        .await;
        let got = (
            v["event"].as_str().unwrap_or_default(),
            v["username"].as_str().unwrap_or_default(),
        );
        assert!(
            want.contains(&got) || also.contains(&got),
            "unexpected presence event {v}"
        );
        missing.retain(|w| *w != got);
    }
}

/// Connects to `/ws/chat` and sends a join; returns the socket and the reply.
async fn join(server: &Wssd, room: &str, username: &str) -> (Ws, Value) {
    let mut ws = server.ws("/ws/chat").await;
    send(
        &mut ws,
        json!({"type": "join", "room": room, "username": username}),
    )
    .await;
    let reply = next_json(&mut ws).await;
    (ws, reply)
}

async fn joined(server: &Wssd, room: &str, username: &str) -> (Ws, Value) {
    let (ws, reply) = join(server, room, username).await;
    assert_eq!(reply["type"], "joined", "{username}: {reply}");
    (ws, reply)
}

fn members(reply: &Value) -> Vec<&str> {
    let mut m: Vec<&str> = reply["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    m.sort();
    m
}

async fn say(ws: &mut Ws, text: &str) {
    send(ws, json!({"type": "message", "text": text})).await;
}

#[tokio::test]
async fn scaleout_chat_across_two_instances() {
    let Some(redis) = Redis::start("scaleout_chat_across_two_instances").await else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;

    let (mut alice, reply) = joined(&a, "lobby", "alice").await;
    assert_eq!(members(&reply), ["alice"]);
    let (mut bob, reply) = joined(&b, "lobby", "bob").await;
    assert_eq!(
        members(&reply),
        ["alice", "bob"],
        "presence across instances"
    );
    let p = next_json(&mut alice).await;
    assert_eq!(
        p,
        json!({"type":"presence","room":"lobby","event":"join","username":"bob"})
    );

    // Messages both ways; the sender gets its own as confirmation.
    say(&mut alice, "hi from A").await;
    for ws in [&mut alice, &mut bob] {
        let m = next_chat(ws).await;
        assert_eq!(
            (m["from"].as_str(), m["text"].as_str()),
            (Some("alice"), Some("hi from A"))
        );
        assert_eq!(m["room"], "lobby");
    }
    say(&mut bob, "hi from B").await;
    let mut ids = Vec::new();
    for ws in [&mut bob, &mut alice] {
        let m = next_chat(ws).await;
        assert_eq!(
            (m["from"].as_str(), m["text"].as_str()),
            (Some("bob"), Some("hi from B"))
        );
        ids.push(m["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "one message, one id everywhere");

    // History on join holds what both instances recorded, oldest first.
    for (server, name) in [(&a, "carol"), (&b, "dave")] {
        let (_ws, reply) = joined(server, "lobby", name).await;
        let texts: Vec<&str> = reply["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter_map(|m| m["text"].as_str())
            .collect();
        assert_eq!(texts, ["hi from A", "hi from B"], "{name}");
        assert!(members(&reply).contains(&"alice") && members(&reply).contains(&"bob"));
    }

    // A name in use on one instance is taken on the other.
    let (_x, reply) = join(&b, "lobby", "alice").await;
    assert_eq!(reply["code"], "name_taken", "{reply}");
    let (_y, reply) = join(&a, "lobby", "bob").await;
    assert_eq!(reply["code"], "name_taken", "{reply}");

    // Leaving on B is seen on A, and frees the name for A.
    send(&mut bob, json!({"type": "leave"})).await;
    presence(&mut alice, "leave", "bob", Duration::from_secs(10)).await;
    let (_bob2, reply) = joined(&a, "lobby", "bob").await;
    assert!(members(&reply).contains(&"bob"));
}

/// Makes sure every receiver's subscription is live: the sender sends probes
/// until each receiver got one, then a marker each reads up to (one sender's
/// messages stay in order, so nothing from before the marker comes after).
async fn settle(sender: &mut Ws, receivers: &mut [&mut Ws]) {
    let mut seen = vec![false; receivers.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.contains(&false) {
        assert!(
            Instant::now() < deadline,
            "broadcast receivers never subscribed"
        );
        sender.send(Message::text("probe")).await.expect("send");
        for (i, r) in receivers.iter_mut().enumerate() {
            if !seen[i] && next_msg(r, Duration::from_millis(200)).await.is_some() {
                seen[i] = true;
            }
        }
    }
    sender.send(Message::text("marker")).await.expect("send");
    for r in receivers.iter_mut() {
        loop {
            match next_msg(r, Duration::from_secs(10)).await {
                Some(Message::Text(t)) if t.as_str() == "marker" => break,
                Some(Message::Text(t)) if t.as_str() == "probe" => continue,
                other => panic!("expected probes then the marker, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn scaleout_broadcast_text_and_binary_across_instances() {
    let Some(redis) = Redis::start("scaleout_broadcast_text_and_binary_across_instances").await
    else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut sender = a.ws("/ws/news").await;
    let mut near = a.ws("/ws/news").await;
    let mut far = b.ws("/ws/news").await;
    settle(&mut sender, &mut [&mut near, &mut far]).await;

    let text = Message::text("héllo from A");
    let binary = Message::binary(vec![0u8, 1, 2, 255, 254]);
    sender.send(text.clone()).await.expect("send");
    sender.send(binary.clone()).await.expect("send");
    for ws in [&mut near, &mut far] {
        assert_eq!(
            next_msg(ws, Duration::from_secs(10)).await,
            Some(text.clone())
        );
        assert_eq!(
            next_msg(ws, Duration::from_secs(10)).await,
            Some(binary.clone()),
            "binary stays binary"
        );
    }
    // The sender does not get its own messages, not even back from Redis.
    assert_eq!(
        next_msg(&mut sender, Duration::from_millis(500)).await,
        None
    );

    // The other way.
    let from_b = Message::binary(vec![9u8; 70_000]);
    far.send(from_b.clone()).await.expect("send");
    for ws in [&mut sender, &mut near] {
        assert_eq!(
            next_msg(ws, Duration::from_secs(10)).await,
            Some(from_b.clone())
        );
    }
    assert_eq!(next_msg(&mut far, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn scaleout_redis_outage_keeps_local_chat_then_resumes() {
    let Some(mut redis) = Redis::start("scaleout_redis_outage_keeps_local_chat_then_resumes").await
    else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let (mut alice, _) = joined(&a, "lobby", "alice").await;
    let (mut ann, _) = joined(&a, "lobby", "ann").await;
    let (mut bob, _) = joined(&b, "lobby", "bob").await;
    let (mut bea, _) = joined(&b, "lobby", "bea").await;
    assert_eq!(a.metric("wssd_broker_up").await, 1.0);

    redis.kill();
    wait_degraded(&a, true).await;
    wait_degraded(&b, true).await;
    let body = readyz(&a).await;
    assert!(body.contains("redis unreachable"), "{body}");
    assert_eq!(a.metric("wssd_broker_up").await, 0.0);

    // Each instance keeps delivering to its own clients.
    say(&mut alice, "local on A").await;
    let m = next_chat(&mut ann).await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("alice"), Some("local on A"))
    );
    say(&mut bob, "local on B").await;
    let m = next_chat(&mut bea).await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("bob"), Some("local on B"))
    );
    // Joins still work, from the instance's own view.
    let (mut carl, reply) = joined(&a, "lobby", "carl").await;
    assert!(members(&reply).contains(&"alice"));
    // And leaves.
    send(&mut ann, json!({"type": "leave"})).await;
    until(&mut ann, Duration::from_secs(10), "left", |v| {
        v["type"] == "left"
    })
    .await;
    // Someone who came and went during the outage is never announced.
    let (mut dan, _) = joined(&a, "lobby", "dan").await;
    send(&mut dan, json!({"type": "leave"})).await;
    until(&mut dan, Duration::from_secs(10), "left", |v| {
        v["type"] == "left"
    })
    .await;
    // And on B: bo joins.
    let (_bo, _) = joined(&b, "lobby", "bo").await;

    redis.restart().await;
    wait_degraded(&a, false).await;
    wait_degraded(&b, false).await;
    assert_eq!(b.metric("wssd_broker_up").await, 1.0);
    // One warning for the outage (not one per message or retry), one line
    // for the reconnect.
    for server in [&a, &b] {
        server.wait_for_log("reconnected to redis").await;
        let log = server.stderr();
        assert_eq!(log.matches("lost redis").count(), 1, "{log}");
    }

    // Cross-instance delivery resumes; what was said during the outage on
    // the other instance is not replayed (at most once).
    say(&mut alice, "after, from A").await;
    let m = next_chat(&mut bob).await;
    assert_eq!(m["text"], "local on B", "bob's own message first");
    let m = next_chat(&mut bob).await;
    assert_eq!(m["text"], "after, from A", "{m}");
    say(&mut bea, "after, from B").await;
    let m = next_chat(&mut alice).await;
    assert_eq!(m["text"], "local on A", "alice's own message first");
    let m = next_chat(&mut alice).await;
    assert_eq!(m["text"], "after, from A");
    let m = next_chat(&mut alice).await;
    assert_eq!(m["text"], "after, from B", "{m}");

    // Members were registered again in the fresh Redis: names stay unique
    // across instances, including the one that joined during the outage.
    for (server, name) in [(&b, "alice"), (&b, "carl"), (&a, "bob")] {
        let (_ws, reply) = join(server, "lobby", name).await;
        assert_eq!(reply["code"], "name_taken", "{name}: {reply}");
    }

    // What B's members (bea reads only presence here) missed is announced
    // after the reconnect: carl came and ann went while A could not tell
    // them (A announces its own changes to everyone; B also reconciles its
    // clients' view, so each may come twice). Nothing else may appear: not
    // dan, who came and went, nor anyone who never changed.
    // (bo's join on B reached bea locally during the outage.)
    presences(
        &mut bea,
        &[("join", "carl"), ("leave", "ann")],
        &[("join", "bo")],
        Duration::from_secs(20),
    )
    .await;
    // And A's clients learn that bo joined B during the outage (B's
    // reconnect is no help to them: A reconciles what its clients missed).
    presence(&mut carl, "join", "bo", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn scaleout_killed_instance_members_leave_presence() {
    let Some(redis) = Redis::start("scaleout_killed_instance_members_leave_presence").await else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let (mut alice, _) = joined(&a, "lobby", "alice").await;
    let (_bob, _) = joined(&b, "lobby", "bob").await;
    presence(&mut alice, "join", "bob", Duration::from_secs(10)).await;

    b.signal(libc::SIGKILL);
    let killed = Instant::now();
    // Presence expires 15 s after B's last refresh; A sweeps every 3 s.
    presence(&mut alice, "leave", "bob", Duration::from_secs(30)).await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(25), "leave after {took:?}");

    let (_bob_again, reply) = joined(&a, "lobby", "bob").await;
    assert_eq!(members(&reply), ["alice", "bob"]);
    drop(b);
}

/// The close frame that ends `ws` (bounded), skipping other messages.
async fn close_code(ws: &mut Ws) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => return frame.code.into(),
            Ok(Some(Ok(Message::Close(None)))) => panic!("closed without a code"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Joins `lobby` on `instance` as `mod` and signs in as moderator.
async fn moderator_in_lobby(instance: &Wssd) -> Ws {
    let (mut moderator, _) = joined(instance, "lobby", "mod").await;
    send(
        &mut moderator,
        json!({"type": "auth", "password": MOD_PASSWORD}),
    )
    .await;
    assert_eq!(next_json(&mut moderator).await["type"], "authenticated");
    moderator
}

#[tokio::test]
async fn scaleout_moderation_reaches_the_other_instance() {
    let Some(redis) = Redis::start("scaleout_moderation_reaches_the_other_instance").await else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut moderator = moderator_in_lobby(&a).await;
    let (mut bob, _) = joined(&b, "lobby", "bob").await;
    let (mut eve, _) = joined(&b, "lobby", "eve").await;
    let (mut mia, _) = joined(&b, "lobby", "mia").await;

    // A target on the other instance is found (members come from Redis).
    send(
        &mut moderator,
        json!({"type": "mute", "username": "mia", "secs": 60}),
    )
    .await;
    until(&mut mia, Duration::from_secs(10), "moderation mute", |v| {
        v["type"] == "moderation" && v["action"] == "mute" && v["by"] == "mod"
    })
    .await;
    // The mute order is applied on B: mia's next message is refused there.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        say(&mut mia, "still here?").await;
        let v = until(&mut mia, Duration::from_secs(10), "a reply", |v| {
            v["type"] == "error" || (v["type"] == "message" && v["from"] == "mia")
        })
        .await;
        if v["code"] == "muted" {
            break;
        }
        assert!(Instant::now() < deadline, "mia was never muted: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    send(&mut moderator, json!({"type": "kick", "username": "bob"})).await;
    assert_eq!(close_code(&mut bob).await, 4001, "kicked across instances");
    presence(&mut moderator, "leave", "bob", Duration::from_secs(10)).await;

    send(&mut moderator, json!({"type": "ban", "username": "eve"})).await;
    assert_eq!(close_code(&mut eve).await, 4003, "banned across instances");
    presence(&mut moderator, "leave", "eve", Duration::from_secs(10)).await;
    let (_again, reply) = join(&b, "lobby", "eve").await;
    assert_eq!(reply["code"], "banned", "the ban is shared: {reply}");
    let (_bob_again, reply) = joined(&b, "lobby", "bob").await;
    assert!(members(&reply).contains(&"mod"));
}

#[tokio::test]
async fn scaleout_over_tls_redis_with_a_private_ca() {
    let Some(redis) = Redis::start_tls("scaleout_over_tls_redis_with_a_private_ca").await else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let (mut alice, _) = joined(&a, "lobby", "alice").await;
    let (mut bob, reply) = joined(&b, "lobby", "bob").await;
    assert_eq!(members(&reply), ["alice", "bob"]);
    presence(&mut alice, "join", "bob", Duration::from_secs(10)).await;
    say(&mut bob, "over rediss://").await;
    let m = next_chat(&mut alice).await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("bob"), Some("over rediss://"))
    );

    // An instance that does not trust the CA serves its own clients but
    // says why it is not sharing; it never talks to Redis in plain text.
    // (Degraded from the start, "connecting"; then with the TLS error.)
    let c = unready_instance(&redis, false).await;
    eventually(
        Duration::from_secs(30),
        "/readyz naming the certificate problem",
        || async {
            let r = c.admin_get("/readyz").await;
            let why = r.body_text();
            r.status == 200 && why.contains("certificate") && why.contains("--broker-ca")
        },
    )
    .await;
    let why = readyz(&c).await;
    assert!(why.contains("degraded"), "{why}");
    let (_carol, reply) = joined(&c, "lobby", "carol").await;
    assert_eq!(members(&reply), ["carol"], "c's own view only");
}

#[tokio::test]
async fn scaleout_an_instance_cut_off_alone_catches_up_on_presence() {
    let Some(redis) =
        Redis::start("scaleout_an_instance_cut_off_alone_catches_up_on_presence").await
    else {
        return;
    };
    // A reaches Redis through a relay the test can cut; B directly.
    let relay = Relay::start(redis.port).await;
    let a = instance_at(&relay.url(), &redis, true).await;
    wait_degraded(&a, false).await;
    let b = instance(&redis).await;
    let (mut bob, _) = joined(&b, "lobby", "bob").await;
    let (mut alice, reply) = joined(&a, "lobby", "alice").await;
    assert_eq!(members(&reply), ["alice", "bob"]);
    presence(&mut bob, "join", "alice", Duration::from_secs(10)).await;

    relay.cut();
    wait_degraded(&a, true).await;
    assert!(!readyz(&b).await.contains("degraded"), "only A lost Redis");
    // B, still connected, announces these as usual; A cannot hear them.
    let (_bea, _) = joined(&b, "lobby", "bea").await;
    send(&mut bob, json!({"type": "leave"})).await;
    until(&mut bob, Duration::from_secs(10), "left", |v| {
        v["type"] == "left"
    })
    .await;

    relay.restore();
    wait_degraded(&a, false).await;
    // Once A has settled, its own clients are told what they missed. (bob's
    // own join may still reach alice late, through Redis, before the cut.)
    presences(
        &mut alice,
        &[("join", "bea"), ("leave", "bob")],
        &[("join", "bob")],
        Duration::from_secs(25),
    )
    .await;
}

#[tokio::test]
async fn scaleout_names_are_unique_case_insensitively_across_instances() {
    let Some(redis) =
        Redis::start("scaleout_names_are_unique_case_insensitively_across_instances").await
    else {
        return;
    };
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let mut moderator = moderator_in_lobby(&a).await;
    let (_alice, _) = joined(&a, "lobby", "alice").await;
    // The same name in another case or width, through the other instance
    // (the name key is claimed in Redis, not just the name as given).
    for same in ["Alice", "ALICE", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"] {
        let (_ws, reply) = join(&b, "lobby", same).await;
        assert_eq!(reply["code"], "name_taken", "{same} through B: {reply}");
    }
    // A ban holds for every case of the name, on every instance.
    send(&mut moderator, json!({"type": "ban", "username": "EVE"})).await;
    until(
        &mut moderator,
        Duration::from_secs(10),
        "moderation ban",
        |v| v["type"] == "moderation" && v["action"] == "ban",
    )
    .await;
    let (_eve, reply) = join(&b, "lobby", "eve").await;
    assert_eq!(
        reply["code"], "banned",
        "ban by key across instances: {reply}"
    );
    // A name freed is free in any case.
    let (mut carol, _) = joined(&b, "lobby", "carol").await;
    carol.close(None).await.ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_ws, reply) = join(&a, "lobby", "CAROL").await;
        if reply["type"] == "joined" {
            break;
        }
        assert_eq!(reply["code"], "name_taken", "{reply}");
        assert!(Instant::now() < deadline, "CAROL never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
