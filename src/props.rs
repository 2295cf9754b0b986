//! Settings shared by the property tests (`*_props.rs` next to the code
//! they test): a fixed number of cases per property, small enough for the
//! whole set to run in seconds in a debug build, unless `PROPTEST_CASES`
//! asks for more (`PROPTEST_CASES=10000 cargo test --lib props`). Failures
//! are not persisted to files: a case that once failed is kept as a plain
//! regression unit test next to the fix instead.

use proptest::test_runner::Config;

/// `cases` per property, or `PROPTEST_CASES` when set.
pub(crate) fn config(cases: u32) -> Config {
    let default = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        failure_persistence: None,
        ..default
    }
}

/// Standard base64 with padding: a reference encoder for the tests (for
/// WebSocket keys and PEM bodies).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
