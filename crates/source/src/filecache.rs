//! Decoded files remembered between the scans of a long-running process (the daemon), so a
//! rescan after one certificate changed reads that file instead of a hundred thousand.
//!
//! A file is known unchanged when its identity, size, mtime and ctime are all what they
//! were: a rename puts a new inode in place, and every write moves ctime. As with git's
//! "racily clean" index entries, a file changed within the last two seconds is not
//! remembered, because a second write inside the same timestamp tick would leave the stamp
//! as it was.
//!
//! The cache can be saved to a file and loaded by the next process ([`FileCache::save`],
//! [`FileCache::load`]): a restarted daemon, or the next `certvigil scan` from cron, then
//! takes a `stat` of each unchanged file instead of reading and decoding it. The saved form
//! holds what the scan keeps of a file (certificate summaries, public-key identities of
//! private keys, parse errors), never key material.

use std::fs::Metadata;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use certvigil_core::inventory::{LinkStatus, NameTable};
use certvigil_core::key::PrivateKey;
use certvigil_core::{Certificate, ParseError, SourceContent, crl::Crl};
use hashbrown::HashTable;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::files;

/// Seconds a file's last change must lie in the past before its content is remembered.
const SETTLED_SECS: i64 = 2;

/// Start of a saved cache. Then blobs, each `[length u32][CRC-32 u32][postcard bytes]`
/// (little-endian): the [`Header`], chunks of up to [`CHUNK`] files, and a zero length at the
/// end, so a damaged or cut file is never believed. Chunks decode on every core.
const MAGIC: &[u8; 8] = b"CVFILES\n";

/// The layout of what is saved. Bump it when [`Entry`] or anything it holds changes shape:
/// postcard is not self-describing, and the test `saved_layout_is_pinned` fails first.
const FORMAT: u32 = 4;

/// Files per saved chunk (about half a megabyte).
const CHUNK: usize = 1024;

/// A saved blob longer than this is damage, not data.
const MAX_BLOB: usize = 64 << 20;

/// The header of a saved cache: only a cache written by the same build layout and for the
/// same decoding options is used.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Header {
    format: u32,
    version: String,
    max_file_size: u64,
    /// Files saved, to size the table once (a hint: the chunks are what counts).
    files: u64,
}

/// The directory where one process leaves what it learned for the next: verified signatures
/// ([`certvigil_core::linkcache`]) and decoded files ([`FileCache::save`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDir(PathBuf);

impl CacheDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn verified_links(&self) -> PathBuf {
        self.0.join("verified-links")
    }

    /// The daemon's decoded files.
    pub fn files(&self) -> PathBuf {
        self.0.join("files")
    }

    /// The decoded files of scans over one scope: the roots and filters, in any form that
    /// tells scopes apart. A one-off scan of some other path then keeps a cache of its own
    /// instead of replacing the regular scan's (which would leave the next regular scan to read
    /// every file again).
    pub fn scan_files<S: AsRef<[u8]>>(&self, scope: &[S]) -> PathBuf {
        let mut key = Vec::new();
        for part in scope {
            key.extend_from_slice(&(part.as_ref().len() as u64).to_le_bytes());
            key.extend_from_slice(part.as_ref());
        }
        let digest = certvigil_core::cert::fingerprint(&key);
        let name = format!(
            "{SCAN_FILES_PREFIX}{}",
            certvigil_core::cert::hex(&digest[..8])
        );
        self.0.join(name)
    }

    /// Marks a scope's cache as just used, for [`Self::prune_scan_files`].
    pub fn touch(path: &Path) {
        let _ = std::fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
    }

    /// Removes all but the `keep` most recently used scan caches, so one-off scans of many
    /// different paths cannot fill the disk. Returns how many were removed.
    pub fn prune_scan_files(&self, keep: usize) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return 0;
        };
        let mut caches: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(SCAN_FILES_PREFIX))
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        caches.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        caches
            .iter()
            .skip(keep)
            .filter(|(_, path)| std::fs::remove_file(path).is_ok())
            .count()
    }
}

/// Scan caches are named this and 16 hex digits of their scope's hash.
const SCAN_FILES_PREFIX: &str = "scan-files-";

#[derive(Default)]
pub struct FileCache {
    state: Mutex<State>,
    /// The scan in progress; entries not used by the last finished scan are dropped.
    generation: AtomicU64,
    /// Files served from memory by the last scan.
    hits: AtomicU64,
    /// Whether anything was remembered or forgotten since the cache was loaded or saved.
    changed: AtomicBool,
}

/// Files by position, found by path through `index`: a dense vector and a table of 4-byte
/// positions take 11 MB for a hundred thousand files where a map of entries took 16.
#[derive(Default)]
struct State {
    /// Each path is the very string the inventory names the file by, not a copy. Paths
    /// that are not UTF-8 (which the inventory shows lossily) are not remembered.
    entries: Vec<(Arc<str>, Entry)>,
    index: HashTable<u32>,
    hasher: RandomState,
    /// Issuer names shared by the remembered certificates.
    names: NameTable,
}

impl State {
    fn position(&self, path: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(path);
        let entries = &self.entries;
        self.index
            .find(hash, |&i| {
                entries.get(i as usize).is_some_and(|e| &*e.0 == path)
            })
            .map(|&i| i as usize)
    }

    /// Adds a file, or replaces what was remembered of it.
    fn insert(&mut self, path: Arc<str>, entry: Entry) {
        if let Some(at) = self.position(&path) {
            self.entries[at] = (path, entry);
            return;
        }
        let hash = self.hasher.hash_one(&*path);
        let at = self.entries.len() as u32;
        self.entries.push((path, entry));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, at, |&i| hasher.hash_one(&*entries[i as usize].0));
    }

    /// Positions moved: indexes them again, in the table as it is unless mostly empty.
    fn reindex(&mut self) {
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.clear();
        if self.index.capacity() > 2 * entries.len() {
            self.index
                .shrink_to(entries.len(), |&i| hasher.hash_one(&*entries[i as usize].0));
        }
        for (at, (path, _)) in entries.iter().enumerate() {
            self.index
                .insert_unique(hasher.hash_one(&**path), at as u32, |&i| {
                    hasher.hash_one(&*entries[i as usize].0)
                });
        }
    }
}

/// One remembered file, kept small: a host has a hundred thousand of them. The certificates
/// are the very ones the inventory holds, not copies.
#[derive(Serialize, Deserialize)]
struct Entry {
    stamp: StampDigest,
    #[serde(skip)]
    used: u32,
    certs: Box<[Arc<Certificate>]>,
    links: Box<[(u32, u32, LinkStatus)]>,
    keys: Box<[PrivateKey]>,
    rare: Option<Box<Rare>>,
}

/// What few files have.
#[derive(Serialize, Deserialize)]
struct Rare {
    encrypted_keys: usize,
    crls: Box<[Crl]>,
    errors: Box<[ParseError]>,
}

/// A file's identity, size and change times when it was read.
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

    fn digest(&self) -> StampDigest {
        let mut bytes = [0u8; 40];
        let fields = [
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns as u64,
            self.ctime_ns as u64,
        ];
        for (chunk, field) in bytes.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        let mut digest = [0; 16];
        digest.copy_from_slice(&certvigil_core::cert::fingerprint(&bytes)[..16]);
        StampDigest(digest)
    }
}

/// What a remembered file is compared by: SHA-256 of its [`Stamp`] cut to 16 bytes, 24 fewer
/// than the stamp for each of a hundred thousand files. Only equality matters, and two
/// different stamps agree here as rarely as any two inputs of a 128-bit hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StampDigest([u8; 16]);

impl Entry {
    fn new(stamp: StampDigest, used: u32, content: &SourceContent) -> Self {
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
            external_links: Vec::new(),
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
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Takes over everything `other` remembers (a cache just loaded), forgetting the rest.
    pub fn replace(&self, other: Self) {
        *self.lock() = other.state.into_inner().unwrap_or_else(|e| e.into_inner());
        self.changed.store(false, Ordering::Relaxed);
    }

    /// Reads a cache saved by [`Self::save`] with the same `max_file_size`. A missing,
    /// damaged, foreign or outdated file is an error (with the reason); the caller then starts
    /// from an empty cache and loses only speed.
    pub fn load(path: &Path, max_file_size: u64) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        Self::read_saved(
            &mut io::BufReader::with_capacity(1 << 20, file),
            max_file_size,
        )
    }

    fn read_saved(input: &mut impl io::Read, max_file_size: u64) -> io::Result<Self> {
        let invalid = |reason: String| io::Error::new(io::ErrorKind::InvalidData, reason);
        let mut magic = [0; MAGIC.len()];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid("not a certvigil file cache".into()));
        }
        let header = read_blob(input)?.ok_or_else(|| invalid("no header".into()))?;
        let header: Header = postcard::from_bytes(&header)
            .map_err(|e| invalid(format!("unreadable header: {e}")))?;
        let expected = Header {
            files: header.files,
            ..Header::current(max_file_size, 0)
        };
        if header != expected {
            return Err(invalid(format!("written for {header:?}, not {expected:?}")));
        }
        let mut state = State::default();
        // Sized once from the header, up to a quarter of a million files: a damaged count must
        // not reserve gigabytes, and a bigger host only grows the table once or twice.
        let expected = usize::try_from(header.files).unwrap_or(0).min(1 << 18);
        state.entries.reserve_exact(expected);
        let hasher = &state.hasher;
        state.index.reserve(expected, |_| hasher.hash_one(0));
        let batch = 2 * rayon::current_num_threads();
        loop {
            let mut blobs = Vec::with_capacity(batch);
            let mut ended = false;
            while blobs.len() < batch {
                match read_blob(input)? {
                    Some(blob) => blobs.push(blob),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let chunks: Vec<Result<Chunk, String>> =
                blobs.par_iter().map(|blob| decode_chunk(blob)).collect();
            for chunk in chunks {
                for (path, mut entry) in chunk.map_err(invalid)? {
                    for cert in entry.certs.iter_mut() {
                        state.names.share(cert);
                    }
                    state.insert(path, entry);
                }
            }
            if ended {
                break;
            }
        }
        rayon::broadcast(|_| certvigil_core::cert::saved::forget());
        certvigil_core::cert::saved::forget();
        Ok(Self {
            state: Mutex::new(state),
            ..Self::default()
        })
    }

    /// Writes the cache for the next process, atomically and readable by its owner only,
    /// when anything changed since it was loaded or last saved. Returns whether it wrote.
    pub fn save(&self, path: &Path, max_file_size: u64) -> io::Result<bool> {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let state = self.lock();
        let result = files::write_atomic_with(path, |out| {
            out.write_all(MAGIC)?;
            let header = Header::current(max_file_size, state.entries.len() as u64);
            let header = postcard::to_allocvec(&header);
            write_blob(out, &header.map_err(io::Error::other)?)?;
            let entries: Vec<(&[u8], &Entry)> = state
                .entries
                .iter()
                .map(|(path, entry)| (path.as_bytes(), entry))
                .collect();
            for chunk in entries.chunks(CHUNK) {
                write_blob(
                    out,
                    &postcard::to_allocvec(chunk).map_err(io::Error::other)?,
                )?;
            }
            out.write_all(&0u32.to_le_bytes())
        });
        if result.is_err() {
            self.changed.store(true, Ordering::Relaxed);
        }
        result.map(|()| true)
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
        let before = state.entries.len();
        state.entries.retain(|(_, entry)| entry.used == generation);
        if state.entries.len() != before {
            self.changed.store(true, Ordering::Relaxed);
            // Only when mostly empty: for one file gone, a copy of every entry would double
            // their memory for a moment (capacity never written to costs none).
            if state.entries.capacity() > 2 * state.entries.len() {
                state.entries.shrink_to_fit();
            }
            state.reindex();
        }
        state.names.prune();
    }

    /// Whether the file was remembered (its stamp is then worth checking).
    pub(crate) fn remembers(&self, path: &Path) -> bool {
        path.to_str()
            .is_some_and(|path| self.lock().position(path).is_some())
    }

    /// The content read earlier, if the file is still exactly what it was, and the path as the
    /// cache holds it (for the inventory to share).
    pub(crate) fn get(&self, path: &Path, stamp: Stamp) -> Option<(Arc<str>, SourceContent)> {
        let generation = self.generation();
        let digest = stamp.digest();
        let mut state = self.lock();
        let at = state.position(path.to_str()?)?;
        let (path, entry) = &mut state.entries[at];
        if entry.stamp != digest {
            return None;
        }
        entry.used = generation;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some((path.clone(), entry.content()))
    }

    /// Remembers a file's content; its certificates then share their issuer names with the
    /// ones already remembered.
    pub(crate) fn put(&self, path: &Arc<str>, stamp: Stamp, content: &mut SourceContent, now: i64) {
        if !stamp.settled(now) {
            return;
        }
        if !content.certs.is_empty() {
            let mut state = self.lock();
            for cert in &mut content.certs {
                state.names.share(cert);
            }
        }
        // Built outside the lock: the scan's threads contend only for the insert.
        let entry = Entry::new(stamp.digest(), self.generation(), content);
        self.lock().insert(path.clone(), entry);
        self.changed.store(true, Ordering::Relaxed);
    }

    /// The generation counter modulo 2^32: entries only compare it with the current one.
    fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed) as u32
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Header {
    fn current(max_file_size: u64, files: u64) -> Self {
        Self {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_file_size,
            files,
        }
    }
}

/// The next blob, or `None` at the end marker.
fn read_blob(input: &mut impl io::Read) -> io::Result<Option<Vec<u8>>> {
    let mut word = [0; 4];
    input.read_exact(&mut word)?;
    let len = u32::from_le_bytes(word) as usize;
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_BLOB {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("damaged file cache (a {len}-byte chunk)"),
        ));
    }
    input.read_exact(&mut word)?;
    let crc = u32::from_le_bytes(word);
    let mut blob = vec![0; len];
    input.read_exact(&mut blob)?;
    if crc32fast::hash(&blob) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "damaged file cache (checksum mismatch)",
        ));
    }
    Ok(Some(blob))
}

fn write_blob(out: &mut dyn io::Write, blob: &[u8]) -> io::Result<()> {
    let len = u32::try_from(blob.len())
        .ok()
        .filter(|&len| len as usize <= MAX_BLOB)
        .ok_or_else(|| io::Error::other("file cache chunk too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc32fast::hash(blob).to_le_bytes())?;
    out.write_all(blob)
}

/// Files as saved together: each path with what was decoded from it.
type Chunk = Vec<(Arc<str>, Entry)>;

/// One chunk of files, each checked so a saved link can never point past its certificates.
fn decode_chunk(blob: &[u8]) -> Result<Chunk, String> {
    let files: Vec<(Vec<u8>, Entry)> =
        postcard::from_bytes(blob).map_err(|e| format!("unreadable file cache: {e}"))?;
    files
        .into_iter()
        .map(|(path, entry)| {
            let count = entry.certs.len();
            if !entry
                .links
                .iter()
                .all(|&(child, issuer, _)| (child as usize) < count && (issuer as usize) < count)
            {
                return Err("file cache links a certificate that is not there".into());
            }
            let path = String::from_utf8(path)
                .map_err(|_| "file cache holds a path that is not UTF-8".to_owned())?;
            Ok((path.into(), entry))
        })
        .collect()
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("files", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use certvigil_core::cert::{
        Curve, ExtendedKeyUsage, HashAlgorithm, IssuerKey, KeyAlgorithm, Profile, Sans, Serial,
        SignatureAlgorithm, SubjectAltName,
    };
    use std::num::NonZeroU32;

    use super::*;

    fn certificate() -> Certificate {
        Certificate {
            fingerprint: [7; 32],
            serial: Serial::new(&[1, 2, 3], false),
            subject: "CN=leaf.example".into(),
            issuer: "CN=Issuing CA,O=Example".into(),
            subject_id: 11,
            issuer_id: 12,
            not_before: 1_700_000_000,
            not_after: 1_800_000_000,
            sans: Sans::pack(&[
                SubjectAltName::Dns("leaf.example".into()),
                SubjectAltName::Ip([192, 0, 2, 1].into()),
            ]),
            key_id: [9; 16],
            profile: Arc::new(Profile {
                key_algorithm: KeyAlgorithm::Ec(Curve::P256),
                key_bits: 256,
                signature_algorithm: SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256),
                is_ca: false,
                path_len: None,
                key_usage: Some(0x80),
                extended_key_usage: Some(ExtendedKeyUsage {
                    server_auth: true,
                    ..ExtendedKeyUsage::default()
                }),
                version: 3,
            }),
            subject_key_id: NonZeroU32::new(21),
            authority_key_id: NonZeroU32::new(22),
            issuer_spki: Some(Box::new(IssuerKey {
                der: Arc::from(&b"spki"[..]),
                id: [5; 32],
                prepared: Default::default(),
            })),
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        }
    }

    fn entry(links: Box<[(u32, u32, LinkStatus)]>) -> Entry {
        Entry {
            stamp: stamp().digest(),
            used: 0,
            certs: vec![Arc::new(certificate())].into(),
            links,
            keys: vec![PrivateKey {
                algorithm: KeyAlgorithm::Ec(Curve::P256),
                key_id: [9; 16],
            }]
            .into(),
            rare: Some(Box::new(Rare {
                encrypted_keys: 1,
                crls: Box::new([]),
                errors: vec![ParseError::TrailingData(3)].into(),
            })),
        }
    }

    /// A saved cache by hand: the header, then one chunk holding `files`.
    fn saved(files: &[(&[u8], &Entry)]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let header = postcard::to_allocvec(&Header::current(100, files.len() as u64)).unwrap();
        write_blob(&mut out, &header).unwrap();
        write_blob(&mut out, &postcard::to_allocvec(files).unwrap()).unwrap();
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    /// Summaries read back share their issuer name and profile from the start, rather than
    /// each bringing a copy for the name table to drop (which left the allocator's slabs
    /// mostly empty after a load).
    #[test]
    fn saved_summaries_come_back_sharing_issuer_and_profile() {
        let mut other = certificate();
        other.fingerprint = [8; 32];
        other.subject = "CN=other.example".into();
        let saved = postcard::to_allocvec(&vec![certificate(), other]).unwrap();
        let back: Vec<Certificate> = postcard::from_bytes(&saved).unwrap();
        assert!(Arc::ptr_eq(&back[0].issuer, &back[1].issuer));
        assert!(Arc::ptr_eq(&back[0].profile, &back[1].profile));
        assert!(!Arc::ptr_eq(&back[0].subject, &back[1].subject));
        assert_eq!(&*back[1].issuer, "CN=Issuing CA,O=Example");
        assert_eq!(back[1].profile, certificate().profile);

        // Once a load is over the thread lets go, so the name table can prune them.
        let again: Certificate =
            postcard::from_bytes(&postcard::to_allocvec(&back[0]).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&again.issuer, &back[0].issuer));
        certvigil_core::cert::saved::forget();
        let after: Certificate =
            postcard::from_bytes(&postcard::to_allocvec(&back[0]).unwrap()).unwrap();
        assert!(!Arc::ptr_eq(&after.issuer, &back[0].issuer));
        assert!(!Arc::ptr_eq(&after.profile, &back[0].profile));

        let mut elsewhere = certificate();
        elsewhere.issuer = "CN=Another CA".into();
        let saved = postcard::to_allocvec(&elsewhere).unwrap();
        let back: Certificate = postcard::from_bytes(&saved).unwrap();
        assert_eq!(&*back.issuer, "CN=Another CA");
    }

    /// A hundred thousand of these stay in a daemon's memory: growing one should be a choice.
    #[test]
    fn a_remembered_file_stays_small() {
        assert_eq!(size_of::<(Arc<str>, Entry)>(), 96);
    }

    #[test]
    fn serials_keep_their_sign_and_length_when_saved() {
        let long: Vec<u8> = (1..=25).collect();
        for serial in [
            Serial::new(&[1, 2, 3], false),
            Serial::new(&[1], true),
            Serial::new(&long, true),
            Serial::new(&[], false),
        ] {
            let saved = postcard::to_allocvec(&serial).unwrap();
            assert_eq!(postcard::from_bytes::<Serial>(&saved).unwrap(), serial);
        }
        // Neither 0 nor 1 as the sign, or no sign at all: damage.
        for bad in [&[2u8, 1][..], &[]] {
            let saved = postcard::to_allocvec(bad).unwrap();
            assert!(postcard::from_bytes::<Serial>(&saved).is_err());
        }
    }

    #[test]
    fn saved_layout_is_pinned() {
        // postcard is not self-describing: a saved cache is only readable by the layout that
        // wrote it. When this fails, the saved form changed: bump FORMAT, then update the
        // expected bytes here.
        let entry = entry(vec![(0, 0, LinkStatus::Verified)].into());
        let bytes = postcard::to_allocvec(&entry).unwrap();
        assert_eq!(FORMAT, 4);
        assert_eq!(
            certvigil_core::cert::hex(&bytes),
            "ea0d7246ca8346f6137619c0aaf7410a01070707070707070707070707070707070707070707070707070707070707070704000102030f434e3d6c6561662e6578616d706c6517434e3d49737375696e672043412c4f3d4578616d706c650b0c80c49fd50c80c8ceb40d1d444e533a6c6561662e6578616d706c650a49503a3139322e302e322e3109090909090909090909090909090909020280020204000001800101000100000301150116010473706b6905050505050505050505050505050505050505050505050505050505050505050100000001020209090909090909090909090909090909010100010503"
        );
    }

    #[test]
    fn a_saved_cache_reads_back() {
        let entry = entry(vec![(0, 0, LinkStatus::Verified)].into());
        let bytes = saved(&[(b"/etc/ssl/leaf.pem", &entry)]);
        let cache = FileCache::read_saved(&mut bytes.as_slice(), 100).unwrap();
        assert_eq!(cache.len(), 1);
        cache.start_scan();
        let (path, content) = cache
            .get(Path::new("/etc/ssl/leaf.pem"), stamp())
            .expect("the saved file is remembered with its stamp");
        assert_eq!(&*path, "/etc/ssl/leaf.pem");
        assert_eq!(content.certs[0].fingerprint, [7; 32]);
        assert_eq!(content.certs[0].serial.as_bytes(), [1, 2, 3]);
        assert_eq!(content.links, vec![(0, 0, LinkStatus::Verified)]);
        assert_eq!(content.keys, entry.keys.to_vec());
        assert_eq!(content.errors, vec![ParseError::TrailingData(3)]);
        assert_eq!(content.encrypted_keys, 1);
        // Any one field changed is another state of the file.
        let changed = [
            Stamp { dev: 9, ..stamp() },
            Stamp { ino: 9, ..stamp() },
            Stamp { size: 9, ..stamp() },
            Stamp {
                mtime_ns: 9,
                ..stamp()
            },
            Stamp {
                ctime_ns: 9,
                ..stamp()
            },
        ];
        for other in changed {
            assert!(cache.get(Path::new("/etc/ssl/leaf.pem"), other).is_none());
        }
    }

    #[test]
    fn a_link_past_its_certificates_is_refused() {
        let entry = entry(vec![(0, 1, LinkStatus::Verified)].into());
        let bytes = saved(&[(b"/etc/ssl/leaf.pem", &entry)]);
        let err = FileCache::read_saved(&mut bytes.as_slice(), 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not there"), "{err}");
    }

    #[test]
    fn a_cache_for_other_options_is_not_used() {
        let entry = entry(Box::new([]));
        let bytes = saved(&[(b"/a.pem", &entry)]);
        let err = FileCache::read_saved(&mut bytes.as_slice(), 200).unwrap_err();
        assert!(err.to_string().contains("max_file_size: 100"), "{err}");
    }

    proptest::proptest! {
        /// A chunk with a valid checksum but any content (written by someone else, or a
        /// bug) loads or is refused; it never panics and never yields a link out of range.
        #[test]
        fn any_checksummed_chunk_loads_or_fails_cleanly(
            chunk in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)
        ) {
            let mut bytes = MAGIC.to_vec();
            let header = postcard::to_allocvec(&Header::current(100, 1)).unwrap();
            write_blob(&mut bytes, &header).unwrap();
            if !chunk.is_empty() {
                write_blob(&mut bytes, &chunk).unwrap();
            }
            bytes.extend_from_slice(&0u32.to_le_bytes());
            if let Ok(cache) = FileCache::read_saved(&mut bytes.as_slice(), 100) {
                for (_, entry) in &cache.lock().entries {
                    for &(child, issuer, _) in &entry.links {
                        proptest::prop_assert!((child as usize) < entry.certs.len());
                        proptest::prop_assert!((issuer as usize) < entry.certs.len());
                    }
                }
            }
        }
    }

    #[test]
    fn damaged_or_cut_caches_are_refused() {
        let entry = entry(vec![(0, 0, LinkStatus::Verified)].into());
        let bytes = saved(&[(b"/a.pem", &entry), (b"/b.pem", &entry)]);
        assert!(FileCache::read_saved(&mut bytes.as_slice(), 100).is_ok());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(
                FileCache::read_saved(&mut damaged.as_slice(), 100).is_err(),
                "a flipped bit at byte {at} went unnoticed"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                FileCache::read_saved(&mut &bytes[..len], 100).is_err(),
                "a cache cut to {len} bytes was believed"
            );
        }
    }
}
