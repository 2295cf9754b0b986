//! Property tests for what an attacker reaches first: credential
//! extraction from any header, query or cookie bytes, and token and JWT
//! verification of arbitrary input. None may panic; a token embedded in a
//! well-formed header, query or cookie is found exactly.

use hyper::header::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::extract::{self, Place};
use super::jwt::{JwtRules, JwtVerifier};
use super::token::TokenSet;

fn rules() -> JwtRules {
    JwtRules {
        audience: Some(vec!["wssd".into()]),
        issuer: Some("issuer".into()),
        leeway_secs: 60,
        identity_claim: "sub".into(),
    }
}

/// Characters a token may have and that survive every carrier unchanged
/// (RFC 6750 b64token, minus `+`/`/`/`=` which query encoding changes).
fn token_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{16,64}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn extraction_never_panics(
        auth in proptest::collection::vec(any::<u8>(), 0..200),
        cookie in proptest::collection::vec(any::<u8>(), 0..200),
        query in ".{0,200}",
        name in "[a-z_]{1,10}",
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&auth) {
            headers.insert(hyper::header::AUTHORIZATION, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&cookie) {
            headers.insert(hyper::header::COOKIE, v);
        }
        let _ = extract::token(&headers, Some(&query), Some(&name));
        let _ = extract::basic(&headers);
        let _ = extract::strip_query_token(&query);
        let _ = extract::query_has_token(&query);
        if let Ok(text) = std::str::from_utf8(&cookie) {
            let _ = extract::strip_cookie(text, &name);
        }
    }

    #[test]
    fn embedded_tokens_are_found_exactly(
        token in token_strategy(),
        before in "[a-z]{1,8}=[a-z0-9]{0,8}",
        after in "[a-z]{1,8}=[a-z0-9]{0,8}",
        place in 0u8..3,
    ) {
        prop_assume!(!before.starts_with("access_token") && !after.starts_with("access_token"));
        let mut headers = HeaderMap::new();
        let mut query = format!("{before}&{after}");
        match place {
            0 => {
                headers.insert(
                    hyper::header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
                );
            }
            1 => query = format!("{before}&access_token={token}&{after}"),
            _ => {
                headers.insert(
                    hyper::header::COOKIE,
                    HeaderValue::from_str(&format!("{before}; wssd_token={token}; {after}")).unwrap(),
                );
            }
        }
        let found = extract::token(&headers, Some(&query), Some("wssd_token"))
            .unwrap()
            .unwrap();
        prop_assert_eq!(&found.secret, &token);
        let expected = [Place::Header, Place::Query, Place::Cookie][usize::from(place)];
        prop_assert_eq!(found.place, expected);
        if place == 1 {
            let stripped = extract::strip_query_token(&query).unwrap_or_default();
            prop_assert!(!stripped.contains(&token));
            prop_assert_eq!(stripped, format!("{before}&{after}"));
        }
    }

    #[test]
    fn basic_pairs_round_trip(user in "[^:\\x00-\\x1f]{1,20}", password in "[^\\x00-\\x1f]{0,40}") {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        let pair = extract::basic(&headers).unwrap().unwrap();
        prop_assert_eq!(pair.user, user);
        prop_assert_eq!(pair.password, password);
    }

    #[test]
    fn verification_of_arbitrary_input_never_panics(input in ".{0,400}", bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let set = TokenSet::parse_file("alice:0123456789abcdef0123\n").unwrap();
        prop_assert!(set.verify(input.as_bytes()).is_none());
        prop_assert!(set.verify(&bytes).is_none());
        let jwt = JwtVerifier::from_secret(&[7u8; 32], &rules()).unwrap();
        prop_assert!(jwt.verify(&input).is_err());
        let lossy = String::from_utf8_lossy(&bytes);
        prop_assert!(jwt.verify(&lossy).is_err());
        // Three base64url-ish parts: gets past the first split.
        let dotted = format!("{input}.{input}.{input}");
        prop_assert!(jwt.verify(&dotted).is_err());
    }

    #[test]
    fn parsers_of_configuration_never_panic(text in ".{0,400}") {
        let _ = TokenSet::parse_file(&text);
        let _ = TokenSet::parse_env(&text);
        let _ = super::basic::Htpasswd::parse(&text);
        let _ = JwtVerifier::from_pem(text.as_bytes(), &rules());
        let _ = JwtVerifier::from_jwks(text.as_bytes(), &rules());
    }
}
