//! The bundled browser client, embedded in the binary at build time (no
//! network fetches). `static_files` serves it when a static route has no folder.

/// Content-Security-Policy of the bundled page: its own script and style
/// files only (no inline code, no eval), the microphone's AudioWorklet from
/// a `blob:` URL it makes itself, WebSockets to any ws:// or wss:// URL (a
/// route field may name another server, e.g. a speech recognizer) but no
/// other fetches, no framing (the microphone panel must not be
/// clickjacked), no plugins, no form posts.
pub const CSP: &str = "default-src 'none'; script-src 'self' blob:; style-src 'self'; \
connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every embedded file, by path relative to the route.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/client/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/client/app.js"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/client/style.css"),
    },
];

/// Looks up an embedded file; the empty path is `index.html`.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}
