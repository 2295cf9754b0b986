//! No silent ignoring of a seed's configuration (issue 13): the settings
//! TinyChat (`.env`), uvicorn and similar servers read, which wssd does not,
//! get a hint naming the wssd option that does the same; and their command
//! line flags (`--port`, `--ssl-certfile`, ...) get a "did you mean" tip
//! under clap's own error.
//!
//! Hints only, no `--compat` mode that would apply them: a second spelling
//! of every option would have to follow wssd's precedence rules and would
//! still differ (TinyChat's `USE_SSL=false` means plain ws://, wssd's
//! default is TLS), and `HOST`/`PORT` are too common to obey silently. A
//! hint names the exact replacement, so the switch is one edit.
//!
//! Rule for where a setting was found: every key of the table in the
//! working folder's `.env` (that file is the seed's configuration); in the
//! process environment, the seed-specific keys always, but the generic
//! `HOST` and `PORT` (set by shells, containers and PaaS) only when a
//! seed-specific key is there too.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// A seed setting and the wssd option that replaces it.
struct Known {
    key: &'static str,
    /// Only hinted from the environment alongside a seed-specific key.
    generic: bool,
    wssd: &'static str,
}

const LISTEN: &str = "--listen HOST:PORT (env WSSD_LISTEN; TLS, default 127.0.0.1:8443) or --http HOST:PORT (WSSD_HTTP; plain ws://)";
const CERT: &str = "--cert FILE (env WSSD_CERT)";
const KEY: &str = "--key FILE (env WSSD_KEY)";

const KNOWN: &[Known] = &[
    Known {
        key: "HOST",
        generic: true,
        wssd: LISTEN,
    },
    Known {
        key: "PORT",
        generic: true,
        wssd: LISTEN,
    },
    Known {
        key: "USE_SSL",
        generic: false,
        wssd: "TLS is on by default in wssd (--tls self-signed); your own certificate: --cert FILE --key FILE; USE_SSL=false: --tls off with --http HOST:PORT",
    },
    Known {
        key: "SSL_CERT_PATH",
        generic: false,
        wssd: CERT,
    },
    Known {
        key: "SSL_KEY_PATH",
        generic: false,
        wssd: KEY,
    },
    Known {
        key: "SSL_CERTFILE",
        generic: false,
        wssd: CERT,
    },
    Known {
        key: "SSL_KEYFILE",
        generic: false,
        wssd: KEY,
    },
    Known {
        key: "SSL_KEYFILE_PASSWORD",
        generic: false,
        wssd: "nothing: wssd reads unencrypted PEM keys (decrypt once: openssl pkey -in key.pem -out key-plain.pem)",
    },
    Known {
        key: "SSL_CA_CERTS",
        generic: false,
        wssd: "--client-ca FILE (env WSSD_CLIENT_CA)",
    },
    Known {
        key: "MOD_PASSWORD",
        generic: false,
        wssd: "WSSD_MOD_PASSWORD (the chat route's moderator password; another name: moderator_password_env in its [[route]] table)",
    },
    Known {
        key: "UVICORN_HOST",
        generic: false,
        wssd: LISTEN,
    },
    Known {
        key: "UVICORN_PORT",
        generic: false,
        wssd: LISTEN,
    },
    Known {
        key: "UVICORN_SSL_CERTFILE",
        generic: false,
        wssd: CERT,
    },
    Known {
        key: "UVICORN_SSL_KEYFILE",
        generic: false,
        wssd: KEY,
    },
    Known {
        key: "FORWARDED_ALLOW_IPS",
        generic: false,
        wssd: "--trusted-proxy CIDR (env WSSD_TRUSTED_PROXY)",
    },
    Known {
        key: "UVICORN_FORWARDED_ALLOW_IPS",
        generic: false,
        wssd: "--trusted-proxy CIDR (env WSSD_TRUSTED_PROXY)",
    },
];

/// One hint line per seed setting found in the working folder's `.env`
/// (`dotenv_keys`) or the environment (`env_keys`, which includes what
/// `.env` set: those are named once, as `.env`'s).
pub fn hints<'a>(
    dotenv_keys: &[String],
    env_keys: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let env_keys: Vec<&String> = env_keys.into_iter().collect();
    let in_env = |k: &str| env_keys.iter().any(|e| e.as_str() == k);
    let seed_in_env = KNOWN
        .iter()
        .any(|k| !k.generic && in_env(k.key) && !dotenv_keys.iter().any(|d| d == k.key));
    let mut out = Vec::new();
    for k in KNOWN {
        let place = if dotenv_keys.iter().any(|d| d == k.key) {
            ".env"
        } else if in_env(k.key) && (!k.generic || seed_in_env) {
            "the environment"
        } else {
            continue;
        };
        out.push(format!(
            "{} in {place} is not read by wssd (a TinyChat/uvicorn-style setting); wssd's equivalent: {}",
            k.key, k.wssd
        ));
    }
    out
}

/// The keys of `.env` in the working folder (empty without one).
pub fn dotenv_keys() -> Vec<String> {
    match dotenvy::from_path_iter(".env") {
        Ok(iter) => iter.filter_map(Result::ok).map(|(k, _)| k).collect(),
        Err(_) => Vec::new(),
    }
}

/// Seed command-line flags and what wssd calls them.
const FLAGS: &[(&str, &str)] = &[
    (
        "--port",
        "--listen HOST:PORT (TLS) or --http HOST:PORT (plain), e.g. --listen 0.0.0.0:8443",
    ),
    (
        "--host",
        "--listen HOST:PORT (TLS) or --http HOST:PORT (plain), e.g. --listen 0.0.0.0:8443",
    ),
    (
        "--bind",
        "--listen HOST:PORT (TLS) or --http HOST:PORT (plain)",
    ),
    ("--ssl-certfile", "--cert FILE"),
    ("--ssl-keyfile", "--key FILE"),
    ("--ssl-cert", "--cert FILE"),
    ("--ssl-key", "--key FILE"),
    ("--certfile", "--cert FILE"),
    ("--keyfile", "--key FILE"),
    (
        "--ssl-keyfile-password",
        "nothing: wssd reads unencrypted PEM keys (openssl pkey -in key.pem -out key-plain.pem)",
    ),
    ("--ssl-ca-certs", "--client-ca FILE"),
    (
        "--generate-self-signed-cert",
        "nothing to add: wssd makes and reuses a self-signed certificate by default (--tls self-signed); for no browser warnings: --tls local-ca, then `wssd cert ca install`",
    ),
    (
        "--self-signed",
        "nothing to add: --tls self-signed is the default",
    ),
    (
        "--use-ssl",
        "nothing to add: TLS is on by default (--tls off for plain ws://)",
    ),
    ("--forwarded-allow-ips", "--trusted-proxy CIDR"),
    ("--ws-ping-interval", "--ping-interval SECONDS"),
    ("--ws-ping-timeout", "--idle-timeout SECONDS"),
    ("--timeout-keep-alive", "--idle-timeout SECONDS"),
    ("--limit-concurrency", "--max-connections N"),
    (
        "--reload",
        "nothing: certificates reload by themselves; configuration changes need a restart",
    ),
];

/// The wssd option for a seed flag (`--port`, `--port=8000` or `--port8000`
/// as clap reports it).
pub fn flag_tip(arg: &str) -> Option<&'static str> {
    let name = arg.split('=').next().unwrap_or(arg);
    FLAGS
        .iter()
        .find(|(flag, _)| name.eq_ignore_ascii_case(flag))
        .map(|(_, tip)| *tip)
}

/// Adds a "did you mean" tip to clap's error for an unknown seed flag
/// (clap's own message and exit code 2 stay).
pub fn with_seed_tip(mut err: clap::Error) -> clap::Error {
    if err.kind() != ErrorKind::UnknownArgument {
        return err;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    let Some(tip) = flag_tip(arg) else {
        return err;
    };
    let line = format!("{arg} is another server's flag; in wssd use {tip}");
    err.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![line.into()]),
    );
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tinychat_dotenv_names_every_equivalent() {
        let dotenv = keys(&[
            "HOST",
            "PORT",
            "USE_SSL",
            "SSL_CERT_PATH",
            "SSL_KEY_PATH",
            "MOD_PASSWORD",
        ]);
        let lines = hints(&dotenv, &dotenv);
        assert_eq!(lines.len(), 6, "{lines:#?}");
        let all = lines.join("\n");
        for needle in [
            "--listen",
            "--cert",
            "--key",
            "WSSD_MOD_PASSWORD",
            "--tls off",
            "in .env",
        ] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
    }

    #[test]
    fn generic_host_and_port_alone_in_the_environment_are_ignored() {
        let env = keys(&["HOST", "PORT", "PATH"]);
        assert!(hints(&[], &env).is_empty());
        let env = keys(&["HOST", "PORT", "SSL_CERTFILE"]);
        let lines = hints(&[], &env);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines.iter().all(|l| l.contains("in the environment")));
    }

    #[test]
    fn flags() {
        assert!(flag_tip("--port").unwrap().contains("--listen"));
        assert!(flag_tip("--ssl-certfile=c.pem").unwrap().contains("--cert"));
        assert!(
            flag_tip("--generate-self-signed-cert")
                .unwrap()
                .contains("self-signed")
        );
        assert!(flag_tip("--nope").is_none());
    }
}
