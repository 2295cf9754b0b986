//! Reload when the configuration file changes: file events in its folder
//! (editors and config managers replace the file by a rename, Kubernetes
//! swaps a `..data` symlink, so the folder is watched, not the file),
//! debounced, and a periodic check as a backstop where there are no file
//! events; a reload is asked for only when the file's bytes differ from the
//! last ones seen. A file caught half-written fails to load, is refused
//! (the running configuration stays) and is retried at its next change.
//! `notify` because the certificate watcher already uses it (one
//! dependency, inotify on Linux) and an event beats any polling period.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::certs::watch::{Names, event_watcher, settle};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Request, Requests, Trigger};

/// Starts watching `file`: its bytes now are the baseline and the file
/// events are subscribed to before this returns, so a change made as soon
/// as wssd says it is ready is seen (the task that runs the loop may start
/// later; reading the baseline there missed such a change for good).
/// Returns the loop, which checks the file at least every `interval` until
/// shutdown; `None` for a file that is not a regular one (a FIFO or device
/// would block the read, and startup, until someone writes to it).
pub async fn start(
    file: PathBuf,
    interval: Duration,
    requests: Requests,
    shutdown: CancellationToken,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    if tokio::fs::metadata(&file).await.is_ok_and(|m| !m.is_file()) {
        tracing::info!(
            "{} is not a regular file: changes to it are not watched (SIGHUP or POST /reload still reload)",
            file.display()
        );
        return None;
    }
    let last = read(&file).await;
    let (tx, rx) = mpsc::channel::<()>(16);
    let watcher = subscribe(&file, tx, interval);
    Some(async move {
        let _watcher = watcher;
        watch(file, interval, requests, shutdown, last, rx).await;
    })
}

/// Subscribes to the events of the file's folder; `None` (with a warning
/// naming the fallback) where that is not possible.
fn subscribe(
    file: &Path,
    tx: mpsc::Sender<()>,
    interval: Duration,
) -> Option<notify::RecommendedWatcher> {
    let folder = folder_of(file);
    let names = Names::new(file.file_name().map(|n| n.to_os_string()));
    match event_watcher(tx, names) {
        Ok(mut w) => match w.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} for configuration changes ({e}); checking every {interval:?}",
                    folder.display()
                );
                None
            }
        },
        Err(e) => {
            tracing::warn!(
                "file watching unavailable ({e}); checking the configuration file every {interval:?}"
            );
            None
        }
    }
}

/// The loop: on a (settled) event or a periodic tick, asks for a reload
/// when the file's bytes differ from the last ones seen.
async fn watch(
    file: PathBuf,
    interval: Duration,
    requests: Requests,
    shutdown: CancellationToken,
    mut last: Option<Vec<u8>>,
    mut rx: mpsc::Receiver<()>,
) {
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
            }
            _ = ticker.tick() => {}
        }
        let now = read(&file).await;
        if now == last {
            continue;
        }
        last = now;
        let request = Request {
            trigger: Trigger::File,
            reply: None,
        };
        // A full queue already holds a reload that will read this file.
        if requests.try_send(request).is_err() {
            tracing::debug!("configuration file changed; a reload is already queued");
        }
    }
}

/// The folder holding `file` (`.` for a bare name).
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The file's bytes, `None` when it cannot be read (a missing file is a
/// change too: the reload says why it fails).
async fn read(file: &Path) -> Option<Vec<u8>> {
    tokio::fs::read(file).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_of_a_bare_name_is_the_working_folder() {
        assert_eq!(folder_of(Path::new("wssd.toml")), PathBuf::from("."));
        assert_eq!(
            folder_of(Path::new("/etc/wssd/wssd.toml")),
            PathBuf::from("/etc/wssd")
        );
    }

    #[tokio::test]
    async fn a_change_asks_for_one_reload_and_an_unchanged_file_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wssd.toml");
        std::fs::write(&file, "a = 1\n").unwrap();
        let (tx, mut rx) = super::super::queue();
        let shutdown = CancellationToken::new();
        let watching = start(
            file.clone(),
            Duration::from_millis(100),
            tx,
            shutdown.clone(),
        )
        .await
        .expect("a regular file is watched");
        let task = tokio::spawn(watching);
        // Unchanged across a few periodic checks: nothing.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(rx.try_recv().is_err());
        // Replaced by a rename, as editors do.
        let tmp = dir.path().join(".wssd.toml.tmp");
        std::fs::write(&tmp, "a = 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let req = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(req.trigger, Trigger::File);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(rx.try_recv().is_err(), "one change, one reload");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_change_made_before_the_loop_first_runs_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wssd.toml");
        std::fs::write(&file, "a = 1\n").unwrap();
        let (tx, mut rx) = super::super::queue();
        let shutdown = CancellationToken::new();
        // The baseline is taken here, when wssd starts, not when the
        // spawned loop first runs: the file changes in between.
        let watching = start(
            file.clone(),
            Duration::from_secs(3600),
            tx,
            shutdown.clone(),
        )
        .await
        .expect("a regular file is watched");
        std::fs::write(&file, "a = 2\n").unwrap();
        let task = tokio::spawn(watching);
        let req = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(req.trigger, Trigger::File);
        shutdown.cancel();
        task.await.unwrap();
    }
}
