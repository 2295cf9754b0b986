//! QR codes of the install page's URL: SVG for the page, Unicode half blocks
//! for the terminal. The `qrcode` crate encodes and has both renderers.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

/// The QR code of `text` as an inline SVG element (`None` when `text` is too
/// long for a QR code).
pub fn svg(text: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(240, 240)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .quiet_zone(true)
            .build(),
    )
}

/// The QR code of `text` in Unicode half blocks, two modules per character
/// cell. Light modules are drawn as blocks, as `qrencode -t UTF8` does, so
/// the code reads right on the usual light-on-dark terminal.
pub fn terminal(text: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
    Some(
        code.render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_forms() {
        let url = "http://192.168.1.20:8080/ca";
        let s = svg(url).unwrap();
        assert!(s.contains("<svg") && s.contains("</svg>"), "{s}");
        let t = terminal(url).unwrap();
        assert!(t.contains('\u{2588}') && t.lines().count() > 10, "{t}");
        assert!(svg(&"x".repeat(10_000)).is_none());
    }
}
