//! Property tests of the TOML configuration file as `config::load` reads
//! it (the file's shape in `file`, then every section resolver): any text
//! and any document get a typed answer, never a panic; an unknown key in
//! any table is an error that names the key and its line.

use std::path::PathBuf;

use clap::Parser;
use proptest::prelude::*;
use toml::{Table, Value};

use super::environment::Environment;
use super::flags::ServeArgs;
use super::{ConfigErrors, load};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    serve: ServeArgs,
}

fn env() -> Environment {
    Environment {
        xdg_state_home: None,
        home: Some(PathBuf::from("/home/u")),
        secrets: Default::default(),
        dotenv_keys: Vec::new(),
    }
}

/// Loads `text` as the configuration file with no flags.
fn load_text(text: &str) -> Result<super::Config, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wssd.toml");
    std::fs::write(&path, text).unwrap();
    let args = Flags::parse_from(["wssd", "--config", path.to_str().unwrap()]).serve;
    load(&args, &env())
}

/// A value of the right type for a known key (a plausible one, or an
/// out-of-range one the resolvers must refuse).
fn value_for(key: &'static str) -> BoxedStrategy<Value> {
    let s = |list: &'static [&'static str]| {
        prop::sample::select(list)
            .prop_map(|v| Value::String(v.into()))
            .boxed()
    };
    let strings = |list: &'static [&'static str]| {
        prop::collection::vec(prop::sample::select(list), 0..3)
            .prop_map(|v| Value::Array(v.into_iter().map(|s| Value::String(s.into())).collect()))
            .boxed()
    };
    match key {
        "listen" | "http" => strings(&["127.0.0.1:0", "[::1]:0", "localhost:0", "nope", ":99999"]),
        "admin" => s(&["127.0.0.1:0", "off", "x"]),
        "state_dir" | "broker_ca" | "cert" | "key" | "client_ca" | "acme_ca_root" => {
            s(&["/nonexistent", "", "."])
        }
        "max_message_size" | "memory_budget" | "max_connections" | "max_connections_per_ip" => {
            prop_oneof![
                Just(0i64),
                Just(1),
                Just(16),
                Just(1 << 20),
                0i64..1_000_000
            ]
            .prop_map(Value::Integer)
            .boxed()
        }
        "handshake_timeout" | "ping_interval" | "idle_timeout" | "drain_timeout"
        | "send_timeout" | "check_interval" => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-1.0),
            Just(0.0),
            Just(1e300),
            0.0f64..1000.0
        ]
        .prop_map(Value::Float)
        .boxed(),
        "allow_origin" => strings(&["*", "https://a.example", ""]),
        "allow_host" => strings(&["*", "box.lan", "*.home.arpa", ""]),
        "trusted_proxy" => strings(&["10.0.0.0/8", "::1", "nope", "1.2.3.4/33"]),
        "broker" => s(&["memory", "redis://127.0.0.1:1", "ftp://x", ""]),
        "publish_token" | "reload_token" => s(&["short", "0123456789abcdef0123", ""]),
        "log_format" => s(&["text", "json"]),
        "log_level" => s(&["info", "debug", "wssd=trace", "[", ""]),
        "access_log" => s(&["off", "stderr", "/tmp/access.log", ""]),
        "access_log_format" => s(&["text", "json"]),
        "mode" => s(&["self-signed", "local-ca", "files", "acme", "off"]),
        "hostname" => strings(&["localhost", "example.com", "", "*.x"]),
        "key_type" => s(&["ecdsa-p256", "rsa2048"]),
        "client_auth" => s(&["required", "optional"]),
        "acme_directory" => s(&["https://acme.invalid/dir", "x"]),
        "acme_email" => s(&["a@b.example", ""]),
        "acme_challenge" => s(&["http-01", "tls-alpn-01"]),
        _ => Just(Value::Boolean(true)).boxed(),
    }
}

const TOP: &[&str] = &[
    "listen",
    "http",
    "admin",
    "state_dir",
    "max_message_size",
    "memory_budget",
    "max_connections",
    "max_connections_per_ip",
    "handshake_timeout",
    "ping_interval",
    "idle_timeout",
    "drain_timeout",
    "send_timeout",
    "allow_origin",
    "allow_host",
    "trusted_proxy",
    "broker",
    "publish_token",
    "reload_token",
    "watch_config",
    "log_format",
    "log_level",
    "access_log",
    "access_log_format",
];

const TLS: &[&str] = &[
    "mode",
    "cert",
    "key",
    "hostname",
    "key_type",
    "client_ca",
    "client_auth",
    "acme_directory",
    "acme_email",
    "acme_ca_root",
    "acme_challenge",
    "check_interval",
];

fn table_of(keys: &'static [&'static str]) -> impl Strategy<Value = Table> {
    prop::sample::subsequence(keys, 0..=keys.len().min(6))
        .prop_flat_map(|chosen| {
            chosen
                .into_iter()
                .map(|k| value_for(k).prop_map(move |v| (k.to_string(), v)))
                .collect::<Vec<_>>()
        })
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn route() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["/", "/ws/echo", "/chat", "nope", "/a?b"][..]),
        prop::sample::select(&["echo", "chat", "broadcast", "static", "proxy", "teleport"][..]),
    )
        .prop_map(|(path, kind)| {
            let mut t = Table::new();
            t.insert("path".into(), Value::String(path.into()));
            t.insert("kind".into(), Value::String(kind.into()));
            Value::Table(t)
        })
}

/// A document of known keys with values of the right type.
fn document() -> impl Strategy<Value = Table> {
    (
        table_of(TOP),
        prop::option::of(table_of(TLS)),
        prop::collection::vec(route(), 0..3),
    )
        .prop_map(|(mut top, tls, routes)| {
            if let Some(tls) = tls {
                top.insert("tls".into(), Value::Table(tls));
            }
            if !routes.is_empty() {
                top.insert("route".into(), Value::Array(routes));
            }
            top
        })
}

/// Where an unknown key goes.
#[derive(Debug, Clone, Copy)]
enum Place {
    Top,
    Tls,
    Route,
}

/// Text a file may hold: TOML punctuation, known keys and anything.
fn toml_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(&["\n", "=", " = ", "[", "]", "[[route]]\n", "[tls]\n", "\"", "'", "{", "}", ",", "#", "1", "1.5", "nan", "inf", "true", "path", "kind", "listen", "\"echo\"", "\"/\"", "max_message_size", "tls.mode", "\"\"\"", "\\u0000", "1979-05-27T07:32:00Z"][..]).prop_map(str::to_string),
            1 => any::<String>(),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(crate::props::config(256))]

    /// Catches: a panic in the TOML reader or a section resolver on any
    /// text; an error message that is empty.
    #[test]
    fn any_text_gets_a_typed_answer(text in toml_text()) {
        if let Err(errors) = load_text(&text) {
            prop_assert!(errors.iter().all(|e| !e.to_string().trim().is_empty()));
        }
    }

    /// Catches: a panic in a resolver on a well-typed but hostile value
    /// (NaN or infinite seconds, zero or huge sizes, bad addresses).
    #[test]
    fn any_document_gets_a_typed_answer(doc in document()) {
        let text = toml::to_string(&doc).unwrap();
        if let Err(errors) = load_text(&text) {
            prop_assert!(errors.iter().all(|e| !e.to_string().trim().is_empty()), "{text}");
        }
    }

    /// Catches: an unknown (misspelt) key in any table ignored, or an
    /// error that does not say which key and where.
    #[test]
    fn unknown_keys_are_errors_naming_the_key(
        doc in document(),
        unknown in "zz_[a-z_]{1,10}",
        place in prop_oneof![Just(Place::Top), Just(Place::Tls), Just(Place::Route)],
    ) {
        let mut doc = doc;
        let junk = Value::Integer(1);
        match place {
            Place::Top => {
                doc.insert(unknown.clone(), junk);
            }
            Place::Tls => {
                let tls = doc.entry("tls").or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(t) = tls {
                    t.insert(unknown.clone(), junk);
                }
            }
            Place::Route => {
                let routes = doc.entry("route").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = routes {
                    let mut t = Table::new();
                    t.insert("path".into(), Value::String("/x".into()));
                    t.insert("kind".into(), Value::String("echo".into()));
                    t.insert(unknown.clone(), junk);
                    list.push(Value::Table(t));
                }
            }
        }
        let text = toml::to_string(&doc).unwrap();
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{unknown} ")))
            .map(|i| i + 1)
            .unwrap();
        let errors = match load_text(&text) {
            Ok(_) => return Err(TestCaseError::fail(format!("unknown key `{unknown}` accepted:\n{text}"))),
            Err(errors) => errors,
        };
        let message = errors.to_string();
        prop_assert!(message.contains(&unknown), "{message}\n{text}");
        prop_assert!(message.contains(&format!("wssd.toml:{line}")), "{message}\n{text}");
    }
}
