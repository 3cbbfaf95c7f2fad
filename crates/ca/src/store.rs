//! Files on disk: each written to a temporary name with its final mode, fsynced, then renamed,
//! so a crash leaves either the old file or the new one, and a key is never readable by others,
//! not even for an instant.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certvigil_issue::Issued;

use crate::CaError;

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and other public files.
pub const CERT_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically with `mode`, replacing what was there.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    // Random as well as the pid: two threads may write the same file.
    let mut nonce = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut nonce);
    tmp_name.push(format!(
        ".{}-{:08x}.tmp",
        std::process::id(),
        u32::from_be_bytes(nonce)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(CaError::io("creating", &tmp))?;
        // The umask may have removed bits from `mode` (never added any): make it exact.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(CaError::io("setting the mode of", &tmp))?;
        file.write_all(bytes)
            .map_err(CaError::io("writing", &tmp))?;
        file.sync_all().map_err(CaError::io("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(CaError::io("renaming into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), CaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CaError::io("syncing directory", dir))
}

/// Writes an issued bundle as `cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.pem` (0600)
/// and `ca.pem` (the root) into `out`, creating it. Returns the paths written.
///
/// Each file is replaced atomically; the key is written first and the certificate last, so a
/// reader that polls `cert.pem` sees the new certificate only when its key is already there.
pub fn write_bundle(out: &Path, issued: &Issued, root_pem: &str) -> Result<Vec<PathBuf>, CaError> {
    fs::create_dir_all(out).map_err(CaError::io("creating", out))?;
    let fullchain = issued.fullchain_pem();
    let files: [(&str, &[u8], u32); 5] = [
        ("privkey.pem", issued.key.expose().as_bytes(), KEY_MODE),
        ("ca.pem", root_pem.as_bytes(), CERT_MODE),
        ("chain.pem", issued.chain_pem.as_bytes(), CERT_MODE),
        ("fullchain.pem", fullchain.as_bytes(), CERT_MODE),
        ("cert.pem", issued.leaf_pem.as_bytes(), CERT_MODE),
    ];
    let mut written = Vec::new();
    for (name, bytes, mode) in files {
        let path = out.join(name);
        write_file(&path, bytes, mode)?;
        written.push(path);
    }
    sync_dir(out)?;
    Ok(written)
}

/// Reads a CA file; a missing file is [`CaError::Missing`] with `what` it is.
pub(crate) fn read(path: &Path, what: &'static str) -> Result<String, CaError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CaError::Missing {
            path: path.to_owned(),
            what,
        }),
        Err(e) => Err(CaError::io("reading", path)(e)),
    }
}

/// A sibling of `dir` to build a new CA in; renamed onto `dir` when complete.
pub(crate) fn staging_dir(dir: &Path) -> Result<PathBuf, CaError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(CaError::io("creating", parent))?;
    let mut name = OsString::from(".");
    name.push(dir.file_name().unwrap_or_default());
    let mut suffix = [0u8; 6];
    let _ = aws_lc_rs::rand::fill(&mut suffix);
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    name.push(format!(".partial-{suffix}"));
    let tmp = parent.join(name);
    fs::create_dir(&tmp).map_err(CaError::io("creating", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .map_err(CaError::io("setting the mode of", &tmp))?;
    Ok(tmp)
}

/// Whether `dir` may become a new CA: absent, or an empty directory.
pub(crate) fn check_vacant(dir: &Path) -> Result<(), CaError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(CaError::AlreadyExists {
                dir: dir.to_owned(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(CaError::AlreadyExists {
            dir: dir.to_owned(),
        }),
        Err(e) => Err(CaError::io("reading", dir)(e)),
    }
}

/// Moves the completed staging directory onto `dir`. rename(2) replaces an empty directory
/// atomically and fails on a non-empty one, so a CA that appeared meanwhile is never replaced.
pub(crate) fn publish(tmp: &Path, dir: &Path) -> Result<(), CaError> {
    sync_dir(tmp)?;
    match fs::rename(tmp, dir) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
            ) || e.raw_os_error() == Some(20) =>
        {
            return Err(CaError::AlreadyExists {
                dir: dir.to_owned(),
            });
        }
        Err(e) => return Err(CaError::io("renaming into place", dir)(e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}
