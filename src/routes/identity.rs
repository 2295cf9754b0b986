//! How route kinds pass an identity on (proxy `X-Wssd-Identity`, exec
//! `REMOTE_USER`, the logs): one text form, safe in a header value and in
//! an environment variable, and one span for a session's log lines.
//!
//! The name is percent-encoded UTF-8 (RFC 3986 style): every byte that is
//! not visible ASCII (controls, space, DEL, all non-ASCII bytes) and `%`
//! itself become `%XX`. A plain ASCII name such as `alice` or
//! `CN=alice,O=Example` passes unchanged; `José Díaz` becomes
//! `Jos%C3%A9%20D%C3%ADaz`; a line break can never end the header or start a
//! new line in a program's output. Any URL-decoder gives the name back
//! exactly (Python `urllib.parse.unquote`, JavaScript `decodeURIComponent`).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::auth::{Identity, IdentitySource};

/// Bytes encoded besides the non-ASCII ones: controls, DEL, space and `%`.
const NOT_VISIBLE: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// The identity's name as it is passed on (see the module docs).
pub fn encoded_name(identity: &Identity) -> Cow<'_, str> {
    utf8_percent_encode(&identity.name, NOT_VISIBLE).into()
}

/// CGI's `AUTH_TYPE` for how the identity was established: the HTTP scheme
/// for tokens (`Bearer`) and basic auth (`Basic`), `JWT` for a verified
/// JWT (whichever place it came from), `TLS` for a client certificate.
pub fn auth_type(source: IdentitySource) -> &'static str {
    match source {
        IdentitySource::Token => "Bearer",
        IdentitySource::Jwt => "JWT",
        IdentitySource::Basic => "Basic",
        IdentitySource::ClientCert => "TLS",
    }
}

/// The span a WebSocket session runs in: it puts `identity` (and how it
/// was established, `auth`) on every line the session logs, when there is
/// an identity; no span at all otherwise. The name is logged as written,
/// quoted, with control and invisible characters escaped (`\n`,
/// `\u{202e}`), so it reads as configured (`moderators`) and cannot forge
/// a log line.
pub fn session_span(identity: Option<&Identity>) -> tracing::Span {
    match identity {
        Some(id) => tracing::info_span!(
            "session",
            identity = ?id.name,
            auth = id.source.label()
        ),
        None => tracing::Span::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(name: &str) -> String {
        encoded_name(&Identity::new(name, IdentitySource::Jwt)).into_owned()
    }

    #[test]
    fn visible_ascii_passes_and_the_rest_is_percent_encoded() {
        assert_eq!(encoded("alice"), "alice");
        assert_eq!(encoded("CN=alice,O=Example"), "CN=alice,O=Example");
        assert_eq!(encoded("José Díaz"), "Jos%C3%A9%20D%C3%ADaz");
        assert_eq!(encoded("a\r\nX-Evil: 1"), "a%0D%0AX-Evil:%201");
        assert_eq!(encoded("100%"), "100%25");
        assert_eq!(encoded("nul\0del\x7f"), "nul%00del%7F");
        for name in ["a\r\nb", " lead", "trail ", "ünï", "\u{202e}x"] {
            let e = encoded(name);
            assert!(e.bytes().all(|b| b.is_ascii_graphic()), "{e}");
            assert!(hyper::header::HeaderValue::from_str(&e).is_ok());
            let back = percent_encoding::percent_decode_str(&e)
                .decode_utf8()
                .unwrap();
            assert_eq!(back, name);
        }
    }

    proptest::proptest! {
        /// Whatever the name (an issuer may let users pick it), the text
        /// passed on is one visible-ASCII header value, and decodes back.
        #[test]
        fn any_name_is_one_safe_header_value_and_decodes_back(name in r"\PC*|[\x00-\x20%\x7F-\x{10FFFF}]{0,40}") {
            let e = encoded(&name);
            proptest::prop_assert!(e.bytes().all(|b| b.is_ascii_graphic()), "{}", e);
            proptest::prop_assert!(hyper::header::HeaderValue::from_str(&e).is_ok());
            let back = percent_encoding::percent_decode_str(&e).decode_utf8().unwrap();
            proptest::prop_assert_eq!(back, name.as_str());
        }
    }
}
