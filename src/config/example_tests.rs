//! `examples/wssd.toml` stays in step with the file format: every key that
//! `wssd.toml` accepts is in the example (active, or commented out as
//! `# key = ...` when it cannot be active beside the others), every key in
//! the example is accepted, and the example parses. `wssd check` on it runs
//! in tests/python/test_package.py.

use std::collections::BTreeSet;

use super::file::FileConfig;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/wssd.toml");

/// `(table, key)` for every `key =` and `# key =` line and every table
/// header (`[tls]` is `("", "tls")`, `[[tls.certificate]]` is
/// `("tls", "certificate")`).
fn keys_in(text: &str) -> BTreeSet<(String, String)> {
    let mut table = String::new();
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .map(|n| n.trim_matches(|c| c == '[' || c == ']'))
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
            })
        {
            let (parent, last) = name.rsplit_once('.').unwrap_or(("", name));
            found.insert((parent.to_string(), last.to_string()));
            table = name.to_string();
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                found.insert((table.clone(), key.to_string()));
            }
        }
    }
    found
}

#[test]
fn example_parses() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    if let Err(e) = toml::from_str::<FileConfig>(&text) {
        panic!("examples/wssd.toml does not parse: {e}");
    }
}

#[test]
fn example_names_every_key_and_only_real_ones() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let found = keys_in(&text);
    let tables = [
        ("", ""),
        ("tls", "[tls]"),
        ("tls.certificate", "[[tls.certificate]]"),
        ("route", "[[route]]"),
    ];
    let mut missing = Vec::new();
    let mut all = BTreeSet::new();
    for (table, header) in tables {
        let keys = crate::config::file::accepted_keys(header);
        assert!(!keys.is_empty(), "no keys found for {header:?}");
        for key in keys {
            all.insert((table.to_string(), key.clone()));
            if !found.contains(&(table.to_string(), key.clone())) {
                let place = if table.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in [{table}]")
                };
                missing.push(format!("`{key}` {place}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "examples/wssd.toml lacks {}: add each with a comment (commented out as `# key = default` if it cannot be active)",
        missing.join(", ")
    );
    let unknown: Vec<String> = found
        .iter()
        .filter(|k| !all.contains(*k))
        .map(|(t, k)| format!("`{k}` in [{t}]"))
        .collect();
    assert!(
        unknown.is_empty(),
        "examples/wssd.toml names keys wssd.toml does not accept: {}",
        unknown.join(", ")
    );
}

#[test]
fn a_missing_key_is_named() {
    let found = keys_in("listen = []\n[tls]\n# cert = \"x\"\n[[route]]\npath = \"/\"\n");
    assert!(found.contains(&("".into(), "listen".into())));
    assert!(found.contains(&("".into(), "tls".into())));
    assert!(found.contains(&("tls".into(), "cert".into())));
    assert!(found.contains(&("route".into(), "path".into())));
    assert!(!found.contains(&("".into(), "http".into())));
}
