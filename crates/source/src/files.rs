//! Files and directories: which files to read, how to read them safely, which key belongs to
//! which certificate.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;
use std::os::unix::fs::DirEntryExt;
use std::sync::{Arc, Mutex};

/// Largest file read by default. Certificate files are kilobytes; a bundle of every public
/// root is under 300 KiB. Anything near this is a log, a database or a hostile file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// When set, only files whose path matches are considered inside directories.
    pub include: Option<GlobSet>,
    pub exclude: Option<GlobSet>,
    pub max_file_size: u64,
}

/// A file found in a walk, with the name users know it by.
#[derive(Clone, Debug)]
pub struct FoundFile {
    pub path: PathBuf,
    /// Identity of the file behind the name, to read each file once.
    pub inode: (u64, u64),
}

#[derive(Debug)]
pub struct WalkProblem {
    pub path: PathBuf,
    pub reason: String,
}

/// Files under `root` that may hold certificates, keys, CRLs or kubeconfigs.
///
/// Symlinks are followed (certbot `live/`, Kubernetes `..data`) with loop detection; the
/// Kubernetes `..<timestamp>` directories are skipped so each file is reported under its
/// stable name; a file reached by several names is returned once, preferring a symlink name.
/// Directories are read in parallel; only directories and symlinks cost a `stat`.
pub fn walk(root: &Path, options: &WalkOptions) -> (Vec<FoundFile>, Vec<WalkProblem>) {
    let sink = Mutex::new(Walked::default());
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {
            let ancestors = Arc::new(vec![(meta.dev(), meta.ino())]);
            rayon::scope(|scope| walk_dir(scope, root.to_path_buf(), ancestors, options, &sink));
        }
        Ok(meta) => {
            let mut walked = sink.lock().unwrap_or_else(|e| e.into_inner());
            walked
                .files
                .push((root.to_path_buf(), (meta.dev(), meta.ino()), false));
        }
        Err(e) => {
            let reason = describe_io_error(&e);
            let mut walked = sink.lock().unwrap_or_else(|e| e.into_inner());
            walked.problems.push(WalkProblem {
                path: root.to_path_buf(),
                reason,
            });
        }
    }
    let Walked {
        mut files,
        mut problems,
    } = sink.into_inner().unwrap_or_else(|e| e.into_inner());
    // One name per file: the symlink name users know, else the first path.
    files.sort_unstable_by(|a, b| {
        a.1.cmp(&b.1)
            .then(b.2.cmp(&a.2))
            .then_with(|| path_bytes(&a.0).cmp(path_bytes(&b.0)))
    });
    files.dedup_by(|later, first| later.1 == first.1);
    let mut found: Vec<FoundFile> = files
        .into_iter()
        .map(|(path, inode, _)| FoundFile { path, inode })
        .collect();
    // Byte order: deterministic like `Path`'s component order, at a fraction of the cost
    // for a hundred thousand paths.
    found.sort_unstable_by(|a, b| path_bytes(&a.path).cmp(path_bytes(&b.path)));
    problems.sort_by(|a, b| path_bytes(&a.path).cmp(path_bytes(&b.path)));
    (found, problems)
}

fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes()
}

#[derive(Default)]
struct Walked {
    /// (path, (dev, ino), reached through a symlink)
    files: Vec<(PathBuf, (u64, u64), bool)>,
    problems: Vec<WalkProblem>,
}

/// Reads one directory; subdirectories are walked as separate rayon tasks. `ancestors` holds
/// the identities of every directory above, so a symlink back up the tree is a loop, not a
/// recursion.
fn walk_dir<'s>(
    scope: &rayon::Scope<'s>,
    dir: PathBuf,
    ancestors: Arc<Vec<(u64, u64)>>,
    options: &'s WalkOptions,
    sink: &'s Mutex<Walked>,
) {
    let dev = ancestors.last().map_or(0, |a| a.0);
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            let reason = describe_io_error(&e);
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .problems
                .push(WalkProblem { path: dir, reason });
            return;
        }
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if is_kubernetes_internal(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let via_symlink = file_type.is_symlink();
        let (is_dir, identity) = if via_symlink {
            match std::fs::metadata(&path) {
                // Links to FIFOs or devices are not followed: reading one could block forever.
                Ok(meta) if !meta.is_dir() && !meta.is_file() => continue,
                Ok(meta) => (meta.is_dir(), (meta.dev(), meta.ino())),
                Err(e) => {
                    // A dangling link named like a certificate is worth a finding.
                    if is_candidate(&path) {
                        problems.push(WalkProblem {
                            path,
                            reason: describe_io_error(&e),
                        });
                    }
                    continue;
                }
            }
        } else if file_type.is_dir() {
            match std::fs::metadata(&path) {
                Ok(meta) => (true, (meta.dev(), meta.ino())),
                Err(_) => continue,
            }
        } else if file_type.is_file() {
            (false, (dev, entry.ino()))
        } else {
            continue;
        };
        if is_dir {
            if let Some(ancestor) = ancestors.iter().position(|a| *a == identity) {
                let back = ancestor_path(&dir, ancestors.len() - 1 - ancestor);
                let reason = format!("symlink loop back to {}", back.display());
                problems.push(WalkProblem { path, reason });
                continue;
            }
            let mut chain = Vec::with_capacity(ancestors.len() + 1);
            chain.extend_from_slice(&ancestors);
            chain.push(identity);
            let chain = Arc::new(chain);
            scope.spawn(move |scope| walk_dir(scope, path, chain, options, sink));
        } else if is_candidate(&path) && glob_allows(&path, options) {
            files.push((path, identity, via_symlink));
        }
    }
    if files.is_empty() && problems.is_empty() {
        return;
    }
    let mut walked = sink.lock().unwrap_or_else(|e| e.into_inner());
    walked.files.append(&mut files);
    walked.problems.append(&mut problems);
}

/// `dir` climbed `levels` times.
fn ancestor_path(dir: &Path, levels: usize) -> PathBuf {
    let mut path = dir;
    for _ in 0..levels {
        path = path.parent().unwrap_or(path);
    }
    path.to_path_buf()
}

fn glob_allows(path: &Path, options: &WalkOptions) -> bool {
    if let Some(include) = &options.include
        && !include.is_match(path)
        && !path.file_name().is_some_and(|n| include.is_match(n))
    {
        return false;
    }
    if let Some(exclude) = &options.exclude
        && (exclude.is_match(path) || path.file_name().is_some_and(|n| exclude.is_match(n)))
    {
        return false;
    }
    true
}

/// `..data` and `..2024_01_01_00_00_00.123` are the kubelet's atomic-writer internals; the
/// user-facing names are symlinks through them.
fn is_kubernetes_internal(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with(".."))
}

const CERT_EXTENSIONS: &[&str] = &[
    "pem",
    "crt",
    "cer",
    "cert",
    "der",
    "p7b",
    "p7c",
    "p12",
    "pfx",
    "key",
    "crl",
    "csr",
    "ca-bundle",
    "kubeconfig",
];

/// Does the file name suggest content we understand? Directories hold many unrelated files
/// (configs, logs); only these are read. Explicit file arguments are always read.
pub fn is_candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    if let Some(ext) = path.extension().and_then(OsStr::to_str)
        && CERT_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
    {
        return ext != "csr";
    }
    is_openssl_hash_name(name) || is_kubeconfig_name(name)
}

/// `/etc/ssl/certs/5ad8a5d6.0` (certificates) and `*.r0` (CRLs): OpenSSL's hashed directory.
fn is_openssl_hash_name(name: &str) -> bool {
    let Some((hash, n)) = name.split_once('.') else {
        return false;
    };
    let n = n.strip_prefix('r').unwrap_or(n);
    hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

fn is_kubeconfig_name(name: &str) -> bool {
    matches!(
        name,
        "admin.conf"
            | "kubelet.conf"
            | "controller-manager.conf"
            | "scheduler.conf"
            | "super-admin.conf"
            | "kubeconfig"
    )
}

/// Reads a whole file, refusing anything larger than `max` without reading it.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let mut file = File::open(path).map_err(|e| describe_io_error(&e))?;
    let meta = file.metadata().map_err(|e| describe_io_error(&e))?;
    if meta.is_dir() {
        return Err("is a directory".to_owned());
    }
    // Pipes and devices report no useful size; the read below is still bounded.
    if meta.is_file() && meta.len() > max {
        return Err(format!(
            "skipped: {} bytes is over the {} byte limit (--max-file-size)",
            meta.len(),
            max
        ));
    }
    let bytes = Vec::with_capacity(meta.len().min(max) as usize);
    read_rest(&mut file, bytes, max)
}

/// Reads the rest of `file` after `bytes`. The size can change under us (a file being
/// written), so the read never goes past the limit.
fn read_rest(file: &mut File, mut bytes: Vec<u8>, max: u64) -> Result<Vec<u8>, String> {
    let already = bytes.len() as u64;
    file.take(max + 1 - already)
        .read_to_end(&mut bytes)
        .map_err(|e| describe_io_error(&e))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "skipped: grew past the {max} byte limit while being read"
        ));
    }
    Ok(bytes)
}

/// Reads a regular file found by the walk, into `buf`: reused across files, so a scan does
/// not allocate and zero a buffer per file. Open, one read, close for the common small file:
/// a short read of a regular file is its end, so no second read is spent on seeing 0; only a
/// file that fills the first read costs a `stat` for the size limit. (Pipes and devices
/// never come from the walk.)
pub fn read_regular_into<'b>(
    path: &Path,
    max: u64,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], String> {
    read_regular_into_stat(path, max, buf, None)
}

/// As [`read_regular_into`], also giving the metadata of the very file read: `fstat` on the
/// open file, so no second path lookup and no rename slipping in between. It is taken before
/// the read, so a write during the read makes the stamp stale, never the content.
pub fn read_regular_into_stat<'b>(
    path: &Path,
    max: u64,
    buf: &'b mut Vec<u8>,
    stat: Option<&mut Option<std::fs::Metadata>>,
) -> Result<&'b [u8], String> {
    const FIRST: usize = 16 * 1024;
    // A large file's buffer is not kept for the small files that follow.
    if buf.len() < FIRST || buf.len() > 4 * FIRST {
        *buf = vec![0; FIRST];
    }
    let mut file = File::open(path).map_err(|e| describe_io_error(&e))?;
    let mut stat_len = None;
    if let Some(stat) = stat {
        *stat = file.metadata().ok();
        stat_len = stat.as_ref().map(std::fs::Metadata::len);
    }
    let filled = loop {
        match file.read(&mut buf[..FIRST]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(describe_io_error(&e)),
        }
    };
    if filled < FIRST {
        return Ok(&buf[..filled]);
    }
    let len = match stat_len {
        Some(len) => len,
        None => file.metadata().map_err(|e| describe_io_error(&e))?.len(),
    };
    if len > max {
        return Err(format!(
            "skipped: {len} bytes is over the {max} byte limit (--max-file-size)"
        ));
    }
    buf.truncate(FIRST);
    buf.reserve(len.saturating_sub(FIRST as u64) as usize);
    *buf = read_rest(&mut file, std::mem::take(buf), max)?;
    Ok(buf)
}

/// Writes a file so readers see the old or the new content, never a mix: a temporary file in
/// the same directory, fsynced, then renamed over the target. Only its owner may read it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// As [`write_atomic`], with the content streamed by `write` (through a buffer).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of a crashed run is removed; anything put there in between (a symlink in a
    // shared directory) makes the exclusive create fail instead of being followed.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut out = io::BufWriter::with_capacity(1 << 16, file);
        write(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn describe_io_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied (run as a user that can read it, e.g. root)".to_owned()
        }
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        _ if e.raw_os_error() == Some(40) => "too many levels of symbolic links".to_owned(),
        _ => e.to_string(),
    }
}

/// Names under which the private key for the certificate at `cert_path` is conventionally
/// kept, most specific first.
pub fn key_candidates(cert_path: &Path) -> Vec<PathBuf> {
    let Some(dir) = cert_path.parent() else {
        return Vec::new();
    };
    let Some(name) = cert_path.file_name().and_then(OsStr::to_str) else {
        return Vec::new();
    };
    let stem = cert_path
        .file_stem()
        .and_then(OsStr::to_str)
        .unwrap_or(name);
    let mut names = match name {
        // certbot
        "cert.pem" | "fullchain.pem" => vec!["privkey.pem".to_owned()],
        // Kubernetes TLS secrets and kubeadm
        "tls.crt" => vec!["tls.key".to_owned()],
        _ => Vec::new(),
    };
    if name.ends_with(".crt") || name.ends_with(".cer") || name.ends_with(".pem") {
        names.push(format!("{stem}.key"));
        // cfssl: server.pem + server-key.pem
        names.push(format!("{stem}-key.pem"));
        names.push(format!("{stem}.key.pem"));
    }
    names
        .into_iter()
        .map(|n| dir.join(n))
        .filter(|p| p != cert_path)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink planted at the temporary name (a shared cache directory) is not followed:
    /// the file it points to keeps its content, and the target gets the new one, owner-only.
    #[test]
    fn an_atomic_write_never_follows_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let target = dir.path().join("files");
        let planted = dir
            .path()
            .join(format!(".files.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&target, b"cache").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&target).unwrap(), b"cache");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&target).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::symlink_metadata(&planted).is_err(),
            "no temporary left"
        );
    }

    /// The stamp a cache keeps is the one of the bytes read, even when a rename replaces the
    /// path right after.
    #[test]
    fn the_stat_is_of_the_file_read() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, b"old").unwrap();
        let mut buf = Vec::new();
        let mut stat = None;
        let read = read_regular_into_stat(&path, 1 << 20, &mut buf, Some(&mut stat)).unwrap();
        assert_eq!(read, b"old");
        let stat = stat.unwrap();
        let before = std::fs::metadata(&path).unwrap();
        assert_eq!((stat.ino(), stat.len()), (before.ino(), 3));
        std::fs::write(dir.path().join("new"), b"newer").unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        assert_ne!(stat.ino(), std::fs::metadata(&path).unwrap().ino());

        // Past the first buffer the size comes from the same stat, limit included.
        let big = dir.path().join("big.pem");
        let data: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        std::fs::write(&big, &data).unwrap();
        let mut stat = None;
        let read = read_regular_into_stat(&big, 1 << 20, &mut buf, Some(&mut stat)).unwrap();
        assert_eq!(read, data);
        assert_eq!(stat.unwrap().len(), 100_000);
        let err = read_regular_into_stat(&big, 40_000, &mut buf, Some(&mut None)).unwrap_err();
        assert!(err.contains("over the 40000 byte limit"), "{err}");
    }

    #[test]
    fn regular_reads_match_whole_reads_around_the_first_buffer() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0, 1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 100_000] {
            let path = dir.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let mut buf = Vec::new();
            assert_eq!(
                read_regular_into(&path, 1 << 20, &mut buf).unwrap(),
                data,
                "{size}"
            );
            // Reused after a larger file, the buffer still yields exactly this file.
            let mut big = vec![7u8; 70_000];
            assert_eq!(
                read_regular_into(&path, 1 << 20, &mut big).unwrap(),
                data,
                "{size}"
            );
            assert_eq!(read_limited(&path, 1 << 20).unwrap(), data, "{size}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 50_000]).unwrap();
        let mut buf = Vec::new();
        let err = read_regular_into(&big, 40_000, &mut buf).unwrap_err();
        assert!(err.contains("over the"));
    }

    #[test]
    fn recognises_certificate_like_names() {
        assert!(is_candidate(Path::new("/etc/ssl/certs/5ad8a5d6.0")));
        assert!(is_candidate(Path::new("/x/3513523f.r1")));
        assert!(is_candidate(Path::new("/x/tls.crt")));
        assert!(is_candidate(Path::new("/etc/kubernetes/admin.conf")));
        assert!(!is_candidate(Path::new("/x/server.csr")));
        assert!(!is_candidate(Path::new("/x/nginx.conf")));
        assert!(!is_candidate(Path::new("/x/README")));
    }

    #[test]
    fn key_names_follow_conventions() {
        let c = key_candidates(Path::new("/le/live/a/fullchain.pem"));
        assert_eq!(c[0], Path::new("/le/live/a/privkey.pem"));
        let c = key_candidates(Path::new("/pki/etcd/server.crt"));
        assert_eq!(c[0], Path::new("/pki/etcd/server.key"));
        let c = key_candidates(Path::new("/cfssl/server.pem"));
        assert!(c.contains(&PathBuf::from("/cfssl/server-key.pem")));
    }
}
