//! Every option's default, in one table. `config::load` applies these and
//! nothing else; the `[default: ...]` notes in `--help` are checked against
//! them by the tests below, and `limits` re-exports the limit defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::types::{KeyType, LogFormat};

/// `--config`: read when present and no `--config` is given.
pub const CONFIG_FILE: &str = "wssd.toml";
/// `--listen`: the TLS listener.
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// `--http` when `--tls off` is given without `--http` or `--listen`.
pub const PLAIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// `--admin`: metrics and health.
pub const ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9099);
/// `--hostname`: names of generated certificates.
pub const HOSTNAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// `--key-type`.
pub const KEY_TYPE: KeyType = KeyType::EcdsaP256;
/// `--acme-directory`: Let's Encrypt's production directory.
pub const ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// `--cert-check-interval`: the certificate-file backstop check.
pub const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// `--log-format`.
pub const LOG_FORMAT: LogFormat = LogFormat::Text;
/// `--access-log` (`off`, `stderr` or a file).
pub const ACCESS_LOG: &str = "off";
/// `--access-log-format`.
pub const ACCESS_LOG_FORMAT: LogFormat = LogFormat::Text;
/// `--log-level`.
pub const LOG_LEVEL: &str = "info";
/// `--max-message-size`: 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// `--memory-budget`: global bytes of messages being received and queued
/// for fan-out, 256 MiB.
pub const MEMORY_BUDGET: usize = 256 * 1024 * 1024;
/// `--max-connections`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `--max-connections-per-ip`: high enough for a 1,000-connection test
/// from one machine, an office NAT or a carrier-grade NAT address shared by
/// hundreds of users (nginx, Caddy and HAProxy set no per-IP cap at all),
/// low enough that one address cannot hold more than ~40% of the default
/// `--max-connections`.
pub const MAX_CONNECTIONS_PER_IP: usize = 4096;
/// `--connection-rate-per-ip`: off (`None`); when set, the burst is twice
/// the rate.
pub const CONNECTION_RATE_PER_IP: Option<u32> = None;
/// `--listen-max-connections`, `--http-max-connections`: off (`None`):
/// only `--max-connections` and `--max-connections-per-ip` apply.
pub const LISTENER_MAX_CONNECTIONS: Option<usize> = None;
/// `--proxy-protocol`: off.
pub const PROXY_PROTOCOL: bool = false;
/// `--redirect-http`: off.
pub const REDIRECT_HTTP: bool = false;
/// `--watch-config`: a change to the configuration file reloads it.
pub const WATCH_CONFIG: bool = true;
/// `--http2`: TLS listeners offer HTTP/2 (ALPN `h2`).
pub const HTTP2: bool = true;
/// `--handshake-timeout`: TCP accept to complete request headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `--ping-interval`.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// `--idle-timeout`: off.
pub const IDLE_TIMEOUT: Option<Duration> = None;
/// `--drain-timeout`: how long WebSockets may take to close on shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// `--send-timeout`: the longest any write (to a client, an upstream or a
/// program's stdin) may make no progress, and the longest a proxied request
/// body may pause between chunks. A peer that stalls longer is closed (1008
/// when a close frame can still be written, else a TCP reset).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// `--message-rate` and `--byte-rate`: off. Their bursts default to twice
/// the rate (`config::rate`; a byte burst is at least the message size limit).
pub const MESSAGE_RATE: Option<u32> = None;
pub const BYTE_RATE: Option<u32> = None;

/// The default `--hostname` list.
pub fn hostnames() -> Vec<String> {
    HOSTNAMES.iter().map(|h| h.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `[default: X]` in a flag's help.
    fn help_default(id: &str) -> String {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            serve: crate::config::flags::ServeArgs,
        }
        let cmd = Flags::command();
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id().as_str() == id)
            .unwrap_or_else(|| panic!("no flag {id}"));
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let start = help
            .find("[default: ")
            .unwrap_or_else(|| panic!("{id}: {help}"))
            + 10;
        let end = help[start..].find(']').unwrap() + start;
        help[start..end].to_string()
    }

    #[test]
    fn help_states_the_defaults_of_this_table() {
        let secs = |d: Duration| d.as_secs().to_string();
        let cases = [
            ("listen", LISTEN.to_string()),
            ("admin", ADMIN.to_string()),
            ("hostname", HOSTNAMES.join(", ")),
            ("key_type", "ecdsa-p256".to_string()),
            ("max_message_size", MAX_MESSAGE_SIZE.to_string()),
            ("memory_budget", MEMORY_BUDGET.to_string()),
            ("max_connections", MAX_CONNECTIONS.to_string()),
            ("max_connections_per_ip", MAX_CONNECTIONS_PER_IP.to_string()),
            ("handshake_timeout", secs(HANDSHAKE_TIMEOUT)),
            ("ping_interval", secs(PING_INTERVAL)),
            ("drain_timeout", secs(DRAIN_TIMEOUT)),
            ("send_timeout", secs(SEND_TIMEOUT)),
            ("cert_check_interval", secs(CERT_CHECK_INTERVAL)),
            ("log_format", "text".to_string()),
            ("log_level", LOG_LEVEL.to_string()),
            ("access_log", ACCESS_LOG.to_string()),
            ("access_log_format", "text".to_string()),
        ];
        for (id, want) in cases {
            assert_eq!(help_default(id), want, "--{id}");
        }
        assert_eq!(KEY_TYPE, KeyType::default());
        assert_eq!(LOG_FORMAT, LogFormat::default());
        assert_eq!(ACCESS_LOG_FORMAT, LogFormat::default());
        assert_eq!(IDLE_TIMEOUT, None);
        assert_eq!(help_default("idle_timeout"), "off");
        assert_eq!(CONNECTION_RATE_PER_IP, None);
        assert_eq!((PROXY_PROTOCOL, REDIRECT_HTTP), (false, false));
        assert_eq!(LISTENER_MAX_CONNECTIONS, None);
        for id in [
            "connection_rate_per_ip",
            "proxy_protocol",
            "redirect_http",
            "listen_max_connections",
            "http_max_connections",
        ] {
            assert_eq!(help_default(id), "off", "--{id}");
        }
        const { assert!(WATCH_CONFIG) };
        assert_eq!(help_default("watch_config"), "on");
        assert_eq!((MESSAGE_RATE, BYTE_RATE), (None, None));
        assert_eq!(help_default("message_rate"), "off");
        assert_eq!(help_default("byte_rate"), "off");
        assert_eq!(help_default("message_burst"), "twice the rate");
        assert_eq!(
            help_default("config"),
            format!("./{CONFIG_FILE} when present")
        );
    }
}
