//! Files and directories: which files to read, how to read them safely, which key belongs to
//! which certificate.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;
use walkdir::{DirEntryExt, WalkDir};

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
pub fn walk(root: &Path, options: &WalkOptions) -> (Vec<FoundFile>, Vec<WalkProblem>) {
    let mut problems = Vec::new();
    // (dev, ino) -> (path, reached through a symlink)
    let mut seen: HashMap<(u64, u64), (PathBuf, bool)> = HashMap::new();
    // Device of the directory at each depth: with it, a plain file's identity comes from the
    // directory listing alone, and only symlinks and directories cost a stat.
    let mut dev_by_depth: Vec<u64> = Vec::new();
    let walker = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_kubernetes_internal(e.file_name()));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e
                    .path()
                    .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                let reason = if let Some(ancestor) = e.loop_ancestor() {
                    format!("symlink loop back to {}", ancestor.display())
                } else if let Some(io) = e.io_error() {
                    describe_io_error(io)
                } else {
                    e.to_string()
                };
                problems.push(WalkProblem { path, reason });
                continue;
            }
        };
        if entry.file_type().is_dir() {
            let Ok(meta) = entry.metadata() else { continue };
            dev_by_depth.truncate(entry.depth());
            dev_by_depth.push(meta.dev());
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        if !is_candidate(path) || !glob_allows(path, options) {
            continue;
        }
        let via_symlink = entry.path_is_symlink();
        let parent_dev = entry.depth().checked_sub(1).and_then(|d| dev_by_depth.get(d));
        let inode = match parent_dev {
            Some(dev) if !via_symlink => (*dev, entry.ino()),
            _ => match entry.metadata() {
                Ok(meta) => (meta.dev(), meta.ino()),
                Err(_) => continue,
            },
        };
        match seen.get(&inode) {
            Some((_, true)) => {}
            Some((_, false)) if !via_symlink => {}
            _ => {
                seen.insert(inode, (path.to_path_buf(), via_symlink));
            }
        }
    }
    let mut files: Vec<FoundFile> = seen
        .into_iter()
        .map(|(inode, (path, _))| FoundFile { path, inode })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, problems)
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
    if meta.len() > max {
        return Err(format!(
            "skipped: {} bytes is over the {} byte limit (--max-file-size)",
            meta.len(),
            max
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The size can change under us (a file being written); never read past the limit.
    file.by_ref()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| describe_io_error(&e))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "skipped: grew past the {max} byte limit while being read"
        ));
    }
    Ok(bytes)
}

/// Writes a file so readers see the old or the new content, never a mix: a temporary file in
/// the same directory, fsynced, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
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
