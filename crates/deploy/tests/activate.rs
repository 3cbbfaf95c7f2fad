//! `LiveDir` against the filesystem's refusals (a directory certvigil may not write), two
//! writers at once, and how long an activation takes on a real disk.
//!
//! Directories live under `CARGO_TARGET_TMPDIR` (the target directory's filesystem, ext4 on
//! the CI host) rather than `/tmp`, which may be a tmpfs without the immutable attribute and
//! with fsyncs that cost nothing.

mod activate_fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use activate_fixture::{self as fx, Snapshot};
use certvigil_deploy::activate::Stage;
use nix::unistd::geteuid;

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Makes `dir` refuse new entries for as long as it lives: `chattr +i` as root (root ignores
/// mode bits), mode 0555 otherwise.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(dir: &Path) -> Self {
        if geteuid().is_root() {
            let status = Command::new("chattr").arg("+i").arg(dir).status().unwrap();
            assert!(status.success(), "chattr +i {}: {status}", dir.display());
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }
        Self(dir.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if geteuid().is_root() {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn a_target_directory_that_refuses_writes_fails_copy_out_cleanly() {
    let tmp = workdir();
    let generations = fx::stage(&tmp.path().join("staging"), 2);
    let run = tmp.path().join("run");
    let live = fx::live(&run);
    let targets = fx::targets(&run);
    live.activate(&generations[0]).unwrap();
    live.copy_out(&targets).unwrap();
    live.activate(&generations[1]).unwrap();

    let before = fx::check(&run, &generations);
    {
        let _locked = ReadOnly::new(&run.join("out/b"));
        let err = live.copy_out(&targets).unwrap_err();
        assert_eq!(err.stage(), Stage::CopyOut);
        assert!(err.path().starts_with(run.join("out/b")), "{err}");
        assert!(err.to_string().starts_with("copy-out: "), "{err}");
        assert!(
            err.to_string().contains("Operation not permitted")
                || err.to_string().contains("Permission denied"),
            "{err}"
        );
        // Target a's temporary files were written before b failed; they are gone again and
        // both targets still hold the old generation, whole.
        assert_eq!(fx::check(&run, &generations), before);
    }
    live.copy_out(&targets).unwrap();
    assert_eq!(
        fx::check(&run, &generations),
        Snapshot {
            current: generations[1].id.clone(),
            copied_out: Some(generations[1].id.clone()),
        }
    );
}

#[test]
fn a_live_directory_that_refuses_writes_keeps_the_old_set() {
    let tmp = workdir();
    let generations = fx::stage(&tmp.path().join("staging"), 2);
    let run = tmp.path().join("run");
    let live = fx::live(&run);
    fx::targets(&run);
    live.activate(&generations[0]).unwrap();
    {
        let _locked = ReadOnly::new(&run.join("live/generations"));
        let err = live.activate(&generations[1]).unwrap_err();
        assert_eq!(err.stage(), Stage::Stage);
        assert!(err.to_string().starts_with("stage: "), "{err}");
        assert!(
            err.path()
                .ends_with(format!("{}.partial", generations[1].id)),
            "{err}"
        );
        assert_eq!(live.current().unwrap(), Some(generations[0].id.clone()));
    }
    live.activate(&generations[1]).unwrap();
    assert_eq!(fx::check(&run, &generations).current, generations[1].id);
}

#[test]
fn concurrent_writers_take_turns() {
    // Two `certvigil renew` processes (or a renew and a rollback) on the same certificate: the
    // flock on <dir>/.lock serializes them; every call succeeds and the result is whole.
    let tmp = workdir();
    let generations = fx::stage(&tmp.path().join("staging"), 3);
    let run = tmp.path().join("run");
    let targets = fx::targets(&run);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (run, generations, targets) = (&run, &generations, &targets);
            scope.spawn(move || {
                let live = fx::live(run);
                for i in 0..25 {
                    live.activate(&generations[(t + i) % 3]).unwrap();
                    live.copy_out(targets).unwrap();
                    if i % 5 == 4 {
                        // May find nothing older to go back to; never a broken state.
                        let _ = live.rollback();
                        live.recover().unwrap();
                    }
                }
            });
        }
    });
    let live = fx::live(&run);
    live.copy_out(&targets).unwrap();
    let snapshot = fx::check(&run, &generations);
    assert_eq!(snapshot.copied_out.as_ref(), Some(&snapshot.current));
}

#[test]
fn activation_latency_on_this_disk() {
    let tmp = workdir();
    let generations = fx::stage(&tmp.path().join("staging"), 3);
    let run = tmp.path().join("run");
    let live = fx::live(&run);
    let targets = fx::targets(&run);
    let (mut copy_in, mut swap_only, mut copy_out) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..60 {
        // Cycling three generations with keep = 2: every third activation copies a pruned
        // generation in again, the others only swap the link.
        let generation = &generations[i % 3];
        let fresh = !live.generations().unwrap().contains(&generation.id);
        let started = Instant::now();
        live.activate(generation).unwrap();
        let took = started.elapsed();
        if fresh { &mut copy_in } else { &mut swap_only }.push(took);
        let started = Instant::now();
        live.copy_out(&targets).unwrap();
        copy_out.push(started.elapsed());
    }
    fx::check(&run, &generations);
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (a, b, c) = (
        median(&mut copy_in),
        median(&mut swap_only),
        median(&mut copy_out),
    );
    eprintln!(
        "median over 60 deploys: activate with copy-in {a:.2?} (n={}), activate of a kept generation {b:.2?} (n={}), copy-out of 5 files to 2 targets {c:.2?}",
        copy_in.len(),
        swap_only.len()
    );
    // Generous: a CI disk with slow fsyncs must still pass; this catches a runaway loop.
    assert!(a < Duration::from_secs(2) && b < Duration::from_secs(2) && c < Duration::from_secs(2));
}
