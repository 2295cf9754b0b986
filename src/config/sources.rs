//! The layers one option's value can come from, and the one rule that
//! picks it: flag (clap has already put `WSSD_*` from the environment and
//! `.env` under the flag) > TOML file > default. Every section reads its
//! options through [`Sources`]; none merges by hand.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::defaults;
use super::error::ConfigError;
use super::file::{FileConfig, LoadedFile, TlsTable};
use super::flags::ServeArgs;
use super::limits::seconds;

/// Flags (with env) and the configuration file, as given.
pub struct Sources<'a> {
    pub args: &'a ServeArgs,
    /// The file's keys; all `None` when there is no file.
    pub file: &'a FileConfig,
    /// The file that was read, for `file:line` places.
    pub loaded: Option<&'a LoadedFile>,
}

impl<'a> Sources<'a> {
    /// The file's `[tls]` table, if given.
    pub fn tls(&self) -> Option<&'a TlsTable> {
        self.file.tls.as_ref()
    }

    /// `file:line` of a byte offset in the file.
    pub fn place(&self, offset: usize) -> String {
        match self.loaded {
            Some(f) => f.place(offset),
            None => "config".to_string(),
        }
    }

    /// A list of addresses or names: the flag's values, else the file's;
    /// each with where it was written (`--flag`, or `file:line: key`).
    pub fn spanned_list(
        &self,
        flag: &[String],
        file: Option<&Vec<Spanned<String>>>,
        flag_name: &'static str,
        key: &str,
    ) -> Vec<(String, String)> {
        if !flag.is_empty() {
            return flag
                .iter()
                .map(|v| (v.clone(), flag_name.to_string()))
                .collect();
        }
        file.into_iter()
            .flatten()
            .map(|v| {
                let place = format!("{}: {key}", self.place(v.span().start));
                (v.get_ref().clone(), place)
            })
            .collect()
    }

    /// A number of seconds: `None` when neither layer gives it (or it is
    /// refused: the problem is pushed), else `Some(None)` for 0 ("off")
    /// or `Some(Some(d))`.
    pub fn seconds(
        &self,
        flag: Option<f64>,
        file: Option<&Spanned<f64>>,
        key: &str,
        problems: &mut Vec<ConfigError>,
    ) -> Option<Option<Duration>> {
        let (value, place) = match (flag, file) {
            (Some(v), _) => (v, flag_name(key)),
            (None, Some(s)) => (*s.get_ref(), self.place(s.span().start)),
            (None, None) => return None,
        };
        match seconds(value, &place, key) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(e.into());
                None
            }
        }
    }

    /// As [`Sources::seconds`] for a timeout that cannot be off: 0 is a
    /// problem (`why` explains the timeout and suggests a value).
    pub fn nonzero_seconds(
        &self,
        flag: Option<f64>,
        file: Option<&Spanned<f64>>,
        key: &str,
        why: &'static str,
        problems: &mut Vec<ConfigError>,
    ) -> Option<Duration> {
        match self.seconds(flag, file, key, problems) {
            Some(None) => {
                problems.push(ConfigError::ZeroSeconds {
                    flag: flag_name(key),
                    why,
                });
                None
            }
            given => given.flatten(),
        }
    }
}

/// `--handshake-timeout` for `handshake_timeout`.
fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// One value: the flag's, else the file's.
pub fn pick<T: Clone>(flag: &Option<T>, file: Option<&T>) -> Option<T> {
    flag.clone().or_else(|| file.cloned())
}

/// A repeatable option: the flag's values when any, else the file's list.
pub fn pick_list<T: Clone>(flag: &[T], file: Option<&Vec<T>>) -> Vec<T> {
    if flag.is_empty() {
        file.cloned().unwrap_or_default()
    } else {
        flag.to_vec()
    }
}

/// The `--config` file, or `./wssd.toml` when present, or none.
pub fn read_file(args: &ServeArgs) -> Result<Option<LoadedFile>, ConfigError> {
    match &args.config {
        Some(path) => LoadedFile::read(path.clone()).map(Some),
        None => {
            let path = Path::new(defaults::CONFIG_FILE);
            if path.exists() {
                LoadedFile::read(path.to_path_buf()).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}
