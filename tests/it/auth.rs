//! Route auth at the handshake, against the real binary: static tokens in
//! the header, the query and a cookie on an echo route (the WebSocket
//! opens only with a valid token, a 401 with `WWW-Authenticate` comes
//! before any upgrade otherwise); JWTs (HS256 and ES256) and every claim
//! refusal; basic auth with bcrypt and argon2id entries through curl; a
//! proxy whose upstream never sees a refused request nor the credential;
//! the guessing backoff; bad configurations refused at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{HttpResponse, Wssd, parse_response, run_bounded};

const ALICE: &str = "alice-0123456789abcdef0123";
const BARE: &str = "bare-token-fedcba9876543210";
const JWT_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";

/// A folder holding `files` (name, content); returns it and the path of
/// `wssd.toml` written from `toml` (where `{dir}` is the folder).
fn setup(files: &[(&str, &str)], toml: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write fixture");
    }
    let file = dir.path().join("wssd.toml");
    let toml = toml.replace("{dir}", &dir.path().to_string_lossy());
    std::fs::write(&file, toml).expect("write config");
    (dir, file)
}

async fn start(config: &Path, extra: &[(&str, &str)]) -> Wssd {
    let mut b = Wssd::builder().plain_only().args([
        "--config",
        config.to_str().unwrap(),
        "--log-level",
        "debug",
    ]);
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.spawn().await
}

/// One request on a fresh connection; `upgrade` makes it a WebSocket
/// handshake. A 101 is read up to its head, anything else with its body.
async fn request(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
    upgrade: bool,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if upgrade {
        req.push_str(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
    } else {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_response(&raw[..end + 4]);
                if head.status == 101 {
                    break;
                }
                let len: usize = head
                    .header("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("response within 10 s");
    parse_response(&raw)
}

async fn failures(server: &Wssd, route: &str, reason: &str) -> f64 {
    server
        .metric(&format!(
            "wssd_auth_failures_total{{route=\"{route}\",reason=\"{reason}\"}}"
        ))
        .await
}

/// A WebSocket on `path` with extra request headers; echoes one message.
async fn echo_once(server: &Wssd, path: &str, headers: &[(&str, &str)]) {
    let url = format!("ws://127.0.0.1:{}{path}", server.http_addr().port());
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("authenticated handshake");
    ws.send(Message::text("hi")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text("hi"));
}

const TOKEN_ROUTES: &str = r#"
[[route]]
path = "/ws/echo"
kind = "echo"
auth = { kind = "token", tokens_file = "{dir}/tokens.txt", cookie = "wssd_token" }

[[route]]
path = "/ws/open"
kind = "echo"
"#;

fn tokens_file() -> String {
    format!("# who may connect\nalice:{ALICE}\n{BARE}\n")
}

#[tokio::test]
async fn token_in_header_query_or_cookie_opens_the_socket_and_nothing_else_does() {
    let (_dir, config) = setup(&[("tokens.txt", &tokens_file())], TOKEN_ROUTES);
    let server = start(&config, &[]).await;
    let addr = server.http_addr();

    // No credential: 401 with the Bearer challenge, never a 101.
    let r = request(addr, "/ws/echo", &[], true).await;
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"wssd\""));
    assert!(
        r.body_text().contains("credentials required"),
        "{}",
        r.body_text()
    );
    assert!(
        r.body_text().contains("wssd_token"),
        "the hint names the cookie"
    );

    // A wrong token: 401 invalid_token; the body does not echo it.
    let wrong = "Bearer alice-0123456789abcdef0124";
    let r = request(addr, "/ws/echo", &[("Authorization", wrong)], true).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"wssd\", error=\"invalid_token\"")
    );
    assert!(!r.body_text().contains("alice-0123"), "{}", r.body_text());
    let r = request(addr, "/ws/echo?access_token=nope-nope-nope-nope", &[], true).await;
    assert_eq!(r.status, 401);
    let r = request(
        addr,
        "/ws/echo",
        &[("Cookie", "wssd_token=nope-nope-nope")],
        true,
    )
    .await;
    assert_eq!(r.status, 401);

    // The right token in each of the three places opens the socket.
    echo_once(
        &server,
        "/ws/echo",
        &[("authorization", &format!("Bearer {ALICE}"))],
    )
    .await;
    echo_once(&server, &format!("/ws/echo?x=1&access_token={ALICE}"), &[]).await;
    echo_once(
        &server,
        "/ws/echo",
        &[("cookie", &format!("a=b; wssd_token={BARE}"))],
    )
    .await;
    // A route without auth stays open.
    echo_once(&server, "/ws/open", &[]).await;

    assert_eq!(failures(&server, "/ws/echo", "missing").await, 1.0);
    assert_eq!(failures(&server, "/ws/echo", "unknown_token").await, 3.0);
    assert_eq!(
        server
            .metric("wssd_auth_success_total{route=\"/ws/echo\",source=\"token\"}")
            .await,
        3.0
    );
    assert!(
        server
            .metric("wssd_handshake_failures_total{reason=\"auth\"}")
            .await
            >= 4.0
    );
    // The identity is on the log: the token's name, or token-LINE.
    server.wait_for_log("identity=alice").await;
    server.wait_for_log("identity=token-3").await;
    assert!(!server.stderr().contains(ALICE), "a token reached the log");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn jwt_hs256_and_es256_with_claim_checks() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public_pem = key.public_key_pem();
    let es_key = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let (_dir, config) = setup(
        &[("jwt.pem", &public_pem)],
        r#"
[[route]]
path = "/hs"
kind = "echo"
auth = { kind = "jwt", secret_env = "TEST_JWT_SECRET", audience = "wssd-test", issuer = "issuer-test", leeway_secs = 5 }

[[route]]
path = "/es"
kind = "echo"
auth = { kind = "jwt", public_key = "{dir}/jwt.pem", identity_claim = "email" }
"#,
    );
    let server = start(&config, &[("TEST_JWT_SECRET", JWT_SECRET)]).await;
    let addr = server.http_addr();
    let t = now();
    let claims = |extra: serde_json::Value| {
        let mut c =
            json!({"sub": "alice", "aud": "wssd-test", "iss": "issuer-test", "exp": t + 300});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let status = |token: String, path: &'static str| async move {
        request(
            addr,
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            true,
        )
        .await
        .status
    };
    let secret = JWT_SECRET.as_bytes();
    assert_eq!(status(hs256(&claims(json!({})), secret), "/hs").await, 101);
    let cases = [
        (json!({"exp": t - 3600}), "expired"),
        (json!({"nbf": t + 3600}), "not_yet_valid"),
        (json!({"aud": "someone-else"}), "wrong_audience"),
        (json!({"iss": "issuer-other"}), "wrong_issuer"),
        (json!({"aud": null}), "missing_claim"),
        (json!({"exp": null}), "missing_claim"),
    ];
    for (extra, reason) in &cases {
        let before = failures(&server, "/hs", reason).await;
        let r = request(
            addr,
            "/hs",
            &[(
                "Authorization",
                &format!("Bearer {}", hs256(&claims(extra.clone()), secret)),
            )],
            true,
        )
        .await;
        assert_eq!(r.status, 401, "{extra}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"wssd\", error=\"invalid_token\"")
        );
        assert_eq!(
            failures(&server, "/hs", reason).await,
            before + 1.0,
            "{extra}"
        );
    }
    // Within the leeway an expired token still passes.
    assert_eq!(
        status(hs256(&claims(json!({"exp": t - 2})), secret), "/hs").await,
        101
    );
    // Another secret.
    let forged = hs256(
        &claims(json!({})),
        b"another-secret-of-at-least-32-bytes-long",
    );
    assert_eq!(status(forged, "/hs").await, 401);
    assert_eq!(failures(&server, "/hs", "bad_signature").await, 1.0);
    // alg "none" is not a token here.
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims(json!({})).to_string().as_bytes())
    );
    assert_eq!(status(none, "/hs").await, 401);

    // ES256 from the PEM key; identity from `email`.
    let es = |c: serde_json::Value| encode(&Header::new(Algorithm::ES256), &c, &es_key).unwrap();
    let good = json!({"email": "carol@example.test", "exp": t + 300});
    let r = request(
        addr,
        "/es",
        &[("Authorization", &format!("Bearer {}", es(good)))],
        true,
    )
    .await;
    assert_eq!(r.status, 101);
    server.wait_for_log("identity=carol@example.test").await;
    assert_eq!(
        status(es(json!({"sub": "x", "exp": t + 300})), "/es").await,
        401
    );
    assert_eq!(failures(&server, "/es", "missing_claim").await, 1.0);
    // Algorithm confusion: HS256 keyed with the public key is refused by
    // algorithm before any verification.
    let confused = hs256(
        &json!({"email": "eve", "exp": t + 300}),
        public_pem.as_bytes(),
    );
    assert_eq!(status(confused, "/es").await, 401);
    assert_eq!(failures(&server, "/es", "wrong_algorithm").await, 1.0);
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn argon2id(password: &str) -> String {
    use argon2::PasswordHasher;
    let params = argon2::Params::new(4096, 2, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"somesaltsomesalt")
        .unwrap()
        .to_string()
}

/// `curl -i -u USER:PASSWORD URL`: the status and the whole output.
fn curl(url: &str, user: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10", url]);
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (parse_response(text.as_bytes()).status, text)
}

#[tokio::test]
async fn basic_auth_with_bcrypt_and_argon2id_entries() {
    let htpasswd = format!(
        "bob:{}\ncarol:{}\n",
        bcrypt::hash("bob-password", 5).unwrap(),
        argon2id("carol-password")
    );
    let (dir, config) = setup(
        &[("users.htpasswd", &htpasswd)],
        r#"
[[route]]
path = "/"
kind = "static"
dir = "{dir}/site"
auth = { kind = "basic", htpasswd = "{dir}/users.htpasswd", realm = "staff only" }
"#,
    );
    std::fs::create_dir(dir.path().join("site")).unwrap();
    std::fs::write(dir.path().join("site/index.html"), "members area\n").unwrap();
    let server = start(&config, &[]).await;
    let url = format!("http://127.0.0.1:{}/", server.http_addr().port());

    let (status, out) = curl(&url, None);
    assert_eq!(status, 401, "{out}");
    assert_eq!(
        parse_response(out.as_bytes()).header("www-authenticate"),
        Some("Basic realm=\"staff only\", charset=\"UTF-8\""),
        "{out}"
    );
    assert!(!out.contains("members area"));
    let (status, out) = curl(&url, Some("bob:bob-password"));
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("members area"));
    let (status, out) = curl(&url, Some("carol:carol-password"));
    assert_eq!(status, 200, "{out}");
    let (status, _) = curl(&url, Some("bob:carol-password"));
    assert_eq!(status, 401);
    let (status, out) = curl(&url, Some("mallory:bob-password"));
    assert_eq!(status, 401);
    assert!(out.contains("wrong user name or password"), "{out}");
    assert_eq!(failures(&server, "/", "missing").await, 1.0);
    assert_eq!(failures(&server, "/", "bad_password").await, 1.0);
    assert_eq!(failures(&server, "/", "unknown_user").await, 1.0);
    server.wait_for_log("identity=carol").await;
    assert!(!server.stderr().contains("carol-password"));
}

/// A plain HTTP upstream that records every request head it gets.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&raw).into_owned());
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn proxy_upstream_never_sees_refused_requests_nor_the_credential() {
    let (up, seen) = recording_upstream().await;
    let (_dir, config) = setup(
        &[("tokens.txt", &tokens_file())],
        &format!(
            r#"
[[route]]
path = "/api"
kind = "proxy"
upstream = "http://{up}"
auth = {{ kind = "token", tokens_file = "{{dir}}/tokens.txt" }}
"#
        ),
    );
    let server = start(&config, &[]).await;
    let addr = server.http_addr();

    assert_eq!(request(addr, "/api/x", &[], false).await.status, 401);
    let wrong = [("Authorization", "Bearer wrong-wrong-wrong-wrong")];
    assert_eq!(request(addr, "/api/x", &wrong, false).await.status, 401);
    assert_eq!(request(addr, "/api/ws", &[], true).await.status, 401);
    assert_eq!(
        request(
            addr,
            "/api/x?access_token=wrong-wrong-wrong-wrong",
            &[],
            false
        )
        .await
        .status,
        401
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused request was forwarded"
    );

    let r = request(
        addr,
        &format!("/api/q?a=1&access_token={ALICE}&b=2"),
        &[],
        false,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let bearer = format!("Bearer {ALICE}");
    let r = request(addr, "/api/h", &[("Authorization", &bearer)], false).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].contains("a=1&b=2"), "{}", heads[0]);
    for head in &heads {
        assert!(
            !head.contains(ALICE),
            "the credential was forwarded:\n{head}"
        );
        assert!(!head.contains("access_token"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn guessing_is_slowed_and_a_valid_client_gets_in_after_the_backoff_drains() {
    let (_dir, config) = setup(&[("tokens.txt", &tokens_file())], TOKEN_ROUTES);
    let server = start(&config, &[]).await;
    let addr = server.http_addr();
    let started = Instant::now();
    let (mut checked, mut throttled, mut retry_after) = (0u32, 0u32, 0u64);
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        i += 1;
        let guess = format!("Bearer guess-{i:020}");
        let r = request(addr, "/ws/echo", &[("Authorization", &guess)], true).await;
        match r.status {
            401 => checked += 1,
            429 => {
                throttled += 1;
                retry_after = r.header("retry-after").unwrap().parse().unwrap();
            }
            other => panic!("unexpected {other}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // 10 at once, then one per 2 s (with a little slack for timing).
    assert!(
        f64::from(checked) <= 10.0 + secs * 0.5 + 1.0,
        "{checked} guesses checked in {secs:.1} s"
    );
    assert!(throttled > 0, "no guess was throttled");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        failures(&server, "/ws/echo", "throttled").await,
        f64::from(throttled)
    );
    // While over, even the right token is not looked at. (A slot opens
    // every 2 s: should one open between the last guess and this request,
    // the token is checked and clears the address; fill it again.)
    let good = format!("Bearer {ALICE}");
    let mut status = 0;
    for round in 0..3 {
        for _ in 0..20 {
            let guess = format!("Bearer refill-{round}-{i:020}");
            if request(addr, "/ws/echo", &[("Authorization", &guess)], true)
                .await
                .status
                == 429
            {
                break;
            }
        }
        status = request(addr, "/ws/echo", &[("Authorization", &good)], true)
            .await
            .status;
        if status == 429 {
            break;
        }
    }
    assert_eq!(status, 429);
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = request(addr, "/ws/echo", &[("Authorization", &good)], true).await;
    assert_eq!(r.status, 101, "{}", r.body_text());
    // The success cleared this address: wrong guesses are checked again.
    let r = request(
        addr,
        "/ws/echo",
        &[("Authorization", "Bearer guess-again-000000000")],
        true,
    )
    .await;
    assert_eq!(r.status, 401);
}

/// Runs wssd on `toml` expecting it to refuse to start; returns stderr.
fn refused_config(files: &[(&str, &str)], toml: &str) -> String {
    let (_dir, config) = setup(files, toml);
    let (out, _state) = Wssd::builder()
        .plain_only()
        .args(["--config", config.to_str().unwrap()])
        .run_to_exit();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    stderr
}

#[test]
fn bad_auth_configurations_are_refused_at_start() {
    let e = refused_config(
        &[],
        "[[route]]\npath = \"/ws\"\nkind = \"echo\"\nauth = { kind = \"token\", tokens_file = \"/nonexistent/tokens.txt\" }\n",
    );
    assert!(e.contains("/nonexistent/tokens.txt"), "{e}");
    assert!(e.contains("[[route]] /ws"), "{e}");
    assert!(e.contains("wssd.toml:1"), "{e}");

    let weak = format!(
        "bob:{}\nmallory:$apr1$x9F3bR1.$VUz7wP0yQvHmzYl5q9y2H/\n",
        bcrypt::hash("bob", 4).unwrap()
    );
    let e = refused_config(
        &[("users.htpasswd", &weak)],
        "[[route]]\npath = \"/\"\nkind = \"static\"\nauth = { kind = \"basic\", htpasswd = \"{dir}/users.htpasswd\" }\n",
    );
    assert!(e.contains("users.htpasswd"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("htpasswd -B"), "{e}");

    let e = refused_config(
        &[],
        "[[route]]\npath = \"/ws\"\nkind = \"echo\"\nauth = { kind = \"jwt\", secret_env = \"WSSD_TEST_UNSET_SECRET\" }\n",
    );
    assert!(e.contains("WSSD_TEST_UNSET_SECRET"), "{e}");
    assert!(e.contains("open to anyone"), "{e}");

    let e = refused_config(
        &[("tokens.txt", "short\n")],
        "[[route]]\npath = \"/ws\"\nkind = \"echo\"\nauth = { kind = \"token\", tokens_file = \"{dir}/tokens.txt\" }\n",
    );
    assert!(e.contains("line 1"), "{e}");
    assert!(e.contains("openssl rand"), "{e}");
}
