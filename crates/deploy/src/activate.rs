//! The live set of one managed certificate, switched atomically between complete generations.
//!
//! ```text
//! <dir>/
//!   .lock                         flock(2): one writer at a time (readers never lock)
//!   generations/
//!     000001700000000-0a/         cert.pem chain.pem fullchain.pem (0644) privkey.pem (0600)
//!     000001700086400-0b/
//!   current -> generations/000001700086400-0b
//!   copyout.pending               only while a copy-out is in flight (see below)
//! ```
//!
//! Services are pointed at [`LiveDir::paths`] (`<dir>/current/fullchain.pem` and so on). A
//! generation is copied in as `generations/<id>.partial`, every file and the directory fsynced,
//! then renamed to `generations/<id>`: a complete generation appears in one step or not at all.
//! Activation creates the symlink `current.new` and renames it over `current`, then fsyncs
//! `<dir>`. rename(2) replaces the link atomically, so whoever resolves `current` gets the old
//! generation or the new one, crash included. A reader that needs the certificate and the key
//! to match resolves `current` once ([`LiveDir::current_generation`], or `openat` below one
//! directory handle) rather than opening two paths through the link while an activation may run;
//! a service reading its files at start or reload, after the activation, has nothing to worry about.
//!
//! Directories are 0755 and certificates 0644 so a service user can read them; `privkey.pem`
//! stays 0600 and owned by the deploying user (root). A service running under its own user that
//! must read the key gets it through a copy-out target ([`CopyOut`]) with its owner, group and
//! mode.
//!
//! Copy-out targets are for daemons that do not follow symlinks or want their files elsewhere.
//! Each file is written to a temporary name beside its target, fsynced and given its owner and
//! mode; only when every temporary file of every target exists are they renamed over their
//! targets, one after the other. Two renames cannot be one atomic step, so a journal
//! (`copyout.pending`) records the renames before the first one: after a crash,
//! [`LiveDir::recover`] finishes them (a journal still in its "writing" phase is undone instead,
//! and the old files stay). Every mutating call first does the same recovery.
//!
//! Each step calls [`fault::point`] and [`fault::io_error`] with the names in [`fault::POINTS`]
//! and [`fault::IO_POINTS`]; `docs/deploy.md` lists them with what a crash there leaves behind.

mod copy_out;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use certvigil_issue::{Generation, SecretPem};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use copy_out::CopyOut;

use crate::fault;

/// The stage of a deployment an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Reading the live directory's state (`current`, the list of generations).
    Read,
    /// Copying a staged generation into `generations/`.
    Stage,
    /// Swapping `current` to a new generation (and pruning old ones).
    Activate,
    /// Writing the current generation to copy-out targets.
    CopyOut,
    /// Swapping `current` back to the previous generation.
    Rollback,
    /// Finishing or undoing work a crash interrupted.
    Recover,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Stage => "stage",
            Self::Activate => "activate",
            Self::CopyOut => "copy-out",
            Self::Rollback => "rollback",
            Self::Recover => "recover",
        })
    }
}

/// Why a deployment step failed: always the stage and the path, and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// A file operation failed. Nothing live changed unless the stage says otherwise (an
    /// `activate` error after the swap puts the old link back before returning).
    #[error("{stage}: {}: {source}", path.display())]
    Io {
        stage: Stage,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The live directory, the generation or a copy-out target is not usable as it is.
    #[error("{stage}: {}: {reason}", path.display())]
    Invalid {
        stage: Stage,
        path: PathBuf,
        reason: String,
    },
    /// A copy-out failed after it had started renaming: the targets are a mix of old and new
    /// files until the journal is replayed, which [`LiveDir::recover`] (and the next
    /// `copy_out`, `activate` or `rollback`) does first.
    #[error(
        "copy-out: {}: {source} ({renamed} of {total} files renamed; recover() completes the copy-out from {})",
        path.display(),
        journal.display()
    )]
    CopyOutInterrupted {
        path: PathBuf,
        #[source]
        source: io::Error,
        renamed: usize,
        total: usize,
        journal: PathBuf,
    },
}

impl DeployError {
    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Io { stage, .. } | Self::Invalid { stage, .. } => *stage,
            Self::CopyOutInterrupted { .. } => Stage::CopyOut,
        }
    }

    /// The file or directory the failed operation was about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Invalid { path, .. }
            | Self::CopyOutInterrupted { path, .. } => path,
        }
    }
}

/// The live set of one managed certificate; see the module documentation for the layout.
#[derive(Clone, Debug)]
pub struct LiveDir {
    dir: PathBuf,
    keep: usize,
}

/// What services are pointed at: the files below `<dir>/current`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivePaths {
    pub cert: PathBuf,
    pub chain: PathBuf,
    pub fullchain: PathBuf,
    pub key: PathBuf,
}

/// The outcome of [`LiveDir::activate`] or [`LiveDir::rollback`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The generation that was live before this one, if any (for a retried activation of the
    /// live generation, the one before it).
    pub previous: Option<String>,
    /// The generation that is live now.
    pub current: String,
}

/// What [`LiveDir::recover`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Leftovers of an interrupted write: `generations/*.partial`, `*.trash`, `current.new`,
    /// a journal that was never renamed into place.
    pub removed: Vec<PathBuf>,
    /// Copy-out targets whose pending rename was finished.
    pub copied_out: Vec<PathBuf>,
    /// Temporary files of a copy-out interrupted before its first rename (the old files stay).
    pub abandoned: Vec<PathBuf>,
    /// Journal entries whose temporary file was gone while the target did not hold the new
    /// content (something else changed it); left alone, and the next copy-out rewrites them.
    pub unresolved: Vec<PathBuf>,
}

impl Recovery {
    fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.copied_out.is_empty()
            && self.abandoned.is_empty()
            && self.unresolved.is_empty()
    }
}

const GENERATIONS: &str = "generations";
const CURRENT: &str = "current";
const CURRENT_NEW: &str = "current.new";
const LOCK: &str = ".lock";
const PARTIAL: &str = ".partial";
const TRASH: &str = ".trash";
const DIR_MODE: u32 = 0o755;

impl LiveDir {
    /// A live directory at `dir` keeping the newest `keep` generations. `keep` below 2 is
    /// raised to 2: the current generation and one to roll back to.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            dir: dir.into(),
            keep: keep.max(2),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths services use: `<dir>/current/{cert,chain,fullchain,privkey}.pem`.
    pub fn paths(&self) -> LivePaths {
        let current = self.dir.join(CURRENT);
        LivePaths {
            cert: current.join(Part::Cert.file_name()),
            chain: current.join(Part::Chain.file_name()),
            fullchain: current.join(Part::Fullchain.file_name()),
            key: current.join(Part::Key.file_name()),
        }
    }

    /// The id of the generation `current` points at; `None` before the first activation.
    pub fn current(&self) -> Result<Option<String>, DeployError> {
        self.read_current(Stage::Read)
    }

    /// The generation `current` points at, resolved once: its files always belong together.
    pub fn current_generation(&self) -> Result<Option<Generation>, DeployError> {
        self.resolve_current(Stage::Read)
    }

    /// The newest generation older than the current one: where [`rollback`](Self::rollback)
    /// goes.
    pub fn previous(&self) -> Result<Option<String>, DeployError> {
        let ids = self.list(Stage::Read)?;
        let current = self.read_current(Stage::Read)?;
        Ok(current.and_then(|current| older_than(&ids, &current).map(str::to_owned)))
    }

    /// Every complete generation in the live directory, oldest first.
    pub fn generations(&self) -> Result<Vec<String>, DeployError> {
        self.list(Stage::Read)
    }

    /// Copies `generation` in (unless a generation with its id is already there, which must
    /// then hold the same files) and points `current` at it, then prunes old generations.
    ///
    /// Activating the generation that is already live changes nothing; `previous` is then the
    /// generation before it, what the first attempt reported.
    ///
    /// On error the old generation stays live (a failed fsync after the swap swaps back), and
    /// the leftovers are removed by the next call.
    pub fn activate(&self, generation: &Generation) -> Result<Activation, DeployError> {
        let id = &generation.id;
        let dest = self.generation_dir(id);
        check_id(id, Stage::Stage, &dest)?;
        let _lock = self.lock(Stage::Activate)?;
        self.settle(Stage::Activate)?;

        let before = self.read_current(Stage::Activate)?;
        if before.as_deref() == Some(id.as_str()) {
            // A retried activation (say, after a crash before the caller recorded it): report
            // the generation before this one, as the first attempt did.
            let ids = self.list(Stage::Activate)?;
            return Ok(Activation {
                previous: older_than(&ids, id).map(str::to_owned),
                current: id.clone(),
            });
        }
        let staged = Contents::read(generation, Stage::Stage)?;
        if dest.is_dir() {
            let there = Contents::read(&self.generation(id), Stage::Stage)?;
            if there != staged {
                return Err(DeployError::Invalid {
                    stage: Stage::Stage,
                    path: dest,
                    reason: format!(
                        "holds other files than {} for the same id",
                        generation.dir.display()
                    ),
                });
            }
        } else {
            self.copy_in(id, &staged)?;
        }

        self.swap(id, before.as_deref(), &ACTIVATE)?;
        match self.prune() {
            Ok(pruned) if !pruned.is_empty() => {
                tracing::debug!(dir = %self.dir.display(), ?pruned, "pruned old generations");
            }
            Ok(_) => {}
            // The activation is done and durable; the next one prunes again.
            Err(e) => tracing::warn!(error = %e, "pruning old generations failed"),
        }
        tracing::info!(dir = %self.dir.display(), previous = ?before, current = %id, "activated");
        Ok(Activation {
            previous: before,
            current: id.clone(),
        })
    }

    /// Points `current` back at the [`previous`](Self::previous) generation. Copy-out targets
    /// follow with the next [`copy_out`](Self::copy_out).
    pub fn rollback(&self) -> Result<Activation, DeployError> {
        let stage = Stage::Rollback;
        let _lock = self.lock(stage)?;
        self.settle(stage)?;
        let ids = self.list(stage)?;
        let Some(current) = self.read_current(stage)? else {
            return Err(self.invalid(stage, CURRENT, "nothing is live to roll back from"));
        };
        let Some(previous) = older_than(&ids, &current).map(str::to_owned) else {
            return Err(self.invalid(
                stage,
                GENERATIONS,
                &format!("no generation older than {current} to roll back to"),
            ));
        };
        self.swap(&previous, Some(&current), &ROLLBACK)?;
        tracing::info!(dir = %self.dir.display(), from = %current, to = %previous, "rolled back");
        Ok(Activation {
            previous: Some(current),
            current: previous,
        })
    }

    /// Finishes or undoes what a crash interrupted: removes partial generations, trashed
    /// generations and a stray `current.new`; replays a copy-out journal that reached its
    /// renaming phase, or removes the temporary files of one that did not; fsyncs the directory
    /// so the live link is durable. `None` when there was nothing to do.
    ///
    /// Safe to run at any time and any number of times (it takes the same lock as the writers).
    pub fn recover(&self) -> Result<Option<Recovery>, DeployError> {
        let stage = Stage::Recover;
        match fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at(stage, &self.dir)(e)),
            Ok(_) => {}
        }
        let _lock = self.lock(stage)?;
        let recovery = self.settle(stage)?;
        if let Some(generation) = self.resolve_current(stage)?
            && !generation.dir.is_dir()
        {
            return Err(DeployError::Invalid {
                stage,
                path: self.dir.join(CURRENT),
                reason: format!(
                    "points at {}, which does not exist",
                    generation.dir.display()
                ),
            });
        }
        // An abort after the swap but before the fsync leaves the new link only in the page
        // cache; make whatever is live now durable.
        let generations = self.dir.join(GENERATIONS);
        sync_dir(&generations).map_err(at(stage, &generations))?;
        sync_dir(&self.dir).map_err(at(stage, &self.dir))?;
        if !recovery.is_empty() {
            tracing::info!(dir = %self.dir.display(), ?recovery, "recovered");
        }
        Ok((!recovery.is_empty()).then_some(recovery))
    }

    fn generation_dir(&self, id: &str) -> PathBuf {
        self.dir.join(GENERATIONS).join(id)
    }

    fn generation(&self, id: &str) -> Generation {
        Generation {
            dir: self.generation_dir(id),
            id: id.to_owned(),
        }
    }

    fn invalid(&self, stage: Stage, name: &str, reason: &str) -> DeployError {
        DeployError::Invalid {
            stage,
            path: self.dir.join(name),
            reason: reason.to_owned(),
        }
    }

    /// Takes the writers' lock, creating the directory and `generations/` (0755) if needed.
    fn lock(&self, stage: Stage) -> Result<Flock<File>, DeployError> {
        let generations = self.dir.join(GENERATIONS);
        if !generations.is_dir() {
            create_dirs(&generations).map_err(at(stage, &generations))?;
        }
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(at(stage, &path))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| at(stage, &path)(io::Error::from(errno)))
    }

    fn read_current(&self, stage: Stage) -> Result<Option<String>, DeployError> {
        let link = self.dir.join(CURRENT);
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(DeployError::Invalid {
                    stage,
                    path: link,
                    reason: "is not a symlink; certvigil manages this path".into(),
                });
            }
            Err(e) => return Err(at(stage, &link)(e)),
        };
        let id = target
            .strip_prefix(GENERATIONS)
            .ok()
            .and_then(|rest| rest.to_str())
            .filter(|id| check_id(id, stage, &link).is_ok());
        match id {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(DeployError::Invalid {
                stage,
                path: link,
                reason: format!("points at {}, not at generations/<id>", target.display()),
            }),
        }
    }

    fn resolve_current(&self, stage: Stage) -> Result<Option<Generation>, DeployError> {
        Ok(self.read_current(stage)?.map(|id| self.generation(&id)))
    }

    /// Complete generations, oldest first.
    fn list(&self, stage: Stage) -> Result<Vec<String>, DeployError> {
        let dir = self.dir.join(GENERATIONS);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(at(stage, &dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(at(stage, &dir))?;
            let is_dir = entry.file_type().map_err(at(stage, &dir))?.is_dir();
            if let Ok(id) = entry.file_name().into_string()
                && is_dir
                && !id.ends_with(PARTIAL)
                && !id.ends_with(TRASH)
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Removes what interrupted writers left behind and replays or undoes a copy-out journal.
    fn settle(&self, stage: Stage) -> Result<Recovery, DeployError> {
        let mut recovery = Recovery::default();
        let current_new = self.dir.join(CURRENT_NEW);
        if fs::symlink_metadata(&current_new).is_ok() {
            fs::remove_file(&current_new).map_err(at(stage, &current_new))?;
            recovery.removed.push(current_new);
        }
        let generations = self.dir.join(GENERATIONS);
        let entries = match fs::read_dir(&generations) {
            Ok(entries) => entries.collect::<Result<Vec<_>, _>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
        .map_err(at(stage, &generations))?;
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(PARTIAL) || name.ends_with(TRASH) {
                let path = entry.path();
                remove_any(&path).map_err(at(stage, &path))?;
                recovery.removed.push(path);
            }
        }
        copy_out::settle_journal(self, stage, &mut recovery)?;
        Ok(recovery)
    }

    /// Writes the staged files as `generations/<id>.partial`, fsyncs everything and renames it
    /// to `generations/<id>`. A failure removes the partial directory (the next call would).
    fn copy_in(&self, id: &str, staged: &Contents) -> Result<(), DeployError> {
        let stage = Stage::Stage;
        let generations = self.dir.join(GENERATIONS);
        let partial = generations.join(format!("{id}{PARTIAL}"));
        fault::io_error("activate.mkdir")
            .and_then(|()| DirBuilder::new().mode(DIR_MODE).create(&partial))
            .and_then(|()| fs::set_permissions(&partial, Permissions::from_mode(DIR_MODE)))
            .map_err(at(stage, &partial))?;
        fault::point("activate.partial_created");

        let written = (|| {
            for part in Part::ALL {
                let path = partial.join(part.file_name());
                write_file(&path, staged.bytes(part), part.mode()).map_err(at(stage, &path))?;
            }
            fault::point("activate.copied");
            fault::io_error("activate.fsync_partial")
                .and_then(|()| sync_dir(&partial))
                .map_err(at(stage, &partial))?;
            fault::point("activate.partial_synced");
            let dest = generations.join(id);
            fault::io_error("activate.rename_generation")
                .and_then(|()| fs::rename(&partial, &dest))
                .map_err(at(stage, &dest))
        })();
        if let Err(e) = written {
            if let Err(cleanup) = fs::remove_dir_all(&partial) {
                tracing::warn!(path = %partial.display(), error = %cleanup, "partial generation left for the next activation");
            }
            return Err(e);
        }
        fault::point("activate.generation_renamed");
        // Failing here leaves a complete, unused generation that the next activation reuses.
        fault::io_error("activate.fsync_generations")
            .and_then(|()| sync_dir(&generations))
            .map_err(at(stage, &generations))?;
        fault::point("activate.generations_synced");
        Ok(())
    }

    /// Points `current` at `generations/<id>` with one rename(2), then fsyncs the directory.
    /// If the fsync fails the old link is put back, so an error means the old set is live.
    fn swap(&self, id: &str, before: Option<&str>, names: &SwapNames) -> Result<(), DeployError> {
        let stage = names.stage;
        let new = self.dir.join(CURRENT_NEW);
        let current = self.dir.join(CURRENT);
        let target = Path::new(GENERATIONS).join(id);
        fault::io_error(names.symlink)
            .and_then(|()| symlink(&target, &new))
            .map_err(at(stage, &new))?;
        fault::point(names.symlink_created);
        if let Err(e) = fault::io_error(names.rename).and_then(|()| fs::rename(&new, &current)) {
            let _ = fs::remove_file(&new);
            return Err(at(stage, &current)(e));
        }
        fault::point(names.swapped);
        if let Err(e) = fault::io_error(names.fsync_dir).and_then(|()| sync_dir(&self.dir)) {
            self.unswap(before);
            return Err(at(stage, &self.dir)(e));
        }
        fault::point(names.dir_synced);
        Ok(())
    }

    /// Best effort: point `current` back at `before` (or remove it) after a failed swap.
    fn unswap(&self, before: Option<&str>) {
        let new = self.dir.join(CURRENT_NEW);
        let current = self.dir.join(CURRENT);
        let undone = match before {
            Some(id) => symlink(Path::new(GENERATIONS).join(id), &new)
                .and_then(|()| fs::rename(&new, &current)),
            None => fs::remove_file(&current),
        }
        .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = undone {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not put the previous generation back");
        }
    }

    /// Removes generations beyond the newest `keep`, never the current one or the one before
    /// it. Each goes through `<id>.trash` so a crash never leaves a half-deleted generation
    /// under a name that looks complete.
    fn prune(&self) -> Result<Vec<String>, DeployError> {
        let stage = Stage::Activate;
        let ids = self.list(stage)?;
        let current = self.read_current(stage)?;
        let mut keep: BTreeSet<&str> = ids
            .iter()
            .rev()
            .take(self.keep)
            .map(String::as_str)
            .collect();
        if let Some(current) = &current {
            keep.insert(current);
            keep.extend(older_than(&ids, current));
        }
        let generations = self.dir.join(GENERATIONS);
        let mut pruned = Vec::new();
        for id in ids.iter().filter(|id| !keep.contains(id.as_str())) {
            let from = generations.join(id);
            let trash = generations.join(format!("{id}{TRASH}"));
            fault::io_error("prune.rename")
                .and_then(|()| fs::rename(&from, &trash))
                .map_err(at(stage, &from))?;
            fault::point("prune.renamed");
            fault::io_error("prune.remove")
                .and_then(|()| fs::remove_dir_all(&trash))
                .map_err(at(stage, &trash))?;
            fault::point("prune.removed");
            pruned.push(id.clone());
        }
        if !pruned.is_empty() {
            sync_dir(&generations).map_err(at(stage, &generations))?;
        }
        Ok(pruned)
    }
}

/// The fault-point names of one kind of swap.
struct SwapNames {
    stage: Stage,
    symlink: &'static str,
    symlink_created: &'static str,
    rename: &'static str,
    swapped: &'static str,
    fsync_dir: &'static str,
    dir_synced: &'static str,
}

const ACTIVATE: SwapNames = SwapNames {
    stage: Stage::Activate,
    symlink: "activate.symlink",
    symlink_created: "activate.symlink_created",
    rename: "activate.rename",
    swapped: "activate.swapped",
    fsync_dir: "activate.fsync_dir",
    dir_synced: "activate.dir_synced",
};

const ROLLBACK: SwapNames = SwapNames {
    stage: Stage::Rollback,
    symlink: "rollback.symlink",
    symlink_created: "rollback.symlink_created",
    rename: "rollback.rename",
    swapped: "rollback.swapped",
    fsync_dir: "rollback.fsync_dir",
    dir_synced: "rollback.dir_synced",
};

/// One of the four files of a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    Cert,
    Chain,
    Fullchain,
    Key,
}

impl Part {
    const ALL: [Self; 4] = [Self::Cert, Self::Chain, Self::Fullchain, Self::Key];

    fn file_name(self) -> &'static str {
        match self {
            Self::Cert => "cert.pem",
            Self::Chain => "chain.pem",
            Self::Fullchain => "fullchain.pem",
            Self::Key => "privkey.pem",
        }
    }

    /// The mode inside the live directory (and the default of copy-out targets).
    fn mode(self) -> u32 {
        match self {
            Self::Key => 0o600,
            Self::Cert | Self::Chain | Self::Fullchain => 0o644,
        }
    }

    fn of(self, generation: &Generation) -> PathBuf {
        match self {
            Self::Cert => generation.cert(),
            Self::Chain => generation.chain(),
            Self::Fullchain => generation.fullchain(),
            Self::Key => generation.key(),
        }
    }
}

/// The four files of a generation, read into memory (the key in a wiped-on-drop buffer).
struct Contents {
    cert: Vec<u8>,
    chain: Vec<u8>,
    fullchain: Vec<u8>,
    key: SecretPem,
}

impl Contents {
    fn read(generation: &Generation, stage: Stage) -> Result<Self, DeployError> {
        let read = |part: Part| {
            let path = part.of(generation);
            fs::read(&path).map_err(at(stage, &path))
        };
        let key_path = generation.key();
        Ok(Self {
            cert: read(Part::Cert)?,
            chain: read(Part::Chain)?,
            fullchain: read(Part::Fullchain)?,
            key: SecretPem::new(fs::read_to_string(&key_path).map_err(at(stage, &key_path))?),
        })
    }

    fn bytes(&self, part: Part) -> &[u8] {
        match part {
            Part::Cert => &self.cert,
            Part::Chain => &self.chain,
            Part::Fullchain => &self.fullchain,
            Part::Key => self.key.expose().as_bytes(),
        }
    }
}

impl PartialEq for Contents {
    fn eq(&self, other: &Self) -> bool {
        Part::ALL
            .into_iter()
            .all(|part| self.bytes(part) == other.bytes(part))
    }
}

fn at(stage: Stage, path: &Path) -> impl FnOnce(io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        stage,
        path: path.to_owned(),
        source,
    }
}

/// Ids become directory names: refuse anything that could leave `generations/` or collide
/// with the names certvigil uses for unfinished work.
fn check_id(id: &str, stage: Stage, path: &Path) -> Result<(), DeployError> {
    let bad = id.is_empty()
        || id.starts_with('.')
        || id.contains(['/', '\0'])
        || id.ends_with(PARTIAL)
        || id.ends_with(TRASH);
    if bad {
        return Err(DeployError::Invalid {
            stage,
            path: path.to_owned(),
            reason: format!("{id:?} is not a usable generation id"),
        });
    }
    Ok(())
}

/// The newest id in `ids` (sorted) older than `id`.
fn older_than<'a>(ids: &'a [String], id: &str) -> Option<&'a str> {
    ids.iter()
        .rev()
        .map(String::as_str)
        .find(|other| *other < id)
}

fn create_dirs(dir: &Path) -> io::Result<()> {
    // Create each missing level ourselves so the mode does not depend on the umask.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(path);
        at = path.parent();
    }
    for path in missing.into_iter().rev() {
        match DirBuilder::new().mode(DIR_MODE).create(path) {
            Ok(()) => fs::set_permissions(path, Permissions::from_mode(DIR_MODE))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a new file (never an existing one) with `mode`, whatever the umask, and fsyncs it.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    fault::io_error("activate.write")?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    fault::point("activate.file_written");
    fault::io_error("activate.fsync")?;
    file.sync_all()?;
    fault::point("activate.file_synced");
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
