//! Triggers for certificate reloads: file events in the folders holding
//! certificate files (certbot renames, Kubernetes `..data` symlink swaps,
//! in-place rewrites), every configuration reload (SIGHUP, the file
//! changing, `POST /reload`: asked by `crate::server::reload`, which also
//! tells systemd RELOADING=1 and READY=1 around it), and a slow periodic
//! check as a backstop for filesystems without inotify. It decides *when*;
//! `manager` does the work. Its file watcher and debounce also serve the
//! configuration file's (`reload::file_watch`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::manager::CertManager;

/// Quiet time after the last file event before reloading (cert and key are
/// usually written one after the other; a config file is often truncated,
/// then written).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The file names whose events matter in a watched folder. Other files
/// there (a log beside the certificate, a profiler's output) wake nothing:
/// before this filter every write to any file in the folder woke the
/// runtime and restarted the debounce. A name starting with `..` always
/// matters (Kubernetes swaps `..data`, the files' real folder, with a
/// rename), and so does an event without paths (the watcher lost events
/// and asks for a rescan).
#[derive(Clone, Default)]
pub struct Names(Arc<RwLock<HashSet<OsString>>>);

impl Names {
    pub fn new(names: impl IntoIterator<Item = OsString>) -> Names {
        let all = Names::default();
        all.set(names);
        all
    }

    /// Replaces the names (a reload may name other files).
    pub fn set(&self, names: impl IntoIterator<Item = OsString>) {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        *set = names.into_iter().collect();
    }

    pub fn matches(&self, paths: &[PathBuf]) -> bool {
        if paths.is_empty() {
            return true;
        }
        let names = self.0.read().unwrap_or_else(|p| p.into_inner());
        paths
            .iter()
            .filter_map(|p| p.file_name())
            .any(|name| name.as_encoded_bytes().starts_with(b"..") || names.contains(name))
    }
}

/// A file watcher that sends `()` on `tx` for every event but reads that
/// concerns one of `names` (the channel is bounded: a full one already
/// holds a wake-up).
pub fn event_watcher(
    tx: mpsc::Sender<()>,
    names: Names,
) -> notify::Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access() && names.matches(&e.paths)) {
            let _ = tx.try_send(());
        }
    })
}

/// After a first event: waits until events stop for [`DEBOUNCE`]; false
/// when shutdown came first.
pub async fn settle(rx: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            more = tokio::time::timeout(DEBOUNCE, rx.recv()) => {
                if more.is_err() { return true; }
            }
        }
    }
}

/// Extra periodic work (renewing generated certificates), run on every tick
/// on a blocking thread.
pub type Tick = Arc<dyn Fn() + Send + Sync>;

/// Runs until shutdown. `reloads` are the configuration reloads' requests
/// (labelled with their trigger, answered when done).
pub async fn run(
    manager: Arc<CertManager>,
    interval: Duration,
    on_tick: Option<Tick>,
    mut reloads: mpsc::Receiver<(String, oneshot::Sender<()>)>,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let names = Names::new(manager.watched_names());
    let mut watcher = match event_watcher(tx, names.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "file watching unavailable ({e}); relying on SIGHUP and periodic checks"
            );
            None
        }
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    // Returns whether a folder was added: a file written there between the
    // reload that found the folder and this watch made no event, so the
    // caller checks the files once more.
    let mut watch_new = |watcher: &mut Option<notify::RecommendedWatcher>| -> bool {
        let Some(w) = watcher.as_mut() else {
            return false;
        };
        names.set(manager.watched_names());
        let mut added = false;
        for dir in manager.watched_folders() {
            if watched.contains(&dir) {
                continue;
            }
            match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!("watching {} for certificate changes", dir.display());
                    watched.insert(dir);
                    added = true;
                }
                Err(e) => tracing::warn!(
                    "cannot watch {} ({e}); relying on SIGHUP and the {:?} periodic check",
                    dir.display(),
                    interval
                ),
            }
        }
        added
    };
    watch_new(&mut watcher);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = rx.recv() => {
                if !settle(&mut rx, &shutdown).await {
                    return;
                }
                let m = manager.clone();
                let _ = tokio::task::spawn_blocking(move || m.reload_files(false)).await;
                // Symlink swaps move the real files to new folders.
                if watch_new(&mut watcher) {
                    let m = manager.clone();
                    let _ = tokio::task::spawn_blocking(move || m.reload_files(false)).await;
                }
            }
            Some((trigger, done)) = reloads.recv() => {
                tracing::info!("{trigger}: reloading certificates");
                let m = manager.clone();
                let _ = tokio::task::spawn_blocking(move || m.reload_files(true)).await;
                if watch_new(&mut watcher) {
                    let m = manager.clone();
                    let _ = tokio::task::spawn_blocking(move || m.reload_files(false)).await;
                }
                let _ = done.send(());
            }
            _ = ticker.tick() => {
                let m = manager.clone();
                let _ = tokio::task::spawn_blocking(move || m.reload_files(false)).await;
                if let Some(f) = on_tick.clone() {
                    let _ = tokio::task::spawn_blocking(move || f()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| PathBuf::from("/etc/wssd").join(n))
            .collect()
    }

    #[test]
    fn only_the_watched_files_and_kubernetes_swaps_matter() {
        let names = Names::new(["cert.pem".into(), "key.pem".into()]);
        assert!(names.matches(&paths(&["cert.pem"])));
        assert!(
            names.matches(&paths(&["cert.pem.tmp", "key.pem"])),
            "a rename onto the key"
        );
        assert!(
            names.matches(&paths(&["..data"])),
            "Kubernetes' symlink swap"
        );
        assert!(names.matches(&[]), "a rescan after lost events");
        assert!(
            !names.matches(&paths(&["wssd.log"])),
            "a log beside the certificate"
        );
        assert!(!names.matches(&paths(&["perf.data", "cert.pem.bak"])));
    }

    #[test]
    fn a_reload_that_names_other_files_moves_the_filter() {
        let names = Names::new(["cert.pem".into()]);
        names.set(["cert4.pem".into()]);
        assert!(names.matches(&paths(&["cert4.pem"])));
        assert!(!names.matches(&paths(&["cert.pem"])));
    }
}
