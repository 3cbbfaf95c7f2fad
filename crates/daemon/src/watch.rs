//! File watching: a rescan as soon as a watched certificate changes, instead of at the next
//! interval.
//!
//! Parent directories are watched, never single files: renewals replace files by rename and
//! the kubelet swaps a `..data` symlink, both of which leave a per-file watch on a dead inode.
//! When the kernel's watch limit runs out, the path falls back to the periodic rescan and is
//! reported, so a silent gap cannot hide.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout};

/// A rescan waits until no change came for this long (a renewal writes several files)...
const QUIET: Duration = Duration::from_millis(200);
/// ...but no longer than this after the first change, so a file written without pause (a log
/// next to the certificates) cannot hold rescans off.
const MAX_DELAY: Duration = Duration::from_secs(2);

pub(crate) struct Watcher {
    watcher: Option<RecommendedWatcher>,
    watched: Vec<(PathBuf, RecursiveMode)>,
    /// Paths that could not be watched because the kernel's watch limit ran out.
    pub(crate) polling: Vec<String>,
    debounce: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.debounce.abort();
    }
}

impl Watcher {
    /// Must be called within the daemon's runtime, which runs the debounce.
    pub(crate) fn new(on_change: Arc<Notify>) -> Self {
        let changed = Arc::new(Notify::new());
        let seen = changed.clone();
        // notify's inotify backend also watches IN_OPEN: every directory our own scans list
        // and every file they read is an event. They are dropped here, as they come; queued in
        // a debouncer, they came to about 11 MB during a rescan of a hundred thousand files.
        let handler = move |result: notify::Result<notify::Event>| match result {
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(_) => seen.notify_one(),
            Err(error) => {
                tracing::warn!(%error, "file watch error; the periodic rescan still runs");
            }
        };
        let watcher = match RecommendedWatcher::new(handler, notify::Config::default()) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "file watching unavailable; relying on periodic rescans");
                None
            }
        };
        let debounce = tokio::spawn(async move {
            loop {
                changed.notified().await;
                let first = Instant::now();
                while first.elapsed() < MAX_DELAY
                    && timeout(QUIET, changed.notified()).await.is_ok()
                {}
                on_change.notify_one();
            }
        });
        Self {
            watcher,
            watched: Vec::new(),
            polling: Vec::new(),
            debounce,
        }
    }

    /// Watches exactly `wanted` (directories recursively, files through their directory).
    /// Paths that do not exist yet are retried on the next call.
    pub(crate) fn update(&mut self, wanted: &[PathBuf]) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let mut targets: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        for path in wanted {
            let target = if path.is_dir() {
                (path.clone(), RecursiveMode::Recursive)
            } else if let Some(parent) = path.parent().filter(|p| p.is_dir()) {
                (parent.to_path_buf(), RecursiveMode::NonRecursive)
            } else {
                continue;
            };
            if !targets.iter().any(|t| t.0 == target.0) {
                targets.push(target);
            }
        }
        for (path, _) in &self.watched {
            if !targets.iter().any(|t| &t.0 == path) {
                let _ = watcher.unwatch(path);
            }
        }
        self.watched.retain(|w| targets.iter().any(|t| t.0 == w.0));
        self.polling.clear();
        for (path, mode) in targets {
            if self.watched.iter().any(|w| w.0 == path) {
                continue;
            }
            match watcher.watch(&path, mode) {
                Ok(()) => self.watched.push((path, mode)),
                Err(error) if is_watch_limit(&error) => {
                    tracing::warn!(path = %path.display(), "inotify watch limit reached; polling this path at the scan interval");
                    self.polling.push(path.display().to_string());
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot watch; polling this path at the scan interval");
                    self.polling.push(path.display().to_string());
                }
            }
        }
    }
}

fn is_watch_limit(error: &notify::Error) -> bool {
    matches!(error.kind, notify::ErrorKind::MaxFilesWatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own scans open every watched directory and file: that is not a change. A renewal
    /// writing several files is one change.
    #[tokio::test]
    async fn reads_are_not_changes_and_a_burst_of_writes_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.pem");
        std::fs::write(&file, "one").unwrap();
        let on_change = Arc::new(Notify::new());
        let mut watcher = Watcher::new(on_change.clone());
        watcher.update(&[dir.path().to_path_buf()]);
        assert!(watcher.polling.is_empty());
        let quiet = || timeout(QUIET * 3, on_change.notified());

        for _ in 0..20 {
            std::fs::read(&file).unwrap();
            std::fs::read_dir(dir.path()).unwrap().for_each(drop);
        }
        assert!(quiet().await.is_err(), "reading woke a rescan");

        for name in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
            std::fs::write(dir.path().join(name), "renewed").unwrap();
        }
        timeout(MAX_DELAY * 2, on_change.notified())
            .await
            .expect("a write wakes a rescan");
        assert!(quiet().await.is_err(), "one burst, one rescan");
    }
}
