//! The certificate manager: owns every certificate slot (the default one and
//! the SNI ones), knows which source feeds each (PEM files, self-signed,
//! local CA, ACME), and publishes a fresh snapshot to the resolver whenever
//! one changes. A failed reload keeps the previous certificate, logs why and
//! is counted; a good one logs the new serial and expiry.
//!
//! Watching files and timers is `certs::watch`'s job; ACME runs in
//! `certs::acme`. Neither touches the resolver directly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::files;
use super::info::format_time;
use super::loaded::LoadedCert;
use crate::metrics;
use crate::tls::resolver::{CertResolver, CertSet};

/// Where a slot's certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A PEM pair on disk, reloaded when it changes.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated in the state folder.
    SelfSigned,
    /// Issued by the local CA.
    LocalCa,
    /// Obtained from an ACME CA.
    Acme,
}

/// Index of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId(usize);

/// The outcome of the last load attempt of a slot.
#[derive(Debug, Clone)]
pub struct LastResult {
    pub ok: bool,
    pub at: SystemTime,
    pub message: String,
}

/// What `/metrics`, logs and tests can know about a slot.
#[derive(Debug, Clone)]
pub struct SlotStatus {
    pub label: String,
    pub source: Source,
    /// The names it serves: the explicit SNI names, else the SANs of the
    /// certificate loaded now.
    pub names: Vec<String>,
    pub serial: Option<String>,
    pub not_after: Option<SystemTime>,
    pub last: Option<LastResult>,
}

struct Slot {
    label: String,
    source: Source,
    /// Explicit SNI names; empty = the certificate's SANs.
    names: Vec<String>,
    is_default: bool,
    current: Option<LoadedCert>,
    last: Option<LastResult>,
    /// Content of the files at the last attempt (to skip unchanged files).
    seen: Option<(Vec<u8>, Vec<u8>)>,
}

/// Owns the slots and feeds the resolver.
pub struct CertManager {
    resolver: Arc<CertResolver>,
    slots: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for CertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertManager").finish_non_exhaustive()
    }
}

impl CertManager {
    pub fn new(resolver: Arc<CertResolver>) -> Arc<Self> {
        Arc::new(CertManager {
            resolver,
            slots: Mutex::new(Vec::new()),
        })
    }

    /// The resolver this manager feeds.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// Adds a slot with its first certificate (if any) and publishes.
    pub fn add(
        &self,
        label: &str,
        source: Source,
        names: Vec<String>,
        is_default: bool,
        initial: Option<LoadedCert>,
    ) -> SlotId {
        let seen = match &source {
            Source::Files { cert, key } => read_both(cert, key),
            _ => None,
        };
        let id = {
            let mut slots = self.lock();
            slots.push(Slot {
                label: label.to_string(),
                source,
                names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
                is_default,
                last: initial.as_ref().map(|_| LastResult {
                    ok: true,
                    at: SystemTime::now(),
                    message: "loaded at start".into(),
                }),
                current: None,
                seen,
            });
            SlotId(slots.len() - 1)
        };
        if let Some(cert) = initial {
            self.install(id, cert);
        } else {
            self.publish();
        }
        id
    }

    /// Serves `cert` in slot `id` from now on (new handshakes only).
    pub fn install(&self, id: SlotId, cert: LoadedCert) {
        let label = {
            let mut slots = self.lock();
            let Some(slot) = slots.get_mut(id.0) else {
                return;
            };
            let changed = slot
                .current
                .as_ref()
                .is_none_or(|c| c.info.serial != cert.info.serial);
            if changed && slot.current.is_some() {
                tracing::info!(
                    certificate = %slot.label,
                    serial = %cert.info.serial,
                    "certificate reloaded: serial {}, expires {}",
                    cert.info.serial,
                    format_time(cert.info.not_after)
                );
            }
            metrics::certificate_not_after(&slot.label, cert.info.not_after_unix());
            slot.last = Some(LastResult {
                ok: true,
                at: SystemTime::now(),
                message: format!("serial {}", cert.info.serial),
            });
            slot.current = Some(cert);
            slot.label.clone()
        };
        metrics::certificate_reload(&label, true);
        self.publish();
    }

    /// Records a failed load; the slot keeps serving what it had.
    pub fn fail(&self, id: SlotId, why: &str) {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(id.0) else {
            return;
        };
        tracing::warn!(
            certificate = %slot.label,
            "certificate reload failed, keeping the previous certificate{}: {why}",
            slot.current
                .as_ref()
                .map(|c| format!(" (serial {})", c.info.serial))
                .unwrap_or_default()
        );
        slot.last = Some(LastResult {
            ok: false,
            at: SystemTime::now(),
            message: why.to_string(),
        });
        metrics::certificate_reload(&slot.label, false);
    }

    /// Re-reads every file slot whose files changed since the last attempt;
    /// `force` re-reads all of them (SIGHUP). Returns how many were reloaded.
    pub fn reload_files(&self, force: bool) -> usize {
        let candidates: Vec<(SlotId, PathBuf, PathBuf)> = {
            let mut slots = self.lock();
            let mut out = Vec::new();
            for (i, slot) in slots.iter_mut().enumerate() {
                let Source::Files { cert, key } = &slot.source else {
                    continue;
                };
                let now = read_both(cert, key);
                if !force && now.is_some() && now == slot.seen {
                    continue;
                }
                if now.is_none() && slot.seen.is_none() && !force {
                    continue;
                }
                slot.seen = now;
                out.push((SlotId(i), cert.clone(), key.clone()));
            }
            out
        };
        let mut reloaded = 0;
        for (id, cert, key) in candidates {
            match files::load_pair(&cert, &key) {
                Ok(loaded) => {
                    self.install(id, loaded);
                    reloaded += 1;
                }
                Err(e) => self.fail(id, &e.to_string()),
            }
        }
        reloaded
    }

    /// Folders holding file-backed certificates (to watch), including the
    /// real folders behind symlinks (they change when a symlink is swapped).
    pub fn watched_folders(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .watched_paths()
            .iter()
            .filter_map(|f| f.parent().map(|d| d.to_path_buf()))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The names of those files, as named in the configuration and as they
    /// really are behind symlinks: the events in the watched folders that
    /// matter (`watch::Names`).
    pub fn watched_names(&self) -> Vec<std::ffi::OsString> {
        self.watched_paths()
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
            .collect()
    }

    /// Every file-backed certificate and key, absolute as configured and
    /// resolved behind symlinks.
    fn watched_paths(&self) -> Vec<PathBuf> {
        self.lock()
            .iter()
            .filter_map(|s| match &s.source {
                Source::Files { cert, key } => Some([cert.clone(), key.clone()]),
                _ => None,
            })
            .flatten()
            .flat_map(|p| {
                let abs = if p.is_absolute() {
                    Some(p.clone())
                } else {
                    std::env::current_dir().ok().map(|d| d.join(&p))
                };
                let real = std::fs::canonicalize(&p).ok();
                [abs, real].into_iter().flatten().collect::<Vec<_>>()
            })
            .collect()
    }

    /// Slots fed by a given kind of source.
    pub fn slots_of(&self, source: &Source) -> Vec<SlotId> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, s)| &s.source == source)
            .map(|(i, _)| SlotId(i))
            .collect()
    }

    /// The certificate a slot serves now.
    pub fn current(&self, id: SlotId) -> Option<LoadedCert> {
        self.lock().get(id.0).and_then(|s| s.current.clone())
    }

    /// Status of every slot.
    pub fn status(&self) -> Vec<SlotStatus> {
        self.lock()
            .iter()
            .map(|s| SlotStatus {
                label: s.label.clone(),
                source: s.source.clone(),
                names: if s.names.is_empty() {
                    s.current
                        .as_ref()
                        .map(|c| c.info.sans.clone())
                        .unwrap_or_default()
                } else {
                    s.names.clone()
                },
                serial: s.current.as_ref().map(|c| c.info.serial.clone()),
                not_after: s.current.as_ref().map(|c| c.info.not_after),
                last: s.last.clone(),
            })
            .collect()
    }

    /// Whether a default certificate is loaded and still valid.
    pub fn has_valid_default(&self) -> bool {
        let now = SystemTime::now();
        self.lock().iter().any(|s| {
            s.is_default
                && s.current
                    .as_ref()
                    .is_some_and(|c| c.info.not_after > now && c.info.not_before <= now)
        })
    }

    fn publish(&self) {
        let mut set = CertSet::default();
        let mut by_name = HashMap::new();
        for slot in self.lock().iter() {
            let Some(cert) = &slot.current else { continue };
            if slot.is_default && set.default.is_none() {
                set.default = Some(cert.key.clone());
                continue;
            }
            let names: Vec<String> = if slot.names.is_empty() {
                cert.info
                    .sans
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect()
            } else {
                slot.names.clone()
            };
            for name in names {
                by_name.entry(name).or_insert_with(|| cert.key.clone());
            }
        }
        set.by_name = by_name;
        self.resolver.publish(set);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_both(cert: &PathBuf, key: &PathBuf) -> Option<(Vec<u8>, Vec<u8>)> {
    Some((std::fs::read(cert).ok()?, std::fs::read(key).ok()?))
}
