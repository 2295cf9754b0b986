//! Property tests of chat names (`names`): any text gets an answer, an
//! accepted name is its own normal form, keys are stable, an invisible
//! character anywhere is refused, and a reserved name in any case or
//! width stays reserved.

use proptest::prelude::*;

use crate::names::{MAX_NAME_CHARS, NameError, RESERVED, key, member, visible};

/// Invisible code points, listed by hand from the Unicode tables (an
/// oracle independent of the ICU data the code asks): Cc, Cf, Zl, Zp, Co,
/// Cn (noncharacters and an unassigned one) and default-ignorables.
const INVISIBLE: &[char] = &[
    '\u{0}',
    '\u{9}',
    '\u{A}',
    '\u{1B}',
    '\u{7F}',
    '\u{85}',
    '\u{9F}', // Cc
    '\u{AD}',
    '\u{600}',
    '\u{61C}',
    '\u{6DD}',
    '\u{70F}',
    '\u{180E}',
    '\u{200B}',
    '\u{200C}',
    '\u{200D}',
    '\u{200E}',
    '\u{200F}',
    '\u{202A}',
    '\u{202E}',
    '\u{2060}',
    '\u{2064}',
    '\u{2066}',
    '\u{2069}',
    '\u{206F}',
    '\u{FEFF}',
    '\u{FFF9}',
    '\u{FFFB}',
    '\u{110BD}',
    '\u{1D173}',
    '\u{E0001}',
    '\u{E0041}', // Cf
    '\u{2028}',
    '\u{2029}', // Zl, Zp
    '\u{E000}',
    '\u{F8FF}',
    '\u{F0000}',
    '\u{10FFFD}', // Co
    '\u{378}',
    '\u{FDD0}',
    '\u{FFFE}',
    '\u{FFFF}',
    '\u{1FFFE}',
    '\u{10FFFF}', // Cn
    '\u{34F}',
    '\u{115F}',
    '\u{1160}',
    '\u{17B4}',
    '\u{17B5}',
    '\u{180B}',
    '\u{180F}',
    '\u{3164}',
    '\u{FE00}',
    '\u{FE0F}',
    '\u{FFA0}',
    '\u{1BCA0}',
    '\u{E0100}',
    '\u{E01EF}', // Default_Ignorable_Code_Point
];

/// Visible characters from several scripts, with combining marks, wide
/// and compatibility forms, and spaces (allowed inside a name).
fn visible_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => prop::char::range('a', 'z'),
        2 => prop::char::range('A', 'Z'),
        2 => prop::char::range('0', '9'),
        1 => Just(' '),
        1 => prop::sample::select(&['é', 'ß', 'İ', 'ı', 'Σ', 'ς', 'ǅ', 'ﬁ', 'Å', 'Å', 'ｅ', '①', '東', '京', 'ā', 'Ж', 'ש', 'ا', '😀', '\u{308}', '\u{301}', '\u{1100}', '\u{1161}', '가'][..]),
    ]
}

fn visible_name() -> impl Strategy<Value = String> {
    prop::collection::vec(visible_char(), 1..MAX_NAME_CHARS)
        .prop_map(|v| v.into_iter().collect::<String>().trim().to_string())
        .prop_filter("not empty once trimmed", |s| !s.is_empty())
}

proptest! {
    #![proptest_config(crate::props::config(512))]

    /// Catches: a panic on odd text; an accepted name that is not its own
    /// normal form, or whose key changes when it is accepted again.
    #[test]
    fn any_text_is_answered_and_names_are_fixed_points(raw in any::<String>()) {
        if let Ok(name) = visible(&raw) {
            let again = visible(&name.display);
            prop_assert_eq!(again.as_ref(), Ok(&name), "{:?}", raw);
            let n = name.display.chars().count();
            prop_assert!((1..=MAX_NAME_CHARS).contains(&n));
            prop_assert!(!name.display.starts_with(char::is_whitespace));
            prop_assert!(!name.display.ends_with(char::is_whitespace));
            for c in INVISIBLE {
                prop_assert!(!name.display.contains(*c), "{:?} kept {:?}", raw, c);
            }
        }
    }

    /// Catches: a key that is not its own key (two spellings of one name
    /// that compare equal once but not after a round trip through storage).
    #[test]
    fn keys_are_idempotent(raw in any::<String>()) {
        let k = key(&raw);
        prop_assert_eq!(key(&k), k.clone(), "{:?}", raw);
    }

    /// Catches: visible names refused, or their display changed beyond NFC.
    #[test]
    fn visible_names_are_accepted(name in visible_name()) {
        let got = visible(&name);
        prop_assert!(got.is_ok(), "{name:?}: {got:?}");
    }

    /// Catches: an invisible character (zero-width, bidi override,
    /// control, private-use, unassigned, filler) slipping into a name.
    #[test]
    fn an_invisible_character_anywhere_is_refused(
        name in visible_name(),
        c in prop::sample::select(INVISIBLE),
        at in any::<prop::sample::Index>(),
    ) {
        let chars: Vec<char> = name.chars().collect();
        let i = at.index(chars.len() + 1);
        let raw: String = chars[..i].iter().chain([&c]).chain(chars[i..].iter()).collect();
        prop_assert!(
            matches!(member(&raw), Err(NameError::Invisible(..) | NameError::Length)),
            "{raw:?}: {:?}", member(&raw)
        );
    }

    /// Catches: a reserved name taken by changing case or width.
    #[test]
    fn reserved_names_stay_reserved_in_any_case_or_width(
        which in prop::sample::select(RESERVED),
        forms in prop::collection::vec(0u8..3, 16),
    ) {
        let raw: String = which
            .chars()
            .zip(forms.iter().cycle())
            .map(|(c, form)| match form {
                0 => c,
                1 => c.to_ascii_uppercase(),
                // Fullwidth forms: U+FF41 is 'a'.
                _ => char::from_u32(0xFF41 + u32::from(c as u8 - b'a')).unwrap(),
            })
            .collect();
        prop_assert_eq!(member(&raw).map_err(|e| e.code()), Err("name_reserved"), "{:?}", raw);
    }

    /// Catches: names that differ only in ASCII case not clashing.
    #[test]
    fn ascii_case_does_not_make_a_new_name(name in "[a-zA-Z0-9 ]{1,20}") {
        prop_assert_eq!(key(&name.to_ascii_uppercase()), key(&name.to_ascii_lowercase()));
    }
}
