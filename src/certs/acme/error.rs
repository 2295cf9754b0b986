//! Why an ACME attempt failed, worded for the log line and the manager's
//! status. A failed attempt is retried with backoff; only [`Failure::Challenge`]
//! makes the order client try the other challenge type first.

use crate::certs::error::CertError;
use crate::tls::CaPemError;

/// Why an order (or a step of it) failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// The CA could not validate a challenge (another type may work).
    #[error("{0}")]
    Challenge(String),
    /// A request to the CA failed: `step` says what wssd was doing.
    #[error("{step}: {detail}")]
    Step { step: String, detail: String },
    /// `--acme-ca-root` cannot be used.
    #[error("--acme-ca-root {path}: {problem}")]
    CaRoot { path: String, problem: String },
    /// The account credentials cannot be serialized.
    #[error("serializing the account: {0}")]
    Serialize(serde_json::Error),
    /// Reading, writing or checking a certificate in the state folder.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Anything else (no usable challenge, an unexpected CA answer, a timeout).
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// An unusable `--acme-ca-root` file, with the remedy.
    pub(super) fn ca_root(path: &std::path::Path, e: CaPemError) -> Failure {
        let problem = match e {
            CaPemError::Malformed(e) => format!("malformed PEM ({e})"),
            CaPemError::Unusable(e) => format!("unusable CA certificate ({e})"),
            CaPemError::Empty => "no CERTIFICATE in this file; give the PEM root the ACME server's HTTPS certificate chains to".to_owned(),
        };
        Failure::CaRoot {
            path: path.display().to_string(),
            problem,
        }
    }
}

/// An error and its sources in one line, without repeats.
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}

/// Maps an instant-acme error to a [`Failure::Step`] naming what was being done.
pub(super) fn step(what: String) -> impl FnOnce(instant_acme::Error) -> Failure {
    move |e| Failure::Step {
        step: what,
        detail: describe(&e),
    }
}

/// Whether the CA answered with the RFC 8555 problem type `kind`.
pub(super) fn is_problem(e: &instant_acme::Error, kind: &str) -> bool {
    matches!(e, instant_acme::Error::Api(p)
        if p.r#type.as_deref().is_some_and(|t| t.ends_with(&format!(":{kind}"))))
}
