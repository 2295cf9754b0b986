//! The admin status page's JSON (`GET /status`) under real load: per-route
//! and per-listener counts, counters and rates that move, a close code in
//! the recent closes, certificates' days left, upstream health, a degraded
//! broker with no secret shown; and the schema in docs/status.md names
//! exactly the keys the JSON has.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::{Wssd, free_port, http_get};

const SOCKETS: usize = 8;
const MESSAGES: usize = 25;

async fn status(server: &Wssd) -> Value {
    let r = server.admin_get("/status").await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_str(&r.body_text()).expect("/status is JSON")
}

/// Polls `/status` until `ok` holds (10 s at most); returns that snapshot.
async fn status_until(server: &Wssd, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(server).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held; last /status:\n{s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn route<'a>(s: &'a Value, path: &str) -> &'a Value {
    s["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["path"] == path))
        .unwrap_or_else(|| panic!("no route {path} in {s:#}"))
}

/// A TLS server with an echo route and a proxy route to a closed port, an
/// upgrade tried on the proxy route (502) so `upstreams` has an entry.
async fn server() -> Wssd {
    let dead = free_port();
    let server = Wssd::builder()
        .args(["--route", "/ws/echo=echo"])
        .args(["--route", &format!("/up=proxy:ws://127.0.0.1:{dead}")])
        .spawn()
        .await;
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let r = http_get(server.tls_connect().await, "localhost", "/up", &upgrade).await;
    assert_eq!(r.status, 502, "{}", r.body_text());
    server
}

#[tokio::test]
async fn status_counts_sockets_traffic_closes_certificates_and_upstreams() {
    let server = server().await;
    let before = status(&server).await;
    assert_eq!(before["version"], 1);
    assert_eq!(
        route(&before, "/ws/echo")["connections_open"],
        0,
        "listed before use"
    );

    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(server.wss("/ws/echo").await);
    }
    let s = status_until(&server, "the route's open count says SOCKETS", |s| {
        route(s, "/ws/echo")["connections_open"] == SOCKETS
    })
    .await;
    assert_eq!(s["totals"]["connections_open"], SOCKETS);
    let listener = format!("127.0.0.1:{}", server.tls_addr().port());
    let l = s["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"] == listener.as_str())
        .unwrap_or_else(|| panic!("no listener {listener} in {s:#}"));
    assert_eq!(l["connections_open"], SOCKETS);
    assert_eq!(l["tls"], true);

    // Traffic moves the counters and, a sample later, the rates.
    for ws in &mut sockets {
        for i in 0..MESSAGES {
            ws.send(Message::text(format!("message {i:04}")))
                .await
                .unwrap();
        }
    }
    for ws in &mut sockets {
        let mut echoed = 0;
        while echoed < MESSAGES {
            if let Message::Text(_) = ws.next().await.unwrap().unwrap() {
                echoed += 1;
            }
        }
    }
    let n = SOCKETS * MESSAGES;
    let s = status_until(&server, "the counters count every message", |s| {
        s["totals"]["messages_in"] == n && s["totals"]["messages_out"] == n
    })
    .await;
    let r = route(&s, "/ws/echo");
    assert_eq!(r["bytes_in"], n * "message 0000".len());
    assert_eq!(r["bytes_out"], n * "message 0000".len());
    status_until(&server, "a rate above zero", |s| {
        s["history"]["messages_in_per_second"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_f64().unwrap() > 0.0)
    })
    .await;

    // A close with 4000 shows in the recent closes and the per-code counts.
    let mut ws = sockets.pop().unwrap();
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    while ws.next().await.is_some() {}
    let s =
        status_until(&server, "the 4000 close is listed", |s| {
            s["closes"]["recent"].as_array().unwrap().iter().any(|c| {
                c["code"] == 4000 && c["route"] == "/ws/echo" && c["closed_by"] == "client"
            })
        })
        .await;
    assert!(
        s["closes"]["by_code"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == 4000 && c["count"] == 1),
        "{s:#}"
    );
    assert_eq!(route(&s, "/ws/echo")["connections_open"], SOCKETS - 1);

    // Certificates (TLS on: the self-signed one) with their days left.
    let cert = &s["certificates"][0];
    assert_eq!(cert["source"], "self-signed");
    let days = cert["days_left"].as_f64().expect("days_left is a number");
    assert!(days > 1.0, "{cert:#}");
    assert!(
        cert["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "localhost"),
        "{cert:#}"
    );

    // The proxy route's upstream refused: failed, counted.
    let up = &s["upstreams"][0];
    assert_eq!(up["route"], "/up");
    assert_eq!(up["last_connect"], "failed");
    assert!(up["failures"].as_u64().unwrap() >= 1, "{up:#}");
    assert_eq!(s["broker"]["backend"], "memory");
    assert_eq!(s["broker"]["state"], "healthy");
    assert_eq!(s["server"]["ready"], true);
}

/// The JSON's keys as dotted paths, `[]` for array elements (arrays of
/// scalars are one key).
fn keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                keys(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                keys(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// The fields of docs/status.md's schema table (first column, backticked).
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.md"))
        .expect("docs/status.md");
    let table = doc.split("## Schema").nth(1).expect("a Schema section");
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_documented_schema_names_exactly_the_json_keys() {
    let server = server().await;
    // Fill every array so its elements' keys are seen: a socket, a close.
    let mut ws = server.wss("/ws/echo").await;
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    let s = status_until(&server, "every array has an element", |s| {
        ["routes", "listeners", "certificates", "upstreams"]
            .iter()
            .all(|k| !s[k].as_array().unwrap().is_empty())
            && !s["closes"]["recent"].as_array().unwrap().is_empty()
            && !s["closes"]["by_code"].as_array().unwrap().is_empty()
    })
    .await;
    let mut found = BTreeSet::new();
    keys(&s, "", &mut found);
    let documented = documented();
    let undocumented: Vec<_> = found.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&found).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "docs/status.md and /status disagree: in the JSON but not documented {undocumented:?}; documented but not in the JSON {missing:?}"
    );
    assert!(documented.contains("version") && documented.len() > 50);
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_its_assets() {
    let server = Wssd::builder().plain_only().spawn().await;
    let r = server.admin_get("/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    let page = r.body_text();
    for asset in ["/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
        assert!(page.contains(asset), "{asset}");
        assert_eq!(server.admin_get(asset).await.status, 200, "{asset}");
    }
    // With TLS off, no certificate is listed.
    assert_eq!(status(&server).await["certificates"], serde_json::json!([]));
}

#[tokio::test]
async fn a_degraded_broker_shows_and_no_secret_does() {
    // Redis on a closed port, with a password in its URL; a publish token.
    const PASSWORD: &str = "redis-password-never-shown";
    const TOKEN: &str = "publish-token-never-shown-0123456789";
    let server = Wssd::builder()
        .plain_only()
        .args(["--route", "/ws/chat=chat"])
        .args([
            "--broker",
            &format!("redis://:{PASSWORD}@127.0.0.1:{}", free_port()),
        ])
        .args(["--publish-token", TOKEN])
        .spawn()
        .await;
    let s = status_until(&server, "the broker is degraded", |s| {
        s["broker"]["state"] == "degraded"
    })
    .await;
    assert_eq!(s["broker"]["backend"], "redis");
    let why = s["broker"]["reason"].as_str().unwrap();
    assert!(why.starts_with("redis unreachable"), "{why}");
    for path in ["/status", "/", "/dashboard/dashboard.js"] {
        let body = server.admin_get(path).await.body_text();
        assert!(
            !body.contains(PASSWORD) && !body.contains(TOKEN),
            "{path} shows a secret"
        );
    }
}
