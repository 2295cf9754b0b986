//! The static route's refusal to hand out private keys: a file whose first
//! few KiB hold a PEM private-key header (`-----BEGIN ... PRIVATE KEY-----`,
//! whatever the algorithm or encryption, and OpenSSH keys) is answered 403,
//! counted, and logged at WARN once per file per [`WARN_INTERVAL`] so a
//! client that retries cannot flood the log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Duration, Instant};

/// How much of a file is looked at (PEM blocks start within the first
/// lines; a certificate chain before a key stays well under this).
pub const SNIFF_BYTES: usize = 8 * 1024;
/// A refused file is logged at most once per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Bound of the "already logged" table (cleared when full).
const MAX_REMEMBERED: usize = 1024;

/// Whether `head` (the start of a file) holds a PEM private key: a line
/// `-----BEGIN <anything> PRIVATE KEY-----` (PKCS#8, encrypted PKCS#8, RSA,
/// EC, DSA, OPENSSH, ...).
pub fn holds_private_key(head: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"PRIVATE KEY-----";
    let mut rest = head;
    while let Some(at) = find(rest, BEGIN) {
        let after = &rest[at + BEGIN.len()..];
        // The label ends at the next dash run; 64 bytes is more than any label.
        let label_end = after.len().min(64 + END.len());
        let window = &after[..label_end];
        if let Some(end) = find(window, END)
            && !window[..end].contains(&b'\n')
        {
            return true;
        }
        rest = after;
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads up to [`SNIFF_BYTES`] from `reader` (fewer at end of file).
pub async fn read_head<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; SNIFF_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        let n = reader.read(&mut head[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    Ok(head)
}

/// Logs a refusal at WARN unless the same file was logged within the
/// interval; always counts it.
pub fn refused(file: &Path, request_path: &str) {
    crate::metrics::private_key_refused();
    static SEEN: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);
    let now = Instant::now();
    let log = match SEEN.lock() {
        Ok(mut guard) => {
            let seen = guard.get_or_insert_with(HashMap::new);
            let due = seen
                .get(file)
                .is_none_or(|last| now.duration_since(*last) >= WARN_INTERVAL);
            if due {
                if seen.len() >= MAX_REMEMBERED {
                    seen.clear();
                }
                seen.insert(file.to_path_buf(), now);
            }
            due
        }
        Err(_) => true,
    };
    if log {
        tracing::warn!(
            file = %file.display(),
            path = request_path,
            "static route refused a private key: the file holds a PEM private key (-----BEGIN ... PRIVATE KEY-----) and wssd never serves one (403); move it out of the served folder (this warning repeats at most once a minute per file)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_kind_of_private_key() {
        for label in [
            "PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "DSA PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
        ] {
            let pem = format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n");
            assert!(holds_private_key(pem.as_bytes()), "{label}");
            let after_cert =
                format!("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n{pem}");
            assert!(
                holds_private_key(after_cert.as_bytes()),
                "{label} after a cert"
            );
        }
    }

    #[test]
    fn leaves_certificates_and_text_alone() {
        for text in [
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
            "a page about -----BEGIN and\nPRIVATE KEY----- on two lines",
            "",
            "-----BEGIN ",
        ] {
            assert!(!holds_private_key(text.as_bytes()), "{text}");
        }
    }

    #[tokio::test]
    async fn reads_at_most_the_sniff_size() {
        let data = vec![b'x'; SNIFF_BYTES * 2];
        let mut r = &data[..];
        assert_eq!(read_head(&mut r).await.unwrap().len(), SNIFF_BYTES);
        let mut short = &b"abc"[..];
        assert_eq!(read_head(&mut short).await.unwrap(), b"abc");
    }
}
