//! The access log (`--access-log stderr|off|FILE`, `--access-log-format
//! text|json`): one line per HTTP request when its response body ends, one
//! line per WebSocket when it ends.
//!
//! Lines are formatted on the connection's task and handed to one writer
//! thread through a bounded queue ([`QUEUE_LINES`] lines of at most about
//! [`MAX_FIELD`] bytes a field): a connection never waits for the disk. When
//! the queue is full the line is dropped and counted
//! (`wssd_access_log_dropped_total`). The writer batches what is queued and
//! flushes once per batch. SIGUSR1 asks it to reopen FILE before its next
//! line (logrotate: rename, then `kill -USR1`).
//!
//! Connections refused at the listener (per-IP cap, rates, PROXY protocol)
//! never get a line: `crate::server::refusals` summarises them.
//!
//! Every client-controlled field (path, identity, close reason) is escaped:
//! in text lines control characters, `"` and `\` become escapes, so a
//! client cannot forge a line; JSON lines are serde_json's encoding.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio::time::Instant;

use crate::config::LogFormat;
pub use crate::config::types::{AccessLogConfig, AccessLogTarget as Target};
use crate::metrics::{self, Traffic};

/// Lines waiting for the writer at most; more are dropped and counted.
pub const QUEUE_LINES: usize = 8192;
/// Longest logged field (path, identity, reason), in bytes; longer ones
/// are cut and end with `...`. With [`QUEUE_LINES`] this bounds the queue
/// to a few MiB.
pub const MAX_FIELD: usize = 512;

/// The access log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the access log {path}: {source} (create its folder, fix its permissions, or choose another --access-log)"
)]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What the writer thread is sent.
enum Msg {
    Line(String),
    /// Flush, then answer (at exit).
    Flush(std::sync::mpsc::Sender<()>),
}

struct AccessLog {
    lines: SyncSender<Msg>,
    format: LogFormat,
    reopen: Arc<AtomicBool>,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

/// Starts the writer thread for `config` (nothing when off). Called once,
/// from `main`; later calls change nothing.
pub fn install(config: &AccessLogConfig) -> Result<(), OpenError> {
    let sink = match &config.target {
        Target::Off => return Ok(()),
        Target::Stderr => Sink::Stderr,
        Target::File(path) => Sink::File(path.clone()),
    };
    let out = sink.open()?;
    let (lines, rx) = sync_channel::<Msg>(QUEUE_LINES);
    let reopen = Arc::new(AtomicBool::new(false));
    let flag = reopen.clone();
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_lines(rx, sink, out, &flag))
        .map_err(|source| OpenError {
            path: "(writer thread)".into(),
            source,
        })?;
    let _ = LOG.set(AccessLog {
        lines,
        format: config.format,
        reopen,
    });
    Ok(())
}

/// Whether lines are written (callers skip gathering fields otherwise).
pub fn enabled() -> bool {
    LOG.get().is_some()
}

/// Asks the writer to reopen its file before the next line (SIGUSR1).
pub fn reopen() {
    if let Some(log) = LOG.get() {
        log.reopen.store(true, Ordering::Relaxed);
    }
}

/// Reopens the access log file on every SIGUSR1 (logrotate), on the
/// current runtime; nothing when the log is off.
pub fn reopen_on_sigusr1() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    if !enabled() {
        return Ok(());
    }
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: reopening the access log");
            reopen();
        }
    });
    Ok(())
}

/// At exit: waits (at most `limit`) until the lines queued so far are
/// written and flushed. When the queue is full the writer is stuck or far
/// behind, and what is queued may be lost; that is said on the log.
pub fn finish(limit: std::time::Duration) {
    let Some(log) = LOG.get() else { return };
    let (ack, done) = std::sync::mpsc::channel();
    if log.lines.try_send(Msg::Flush(ack)).is_err() {
        tracing::warn!("access log queue full at exit: its last lines may be lost");
        return;
    }
    if done.recv_timeout(limit).is_err() {
        tracing::warn!("access log not flushed within {limit:?} at exit");
    }
}

/// Queues one line; a full queue drops it (counted), never waits.
fn emit(make: impl FnOnce(LogFormat) -> String) {
    let Some(log) = LOG.get() else { return };
    match log.lines.try_send(Msg::Line(make(log.format))) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => metrics::access_log_dropped(),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

enum Sink {
    Stderr,
    File(PathBuf),
}

impl Sink {
    fn open(&self) -> Result<BufWriter<Box<dyn Write + Send>>, OpenError> {
        let out: Box<dyn Write + Send> = match self {
            Sink::Stderr => Box::new(io::stderr()),
            Sink::File(path) => Box::new(open_append(path)?),
        };
        Ok(BufWriter::with_capacity(64 * 1024, out))
    }
}

fn open_append(path: &Path) -> Result<File, OpenError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| OpenError {
            path: path.to_path_buf(),
            source,
        })
}

/// How long a busy writer collects lines before it writes them: one
/// write (and no wake-up per line) for each this long under load.
const BATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// The writer thread. Idle, it waits for a line; once lines flow, it
/// takes what is queued, writes and flushes it, then naps [`BATCH_EVERY`]
/// (senders do not wake it), so a busy server pays neither a wake-up nor
/// a write per line. Reopens the file first when asked to.
fn write_lines(
    rx: Receiver<Msg>,
    sink: Sink,
    mut out: BufWriter<Box<dyn Write + Send>>,
    reopen: &AtomicBool,
) {
    let mut pending = match rx.recv() {
        Ok(first) => Some(first),
        Err(_) => return,
    };
    loop {
        if reopen.swap(false, Ordering::Relaxed) {
            let _ = out.flush();
            match sink.open() {
                Ok(fresh) => out = fresh,
                Err(e) => {
                    tracing::error!(error = %e, "access log not reopened; writing to the old file")
                }
            }
        }
        let mut acks = Vec::new();
        let mut took = 0usize;
        let mut take = |msg: Msg| match msg {
            Msg::Line(line) => {
                let _ = out.write_all(line.as_bytes());
            }
            Msg::Flush(ack) => acks.push(ack),
        };
        if let Some(first) = pending.take() {
            take(first);
            took += 1;
        }
        while let Ok(msg) = rx.try_recv() {
            take(msg);
            took += 1;
        }
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "access log write failed");
        }
        for ack in acks {
            let _ = ack.send(());
        }
        if took > 1 {
            // Lines are flowing: collect the next ones without wake-ups.
            std::thread::park_timeout(BATCH_EVERY);
        } else {
            match rx.recv() {
                Ok(msg) => pending = Some(msg),
                Err(_) => return,
            }
        }
    }
}

/// Who made a request, for both kinds of line.
#[derive(Debug, Clone)]
pub struct Who {
    pub peer: std::net::SocketAddr,
    pub identity: Option<Arc<str>>,
    pub listener: Arc<str>,
}

/// One HTTP request, logged when its response body ends (or is dropped).
#[derive(Debug)]
pub struct HttpRequest {
    pub who: Who,
    pub method: String,
    /// The path without the query string (it may carry tokens).
    pub path: String,
    pub version: &'static str,
    pub status: u16,
    pub route: Option<Arc<str>>,
    pub started: Instant,
}

impl HttpRequest {
    /// Logs the request with `bytes` of body sent.
    pub fn finish(self, bytes: u64) {
        emit(|format| self.line(format, bytes));
    }

    fn line(&self, format: LogFormat, bytes: u64) -> String {
        let ms = millis(self.started);
        let route = self.route.as_deref();
        match format {
            LogFormat::Json => json_line(&HttpJson {
                time: now(),
                r#type: "http",
                peer: self.who.peer,
                identity: self.who.identity.as_deref().map(cut),
                method: cut(&self.method),
                path: cut(&self.path),
                version: self.version,
                status: self.status,
                bytes,
                duration_ms: ms,
                route,
                listener: &self.who.listener,
            }),
            LogFormat::Text => {
                let mut s = head(&self.who);
                let _ = write!(
                    s,
                    "\"{} {} {}\" {} {} route={} listener={} duration_ms={ms:.3}",
                    escape(&self.method),
                    escape(&self.path),
                    self.version,
                    self.status,
                    bytes,
                    route.map_or_else(|| "-".to_string(), quoted),
                    self.who.listener,
                );
                s.push('\n');
                s
            }
        }
    }
}

/// Who ended a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Server,
    Upstream,
    Program,
}

impl ClosedBy {
    pub fn label(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Server => "server",
            ClosedBy::Upstream => "upstream",
            ClosedBy::Program => "program",
        }
    }
}

/// One WebSocket, logged when it ends.
#[derive(Debug)]
pub struct WebSocketEnd<'a> {
    pub who: &'a Who,
    pub route: &'a str,
    pub started: Instant,
    pub traffic: Traffic,
    pub code: u16,
    pub reason: &'a str,
    pub closed_by: ClosedBy,
}

impl WebSocketEnd<'_> {
    pub fn log(self) {
        emit(|format| self.line(format));
    }

    fn line(&self, format: LogFormat) -> String {
        let ms = millis(self.started);
        let t = self.traffic;
        match format {
            LogFormat::Json => json_line(&WebSocketJson {
                time: now(),
                r#type: "websocket",
                peer: self.who.peer,
                identity: self.who.identity.as_deref().map(cut),
                route: self.route,
                listener: &self.who.listener,
                duration_ms: ms,
                messages_in: t.messages_in,
                messages_out: t.messages_out,
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                close_code: self.code,
                close_reason: cut(self.reason),
                closed_by: self.closed_by.label(),
            }),
            LogFormat::Text => {
                let mut s = head(self.who);
                let _ = write!(
                    s,
                    "\"WEBSOCKET {}\" {} - route={} listener={} duration_ms={ms:.3} messages_in={} messages_out={} bytes_in={} bytes_out={} close_reason={} closed_by={}",
                    escape(self.route),
                    self.code,
                    quoted(self.route),
                    self.who.listener,
                    t.messages_in,
                    t.messages_out,
                    t.bytes_in,
                    t.bytes_out,
                    quoted(self.reason),
                    self.closed_by.label(),
                );
                s.push('\n');
                s
            }
        }
    }
}

/// `PEER "IDENTITY" [TIME] ` (`-` without an identity).
fn head(who: &Who) -> String {
    let identity = who
        .identity
        .as_deref()
        .map_or_else(|| "-".to_string(), quoted);
    format!("{} {} [{}] ", who.peer, identity, now())
}

/// A JSON line's fields, in the order they are written.
#[derive(Serialize)]
struct HttpJson<'a> {
    time: String,
    r#type: &'static str,
    peer: std::net::SocketAddr,
    identity: Option<String>,
    method: String,
    path: String,
    version: &'static str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    route: Option<&'a str>,
    listener: &'a str,
}

/// A JSON line's fields, in the order they are written.
#[derive(Serialize)]
struct WebSocketJson<'a> {
    time: String,
    r#type: &'static str,
    peer: std::net::SocketAddr,
    identity: Option<String>,
    route: &'a str,
    listener: &'a str,
    duration_ms: f64,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    close_code: u16,
    close_reason: String,
    closed_by: &'static str,
}

fn json_line(value: &impl Serialize) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_default();
    s.push('\n');
    s
}

fn millis(started: Instant) -> f64 {
    (started.elapsed().as_micros() as f64) / 1000.0
}

/// Cuts a field to [`MAX_FIELD`] bytes at a character boundary.
fn cut(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A field in double quotes, escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// Escapes `"`, `\` and every control character (C0, DEL, C1, and the
/// line and paragraph separators), so a logged field is one line of
/// printable text; cut to [`MAX_FIELD`].
pub fn escape(s: &str) -> String {
    let s = cut(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The wall clock, RFC 3339 UTC with milliseconds.
fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_one_printable_line() {
        assert_eq!(
            escape("a\nb\r\"c\\\u{1b}[31m\u{7f}\u{85}\u{2028}"),
            "a\\nb\\r\\\"c\\\\\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}"
        );
        assert_eq!(escape("/chat/é ok"), "/chat/é ok");
    }

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_FIELD);
        let cut = escape(&long);
        assert!(cut.len() <= MAX_FIELD + 3, "{}", cut.len());
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn target_parses_off_stderr_and_paths() {
        assert_eq!(Target::parse("off"), Some(Target::Off));
        assert_eq!(Target::parse("stderr"), Some(Target::Stderr));
        assert_eq!(
            Target::parse("/var/log/wssd/access.log"),
            Some(Target::File("/var/log/wssd/access.log".into()))
        );
        assert_eq!(Target::parse(""), None);
    }

    #[test]
    fn a_text_websocket_line_has_every_field_on_one_line() {
        let who = Who {
            peer: "127.0.0.1:4000".parse().unwrap(),
            identity: Some("ali\nce".into()),
            listener: "127.0.0.1:8443".into(),
        };
        let line = WebSocketEnd {
            who: &who,
            route: "/echo",
            started: Instant::now(),
            traffic: Traffic {
                messages_in: 2,
                messages_out: 3,
                bytes_in: 10,
                bytes_out: 20,
            },
            code: 1000,
            reason: "bye\n127.0.0.1 - [x] \"GET / HTTP/1.1\" 200",
            closed_by: ClosedBy::Client,
        }
        .line(LogFormat::Text);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.starts_with("127.0.0.1:4000 \"ali\\nce\" ["), "{line}");
        for field in [
            "\"WEBSOCKET /echo\" 1000 - route=\"/echo\"",
            "messages_in=2 messages_out=3 bytes_in=10 bytes_out=20",
            "close_reason=\"bye\\n127.0.0.1 - [x] \\\"GET / HTTP/1.1\\\" 200\" closed_by=client",
        ] {
            assert!(line.contains(field), "{field} in {line}");
        }
    }
}
