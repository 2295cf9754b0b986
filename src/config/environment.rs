//! What configuration takes from the process environment besides `WSSD_*`
//! (which clap reads): the state-folder defaults and named secrets, read
//! once so that `load` itself is a pure function of its inputs.

use std::collections::HashMap;
use std::path::PathBuf;

/// Where the environment-derived defaults come from (so tests can pass them).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub xdg_state_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// Secrets named by the configuration (moderator passwords), by name.
    pub secrets: HashMap<String, String>,
    /// The keys of the working folder's `.env` (for `seed`'s hints).
    pub dotenv_keys: Vec<String>,
}

impl Environment {
    /// Reads `XDG_STATE_HOME` and `HOME` once.
    pub fn from_process() -> Self {
        Environment {
            xdg_state_home: std::env::var_os("XDG_STATE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            // Any variable may be named by `moderator_password_env`; keep the
            // non-empty ones so `load` never reads the process environment.
            secrets: std::env::vars().filter(|(_, v)| !v.is_empty()).collect(),
            dotenv_keys: super::seed::dotenv_keys(),
        }
    }
}

/// `$XDG_STATE_HOME/wssd` or `~/.local/state/wssd`.
pub fn default_state_dir(env: &Environment) -> Option<PathBuf> {
    if let Some(x) = &env.xdg_state_home {
        return Some(x.join("wssd"));
    }
    env.home
        .as_ref()
        .map(|h| h.join(".local").join("state").join("wssd"))
}
