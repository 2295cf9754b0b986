//! Startup: every certificate and binding error gets its own one-line
//! message and exit status 1 before any socket is bound; configuration
//! precedence (flag > env > .env > file > default); `check` and `cert`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{BIN, Wssd, free_port, run_bounded};

fn generate(dir: &Path, name: &str, hostnames: &[&str]) -> (String, String) {
    let cert = dir.join(format!("{name}.crt")).display().to_string();
    let key = dir.join(format!("{name}.key")).display().to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["cert", "generate", "--out-cert", &cert, "--out-key", &key]);
    for h in hostnames {
        cmd.args(["--hostname", h]);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Starts `wssd --tls files` with these files and expects exit 1.
fn fails_with(cert: &str, key: &str) -> String {
    let (out, _state) = Wssd::builder()
        .args(["--tls", "files", "--cert", cert, "--key", key])
        .run_to_exit();
    expect_failure(&out)
}

fn expect_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        !stderr.contains("listening on"),
        "bound a socket before failing:\n{stderr}"
    );
    stderr
}

fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

#[test]
fn certificate_file_problems_each_have_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate(dir.path(), "good", &["localhost"]);
    let (_cert2, key2) = generate(dir.path(), "other", &["localhost"]);

    let missing = dir.path().join("missing.pem").display().to_string();
    let e = fails_with(&missing, &key);
    assert!(error_line(&e).contains("missing.pem"), "{e}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello, not a certificate\n").unwrap();
    let e = fails_with(junk.to_str().unwrap(), &key);
    let line = error_line(&e);
    assert!(
        line.contains("junk.pem") && line.to_lowercase().contains("pem"),
        "{e}"
    );

    let e = fails_with(&key, &cert);
    assert!(error_line(&e).to_lowercase().contains("swap"), "{e}");

    let enc = dir.path().join("enc.key");
    std::fs::write(
        &enc,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = fails_with(&cert, enc.to_str().unwrap());
    assert!(error_line(&e).to_lowercase().contains("encrypted"), "{e}");

    let e = fails_with(&cert, &key2);
    assert!(error_line(&e).to_lowercase().contains("match"), "{e}");

    // Expired and not yet valid certificates, made with rcgen directly.
    for (name, from, to, word) in [
        ("expired", -30i64, -1i64, "expired"),
        ("future", 10, 40, "not yet valid"),
    ] {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let c = params.self_signed(&key_pair).unwrap();
        let cp = dir.path().join(format!("{name}.crt"));
        let kp = dir.path().join(format!("{name}.key"));
        std::fs::write(&cp, c.pem()).unwrap();
        std::fs::write(&kp, key_pair.serialize_pem()).unwrap();
        let e = fails_with(cp.to_str().unwrap(), kp.to_str().unwrap());
        let line = error_line(&e).to_lowercase();
        assert!(
            line.contains(word) || (word == "not yet valid" && line.contains("not valid until")),
            "{e}"
        );
    }
}

/// Runs `wssd ARGS` as an unprivileged user (via setpriv when we are root).
fn run_unprivileged(args: &[&str]) -> Output {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(args);
    cmd.current_dir(std::env::temp_dir());
    run_bounded(&mut cmd, Duration::from_secs(30))
}

#[test]
fn unreadable_key_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cert, key) = generate(dir.path(), "p", &["localhost"]);
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let out = run_unprivileged(&[
        "--tls", "files", "--cert", &cert, "--key", &key, "--listen", &listen, "--admin", "off",
    ]);
    let e = expect_failure(&out);
    let line = error_line(&e).to_lowercase();
    assert!(
        line.contains("permission denied") && line.contains("p.key"),
        "{e}"
    );
}

#[test]
fn privileged_port_and_address_in_use_are_explained() {
    let state = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_unprivileged(&["--tls", "off", "--http", "127.0.0.1:443", "--admin", "off"]);
    let e = expect_failure(&out);
    assert!(error_line(&e).contains("setcap"), "{e}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (out, _s) = Wssd::builder()
        .plain_only()
        .args(["--http", &addr])
        .run_to_exit();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        error_line(&stderr).contains("address already in use"),
        "{stderr}"
    );
}

#[test]
fn unknown_config_key_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wssd.toml");
    std::fs::write(&file, "max_connections = 5\nlisten_addr = \"x\"\n").unwrap();
    let (out, _s) = Wssd::builder()
        .args(["--config", file.to_str().unwrap()])
        .run_to_exit();
    let e = expect_failure(&out);
    let line = error_line(&e);
    assert!(
        line.contains("wssd.toml:2") && line.contains("listen_addr"),
        "{e}"
    );
}

#[test]
fn check_prints_every_problem() {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "check",
        "--config",
        "/dev/null",
        "--listen",
        "bogus",
        "--route",
        "/x=nope",
        "--tls",
        "files",
        "--admin",
        "off",
    ]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    for needle in ["bogus", "nope", "--cert", "--key"] {
        assert!(stdout.contains(needle), "missing {needle} in:\n{stdout}");
    }
    assert!(
        stdout.lines().filter(|l| l.starts_with("error:")).count() >= 4,
        "{stdout}"
    );
}

#[test]
fn check_accepts_a_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate(dir.path(), "ok", &["localhost"]);
    let mut cmd = Command::new(BIN);
    let listen = format!("127.0.0.1:{}", free_port());
    cmd.args([
        "check",
        "--config",
        "/dev/null",
        "--cert",
        &cert,
        "--key",
        &key,
        "--listen",
        &listen,
        "--admin",
        "off",
    ]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("ok:"), "{stdout}");
}

#[test]
fn cert_generate_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate(dir.path(), "i", &["example.lan", "192.168.1.20"]);
    let mut cmd = Command::new(BIN);
    cmd.args(["cert", "inspect", &cert, "--key", &key]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for needle in ["example.lan", "192.168.1.20", "days"] {
        assert!(stdout.contains(needle), "missing {needle}:\n{stdout}");
    }
    let (_c2, other_key) = generate(dir.path(), "j", &["localhost"]);
    let mut cmd = Command::new(BIN);
    cmd.args(["cert", "inspect", &cert, "--key", &other_key]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "a mismatched key is a problem");
}

/// Sends a message of `size` bytes and reports whether it came back
/// (true) or the server closed with 1009 (false).
async fn accepts(server: &Wssd, size: usize) -> bool {
    let mut ws = server.ws("/ws/echo").await;
    ws.send(Message::binary(vec![1u8; size])).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => b.len() == size,
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1009);
            false
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn precedence_flag_env_dotenv_file_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wssd.toml"), "max_message_size = 100\n").unwrap();
    let start = |dotenv: Option<&str>, env: Option<&str>, flag: Option<&str>| {
        if let Some(v) = dotenv {
            std::fs::write(
                dir.path().join(".env"),
                format!("WSSD_MAX_MESSAGE_SIZE={v}\n"),
            )
            .unwrap();
        }
        let mut b = Wssd::builder().plain_only().cwd(dir.path());
        if let Some(v) = env {
            b = b.env("WSSD_MAX_MESSAGE_SIZE", v);
        }
        if let Some(v) = flag {
            b = b.args(["--max-message-size", v]);
        }
        b.spawn()
    };
    // ./wssd.toml alone: 100.
    let s = start(None, None, None).await;
    assert!(accepts(&s, 90).await && !accepts(&s, 150).await);
    drop(s);
    // .env beats the file: 200.
    let s = start(Some("200"), None, None).await;
    assert!(accepts(&s, 150).await && !accepts(&s, 250).await);
    drop(s);
    // The environment beats .env: 300.
    let s = start(Some("200"), Some("300"), None).await;
    assert!(accepts(&s, 250).await && !accepts(&s, 350).await);
    drop(s);
    // A flag beats everything: 400.
    let s = start(Some("200"), Some("300"), Some("400")).await;
    assert!(accepts(&s, 350).await && !accepts(&s, 450).await);
    drop(s);
    // Without any of them: the 4 MiB default.
    let empty = tempfile::tempdir().unwrap();
    let s = Wssd::builder().plain_only().cwd(empty.path()).spawn().await;
    assert!(accepts(&s, 4 * 1024 * 1024).await);
}

#[test]
fn check_reports_tls_extras() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate(dir.path(), "ok", &["localhost"]);
    let file = dir.path().join("wssd.toml");
    std::fs::write(
        &file,
        format!(
            "[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"/nonexistent/ca.pem\"\n\n[[tls.certificate]]\ncert = \"/nonexistent/sni.pem\"\nkey = \"{key}\"\nnames = [\"a.test\"]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    let listen = format!("127.0.0.1:{}", free_port());
    cmd.args([
        "check",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        &listen,
        "--admin",
        "off",
    ]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("/nonexistent/ca.pem"), "{stdout}");
    assert!(stdout.contains("/nonexistent/sni.pem"), "{stdout}");
}

#[test]
fn check_explains_broker_ca_problems() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate(dir.path(), "ca", &["localhost"]);
    let missing = dir.path().join("missing.pem");
    let cases: [(&str, &str, &str); 3] = [
        (
            "redis://127.0.0.1:6379",
            &cert,
            "applies only to a rediss:// broker",
        ),
        (
            "rediss://127.0.0.1:6379",
            missing.to_str().unwrap(),
            "No such file",
        ),
        (
            "rediss://127.0.0.1:6379",
            &key,
            "holds no CERTIFICATE block",
        ),
    ];
    for (broker, ca, want) in cases {
        let mut cmd = Command::new(BIN);
        cmd.args(["check", "--config", "/dev/null", "--admin", "off"])
            .args(["--broker", broker, "--broker-ca", ca]);
        let out = run_bounded(&mut cmd, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{broker} {ca}: {stdout}");
        assert!(
            stdout.contains("--broker-ca") && stdout.contains(want),
            "{broker} {ca}: want {want:?} in:\n{stdout}"
        );
    }
    // A CA file with a certificate and a rediss:// broker pass.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config", "/dev/null", "--admin", "off"])
        .args(["--listen", &listen, "--cert", &cert, "--key", &key])
        .args(["--broker", "rediss://127.0.0.1:6379", "--broker-ca", &cert]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}
