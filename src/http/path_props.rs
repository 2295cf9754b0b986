//! Property tests of request-path cleaning (`path::clean`): whatever the
//! path, the clean form never climbs above the root, has no `.`/`..`
//! segment for the router or for a backend that decodes `%2F`/`%5C`, `\`
//! or `;params`, is its own clean form, and is what a plain reference
//! resolver (RFC 3986 `remove_dot_segments` on a stack) gives.

use std::borrow::Cow;

use proptest::prelude::*;

use super::path::{PathError, clean};

/// Pieces a hostile path is made of: separators, dots in every spelling,
/// encoded separators, path parameters, stray percent signs, names.
const TOKENS: &[&str] = &[
    "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", ";", "%3b", "%3B",
    "a", "b", "x;y", "%", "%2", "%20", "...", ".a", "a.", "é",
];

fn hostile_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..14)
        .prop_map(|parts| format!("/{}", parts.concat()))
}

/// Whether `segment` is `.` or `..` with each dot literal or `%2e`.
fn dot_segment(segment: &str) -> Option<usize> {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    match decoded.as_str() {
        "." => Some(1),
        ".." => Some(2),
        _ => None,
    }
}

/// The parts of one segment a lenient backend may take for segments: it
/// decodes `%2F`, `%5C` and `%3B`, takes `\` for `/`, and splits off
/// `;params` (Tomcat and other Java servers).
fn lenient_parts(segment: &str) -> Vec<String> {
    segment
        .to_ascii_lowercase()
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace("%3b", ";")
        .split(['/', '\\', ';'])
        .map(str::to_string)
        .collect()
}

/// Whether a segment that is not itself `.`/`..` hides one from a lenient
/// backend.
fn hides_dot_segment(segment: &str) -> bool {
    dot_segment(segment).is_none()
        && lenient_parts(segment)
            .iter()
            .any(|p| dot_segment(p).is_some())
}

/// Reference resolver: `None` when the path climbs above `/`, else the
/// resolved path (slashes merged, dot segments removed, a trailing slash
/// kept when the last segment was empty or a dot segment).
fn reference(raw: &str) -> Option<String> {
    let body = raw.strip_prefix('/')?;
    let mut stack: Vec<&str> = Vec::new();
    let segments: Vec<&str> = body.split('/').collect();
    let mut trailing = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dot_segment(segment) {
            Some(1) => trailing = last,
            Some(_) => {
                stack.pop()?;
                trailing = last;
            }
            None if segment.is_empty() => trailing = last,
            None => stack.push(segment),
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    if trailing && !stack.is_empty() {
        out.push('/');
    }
    Some(out)
}

proptest! {
    #![proptest_config(crate::props::config(1024))]

    /// Catches: a panic on odd input (an index past a `%` at the end).
    #[test]
    fn any_text_is_answered(raw in any::<String>()) {
        let _ = clean(&raw);
        let _ = clean(&format!("/{raw}"));
    }

    /// Catches: `..` escaping the root, a dot segment left for the router
    /// or for a backend that decodes separators, a result that changes
    /// when cleaned again (the router and the upstream would disagree).
    #[test]
    fn clean_paths_stay_below_root_and_are_fixed_points(raw in hostile_path()) {
        if let Ok(out) = clean(&raw) {
            prop_assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
            prop_assert!(!out.contains("//"), "{raw:?} -> {out:?}");
            for segment in out.split('/') {
                prop_assert_eq!(dot_segment(segment), None, "{:?} -> {:?}", raw, out);
            }
            for segment in out.split('/') {
                prop_assert!(!hides_dot_segment(segment), "{raw:?} -> {out:?}");
            }
            let again = clean(&out);
            prop_assert!(matches!(again, Ok(Cow::Borrowed(p)) if p == out), "{raw:?} -> {out:?} -> {again:?}");
        }
    }

    /// Catches: a wrong resolution (a segment dropped, kept or moved), a
    /// climb above `/` let through, or a refusal of a path that does not
    /// climb and hides nothing.
    #[test]
    fn clean_agrees_with_the_reference_resolver(raw in hostile_path()) {
        let hides = raw.split('/').any(hides_dot_segment);
        match (clean(&raw), reference(&raw)) {
            (Ok(out), Some(expected)) => {
                prop_assert!(!hides, "{raw:?} hides a dot segment but was let through as {out:?}");
                prop_assert_eq!(out.as_ref(), expected.as_str(), "{:?}", raw);
            }
            (Ok(out), None) => prop_assert!(false, "{raw:?} climbs above / but was let through as {out:?}"),
            (Err(PathError::AboveRoot), expected) => prop_assert_eq!(expected, None, "{:?} refused as climbing", raw),
            (Err(PathError::HiddenDotSegment), _) => prop_assert!(hides, "{raw:?} refused, hides nothing"),
        }
    }

    /// Catches: a path that needs no cleaning copied or altered.
    #[test]
    fn plain_paths_are_borrowed_unchanged(names in prop::collection::vec("[a-zA-Z0-9_~-]{1,8}", 0..6), slash in any::<bool>()) {
        let mut raw = format!("/{}", names.join("/"));
        if slash && !names.is_empty() {
            raw.push('/');
        }
        prop_assert!(matches!(clean(&raw), Ok(Cow::Borrowed(p)) if p == raw));
    }
}
