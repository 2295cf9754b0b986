//! The settings a reload cannot apply to a running server: the TLS setup,
//! the admin listener, the broker, server-wide connection limits, the
//! handshake and send timeouts of the accept loops, what listeners do
//! before HTTP, trusted proxies, tokens, logging and the state folder. A
//! reload that changes one applies the rest and names these ("needs a
//! restart, or SIGUSR2 for a zero-downtime upgrade, which re-reads the
//! configuration"); `wssd_config_reloads_total{result="partial"}`.

use crate::config::Config;

/// The options (as flags) whose value differs between `old` and `new` and
/// that only a restart applies.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &str| {
        if changed {
            out.push(name.to_string());
        }
    };
    let (o, n) = (&old.tls, &new.tls);
    check(o.mode != n.mode, "--tls");
    check(o.cert != n.cert || o.key != n.key, "--cert/--key");
    check(o.hostnames != n.hostnames, "--hostname (certificate names)");
    check(o.key_type != n.key_type, "--key-type");
    check(o.sni != n.sni, "[[tls.certificate]]");
    check(o.client_auth != n.client_auth, "--client-ca/--client-auth");
    check(o.acme != n.acme, "--acme-*");
    check(
        o.check_interval != n.check_interval,
        "--cert-check-interval",
    );
    check(old.state_dir != new.state_dir, "--state-dir");
    let (o, n) = (&old.limits, &new.limits);
    check(o.max_connections != n.max_connections, "--max-connections");
    check(
        o.max_connections_per_ip != n.max_connections_per_ip,
        "--max-connections-per-ip",
    );
    check(o.memory_budget != n.memory_budget, "--memory-budget");
    check(
        o.handshake_timeout != n.handshake_timeout,
        "--handshake-timeout",
    );
    check(
        o.send_timeout != n.send_timeout,
        "--send-timeout (of handshakes; WebSockets of changed routes take the new one)",
    );
    check(
        o.drain_timeout != n.drain_timeout,
        "--drain-timeout (at shutdown; this reload's grace already uses the new one)",
    );
    check(
        old.listener_options != new.listener_options,
        "--proxy-protocol/--connection-rate-per-ip/--redirect-http/--listen-max-connections/--http-max-connections/--http2",
    );
    check(
        old.trusted_proxies != new.trusted_proxies,
        "--trusted-proxy",
    );
    check(old.admin != new.admin, "--admin");
    check(old.broker != new.broker, "--broker/--broker-ca");
    check(old.publish_token != new.publish_token, "--publish-token");
    check(old.reload_token != new.reload_token, "--reload-token");
    check(old.watch_config != new.watch_config, "--watch-config");
    check(
        old.log_format != new.log_format || old.log_level != new.log_level,
        "--log-format/--log-level",
    );
    check(
        old.access_log != new.access_log,
        "--access-log/--access-log-format",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, ServeArgs, load};
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(extra: &[&str]) -> Config {
        let mut argv = vec![
            "wssd",
            "--config",
            "/dev/null",
            "--tls",
            "off",
            "--http",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(extra);
        let env = Environment {
            home: Some("/home/u".into()),
            ..Environment::default()
        };
        load(&Flags::parse_from(argv).serve, &env).unwrap()
    }

    #[test]
    fn routes_and_allowlists_need_no_restart() {
        let old = config(&[]);
        let new = config(&["--route", "/x=echo", "--allow-origin", "https://a.example"]);
        assert!(needs_restart(&old, &new).is_empty());
    }

    #[test]
    fn server_wide_settings_are_named() {
        let old = config(&[]);
        let new = config(&["--max-connections", "7", "--admin", "off"]);
        assert_eq!(needs_restart(&old, &new), ["--max-connections", "--admin"]);
    }
}
