//! The install page's HTML: `page.html` with the CA's name, fingerprint,
//! links and the QR code filled in (every value escaped).

use crate::certs::local_ca::{CaPublic, qr_svg, xml_escape};

const TEMPLATE: &str = include_str!("page.html");

/// The page for `ca`, its route path `base` (no trailing `/`) and its URL.
pub fn render(ca: &CaPublic, base: &str, url: &str) -> String {
    let qr = qr_svg(url).unwrap_or_default();
    TEMPLATE
        .replace("{{name}}", &xml_escape(&ca.subject_cn()))
        .replace("{{fingerprint}}", &xml_escape(&ca.fingerprint))
        .replace("{{base}}", &xml_escape(base))
        .replace("{{url}}", &xml_escape(url))
        .replace("{{qr}}", &qr)
}
