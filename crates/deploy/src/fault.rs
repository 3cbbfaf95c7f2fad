//! Named fault points for the crash-consistency tests.
//!
//! The deploy code calls [`point`] at every stage boundary and before and after every rename and
//! fsync, and [`io_error`] just before every write, fsync, rename and directory operation. Both
//! do nothing unless a test armed them through the environment of a child process:
//!
//! - `CERTVIGIL_FAULT=NAME` aborts the process (`std::process::abort`, as close as a process gets
//!   to `kill -9` or a power cut at that exact instruction) the first time point `NAME` is
//!   reached; `CERTVIGIL_FAULT=NAME@N` aborts the N-th time (N from 1), for points reached once
//!   per file such as `activate.file_written`.
//! - `CERTVIGIL_FAULT_IO=NAME` makes every [`io_error`]`(NAME)` return `ENOSPC` ("No space left
//!   on device"), a full disk at that operation; `NAME@N` fails only the N-th call.
//!
//! Each variable is read once per process and cached, so an unarmed point costs one atomic load
//! and a branch. Only the test suite sets these variables; they are not configuration.
//!
//! An abort leaves the page cache intact, so these tests check the *ordering* of the steps (what
//! a reader or `recover()` sees at each instant), not what a real power loss does to unsynced
//! data; the fsyncs are there for that, and are themselves fault points.
//!
//! Every name is listed in [`POINTS`] or [`IO_POINTS`], and `docs/deploy.md` explains each one.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const CRASH_ENV: &str = "CERTVIGIL_FAULT";
/// The environment variable that arms an injected I/O error.
pub const IO_ENV: &str = "CERTVIGIL_FAULT_IO";

/// Every crash point, in the order a deploy reaches them. Points marked "each" are reached once
/// per file or generation; select one with `NAME@N`.
pub const POINTS: &[&str] = &[
    // LiveDir::activate: copy the staged generation in as `generations/<id>.partial`.
    "activate.partial_created",
    "activate.file_written", // each file, before its fsync
    "activate.file_synced",  // each file
    "activate.copied",       // all four files written and synced
    "activate.partial_synced",
    "activate.generation_renamed", // `<id>.partial` -> `<id>`, before fsync of `generations/`
    "activate.generations_synced",
    // The swap of `current`.
    "activate.symlink_created", // `current.new` exists, `current` still old
    "activate.swapped",         // rename done, `<dir>` not yet fsynced
    "activate.dir_synced",
    // Pruning old generations after a swap.
    "prune.renamed", // each pruned generation renamed to `<id>.trash`
    "prune.removed", // each
    // LiveDir::rollback.
    "rollback.symlink_created",
    "rollback.swapped",
    "rollback.dir_synced",
    // LiveDir::copy_out.
    "copyout.intent_written", // journal in phase "writing", before the first temp file
    "copyout.temp_written",   // each temp file, before chown/chmod/fsync
    "copyout.temp_synced",    // each
    "copyout.temps_written",  // all temps and their directories synced
    "copyout.journal_written", // journal in phase "renaming", before the first rename
    "copyout.renamed",        // each rename of a temp file over its target
    "copyout.targets_synced", // target directories synced, journal still there
    "copyout.done",           // journal removed
    // LiveDir::recover (and the start of every mutating call) finishing a copy-out journal.
    "recover.temp_removed", // each temp of a copy-out interrupted while writing
    "recover.renamed",      // each rename of a copy-out interrupted while renaming
];

/// Every injected-I/O-error point.
pub const IO_POINTS: &[&str] = &[
    "activate.mkdir",             // create `generations/<id>.partial`
    "activate.write",             // each file
    "activate.fsync",             // each file
    "activate.fsync_partial",     // the partial directory
    "activate.rename_generation", // `<id>.partial` -> `<id>`
    "activate.fsync_generations",
    "activate.symlink", // create `current.new`
    "activate.rename",  // `current.new` -> `current`
    "activate.fsync_dir",
    "prune.rename",
    "prune.remove",
    "rollback.symlink",
    "rollback.rename",
    "rollback.fsync_dir",
    "journal.write", // each write of `copyout.pending` (phase writing, then renaming)
    "journal.fsync",
    "journal.rename",
    "journal.fsync_dir",
    "copyout.write", // each temp file
    "copyout.chown", // each
    "copyout.fsync", // each
    "copyout.fsync_dir",
    "copyout.rename", // each
    "copyout.fsync_targets",
    "copyout.journal_remove",
];

/// Aborts the process if `CERTVIGIL_FAULT` names this point (and this is the N-th time it is
/// reached, for `NAME@N`).
#[inline]
pub fn point(name: &str) {
    if armed(&CRASH, CRASH_ENV).is_some_and(|fault| fault.fires(name)) {
        // stderr is unbuffered: the message is out before the abort.
        eprintln!("certvigil fault: abort at {name}");
        std::process::abort();
    }
}

/// Returns an injected `ENOSPC` if `CERTVIGIL_FAULT_IO` names this point (every call, or the
/// N-th for `NAME@N`); `Ok(())` otherwise.
#[inline]
pub fn io_error(name: &str) -> io::Result<()> {
    if armed(&IO, IO_ENV).is_some_and(|fault| fault.fires(name)) {
        INJECTED.fetch_add(1, Ordering::Relaxed);
        return Err(io::Error::from_raw_os_error(ENOSPC));
    }
    Ok(())
}

/// How many errors [`io_error`] has injected in this process, so a test can tell a fault that
/// fired but was tolerated (pruning is best effort) from a point that was never reached.
pub fn injected() -> u64 {
    INJECTED.load(Ordering::Relaxed)
}

/// `ENOSPC` on Linux (and every other Unix certvigil targets).
const ENOSPC: i32 = 28;

static CRASH: OnceLock<Option<Armed>> = OnceLock::new();
static IO: OnceLock<Option<Armed>> = OnceLock::new();
static INJECTED: AtomicU64 = AtomicU64::new(0);

/// One armed point: its name, which hit fires (`None`: every hit), and the hits so far.
#[derive(Debug)]
struct Armed {
    name: String,
    nth: Option<u64>,
    hits: AtomicU64,
}

impl Armed {
    fn parse(spec: &str) -> Option<Self> {
        let (name, nth) = match spec.rsplit_once('@') {
            Some((name, n)) => (name, Some(n.parse().ok().filter(|&n| n > 0)?)),
            None => (spec, None),
        };
        (!name.is_empty()).then(|| Self {
            name: name.to_owned(),
            nth,
            hits: AtomicU64::new(0),
        })
    }

    fn fires(&self, name: &str) -> bool {
        if self.name != name {
            return false;
        }
        let hit = self.hits.fetch_add(1, Ordering::Relaxed) + 1;
        self.nth.is_none_or(|nth| nth == hit)
    }
}

fn armed(cell: &'static OnceLock<Option<Armed>>, var: &str) -> Option<&'static Armed> {
    cell.get_or_init(|| std::env::var(var).ok().and_then(|spec| Armed::parse(&spec)))
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_select_a_point_and_optionally_its_nth_hit() {
        let every = Armed::parse("copyout.write").unwrap();
        assert!(!every.fires("copyout.fsync"));
        assert!(every.fires("copyout.write"));
        assert!(every.fires("copyout.write"));

        let second = Armed::parse("copyout.renamed@2").unwrap();
        assert!(!second.fires("copyout.renamed"));
        assert!(second.fires("copyout.renamed"));
        assert!(!second.fires("copyout.renamed"));

        for bad in ["", "x@0", "x@", "x@two", "@3"] {
            assert!(Armed::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_are_unique_and_unarmed_points_do_nothing() {
        let mut all: Vec<&str> = POINTS.iter().chain(IO_POINTS).copied().collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a name is listed twice");
        // The unit-test process never sets the variables.
        point("activate.swapped");
        io_error("activate.write").unwrap();
        assert_eq!(injected(), 0);
    }

    #[test]
    fn the_injected_error_is_a_full_disk() {
        let e = io::Error::from_raw_os_error(ENOSPC);
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }
}
