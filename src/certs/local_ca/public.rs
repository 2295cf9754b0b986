//! The local CA's public face, for handing it to other devices: its
//! certificate (PEM and DER), SHA-256 fingerprint, and an Apple
//! configuration profile (`.mobileconfig`) carrying it. Only `ca.pem` is
//! read here, never the key.

use std::time::SystemTime;

use base64::Engine;

use super::ca::read_ca_cert;
use super::layout::CaPaths;
use crate::certs::error::CertError;

/// The CA certificate as other devices get it.
#[derive(Debug, Clone)]
pub struct CaPublic {
    /// `ca.pem` as stored (one certificate).
    pub pem: String,
    pub der: Vec<u8>,
    pub subject: String,
    pub not_after: SystemTime,
    /// SHA-256 of the DER, uppercase hex pairs joined by `:` (as browsers
    /// and phones show it).
    pub fingerprint: String,
}

/// Reads `ca.pem`; `None` when there is no CA yet.
pub fn load_public(p: &CaPaths) -> Result<Option<CaPublic>, CertError> {
    if !p.ca_cert.exists() {
        return Ok(None);
    }
    let (pem, der, info) = read_ca_cert(&p.ca_cert)?;
    let der = der.as_ref().to_vec();
    Ok(Some(CaPublic {
        fingerprint: fingerprint(&der),
        pem,
        der,
        subject: info.subject,
        not_after: info.not_after,
    }))
}

/// SHA-256 of `der` as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl CaPublic {
    /// A UUID-shaped id derived from the fingerprint, so the same CA always
    /// gives the same profile (iOS replaces rather than duplicates it).
    fn uuid(&self, salt: u8) -> String {
        let mut input = self.der.clone();
        input.push(salt);
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let h: String = d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// An Apple configuration profile installing this CA as a root
    /// (`com.apple.security.root`); iOS: Settings > Profile Downloaded, then
    /// Settings > General > About > Certificate Trust Settings.
    pub fn mobileconfig(&self) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(&self.der);
        // 52 characters per line, as Apple's own profiles wrap <data>.
        let wrapped: Vec<&str> = data
            .as_bytes()
            .chunks(52)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        let data = wrapped.join("\n\t\t\t");
        let name = xml_escape(&self.subject_cn());
        let inner = self.uuid(1);
        let outer = self.uuid(2);
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadCertificateFileName</key>
			<string>wssd-local-ca.crt</string>
			<key>PayloadContent</key>
			<data>
			{data}
			</data>
			<key>PayloadDescription</key>
			<string>Adds the wssd local CA as a trusted root</string>
			<key>PayloadDisplayName</key>
			<string>{name}</string>
			<key>PayloadIdentifier</key>
			<string>wssd.local-ca.{inner}</string>
			<key>PayloadType</key>
			<string>com.apple.security.root</string>
			<key>PayloadUUID</key>
			<string>{inner}</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
	</array>
	<key>PayloadDescription</key>
	<string>Trust the wssd local CA ({fp}) for this LAN's wssd servers</string>
	<key>PayloadDisplayName</key>
	<string>{name}</string>
	<key>PayloadIdentifier</key>
	<string>wssd.local-ca.profile.{outer}</string>
	<key>PayloadRemovalDisallowed</key>
	<false/>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>{outer}</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
"#,
            fp = self.fingerprint,
        )
    }

    /// The subject's CN (the whole subject when it has none).
    pub fn subject_cn(&self) -> String {
        self.subject
            .split(',')
            .find_map(|part| part.trim().strip_prefix("CN="))
            .unwrap_or(&self.subject)
            .to_string()
    }
}

/// Escapes `& < > " '` for XML and HTML text and attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::local_ca::ca::ensure_ca;
    use crate::certs::local_ca::paths;

    #[test]
    fn public_face_of_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        assert!(load_public(&p).unwrap().is_none());
        let (ca, _) = ensure_ca(&p, SystemTime::now()).unwrap();
        let public = load_public(&p).unwrap().unwrap();
        assert_eq!(public.der, ca.der.as_ref());
        assert_eq!(public.fingerprint.len(), 32 * 3 - 1);
        assert!(public.subject_cn().starts_with("wssd local CA "));
        let profile = public.mobileconfig();
        assert!(profile.contains("com.apple.security.root"));
        assert!(!profile.contains("PRIVATE"));
        assert_eq!(profile, public.mobileconfig(), "stable UUIDs");
    }

    #[test]
    fn escapes() {
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
