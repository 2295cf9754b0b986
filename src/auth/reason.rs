//! Why the edge refused a request: the one list of reasons, each with its
//! metric label, HTTP status and the `WWW-Authenticate` error it implies.

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No credential where the route reads one.
    Missing,
    /// A credential that cannot be parsed (bad base64, not a JWT, two of them).
    Malformed,
    /// A static token that is not in the route's list.
    UnknownToken,
    /// A JWT whose signature (or key id) does not check out.
    BadSignature,
    /// A JWT past its `exp` (plus leeway).
    Expired,
    /// A JWT before its `nbf` (minus leeway).
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    /// A JWT that lacks a required claim (`exp`, `aud`, `iss`) or whose
    /// identity claim is not a non-empty string.
    MissingClaim,
    /// A JWT signed with an algorithm the route's key does not allow.
    WrongAlgorithm,
    /// Basic auth: a known user with the wrong password.
    BadPassword,
    /// Basic auth: a user not in the htpasswd file.
    UnknownUser,
    /// Too many wrong attempts (from this address or in total), or the
    /// password checks are saturated: refused without looking.
    Throttled,
}

impl Reason {
    /// The `reason` label of `wssd_auth_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::UnknownToken => "unknown_token",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::MissingClaim => "missing_claim",
            Reason::WrongAlgorithm => "wrong_algorithm",
            Reason::BadPassword => "bad_password",
            Reason::UnknownUser => "unknown_user",
            Reason::Throttled => "throttled",
        }
    }

    /// What the client reads in the 401 body: what is missing or wrong,
    /// never which part of a secret was right. Basic auth says the same
    /// for an unknown user and a wrong password.
    pub fn text(self) -> &'static str {
        match self {
            Reason::Missing => "credentials required",
            Reason::Malformed => "the credential could not be parsed",
            Reason::UnknownToken => "the token is not valid",
            Reason::BadSignature => "the token's signature does not verify",
            Reason::Expired => "the token has expired",
            Reason::NotYetValid => "the token is not valid yet (nbf)",
            Reason::WrongAudience => "the token is for another audience (aud)",
            Reason::WrongIssuer => "the token is from another issuer (iss)",
            Reason::MissingClaim => "the token lacks a required claim",
            Reason::WrongAlgorithm => "the token's algorithm is not accepted here",
            Reason::BadPassword | Reason::UnknownUser => "wrong user name or password",
            Reason::Throttled => "too many failed attempts",
        }
    }
}
