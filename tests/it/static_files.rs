//! Static folders done right, checked with curl against the real binary:
//! Range (206, 416), ETag and Last-Modified with 304, precompressed `.br`
//! siblings, gzip on the fly for text, and today's guarantees on every path
//! (no listing, symlinks out of the folder refused, no private key even in
//! a Range request or as a compressed sibling).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Wssd, run_bounded};

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

/// One curl exchange: status, lower-cased header lines, raw body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn curl(url: &str, args: &[&str]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let out = run_bounded(
        Command::new("curl")
            .args(["-sS", "-o", "-", "-D"])
            .arg(&head)
            .args(args)
            .arg(url),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&head).unwrap();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: out.stdout,
    }
}

fn site() -> (tempfile::TempDir, tempfile::TempDir) {
    let site = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let p = |name: &str| site.path().join(name);
    std::fs::create_dir(p("sub")).unwrap();
    std::fs::write(p("digits.txt"), "0123456789abcdef").unwrap();
    std::fs::write(p("app.js"), "var a = 1;\n".repeat(100)).unwrap();
    std::fs::write(p("app.js.br"), b"precompressed brotli bytes").unwrap();
    std::fs::write(p("page.html"), "<p>hello</p>\n".repeat(100)).unwrap();
    std::fs::write(p("key.pem"), KEY).unwrap();
    std::fs::write(p("signing.key.gz"), b"\x1f\x8bcompressed key").unwrap();
    std::fs::write(p("signing.key"), KEY).unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), p("sub/out.txt")).unwrap();
    // A sibling that leaves the folder is treated as absent.
    std::fs::write(p("inside.html"), "<p>inside</p>\n".repeat(100)).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), p("inside.html.br")).unwrap();
    (site, outside)
}

async fn server(dir: &Path) -> (Wssd, String) {
    let server = Wssd::builder()
        .plain_only()
        .arg("--route")
        .arg(format!("/s=static:{}", dir.display()))
        .spawn()
        .await;
    let base = format!("http://127.0.0.1:{}/s", server.http_addr().port());
    (server, base)
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let (site, _outside) = site();
    let (_server, base) = server(site.path()).await;
    let url = format!("{base}/digits.txt");
    let r = curl(&url, &["-H", "Range: bytes=2-5"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"2345");
    assert_eq!(r.header("content-range"), Some("bytes 2-5/16"));
    let r = curl(&url, &["-H", "Range: bytes=100-200"]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */16"));

    let r = curl(&url, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").unwrap().to_string();
    let modified = r.header("last-modified").unwrap().to_string();
    let r = curl(&url, &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = curl(&url, &["-H", &format!("If-Modified-Since: {modified}")]);
    assert_eq!(r.status, 304);
    let r = curl(&url, &["-H", "If-None-Match: \"other\""]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0123456789abcdef");
}

#[tokio::test]
async fn precompressed_siblings_and_compression_on_the_fly() {
    let (site, _outside) = site();
    let (_server, base) = server(site.path()).await;
    let r = curl(&format!("{base}/app.js"), &["-H", "Accept-Encoding: br"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(r.body, b"precompressed brotli bytes");
    // Without br accepted: the file itself (gzip made on the fly).
    let r = curl(
        &format!("{base}/app.js"),
        &["--compressed", "-H", "Accept-Encoding: gzip"],
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, "var a = 1;\n".repeat(100).as_bytes());

    // No sibling: gzip on the fly, decompressing to the original, with a
    // weak ETag (the bytes are not the file's).
    let original = "<p>hello</p>\n".repeat(100);
    let r = curl(
        &format!("{base}/page.html"),
        &["--compressed", "-H", "Accept-Encoding: gzip"],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.header("etag").unwrap().starts_with("W/"));
    assert_eq!(r.body, original.as_bytes());
    let raw = curl(
        &format!("{base}/page.html"),
        &["-H", "Accept-Encoding: gzip"],
    );
    assert!(
        raw.body.len() < original.len() / 4,
        "sent {} bytes for {}",
        raw.body.len(),
        original.len()
    );
    // Small files and non-text types are sent as they are.
    let r = curl(
        &format!("{base}/digits.txt"),
        &["-H", "Accept-Encoding: gzip"],
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, b"0123456789abcdef");
}

#[tokio::test]
async fn no_listing_no_escape_no_private_key() {
    let (site, _outside) = site();
    let (server, base) = server(site.path()).await;
    assert_eq!(curl(&format!("{base}/sub/"), &[]).status, 404, "no listing");
    std::os::unix::fs::symlink("loop", site.path().join("loop")).unwrap();
    for path in ["/missing.txt", "/digits.txt/below", "/loop"] {
        assert_eq!(curl(&format!("{base}{path}"), &[]).status, 404, "{path}");
    }
    let r = curl(&format!("{base}/sub/out.txt"), &[]);
    assert_eq!(r.status, 404, "symlink out of the folder");
    assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
    // The escaping `.br` sibling is ignored: the file itself is served
    // (brotli made on the fly, hence the weak ETag).
    let r = curl(
        &format!("{base}/inside.html"),
        &["--compressed", "-H", "Accept-Encoding: br"],
    );
    assert_eq!(r.status, 200);
    assert!(r.header("etag").unwrap().starts_with("W/"));
    assert_eq!(r.body, "<p>inside</p>\n".repeat(100).as_bytes());

    for (path, args) in [
        ("/key.pem", vec!["-H", "Range: bytes=0-10"]),
        ("/key.pem", vec!["-I"]),
        ("/signing.key", vec!["-H", "Accept-Encoding: gzip"]),
        ("/signing.key.gz", vec![]),
    ] {
        let r = curl(&format!("{base}{path}"), &args);
        assert_eq!(r.status, 403, "{path} {args:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("MIIB"), "{path}");
        assert!(!r.body.starts_with(b"\x1f\x8b"), "{path}");
    }
    server
        .wait_for_log("static route refused a private key")
        .await;
}

#[tokio::test]
async fn bundled_client_revalidates_and_is_compressed() {
    let server = Wssd::builder().plain_only().spawn().await;
    let url = format!("http://127.0.0.1:{}/app.js", server.http_addr().port());
    let plain = curl(&url, &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("cache-control"), Some("no-cache"));
    assert!(plain.header("content-security-policy").is_some());
    let etag = plain.header("etag").unwrap().to_string();
    let r = curl(&url, &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = curl(&url, &["--compressed", "-H", "Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, plain.body, "decompresses to the file");
    let weak = r.header("etag").unwrap().to_string();
    assert_eq!(weak, format!("W/{etag}"));
    assert_eq!(
        curl(&url, &["-H", &format!("If-None-Match: {weak}")]).status,
        304
    );
}
