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

use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, NoCache, new_debouncer_opt};
use tokio::sync::Notify;

/// Events closer together than this become one rescan (a renewal writes several files).
const DEBOUNCE: Duration = Duration::from_millis(200);

pub(crate) struct Watcher {
    debouncer: Option<Debouncer<RecommendedWatcher, NoCache>>,
    watched: Vec<(PathBuf, RecursiveMode)>,
    /// Paths that could not be watched because the kernel's watch limit ran out.
    pub(crate) polling: Vec<String>,
}

impl Watcher {
    pub(crate) fn new(on_change: Arc<Notify>) -> Self {
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                // Reading a file (our own scans do) is not a change.
                if events
                    .iter()
                    .any(|e| !matches!(e.kind, EventKind::Access(_)))
                {
                    on_change.notify_one();
                }
            }
            Err(errors) => {
                for error in errors {
                    tracing::warn!(%error, "file watch error; the periodic rescan still runs");
                }
            }
        };
        // No file-id cache: it would stat every file under the watched trees up front to track
        // renames, and a rescan does not need to know what was renamed to what.
        let debouncer = match new_debouncer_opt::<_, RecommendedWatcher, NoCache>(
            DEBOUNCE,
            None,
            handler,
            NoCache,
            notify::Config::default(),
        ) {
            Ok(debouncer) => Some(debouncer),
            Err(error) => {
                tracing::warn!(%error, "file watching unavailable; relying on periodic rescans");
                None
            }
        };
        Self {
            debouncer,
            watched: Vec::new(),
            polling: Vec::new(),
        }
    }

    /// Watches exactly `wanted` (directories recursively, files through their directory).
    /// Paths that do not exist yet are retried on the next call.
    pub(crate) fn update(&mut self, wanted: &[PathBuf]) {
        let Some(debouncer) = &mut self.debouncer else {
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
                let _ = debouncer.unwatch(path);
            }
        }
        self.watched.retain(|w| targets.iter().any(|t| t.0 == w.0));
        self.polling.clear();
        for (path, mode) in targets {
            if self.watched.iter().any(|w| w.0 == path) {
                continue;
            }
            match debouncer.watch(&path, mode) {
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
