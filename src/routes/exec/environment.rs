//! The program's environment: CGI-style variables from the request (and
//! `REMOTE_USER`/`AUTH_TYPE` from the identity), the request headers as
//! `HTTP_*`, the `pass_env` variables; see the module docs of `exec`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::auth::Identity;
use crate::config::route::ExecSpec;
use crate::config::route_identity::IDENTITY_VARIABLES;
use crate::http::reply::ConnInfo;
use crate::routes::identity::{auth_type, encoded_name};

/// `PATH` given to programs unless `PATH` is listed in `pass_env`.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the program learns about the request (CGI-style environment).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub conn: ConnInfo,
    /// The route's path prefix (PATH_INFO is what follows it).
    pub route_path: String,
    /// Who the client is, when the edge authenticated it (`REMOTE_USER`).
    pub identity: Option<Identity>,
}

/// The program's whole environment; see the module docs.
pub fn environment(spec: &ExecSpec, request: &ExecRequest) -> Vec<(OsString, OsString)> {
    use std::collections::BTreeMap;
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    for name in &spec.pass_env {
        // Refused at load too; kept here so no other way in can set them.
        if IDENTITY_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        if let Some(value) = std::env::var_os(name) {
            env.insert(name.into(), value);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());

    let headers = &request.headers;
    for name in headers.keys() {
        let lower = name.as_str();
        if matches!(lower, "authorization" | "proxy-authorization" | "proxy")
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            continue;
        }
        let key = format!("HTTP_{}", lower.to_ascii_uppercase().replace('-', "_"));
        let separator: &[u8] = if lower == "cookie" { b"; " } else { b", " };
        let mut value = Vec::new();
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(separator);
            }
            value.extend_from_slice(v.as_bytes());
        }
        env.insert(key.into(), OsString::from_vec(value));
    }

    let conn = &request.conn;
    let uri = &request.uri;
    let path = uri.path();
    let route = request.route_path.as_str();
    let (script_name, path_info) = if route == "/" {
        ("", path)
    } else {
        (route, path.strip_prefix(route).unwrap_or(""))
    };
    let listener: Option<std::net::SocketAddr> = conn.listener.parse().ok();
    let host_header = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(strip_port)
        .filter(|h| !h.is_empty());
    let server_name = host_header
        .map(str::to_string)
        .or_else(|| uri.host().map(str::to_string))
        .or_else(|| listener.map(|l| l.ip().to_string()))
        .unwrap_or_default();
    let server_port = listener.map(|l| l.port().to_string()).unwrap_or_default();
    let remote = conn.peer.ip().to_canonical().to_string();

    let mut cgi = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        (
            "SERVER_SOFTWARE",
            format!("wssd/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("SERVER_NAME", server_name),
        ("SERVER_PORT", server_port),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_string()),
        ("REQUEST_METHOD", "GET".to_string()),
        (
            "REQUEST_URI",
            uri.path_and_query()
                .map_or(path, |pq| pq.as_str())
                .to_string(),
        ),
        ("SCRIPT_NAME", script_name.to_string()),
        ("PATH_INFO", path_info.to_string()),
        ("QUERY_STRING", uri.query().unwrap_or("").to_string()),
        ("REMOTE_ADDR", remote.clone()),
        ("REMOTE_HOST", remote),
        ("REMOTE_PORT", conn.peer.port().to_string()),
    ];
    if conn.tls {
        cgi.push(("HTTPS", "on".to_string()));
    }
    if let Some(subject) = &conn.client_subject {
        cgi.push(("SSL_CLIENT_S_DN", subject.to_string()));
        cgi.push(("SSL_CLIENT_VERIFY", "SUCCESS".to_string()));
    }
    if let Some(identity) = &request.identity {
        cgi.push(("REMOTE_USER", encoded_name(identity).into_owned()));
        cgi.push(("AUTH_TYPE", auth_type(identity.source).to_string()));
    }
    for (key, value) in cgi {
        env.insert(key.into(), value.into());
    }
    env.into_iter().collect()
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_stripping() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
