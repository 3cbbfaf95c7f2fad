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
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use certvigil_core::inventory::{LinkStatus, NameTable};
use certvigil_core::key::PrivateKey;
use certvigil_core::{Certificate, ParseError, SourceContent, crl::Crl};

/// Seconds a file's last change must lie in the past before its content is remembered.
const SETTLED_SECS: i64 = 2;

#[derive(Default)]
pub struct FileCache {
    state: Mutex<State>,
    /// The scan in progress; entries not used by the last finished scan are dropped.
    generation: AtomicU64,
    /// Files served from memory by the last scan.
    hits: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Box<Path>, Entry>,
    /// Issuer names shared by the remembered certificates.
    names: NameTable,
}

/// One remembered file, kept small: a host has a hundred thousand of them. The certificates
/// are the very ones the inventory holds, not copies.
struct Entry {
    stamp: Stamp,
    used: u32,
    certs: Box<[Arc<Certificate>]>,
    links: Box<[(u32, u32, LinkStatus)]>,
    keys: Box<[PrivateKey]>,
    rare: Option<Box<Rare>>,
}

/// What few files have.
struct Rare {
    encrypted_keys: usize,
    crls: Box<[Crl]>,
    errors: Box<[ParseError]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    /// Nanoseconds since the epoch (an i64 reaches the year 2262).
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn settled(&self, now: i64) -> bool {
        let changed = self.mtime_ns.max(self.ctime_ns).div_euclid(1_000_000_000);
        changed + SETTLED_SECS <= now
    }
}

impl Entry {
    fn new(stamp: Stamp, used: u32, content: &SourceContent) -> Self {
        let rare =
            (content.encrypted_keys > 0 || !content.crls.is_empty() || !content.errors.is_empty())
                .then(|| {
                    Box::new(Rare {
                        encrypted_keys: content.encrypted_keys,
                        crls: content.crls.clone().into(),
                        errors: content.errors.clone().into(),
                    })
                });
        Self {
            stamp,
            used,
            certs: content.certs.clone().into(),
            links: content
                .links
                .iter()
                .map(|&(child, issuer, status)| (child as u32, issuer as u32, status))
                .collect(),
            keys: content.keys.clone().into(),
            rare,
        }
    }

    fn content(&self) -> SourceContent {
        SourceContent {
            certs: self.certs.to_vec(),
            links: self
                .links
                .iter()
                .map(|&(child, issuer, status)| (child as usize, issuer as usize, status))
                .collect(),
            keys: self.keys.to_vec(),
            encrypted_keys: self.rare.as_ref().map_or(0, |r| r.encrypted_keys),
            crls: self
                .rare
                .as_ref()
                .map_or_else(Vec::new, |r| r.crls.to_vec()),
            errors: self
                .rare
                .as_ref()
                .map_or_else(Vec::new, |r| r.errors.to_vec()),
            // Signatures verified while reading are saved once, by the scan that verified them.
            newly_verified: Vec::new(),
        }
    }
}

impl FileCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many files are remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (a new configuration may decode files differently).
    pub fn clear(&self) {
        *self.lock() = State::default();
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
        let generation = self.generation();
        let mut state = self.lock();
        state.entries.retain(|_, entry| entry.used == generation);
        state.entries.shrink_to_fit();
        state.names.prune();
    }

    /// Whether the file was remembered (its stamp is then worth checking).
    pub(crate) fn remembers(&self, path: &Path) -> bool {
        self.lock().entries.contains_key(path)
    }

    /// The content read earlier, if the file is still exactly what it was.
    pub(crate) fn get(&self, path: &Path, stamp: Stamp) -> Option<SourceContent> {
        let generation = self.generation();
        let mut state = self.lock();
        let entry = state.entries.get_mut(path)?;
        if entry.stamp != stamp {
            return None;
        }
        entry.used = generation;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.content())
    }

    /// Remembers a file's content; its certificates then share their issuer names with the
    /// ones already remembered.
    pub(crate) fn put(&self, path: &Path, stamp: Stamp, content: &mut SourceContent, now: i64) {
        if !stamp.settled(now) {
            return;
        }
        if !content.certs.is_empty() {
            let mut state = self.lock();
            for cert in &mut content.certs {
                if let Some(cert) = Arc::get_mut(cert) {
                    state.names.share(cert);
                }
            }
        }
        // Built outside the lock: the scan's threads contend only for the insert.
        let entry = Entry::new(stamp, self.generation(), content);
        let path: Box<Path> = path.into();
        self.lock().entries.insert(path, entry);
    }

    /// The generation counter modulo 2^32: entries only compare it with the current one.
    fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed) as u32
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("files", &self.len())
            .finish()
    }
}
