//! Chat names (docs/chat.md): which are acceptable, and when two are the
//! same person.
//!
//! A name is shown as given after NFC normalisation. It must be 1 to 32
//! characters, every one visible: no control, format, separator-line or
//! paragraph, private-use, surrogate or unassigned code point (general
//! categories Cc Cf Zl Zp Co Cs Cn) and no Default_Ignorable_Code_Point
//! (zero-width space and joiners, BOM, bidi overrides, variation
//! selectors, Hangul fillers...). It must not start or end with white
//! space (so it cannot be only white space).
//!
//! Two names are the same when their keys are: NFKC, full Unicode case
//! fold, NFKC again (the compatibility caseless match of Unicode §3.13), so
//! `Alice`, `alice`, `ALICE` and `ａｌｉｃｅ` clash in a room and a ban on one
//! bans them all. Some names are reserved for the server (`server`, the
//! default sender of HTTP publishes, and names that pass for staff); they
//! are compared by key too.

use std::borrow::Cow;

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Longest name, in characters (after NFC).
pub const MAX_NAME_CHARS: usize = 32;

/// Names members may not take (compared by key): `server` is what HTTP
/// publishes are sent as; the others would pass for the service or staff.
pub const RESERVED: &[&str] = &[
    "server",
    "system",
    "wssd",
    "admin",
    "administrator",
    "moderator",
    "root",
];

/// An acceptable name: as shown, and as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The name as given, NFC-normalised.
    pub display: String,
    /// The comparison key (see the module docs).
    pub key: String,
}

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("username must be 1 to {MAX_NAME_CHARS} characters")]
    Length,
    #[error(
        "username contains U+{:04X}, {}; use visible characters only",
        u32::from(*.0),
        .1
    )]
    Invisible(char, &'static str),
    #[error("username must not start or end with white space")]
    Whitespace,
    #[error("the name {0} is reserved for the server; pick another")]
    Reserved(String),
}

impl NameError {
    /// The chat error code: `bad_name` or `name_reserved`.
    pub fn code(&self) -> &'static str {
        match self {
            NameError::Reserved(_) => "name_reserved",
            _ => "bad_name",
        }
    }
}

/// A name a member may take: visible, and not reserved.
pub fn member(raw: &str) -> Result<Name, NameError> {
    let name = visible(raw)?;
    if RESERVED.iter().any(|r| key(r) == name.key) {
        return Err(NameError::Reserved(name.display));
    }
    Ok(name)
}

/// A name made of visible characters (reserved names allowed: the
/// authenticated publish endpoint may send as `server`).
pub fn visible(raw: &str) -> Result<Name, NameError> {
    let display = nfc(raw).into_owned();
    let n = display.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(NameError::Length);
    }
    for c in display.chars() {
        if let Some(why) = invisible(c) {
            return Err(NameError::Invisible(c, why));
        }
    }
    if display.starts_with(char::is_whitespace) || display.ends_with(char::is_whitespace) {
        return Err(NameError::Whitespace);
    }
    let key = key(&display);
    Ok(Name { display, key })
}

/// The comparison key of a name: NFKC, case fold, NFKC.
pub fn key(name: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let folded = CaseMapper::new()
        .fold_string(&nfkc.normalize(name))
        .into_owned();
    nfkc.normalize(&folded).into_owned()
}

fn nfc(s: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfc().normalize(s)
}

/// What makes `c` unfit for a name, if anything.
fn invisible(c: char) -> Option<&'static str> {
    let why = match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::Control => "a control character",
        GeneralCategory::Format => "an invisible format character",
        GeneralCategory::LineSeparator => "a line separator",
        GeneralCategory::ParagraphSeparator => "a paragraph separator",
        GeneralCategory::PrivateUse => "a private-use character",
        GeneralCategory::Surrogate => "a surrogate",
        GeneralCategory::Unassigned => "an unassigned code point",
        _ if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) => {
            "an invisible (default-ignorable) character"
        }
        _ => return None,
    };
    Some(why)
}

/// Whether `room` is an acceptable chat room name: 1 to 64 characters from
/// A-Z a-z 0-9 `_` `-` `.` (the same rule for joins, publishing and a
/// route's `default_room`).
pub fn room(room: &str) -> Result<(), BadRoom> {
    if room.is_empty()
        || room.len() > 64
        || !room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(BadRoom(room.to_string()));
    }
    Ok(())
}

/// A room name [`room`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("room `{0}` must be 1 to 64 characters from A-Z a-z 0-9 _ - .")]
pub struct BadRoom(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_names_pass_nfc_kept() {
        assert_eq!(member("Zoë 2").map(|n| n.display), Ok("Zoë 2".into()));
        // e + combining diaeresis is shown composed.
        assert_eq!(member("Zoe\u{308}").map(|n| n.display), Ok("Zoë".into()));
        assert_eq!(
            member("Zoe\u{308}").map(|n| n.key),
            member("ZOË").map(|n| n.key)
        );
        assert!(member("東京").is_ok());
        assert!(member("a b").is_ok());
    }

    #[test]
    fn invisible_and_format_characters_refused() {
        for bad in [
            "alice\u{200B}",
            "\u{202E}ecila",
            "\u{FEFF}alice",
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            "al\u{2028}ice",
            "al\u{2029}ice",
            "al\u{E000}ice",
            "al\u{0378}ice",
            "a\nb",
            "a\u{7F}b",
            "\u{3164}",
            "a\u{FE0F}",
            "a\u{00AD}b",
        ] {
            let e = member(bad).unwrap_err();
            assert_eq!(e.code(), "bad_name", "{bad:?}");
            assert!(matches!(e, NameError::Invisible(..)), "{bad:?}: {e}");
        }
        assert_eq!(
            member("alice\u{200B}").unwrap_err().to_string(),
            "username contains U+200B, an invisible format character; use visible characters only"
        );
    }

    #[test]
    fn whitespace_and_length() {
        assert_eq!(member(" alice"), Err(NameError::Whitespace));
        assert_eq!(member("alice\u{3000}"), Err(NameError::Whitespace));
        assert_eq!(member("   "), Err(NameError::Whitespace));
        assert_eq!(member(""), Err(NameError::Length));
        assert_eq!(member(&"x".repeat(33)), Err(NameError::Length));
        assert!(member(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn case_and_width_fold_to_one_key() {
        let k = key("alice");
        for same in ["Alice", "ALICE", "ａｌｉｃｅ", "alIce"] {
            assert_eq!(key(same), k, "{same}");
        }
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_ne!(key("alice"), key("alicia"));
    }

    #[test]
    fn reserved_names() {
        for r in [
            "server",
            "Server",
            "SERVER",
            "ｓｅｒｖｅｒ",
            "Admin",
            "moderator",
        ] {
            assert_eq!(member(r).unwrap_err().code(), "name_reserved", "{r}");
        }
        assert!(visible("server").is_ok());
        assert!(member("servers").is_ok());
    }
}
