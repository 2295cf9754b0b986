//! Request-path cleaning, done once before routing: dot-segments are
//! resolved (RFC 3986 section 5.2.4 `remove_dot_segments`), with `%2e` in
//! any case counted as a dot, and repeated slashes are merged (as nginx's
//! default `merge_slashes on`). Every route kind, and the proxy's upstream
//! target, then see the same clean path, so `/api/../secret` is routed as
//! `/secret` and never reaches the `/api` upstream as written.
//!
//! Refused (400), because two readers could disagree on what they mean:
//! - a `..` that would climb above `/` (`/..`, `/a/../..`);
//! - a segment that hides a dot-segment behind an encoded or Windows
//!   separator: `..%2f`, `%2e%2e%5c`, `..\`; a backend that decodes `%2F`
//!   or treats `\` as `/` would see a `..` the router did not; likewise
//!   behind a path parameter, `..;x` (Tomcat and other Java servers drop
//!   `;params` and then resolve the `..`).
//!
//! Everything else is kept byte for byte, percent-encoding included (an
//! encoded slash inside an ordinary name, `@scope%2Fpkg`, passes).

use std::borrow::Cow;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path climbs above / with `..`")]
    AboveRoot,
    #[error(
        "the path hides `.` or `..` behind an encoded slash (%2F), an encoded backslash (%5C) or a backslash"
    )]
    HiddenDotSegment,
}

/// The clean form of `raw` (borrowed when nothing changed). Paths that do
/// not start with `/` (the `*` of `OPTIONS *`) are returned as they are.
pub fn clean(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let Some(body) = raw.strip_prefix('/') else {
        return Ok(Cow::Borrowed(raw));
    };
    // Most paths have nothing to clean: no dot after a slash, no empty
    // segment, no percent sign, no backslash.
    if !(raw.contains("/.") || raw.contains("//") || raw.contains(['%', '\\', ';'])) {
        return Ok(Cow::Borrowed(raw));
    }
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut changed = false;
    for (i, segment) in segments.iter().enumerate() {
        match dots(segment) {
            Some(1) => {
                changed = true;
                if i == last {
                    out.push("");
                }
            }
            Some(2) => {
                changed = true;
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                if i == last {
                    out.push("");
                }
            }
            _ if segment.is_empty() && i != last => changed = true,
            _ => {
                if hides_dot_segment(segment) {
                    return Err(PathError::HiddenDotSegment);
                }
                out.push(segment);
            }
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(raw));
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &out {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// `Some(1)` for `.`, `Some(2)` for `..` (each dot literal or `%2e`/`%2E`),
/// `None` for anything else.
fn dots(segment: &str) -> Option<usize> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    let mut count = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' {
            i += 1;
        } else if bytes[i] == b'%'
            && bytes.get(i + 1) == Some(&b'2')
            && bytes
                .get(i + 2)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'e'))
        {
            i += 3;
        } else {
            return None;
        }
        count += 1;
        if count > 2 {
            return None;
        }
    }
    (count > 0).then_some(count)
}

/// Whether splitting at `%2F`, `%5C`, `\` or `;` (or `%3B`) leaves a `.`
/// or `..` part.
fn hides_dot_segment(segment: &str) -> bool {
    if !segment.contains(['%', '\\', ';']) {
        return false;
    }
    let lower = segment.to_ascii_lowercase();
    lower
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace("%3b", ";")
        .split(['/', '\\', ';'])
        .any(|part| dots(part).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        clean(raw).unwrap().into_owned()
    }

    #[test]
    fn dot_segments_resolved() {
        assert_eq!(ok("/b/../admin"), "/admin");
        assert_eq!(ok("/b/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/b/%2E%2e/admin"), "/admin");
        assert_eq!(ok("/b/.%2E/admin"), "/admin");
        assert_eq!(ok("/api/../secret"), "/secret");
        assert_eq!(ok("/a/./b/."), "/a/b/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/%2e/b"), "/a/b");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/."), "/");
    }

    #[test]
    fn unchanged_paths_borrowed() {
        for p in [
            "/",
            "/a/b",
            "/a/b/",
            "/.well-known/x",
            "/a/...",
            "/a/.b",
            "/a%20b",
            "*",
        ] {
            assert!(matches!(clean(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        assert_eq!(ok("/@scope%2Fpkg"), "/@scope%2Fpkg");
        assert_eq!(ok("/a;v=1/b"), "/a;v=1/b");
    }

    #[test]
    fn slashes_merged() {
        assert_eq!(ok("//admin"), "/admin");
        assert_eq!(ok("/a//b///c"), "/a/b/c");
        assert_eq!(ok("/a//"), "/a/");
    }

    #[test]
    fn climbing_above_root_refused() {
        for p in ["/..", "/../x", "/%2e%2e/x", "/a/../../x", "/a/./../.."] {
            assert_eq!(clean(p), Err(PathError::AboveRoot), "{p}");
        }
    }

    #[test]
    fn hidden_dot_segments_refused() {
        for p in [
            "/a/..%2fsecret",
            "/a/%2e%2e%2Fsecret",
            "/a/..%5csecret",
            "/a/..\\secret",
            "/a/x%2f.%2fy",
            "/api/..;/admin",
            "/api/..%3b/admin",
            "/api/.;x/admin",
        ] {
            assert_eq!(clean(p), Err(PathError::HiddenDotSegment), "{p}");
        }
    }
}
