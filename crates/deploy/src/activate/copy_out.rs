//! Copy-out targets: the current generation written to paths of the service's choosing, with
//! owner, group and mode, for daemons that do not follow symlinks.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, fchown};
use std::path::{Path, PathBuf};

use nix::unistd::{Group, User};
use serde::{Deserialize, Serialize};

use super::{Contents, DeployError, LiveDir, Part, Recovery, Stage, at, sync_dir};
use crate::fault;

/// Where one service wants the current generation's files. Every path is optional; the files
/// named are written together: all of them are in place as temporary files before the first
/// one is renamed over its target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyOut {
    /// The leaf certificate alone.
    pub cert: Option<PathBuf>,
    /// The intermediates.
    pub chain: Option<PathBuf>,
    /// Leaf followed by the intermediates.
    pub fullchain: Option<PathBuf>,
    /// The private key.
    pub key: Option<PathBuf>,
    /// The files' owner: a user name (getpwnam, so NSS applies) or a numeric uid; `None`
    /// leaves them to the deploying user (root).
    pub owner: Option<String>,
    /// The files' group: a name (getgrnam) or a numeric gid; `None` leaves the deploying
    /// user's group.
    pub group: Option<String>,
    /// The mode of the certificate files (`cert`, `chain`, `fullchain`); default 0644.
    pub mode: Option<u32>,
    /// The mode of the key file; default 0600. To let a service group read it: `group` and
    /// `key_mode: Some(0o640)`.
    pub key_mode: Option<u32>,
}

/// The journal of a copy-out in flight: `<dir>/copyout.pending`, always replaced whole by
/// rename(2).
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// The generation being copied out; its files are the new content.
    generation: String,
    phase: Phase,
    files: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    /// Temporary files are being written: undo by removing them; the targets were not touched.
    Writing,
    /// Every temporary file is complete and renames are under way: finish them.
    Renaming,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    part: Part,
    temp: PathBuf,
    target: PathBuf,
}

/// One file to write: where, and with which owner and mode.
#[derive(Debug)]
struct Planned {
    part: Part,
    target: PathBuf,
    temp: PathBuf,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
}

const JOURNAL: &str = "copyout.pending";
const JOURNAL_NEW: &str = "copyout.pending.new";
const TEMP_SUFFIX: &str = ".certvigil-new";

impl LiveDir {
    /// Writes the current generation to every target. Each file goes to a temporary name in
    /// its target's directory (same filesystem), is given its owner and mode and fsynced; only
    /// then is each renamed over its target, with a journal on disk that lets
    /// [`recover`](Self::recover) finish the renames after a crash.
    ///
    /// A failure before the first rename leaves every target as it was and no temporary file
    /// behind. A failure between renames returns [`DeployError::CopyOutInterrupted`]; the
    /// journal stays and the next call of any mutating method finishes the renames first.
    pub fn copy_out(&self, targets: &[CopyOut]) -> Result<(), DeployError> {
        let stage = Stage::CopyOut;
        let _lock = self.lock(stage)?;
        self.settle(stage)?;
        let Some(generation) = self.resolve_current(stage)? else {
            return Err(self.invalid(stage, super::CURRENT, "nothing is live yet to copy out"));
        };
        let plan = plan(targets)?;
        if plan.is_empty() {
            return Ok(());
        }
        let contents = Contents::read(&generation, stage)?;

        let mut journal = Journal {
            generation: generation.id.clone(),
            phase: Phase::Writing,
            files: plan
                .iter()
                .map(|p| Entry {
                    part: p.part,
                    temp: p.temp.clone(),
                    target: p.target.clone(),
                })
                .collect(),
        };
        // The intent goes first, so even a crash halfway through the temporary files leaves a
        // record of what to remove.
        if let Err(e) = self.write_journal(&journal) {
            self.abandon(&plan);
            return Err(e);
        }
        fault::point("copyout.intent_written");
        if let Err(e) = write_temps(&plan, &contents) {
            self.abandon(&plan);
            return Err(e);
        }
        fault::point("copyout.temps_written");
        journal.phase = Phase::Renaming;
        if let Err(e) = self.write_journal(&journal) {
            self.abandon(&plan);
            return Err(e);
        }
        fault::point("copyout.journal_written");

        let total = plan.len();
        let interrupted = |path: &Path, source, renamed| DeployError::CopyOutInterrupted {
            path: path.to_owned(),
            source,
            renamed,
            total,
            journal: self.dir.join(JOURNAL),
        };
        for (renamed, p) in plan.iter().enumerate() {
            if let Err(e) =
                fault::io_error("copyout.rename").and_then(|()| fs::rename(&p.temp, &p.target))
            {
                if renamed == 0 {
                    self.abandon(&plan);
                    return Err(at(stage, &p.target)(e));
                }
                return Err(interrupted(&p.target, e, renamed));
            }
            fault::point("copyout.renamed");
        }
        sync_parents(
            plan.iter().map(|p| &p.target),
            Some("copyout.fsync_targets"),
        )
        .map_err(|(dir, e)| interrupted(&dir, e, total))?;
        fault::point("copyout.targets_synced");
        let journal_path = self.dir.join(JOURNAL);
        fault::io_error("copyout.journal_remove")
            .and_then(|()| fs::remove_file(&journal_path))
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| interrupted(&journal_path, e, total))?;
        fault::point("copyout.done");
        tracing::info!(dir = %self.dir.display(), generation = %generation.id, files = total, "copied out");
        Ok(())
    }

    /// Replaces the journal whole: `copyout.pending.new`, fsync, rename, fsync `<dir>`.
    fn write_journal(&self, journal: &Journal) -> Result<(), DeployError> {
        let stage = Stage::CopyOut;
        let new = self.dir.join(JOURNAL_NEW);
        let path = self.dir.join(JOURNAL);
        let bytes = serde_json::to_vec_pretty(journal).expect("the journal serializes");
        let written = fault::io_error("journal.write")
            .and_then(|()| {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&new)?;
                file.write_all(&bytes)?;
                fault::io_error("journal.fsync")?;
                file.sync_all()
            })
            .map_err(at(stage, &new))
            .and_then(|()| {
                fault::io_error("journal.rename")
                    .and_then(|()| fs::rename(&new, &path))
                    .map_err(at(stage, &path))
            })
            .and_then(|()| {
                fault::io_error("journal.fsync_dir")
                    .and_then(|()| sync_dir(&self.dir))
                    .map_err(at(stage, &self.dir))
            });
        if written.is_err() {
            let _ = fs::remove_file(&new);
        }
        written
    }

    /// Best effort after a failure before the first rename: remove every temporary file and
    /// the journal, leaving the targets as they were.
    fn abandon(&self, plan: &[Planned]) {
        for p in plan {
            if let Err(e) = remove_if_exists(&p.temp) {
                tracing::warn!(path = %p.temp.display(), error = %e, "temporary copy-out file left behind");
            }
        }
        // Temps first, journal last: while any temp may exist, the journal says to remove it.
        let removed = remove_if_exists(&self.dir.join(JOURNAL_NEW))
            .and_then(|()| remove_if_exists(&self.dir.join(JOURNAL)))
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = removed {
            tracing::warn!(dir = %self.dir.display(), error = %e, "copy-out journal left for recover()");
        }
    }
}

/// Replays (phase renaming) or undoes (phase writing) the journal of an interrupted copy-out.
/// Every step is idempotent, so a crash in here is handled by running it again.
pub(super) fn settle_journal(
    live: &LiveDir,
    stage: Stage,
    recovery: &mut Recovery,
) -> Result<(), DeployError> {
    let new = live.dir.join(JOURNAL_NEW);
    if fs::symlink_metadata(&new).is_ok() {
        // Never renamed into place: the previous journal (or none) is the one that counts.
        fs::remove_file(&new).map_err(at(stage, &new))?;
        recovery.removed.push(new);
    }
    let path = live.dir.join(JOURNAL);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(at(stage, &path)(e)),
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| DeployError::Invalid {
        stage,
        path: path.clone(),
        reason: format!("unreadable copy-out journal: {e}"),
    })?;
    match journal.phase {
        Phase::Writing => {
            for entry in &journal.files {
                if fs::symlink_metadata(&entry.temp).is_ok() {
                    fs::remove_file(&entry.temp).map_err(at(stage, &entry.temp))?;
                    fault::point("recover.temp_removed");
                    recovery.abandoned.push(entry.temp.clone());
                }
            }
        }
        Phase::Renaming => {
            let generation = live.generation(&journal.generation);
            for entry in &journal.files {
                if fs::symlink_metadata(&entry.temp).is_ok() {
                    fs::rename(&entry.temp, &entry.target).map_err(at(stage, &entry.target))?;
                    fault::point("recover.renamed");
                    recovery.copied_out.push(entry.target.clone());
                } else if fs::read(&entry.target).ok() != fs::read(entry.part.of(&generation)).ok()
                {
                    tracing::warn!(target = %entry.target.display(), "copy-out target changed by someone else; the next copy-out rewrites it");
                    recovery.unresolved.push(entry.target.clone());
                }
            }
            sync_parents(journal.files.iter().map(|e| &e.target), None)
                .map_err(|(dir, e)| at(stage, &dir)(e))?;
        }
    }
    fs::remove_file(&path).map_err(at(stage, &path))?;
    sync_dir(&live.dir).map_err(at(stage, &live.dir))
}

/// Checks every target and resolves owners before anything is written.
fn plan(targets: &[CopyOut]) -> Result<Vec<Planned>, DeployError> {
    let stage = Stage::CopyOut;
    let mut plan: Vec<Planned> = Vec::new();
    for target in targets {
        let files = [
            (Part::Cert, &target.cert),
            (Part::Chain, &target.chain),
            (Part::Fullchain, &target.fullchain),
            (Part::Key, &target.key),
        ];
        let Some(first) = files.iter().find_map(|(_, path)| path.as_ref()) else {
            continue;
        };
        let invalid = |path: &Path, reason: String| DeployError::Invalid {
            stage,
            path: path.to_owned(),
            reason,
        };
        for mode in [target.mode, target.key_mode].into_iter().flatten() {
            if mode & !0o777 != 0 {
                return Err(invalid(
                    first,
                    format!("mode {mode:o} has bits beyond rwx for user, group and others"),
                ));
            }
        }
        let uid = match &target.owner {
            None => None,
            Some(name) => match User::from_name(name) {
                Ok(Some(user)) => Some(user.uid.as_raw()),
                Ok(None) => match name.parse() {
                    Ok(uid) => Some(uid),
                    Err(_) => return Err(invalid(first, format!("no user named {name:?}"))),
                },
                Err(errno) => return Err(at(stage, first)(io::Error::from(errno))),
            },
        };
        let gid = match &target.group {
            None => None,
            Some(name) => match Group::from_name(name) {
                Ok(Some(group)) => Some(group.gid.as_raw()),
                Ok(None) => match name.parse() {
                    Ok(gid) => Some(gid),
                    Err(_) => return Err(invalid(first, format!("no group named {name:?}"))),
                },
                Err(errno) => return Err(at(stage, first)(io::Error::from(errno))),
            },
        };
        for (part, path) in files {
            let Some(path) = path else { continue };
            let Some(name) = path.file_name() else {
                return Err(invalid(path, "a copy-out target must name a file".into()));
            };
            if plan.iter().any(|p| p.target == *path) {
                return Err(invalid(path, "named by more than one copy-out file".into()));
            }
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(TEMP_SUFFIX);
            plan.push(Planned {
                part,
                target: path.clone(),
                temp: path.with_file_name(temp_name),
                uid,
                gid,
                mode: match part {
                    Part::Key => target.key_mode,
                    Part::Cert | Part::Chain | Part::Fullchain => target.mode,
                }
                .unwrap_or(part.mode()),
            });
        }
    }
    Ok(plan)
}

/// Writes, chowns, chmods and fsyncs every temporary file, then fsyncs their directories.
fn write_temps(plan: &[Planned], contents: &Contents) -> Result<(), DeployError> {
    let stage = Stage::CopyOut;
    for p in plan {
        write_temp(p, contents.bytes(p.part)).map_err(at(stage, &p.temp))?;
    }
    sync_parents(plan.iter().map(|p| &p.temp), Some("copyout.fsync_dir"))
        .map_err(|(dir, e)| at(stage, &dir)(e))?;
    Ok(())
}

fn write_temp(p: &Planned, bytes: &[u8]) -> io::Result<()> {
    remove_if_exists(&p.temp)?;
    fault::io_error("copyout.write")?;
    // Born 0600 and owned by us: the key is never readable by anyone else before its chown.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p.temp)?;
    file.write_all(bytes)?;
    fault::point("copyout.temp_written");
    if p.uid.is_some() || p.gid.is_some() {
        fault::io_error("copyout.chown")?;
        fchown(&file, p.uid, p.gid)?;
    }
    // After the chown, which may clear mode bits.
    file.set_permissions(Permissions::from_mode(p.mode))?;
    fault::io_error("copyout.fsync")?;
    file.sync_all()?;
    fault::point("copyout.temp_synced");
    Ok(())
}

/// Fsyncs the directory of each path once; an error names the directory that failed.
fn sync_parents<'a>(
    paths: impl Iterator<Item = &'a PathBuf>,
    io_point: Option<&str>,
) -> Result<(), (PathBuf, io::Error)> {
    let parents: BTreeSet<&Path> = paths
        .map(|path| match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        })
        .collect();
    for parent in parents {
        io_point
            .map_or(Ok(()), fault::io_error)
            .and_then(|()| sync_dir(parent))
            .map_err(|e| (parent.to_owned(), e))?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
