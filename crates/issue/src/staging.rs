//! The staging area: each issuance becomes one generation directory, which appears under its
//! final name only after every file in it is written and fsynced. A crash leaves at most a
//! `.partial` directory, which the next `stage` removes; consumers never see it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::Issued;

const CERT_FILE: &str = "cert.pem";
const CHAIN_FILE: &str = "chain.pem";
const FULLCHAIN_FILE: &str = "fullchain.pem";
const KEY_FILE: &str = "privkey.pem";
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug, thiserror::Error)]
#[error("staging {path}: {source}")]
pub struct StagingError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> StagingError + '_ {
    move |source| StagingError {
        path: path.to_owned(),
        source,
    }
}

/// One complete issuance on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub dir: PathBuf,
    /// Sorts in issuance order: `<unix nanoseconds, 20 digits>-<serial hex>`, always above
    /// every earlier generation of the same name even if the clock stepped back.
    pub id: String,
}

impl Generation {
    pub fn cert(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }
    pub fn chain(&self) -> PathBuf {
        self.dir.join(CHAIN_FILE)
    }
    pub fn fullchain(&self) -> PathBuf {
        self.dir.join(FULLCHAIN_FILE)
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }
}

#[derive(Clone, Debug)]
pub struct Staging {
    root: PathBuf,
}

impl Staging {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes a validated bundle as a new generation of certificate `name`, issued at
    /// `issued_at_nanos` (unix nanoseconds).
    pub fn stage(
        &self,
        name: &str,
        issued: &Issued,
        issued_at_nanos: u128,
        serial_hex: &str,
    ) -> Result<Generation, StagingError> {
        let parent = self.dir_of(name);
        fs::create_dir_all(&parent).map_err(at(&parent))?;
        self.remove_partials(&parent)?;

        let newest = self
            .latest(name)?
            .and_then(|g| g.id.split('-').next()?.parse::<u128>().ok());
        let stamp = newest.map_or(issued_at_nanos, |n| issued_at_nanos.max(n + 1));
        let id = format!("{stamp:020}-{serial_hex}");
        let partial = parent.join(format!("{id}{PARTIAL_SUFFIX}"));
        fs::create_dir(&partial).map_err(at(&partial))?;
        write_synced(&partial.join(CERT_FILE), issued.leaf_pem.as_bytes(), 0o644)?;
        write_synced(
            &partial.join(CHAIN_FILE),
            issued.chain_pem.as_bytes(),
            0o644,
        )?;
        write_synced(
            &partial.join(FULLCHAIN_FILE),
            issued.fullchain_pem().as_bytes(),
            0o644,
        )?;
        write_synced(
            &partial.join(KEY_FILE),
            issued.key.expose().as_bytes(),
            0o600,
        )?;
        sync_dir(&partial)?;

        let dir = parent.join(&id);
        fs::rename(&partial, &dir).map_err(at(&dir))?;
        sync_dir(&parent)?;
        Ok(Generation { dir, id })
    }

    /// Every complete generation of `name`, oldest first.
    pub fn generations(&self, name: &str) -> Result<Vec<Generation>, StagingError> {
        let parent = self.dir_of(name);
        let entries = match fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(at(&parent)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(at(&parent))?;
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            if id.ends_with(PARTIAL_SUFFIX) || !entry.path().is_dir() {
                continue;
            }
            out.push(Generation {
                dir: entry.path(),
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn latest(&self, name: &str) -> Result<Option<Generation>, StagingError> {
        Ok(self.generations(name)?.pop())
    }

    fn remove_partials(&self, parent: &Path) -> Result<(), StagingError> {
        for entry in fs::read_dir(parent).map_err(at(parent))? {
            let entry = entry.map_err(at(parent))?;
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(PARTIAL_SUFFIX)
            {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(at(&path))?;
            }
        }
        Ok(())
    }
}

/// Replaces `path` whole: a temporary sibling written with `mode` and fsynced, renamed over
/// `path`, then the directory fsynced. A crash leaves the old file or the new one, never half.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StagingError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(at(path))?;
    file.write_all(bytes).map_err(at(path))?;
    file.sync_all().map_err(at(path))
}

fn sync_dir(dir: &Path) -> Result<(), StagingError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::SecretPem;

    fn bundle() -> Issued {
        Issued {
            leaf_pem: "LEAF\n".into(),
            chain_pem: "CHAIN\n".into(),
            key: SecretPem::new("KEY\n".into()),
        }
    }

    #[test]
    fn atomic_writes_replace_whole_files_with_their_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/state.json");
        write_file_atomic(&path, b"one", 0o600).unwrap();
        write_file_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(tmp.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn generations_appear_whole_with_a_private_key_file() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = Staging::new(tmp.path());
        assert_eq!(staging.latest("web").unwrap(), None);

        // A crash mid-write leaves a partial directory: never listed, removed by the next stage.
        let crashed = tmp
            .path()
            .join("web")
            .join(format!("000000000001-aa{PARTIAL_SUFFIX}"));
        fs::create_dir_all(&crashed).unwrap();
        assert_eq!(staging.generations("web").unwrap(), vec![]);

        let first = staging
            .stage("web", &bundle(), 1_700_000_000, "01")
            .unwrap();
        let second = staging
            .stage("web", &bundle(), 1_700_000_100, "02")
            .unwrap();
        assert!(!crashed.exists());
        assert_eq!(
            staging.generations("web").unwrap(),
            vec![first, second.clone()]
        );
        assert_eq!(staging.latest("web").unwrap(), Some(second.clone()));

        assert_eq!(
            fs::read_to_string(second.fullchain()).unwrap(),
            "LEAF\nCHAIN\n"
        );
        let mode = fs::metadata(second.key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
