//! Comparing secrets (moderator passwords, the publish token, route auth
//! tokens) without revealing through timing how much of a guess was right.
//! Where secrets come from is configuration's business; this only compares.
//!
//! The comparison is `subtle`'s constant-time equality on SHA-256 digests:
//! `subtle` short-circuits on different lengths, digests always have the
//! same length, and a digest reveals nothing about how close a guess was.

use subtle::ConstantTimeEq;

/// The SHA-256 digest of `data` (aws-lc-rs, the crypto already used by TLS).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares without an early exit: the time taken depends on the inputs'
/// lengths only (through hashing), never on where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    sha256(a).ct_eq(&sha256(b)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"secret!", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 example "abc".
        let d = sha256(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(d[28..], [0xf2, 0x00, 0x15, 0xad]);
    }
}
