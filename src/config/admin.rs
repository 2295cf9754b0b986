//! The admin section: the metrics/health listener and the bearer tokens of
//! its publish and reload endpoints.

use std::net::SocketAddr;

use super::defaults;
use super::error::ConfigError;
use super::listeners::parse_addr;
use super::sources::{Sources, pick};

/// Admin settings.
pub struct Admin {
    /// The admin listener, or `None` when off.
    pub addr: Option<SocketAddr>,
    /// Bearer token of `POST /publish/<route>`; `None` disables it.
    pub publish_token: Option<String>,
    /// Bearer token of `POST /reload`; `None` disables it.
    pub reload_token: Option<String>,
    /// `--watch-config`: reload when the configuration file changes.
    pub watch_config: bool,
}

/// `--admin` (an address, or `off`/`none`/empty), `--publish-token` and
/// `--reload-token` (each at least 16 characters), and `--watch-config`
/// (the reload settings live with the admin endpoint's token).
pub fn section(src: &Sources<'_>, problems: &mut Vec<ConfigError>) -> Admin {
    let text = pick(
        &src.args.admin,
        src.file.admin.as_ref().map(|a| a.get_ref()),
    );
    let addr = match text.as_deref() {
        None => Some(defaults::ADMIN),
        Some("off" | "none" | "") => None,
        Some(text) => match parse_addr(text) {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(e.at("--admin"));
                None
            }
        },
    };
    let publish_token = pick(&src.args.publish_token, src.file.publish_token.as_ref());
    if let Some(t) = &publish_token
        && t.trim().len() < 16
    {
        problems.push(ConfigError::PublishTokenTooShort);
    }
    let reload_token = pick(&src.args.reload_token, src.file.reload_token.as_ref());
    if let Some(t) = &reload_token
        && t.trim().len() < 16
    {
        problems.push(ConfigError::ReloadTokenTooShort);
    }
    let watch_config = pick(&src.args.watch_config, src.file.watch_config.as_ref())
        .unwrap_or(defaults::WATCH_CONFIG);
    Admin {
        addr,
        publish_token,
        reload_token,
        watch_config,
    }
}
