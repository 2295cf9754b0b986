//! Configuration reload: what asks for one and what it answers. Three
//! triggers send a [`Request`] down one queue: SIGHUP, a change to the
//! configuration file (`file_watch`), and `POST /reload` on the admin
//! listener (`endpoint`, behind `--reload-token`). One task in
//! `crate::server::reload` takes them in turn, loads the configuration
//! again, and either applies it (routes, listeners, browser allowlists; see
//! there) or refuses it with every problem, the running one staying.
//! Settings that cannot change on a running server are named by `restart`.

pub mod endpoint;
pub mod file_watch;
pub mod restart;

use tokio::sync::{mpsc, oneshot};

/// Reload requests waiting at most: more are refused (SIGHUP and file
/// changes are dropped, since a queued reload reads the same file; `POST
/// /reload` gets 503).
pub const QUEUE: usize = 4;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    File,
    Admin,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Signal => "SIGHUP",
            Trigger::File => "configuration file changed",
            Trigger::Admin => "POST /reload",
        })
    }
}

/// One reload asked for; `reply` gets the outcome (`POST /reload` waits).
#[derive(Debug)]
pub struct Request {
    pub trigger: Trigger,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// The sending side of the reload queue.
pub type Requests = mpsc::Sender<Request>;

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The new configuration runs. `changes` lists what changed (empty:
    /// nothing did), `restart` the changed settings that only a restart (or
    /// an upgrade) applies.
    Applied {
        changes: Vec<String>,
        restart: Vec<String>,
    },
    /// The new configuration was refused; the running one stays.
    Refused { problems: Vec<String> },
}

impl Outcome {
    /// The `result` label of `wssd_config_reloads_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Applied { restart, .. } if restart.is_empty() => "ok",
            Outcome::Applied { .. } => "partial",
            Outcome::Refused { .. } => "invalid",
        }
    }

    /// A few lines for a person (the body of `POST /reload`'s answer).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        match self {
            Outcome::Applied { changes, restart } => {
                out.push_str("reloaded\n");
                if changes.is_empty() {
                    out.push_str("nothing changed\n");
                }
                for c in changes {
                    out.push_str(&format!("{c}\n"));
                }
                for r in restart {
                    out.push_str(&format!("needs a restart: {r}\n"));
                }
            }
            Outcome::Refused { problems } => {
                out.push_str("configuration refused; the running one stays\n");
                for p in problems {
                    out.push_str(&format!("error: {p}\n"));
                }
            }
        }
        out
    }
}

/// The reload queue.
pub fn queue() -> (Requests, mpsc::Receiver<Request>) {
    mpsc::channel(QUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_descriptions() {
        let ok = Outcome::Applied {
            changes: vec!["route added: /b".into()],
            restart: vec![],
        };
        assert_eq!(ok.result(), "ok");
        assert!(ok.describe().contains("route added: /b"));
        let partial = Outcome::Applied {
            changes: vec![],
            restart: vec!["--broker".into()],
        };
        assert_eq!(partial.result(), "partial");
        assert!(partial.describe().contains("needs a restart: --broker"));
        let refused = Outcome::Refused {
            problems: vec!["a".into(), "b".into()],
        };
        assert_eq!(refused.result(), "invalid");
        assert!(refused.describe().contains("error: a\nerror: b\n"));
    }
}
