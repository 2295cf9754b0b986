//! Where a credential is read from a request, and how it is taken out
//! before the route kind sees the request. Browsers cannot set headers on a
//! WebSocket, so a token is looked for in `Authorization: Bearer`, then in
//! the `access_token` query parameter, then in the route's named cookie;
//! basic auth reads `Authorization: Basic`. Pure functions over bytes:
//! nothing here panics on any input (a property test holds that).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderMap};

/// The query parameter a token may travel in (RFC 6750 section 2.3).
pub const QUERY_PARAM: &str = "access_token";

/// Longest credential looked at; anything longer is malformed (the
/// request head is bounded anyway; this bounds the work per attempt).
pub const MAX_CREDENTIAL: usize = 8192;

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The `Authorization` header (Bearer or Basic).
    Header,
    /// The `access_token` query parameter.
    Query,
    /// The route's named cookie.
    Cookie,
}

/// A bearer-style credential (a static token or a JWT) and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub secret: String,
    pub place: Place,
}

/// A basic-auth user and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicPair {
    pub user: String,
    pub password: String,
}

/// A credential that is there but cannot be read; the text says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// The bearer credential of a request: `Authorization: Bearer` first, then
/// the `access_token` query parameter, then the cookie named `cookie`.
/// `Ok(None)` when none of them is there.
pub fn token(
    headers: &HeaderMap,
    query: Option<&str>,
    cookie: Option<&str>,
) -> Result<Option<Presented>, Malformed> {
    if let Some(secret) = authorization(headers, "Bearer")? {
        return found(secret, Place::Header);
    }
    if let Some(secret) = query.map(query_token).transpose()?.flatten() {
        return found(secret, Place::Query);
    }
    if let Some(name) = cookie
        && let Some(secret) = cookie_value(headers, name)?
    {
        return found(secret, Place::Cookie);
    }
    Ok(None)
}

fn found(secret: String, place: Place) -> Result<Option<Presented>, Malformed> {
    if secret.is_empty() {
        return Err(Malformed("the credential is empty"));
    }
    if secret.len() > MAX_CREDENTIAL {
        return Err(Malformed("the credential is too long"));
    }
    Ok(Some(Presented { secret, place }))
}

/// The `Authorization: Basic` user and password, if the header is there.
pub fn basic(headers: &HeaderMap) -> Result<Option<BasicPair>, Malformed> {
    let Some(encoded) = authorization(headers, "Basic")? else {
        return Ok(None);
    };
    if encoded.len() > MAX_CREDENTIAL {
        return Err(Malformed("the credential is too long"));
    }
    let bytes = STANDARD
        .decode(encoded.as_bytes())
        .map_err(|_| Malformed("Authorization: Basic must be base64 of user:password"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Malformed("Authorization: Basic must be UTF-8 user:password"))?;
    let Some((user, password)) = text.split_once(':') else {
        return Err(Malformed(
            "Authorization: Basic must be base64 of user:password",
        ));
    };
    if user.is_empty() {
        return Err(Malformed("Authorization: Basic has an empty user name"));
    }
    Ok(Some(BasicPair {
        user: user.to_string(),
        password: password.to_string(),
    }))
}

/// The credentials of the `Authorization` header with this `scheme`
/// (case-insensitive), `None` when there is no such header or it uses
/// another scheme. Two `Authorization` headers are malformed.
fn authorization(headers: &HeaderMap, scheme: &str) -> Result<Option<String>, Malformed> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Malformed("more than one Authorization header"));
    }
    let Ok(value) = value.to_str() else {
        return Err(Malformed("the Authorization header is not ASCII"));
    };
    let value = value.trim();
    let (given, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !given.eq_ignore_ascii_case(scheme) {
        return Ok(None);
    }
    Ok(Some(rest.trim().to_string()))
}

/// The `access_token` parameter of a query string, form-decoded. Two of
/// them are malformed (which one would the route check?).
pub fn query_token(query: &str) -> Result<Option<String>, Malformed> {
    let mut token = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !is_token_key(key) {
            continue;
        }
        if token.is_some() {
            return Err(Malformed("more than one access_token query parameter"));
        }
        token =
            Some(form_decode(value).ok_or(Malformed("the access_token parameter is not UTF-8"))?);
    }
    Ok(token)
}

/// Whether a raw query key is `access_token` (also percent-encoded).
fn is_token_key(key: &str) -> bool {
    key == QUERY_PARAM || form_decode(key).is_some_and(|k| k == QUERY_PARAM)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, then
/// percent-decoding; `None` when the result is not UTF-8.
fn form_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The query without any `access_token` parameter (`None` when nothing
/// is left), so the route kind never sees the credential.
pub fn strip_query_token(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !is_token_key(key)
        })
        .collect();
    let joined = kept.join("&");
    (!joined.is_empty()).then_some(joined)
}

/// Whether the query holds an `access_token` parameter.
pub fn query_has_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        is_token_key(key)
    })
}

/// The value of the first cookie called `name` in the `Cookie` headers
/// (a quoted value loses its quotes).
fn cookie_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, Malformed> {
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() == name {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                return Ok(Some(v.to_string()));
            }
        }
    }
    Ok(None)
}

/// A `Cookie` header value without the cookies called `name`; `None` when
/// none is left.
pub fn strip_cookie(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k.trim() != name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_then_query_then_cookie() {
        let h = headers(&[("authorization", "bearer abc"), ("cookie", "t=ck")]);
        let p = token(&h, Some("access_token=q"), Some("t"))
            .unwrap()
            .unwrap();
        assert_eq!((p.secret.as_str(), p.place), ("abc", Place::Header));
        let h = headers(&[("cookie", "a=1; t=\"ck\"")]);
        let p = token(&h, Some("x=1&access_token=a%2Bb+c"), Some("t"))
            .unwrap()
            .unwrap();
        assert_eq!((p.secret.as_str(), p.place), ("a+b c", Place::Query));
        let p = token(&h, Some("x=1"), Some("t")).unwrap().unwrap();
        assert_eq!((p.secret.as_str(), p.place), ("ck", Place::Cookie));
        assert_eq!(token(&h, None, None).unwrap(), None);
        // Another scheme is not a bearer token.
        let h = headers(&[("authorization", "Basic eDp5")]);
        assert_eq!(token(&h, None, None).unwrap(), None);
    }

    #[test]
    fn ambiguity_and_emptiness_are_malformed() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(token(&h, None, None).is_err());
        assert!(
            token(
                &HeaderMap::new(),
                Some("access_token=a&access_token=b"),
                None
            )
            .is_err()
        );
        assert!(token(&HeaderMap::new(), Some("access_token="), None).is_err());
        let h = headers(&[("authorization", "Bearer ")]);
        assert!(token(&h, None, None).is_err());
        assert!(token(&HeaderMap::new(), Some("access_token=%ff"), None).is_err());
    }

    #[test]
    fn basic_pairs() {
        let h = headers(&[("authorization", "Basic YWxpY2U6czNjcjp0")]);
        assert_eq!(
            basic(&h).unwrap().unwrap(),
            BasicPair {
                user: "alice".into(),
                password: "s3cr:t".into()
            }
        );
        let h = headers(&[("authorization", "Basic !!!")]);
        assert!(basic(&h).is_err());
        let h = headers(&[("authorization", "Basic OnB3")]);
        assert!(basic(&h).is_err(), "empty user");
        assert_eq!(basic(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn stripping() {
        assert_eq!(
            strip_query_token("a=1&access_token=x&b=2").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(strip_query_token("access%5Ftoken=x"), None);
        assert!(query_has_token("access%5ftoken=x"));
        assert!(!query_has_token("token=x"));
        assert_eq!(
            strip_cookie("a=1; t=secret; b=2", "t").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("t=secret", "t"), None);
    }
}
