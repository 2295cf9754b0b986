//! Property tests of route specifications (`route`): `--route` strings,
//! `[[route]]` tables, route paths, upstream URLs and exec command lines.
//! Any input gets a typed answer; what is accepted is what was written.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::error::{RouteSpecError, UpstreamError};
use super::route::{
    RouteKind, UpstreamScheme, check_path, parse_route_flag, parse_upstream, split_command,
};
use super::route_table::RouteTable;

/// A host as written in an upstream URL, and as parsed.
fn upstream_host() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,6}){0,3}".prop_map(|h| (h.clone(), h)),
        any::<Ipv4Addr>().prop_map(|a| (a.to_string(), a.to_string())),
        any::<Ipv6Addr>().prop_map(|a| (format!("[{a}]"), a.to_string())),
    ]
}

fn scheme() -> impl Strategy<Value = (String, UpstreamScheme)> {
    (
        prop::sample::select(
            &[
                ("ws", UpstreamScheme::Ws),
                ("wss", UpstreamScheme::Wss),
                ("http", UpstreamScheme::Http),
                ("https", UpstreamScheme::Https),
            ][..],
        ),
        any::<bool>(),
    )
        .prop_map(|((s, k), shout)| {
            (
                if shout {
                    s.to_ascii_uppercase()
                } else {
                    s.to_string()
                },
                k,
            )
        })
}

/// Characters of `--route` strings and URLs, the separators included.
fn route_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(&["/", "=", ":", ",", "//", "://", "[", "]", "@", "?", "#", " ", "'", "\"", "\\", "echo", "static", "proxy", "exec", "chat", "broadcast", "ws", "http", "a", "1", "65536", "::1"][..]).prop_map(str::to_string),
            1 => any::<String>(),
        ],
        0..10,
    )
    .prop_map(|v| v.concat())
}

/// What a route path must not contain (the reference for `check_path`).
fn refused_characters(path: &str) -> bool {
    path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control())
}

proptest! {
    #![proptest_config(crate::props::config(512))]

    /// Catches: a panic on any `--route` string (exec routes look the
    /// program up in PATH; that is fine for any text).
    #[test]
    fn any_route_flag_gets_a_typed_answer(text in route_text()) {
        if let Ok(spec) = parse_route_flag(&text) {
            prop_assert!(spec.path.starts_with('/'));
            prop_assert!(text.starts_with(&spec.path) || spec.path == "/");
        }
    }

    /// Catches: a route path accepted with a query, fragment, whitespace or
    /// a control character, a trailing slash kept (two spellings of one route), or a path that
    /// changes when checked again.
    #[test]
    fn route_paths_are_clean_fixed_points(path in prop_oneof!["/[a-z/ ?#.\t\u{205f}\u{7f}]{0,12}", "[a-z/]{0,6}", any::<String>()]) {
        match check_path(&path, "test") {
            Ok(p) => {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!refused_characters(&p));
                prop_assert!(p == "/" || !p.ends_with('/'), "{:?} -> {:?}", path, p);
                prop_assert_eq!(check_path(&p, "test").ok(), Some(p.clone()));
                prop_assert_eq!(p.trim_end_matches('/'), path.trim_end_matches('/'));
            }
            Err(e) => prop_assert!(
                !path.starts_with('/') || refused_characters(&path),
                "{path:?} refused: {e}"
            ),
        }
    }

    /// Catches: a scheme, host, port or base path parsed wrongly; a
    /// default port wrong for TLS; an IPv6 literal split at its colons.
    #[test]
    fn upstream_urls_round_trip(
        (scheme_text, scheme) in scheme(),
        (host_text, host) in upstream_host(),
        port in prop::option::of(any::<u16>()),
        base in prop::collection::vec("[a-z0-9_.-]{1,6}", 0..3),
        slash in any::<bool>(),
    ) {
        let mut url = format!("{scheme_text}://{host_text}");
        if let Some(p) = port {
            url.push_str(&format!(":{p}"));
        }
        let base_path: String = base.iter().map(|s| format!("/{s}")).collect();
        url.push_str(&base_path);
        if slash {
            url.push('/');
        }
        let u = parse_upstream(&url).unwrap();
        let default = if scheme.is_tls() { 443 } else { 80 };
        prop_assert_eq!(u.scheme, scheme);
        prop_assert_eq!(&u.host, &host);
        prop_assert_eq!(u.port, port.unwrap_or(default));
        prop_assert_eq!(&u.base_path, &base_path);
        prop_assert_eq!(&u.url, &url);
    }

    /// Catches: user info, a query or a fragment let through (the
    /// upstream would get another target than configured), or a port out
    /// of range wrapped around.
    #[test]
    fn bad_upstream_urls_are_refused(
        (scheme_text, _) in scheme(),
        (host_text, _) in upstream_host(),
        junk in prop::sample::select(&["@", "?q", "#f", ":", ":65536", ":-1", ":8o", "x"][..]),
        at_path in any::<bool>(),
    ) {
        let url = match (junk, at_path) {
            ("@", _) => format!("{scheme_text}://user@{host_text}"),
            ("x", _) => format!("{scheme_text}://{host_text}x:1:2"),
            (j, true) if j.starts_with(['?', '#']) => format!("{scheme_text}://{host_text}/p{j}"),
            (j, _) => format!("{scheme_text}://{host_text}{j}"),
        };
        let got = parse_upstream(&url);
        prop_assert!(got.is_err(), "{url:?} accepted as {got:?}");
    }

    /// Catches: a panic on any URL text, or an accepted URL whose host
    /// holds a colon outside brackets (an IPv6 literal misread as
    /// host:port) or is empty.
    #[test]
    fn any_upstream_text_gets_a_typed_answer(text in route_text()) {
        if let Ok(u) = parse_upstream(&text) {
            prop_assert!(!u.host.is_empty());
            if u.host.contains(':') {
                prop_assert!(u.host.parse::<Ipv6Addr>().is_ok(), "{text:?} -> host {:?}", u.host);
            }
        }
    }

    /// Catches: a command line split differently from how a shell would
    /// (a quoted argument cut at its space, a quote kept).
    #[test]
    fn command_lines_split_like_a_shell(words in prop::collection::vec("[^\\x00]{0,8}", 1..5)) {
        let line = words.iter().map(|w| shell_words::quote(w).into_owned()).collect::<Vec<_>>().join(" ");
        prop_assert_eq!(split_command(&line, "test").unwrap(), words);
    }

    /// Catches: a panic on any command line.
    #[test]
    fn any_command_line_gets_a_typed_answer(line in route_text()) {
        if let Err(e) = split_command(&line, "test") {
            prop_assert!(matches!(e, RouteSpecError::BadCommand { .. }), "{e}");
        }
    }

    /// Catches: a `[[route]]` key of another kind silently ignored, an
    /// out-of-range chat setting accepted, a value not carried over, or a
    /// panic on any table of known keys.
    #[test]
    fn route_tables_are_checked_key_by_key(table in route_table()) {
        let text = toml::to_string(&table).unwrap();
        let parsed: Result<RouteTable, _> = toml::from_str(&text);
        let Ok(parsed) = parsed else {
            // Only wrong value types are refused here (every key is known).
            return Ok(());
        };
        let kind = table.get("kind").and_then(|k| k.as_str()).unwrap_or("").to_string();
        let result = parsed.into_spec("test");
        let owner = |key: &str| match key {
            "dir" => Some("static"),
            "upstream" | "balance" | "health_path" | "ca" => Some("proxy"),
            "command" | "binary" | "pass_env" | "max_processes" => Some("exec"),
            "history" | "max_text" | "rate" | "burst" | "moderator_password_env" => Some("chat"),
            _ => None,
        };
        let misplaced: Vec<&str> = table
            .keys()
            .filter(|k| owner(k.as_str()).is_some_and(|o| o != kind))
            .map(String::as_str)
            .collect();
        match &result {
            Ok(spec) => {
                prop_assert!(misplaced.is_empty(), "{text}: {misplaced:?} ignored");
                prop_assert_eq!(spec.kind.name(), kind.as_str());
                if let RouteKind::Chat(c) = &spec.kind {
                    prop_assert!(c.history <= 10_000 && c.max_text > 0);
                    prop_assert!(c.rate.is_finite() && c.rate > 0.0 && c.burst.is_finite() && c.burst >= 1.0);
                    if let Some(h) = table.get("history").and_then(|v| v.as_integer()) {
                        prop_assert_eq!(c.history as i64, h);
                    }
                }
            }
            Err(e) => {
                let known = ["static", "proxy", "exec", "echo", "chat", "broadcast", "ca"];
                let message = e.to_string();
                if !known.contains(&kind.as_str()) {
                    prop_assert!(message.contains(&format!("`{kind}`")), "{message}");
                } else if let RouteSpecError::Misplaced { key, .. } = e {
                    prop_assert!(misplaced.contains(key), "{message}");
                    prop_assert!(message.contains(key));
                }
            }
        }
    }
}

fn route_table() -> impl Strategy<Value = toml::Table> {
    use toml::Value;
    let kind = prop_oneof![
        4 => prop::sample::select(&["static", "proxy", "exec", "echo", "chat", "broadcast"][..]).prop_map(str::to_string),
        1 => "[a-z]{0,6}",
    ];
    let float = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(0.5),
        Just(1.0),
        0.0f64..1e6,
    ];
    let value = |key: &'static str| -> BoxedStrategy<(String, Value)> {
        let v: BoxedStrategy<Value> = match key {
            "dir" | "ca" | "health_path" | "moderator_password_env" => {
                prop_oneof![Just(String::new()), "[a-z/=._]{0,8}".prop_map(|s| s)]
                    .prop_map(Value::String)
                    .boxed()
            }
            "upstream" => prop_oneof![
                Just(Value::String("ws://127.0.0.1:9".into())),
                Just(Value::String("ftp://x".into())),
                Just(Value::Array(vec![])),
                Just(Value::Array(vec![Value::String(
                    "http://a,ws://[::1]:1/b".into()
                )])),
            ]
            .boxed(),
            "balance" => prop::sample::select(&["round-robin", "least-connections", "random"][..])
                .prop_map(|s| Value::String(s.into()))
                .boxed(),
            "command" => prop_oneof![
                Just(Value::String("sh -c 'cat'".into())),
                Just(Value::String("'unclosed".into())),
                Just(Value::Array(vec![Value::String("sh".into())])),
                Just(Value::Array(vec![])),
            ]
            .boxed(),
            "binary" => any::<bool>().prop_map(Value::Boolean).boxed(),
            "pass_env" => Just(Value::Array(vec![Value::String("HOME".into())])).boxed(),
            "rate" | "burst" | "ping_interval" | "idle_timeout" => {
                float.clone().prop_map(Value::Float).boxed()
            }
            _ => prop_oneof![
                Just(0i64),
                Just(1),
                Just(10_000),
                Just(10_001),
                Just(-1),
                0i64..100_000
            ]
            .prop_map(Value::Integer)
            .boxed(),
        };
        v.prop_map(move |v| (key.to_string(), v)).boxed()
    };
    let optional = [
        "dir",
        "upstream",
        "balance",
        "health_path",
        "ca",
        "command",
        "binary",
        "pass_env",
        "max_processes",
        "history",
        "max_text",
        "rate",
        "burst",
        "moderator_password_env",
        "max_message_size",
        "ping_interval",
        "idle_timeout",
    ]
    .map(|k| prop::option::weighted(0.1, value(k)));
    (kind, "/[a-z/]{0,6}|[a-z]{1,3}", Vec::from(optional)).prop_map(|(kind, path, pairs)| {
        let mut t = toml::Table::new();
        t.insert("path".into(), Value::String(path));
        t.insert("kind".into(), Value::String(kind));
        for (k, v) in pairs.into_iter().flatten() {
            t.insert(k, v);
        }
        t
    })
}

/// `UpstreamError` is part of the answer to a bad URL, not a panic.
#[test]
fn upstream_errors_name_the_url() {
    let e = parse_upstream("ws://a@b").unwrap_err();
    assert!(matches!(e, UpstreamError::BadShape { .. }));
    assert!(e.to_string().contains("ws://a@b"));
}
