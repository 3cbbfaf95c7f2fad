//! The durable per-certificate renewal state: where a renewal stands, so that a crash or a
//! failed hook resumes at the failed stage (a certificate issued but not verified is never
//! "done", and a failed reload is retried without issuing again).

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Idle → Issued → Activated → Reloaded → Verified; `failure` is set on any edge that failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Nothing in flight: the last renewal (if any) was verified.
    #[default]
    Idle,
    /// A new generation is in the staging area, not yet live.
    Issued,
    /// The live set points at the new generation; services not reloaded yet.
    Activated,
    /// Services were reloaded; the endpoints have not been seen serving it yet.
    Reloaded,
    /// The endpoints serve the new certificate.
    Verified,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Issued => "issued",
            Self::Activated => "activated",
            Self::Reloaded => "reloaded",
            Self::Verified => "verified",
        }
    }

    /// Work remains to be done for the generation in flight.
    pub fn pending(self) -> bool {
        matches!(self, Self::Issued | Self::Activated | Self::Reloaded)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The stage whose step failed: issue, activate, reload, verify, rollback.
    pub step: String,
    /// configuration, transient, rate_limited, rejected ...
    pub class: String,
    pub message: String,
    /// Consecutive failures of this certificate.
    pub attempt: u32,
    /// Not before (unix seconds); `i64::MAX` for configuration errors, which wait for the
    /// configuration to change instead.
    pub next_at: i64,
    /// For configuration errors: the digest of the configuration that failed.
    #[serde(default)]
    pub config_digest: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertState {
    pub stage: Stage,
    /// The generation in flight (or the last verified one when idle).
    pub generation: Option<String>,
    /// Serial of the certificate in flight.
    pub serial: Option<String>,
    /// The live generation before this renewal, for rollback.
    pub previous: Option<String>,
    pub failure: Option<Failure>,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Reload hooks that failed and are still owed (by their dedup key).
    #[serde(default)]
    pub reload_failures: u64,
}

pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn lock_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    /// The stored state; a missing file is a fresh `Idle`. A corrupt file is an error: guessing
    /// could re-issue or skip a pending reload.
    pub fn load(&self, name: &str) -> io::Result<CertState> {
        let path = self.file(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a certvigil state file ({e})", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CertState::default()),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    /// Persists `state`: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, name: &str, state: &CertState) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        certvigil_issue::write_file_atomic(&self.file(name), &bytes, 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_corruption_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state"));
        assert_eq!(store.load("web").unwrap(), CertState::default());
        let state = CertState {
            stage: Stage::Activated,
            generation: Some("00000000000000000002-aa".into()),
            serial: Some("AA".into()),
            previous: Some("00000000000000000001-bb".into()),
            failure: Some(Failure {
                step: "reload".into(),
                class: "transient".into(),
                message: "nginx: exit status 1".into(),
                attempt: 2,
                next_at: 1_800_000_000,
                config_digest: None,
            }),
            last_attempt: Some(1),
            last_success: None,
            reload_failures: 2,
        };
        store.save("web", &state).unwrap();
        assert_eq!(store.load("web").unwrap(), state);
        assert!(state.stage.pending());
        fs::write(dir.path().join("state/web.json"), b"{\"stage\": ").unwrap();
        let err = store.load("web").unwrap_err().to_string();
        assert!(err.contains("web.json"), "{err}");
    }
}
