//! Decoded files remembered between the scans of a long-running process (the daemon), so a
//! rescan after one certificate changed reads that file instead of a hundred thousand.
//!
//! A file is known unchanged when its identity, size, mtime and ctime are all what they
//! were: a rename puts a new inode in place, and every write moves ctime. As with git's
//! "racily clean" index entries, a file changed within the last two seconds is not
//! remembered, because a second write inside the same timestamp tick would leave the stamp
//! as it was.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use certvigil_core::SourceContent;

/// Seconds a file's last change must lie in the past before its content is remembered.
const SETTLED_SECS: i64 = 2;

#[derive(Default)]
pub struct FileCache {
    entries: Mutex<HashMap<PathBuf, Entry>>,
    /// The scan in progress; entries not used by the last finished scan are dropped.
    generation: AtomicU64,
    /// Files served from memory by the last scan.
    hits: AtomicU64,
}

struct Entry {
    stamp: Stamp,
    content: SourceContent,
    used: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn settled(&self, now: i64) -> bool {
        self.mtime.0.max(self.ctime.0) + SETTLED_SECS <= now
    }
}

impl FileCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many files are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (a new configuration may decode files differently).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many files the last scan took from memory instead of reading them.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Starts a scan: what it does not use is forgotten at [`Self::finish_scan`].
    pub(crate) fn start_scan(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.hits.store(0, Ordering::Relaxed);
    }

    /// Drops the files the scan that just ended did not see (deleted, renamed, no longer
    /// configured), so the cache holds at most the current set of files.
    pub(crate) fn finish_scan(&self) {
        let generation = self.generation.load(Ordering::Relaxed);
        self.lock().retain(|_, entry| entry.used == generation);
    }

    /// The content read earlier, if the file is still exactly what it was.
    pub(crate) fn get(&self, path: &Path, stamp: Stamp) -> Option<SourceContent> {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut entries = self.lock();
        let entry = entries.get_mut(path)?;
        if entry.stamp != stamp {
            return None;
        }
        entry.used = generation;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.content.clone())
    }

    pub(crate) fn put(&self, path: &Path, stamp: Stamp, content: &SourceContent, now: i64) {
        if !stamp.settled(now) {
            return;
        }
        let mut content = content.clone();
        // Signatures verified while reading are saved once, by the scan that verified them.
        content.newly_verified.clear();
        let used = self.generation.load(Ordering::Relaxed);
        self.lock().insert(
            path.to_path_buf(),
            Entry {
                stamp,
                content,
                used,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("files", &self.len())
            .finish()
    }
}
