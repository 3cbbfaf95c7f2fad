//! Crash consistency of `LiveDir` (issue 5, "kill -9 at any point").
//!
//! Each test re-executes this test binary as a child (`--exact child`) that deploys a
//! generation in a prepared directory while a fault is armed through the environment:
//! `CERTVIGIL_FAULT=NAME@N` aborts it at a fault point, `CERTVIGIL_FAULT_IO=NAME@N` injects
//! ENOSPC at an I/O point, and the "loop" child is SIGKILLed at a random moment. The parent
//! then runs `recover()` and checks with `activate_fixture::check` that the live set and the
//! copy-out targets are each one whole generation whose key matches its certificate, that the
//! state is exactly the old or the new one the crash point implies, and that deploying again
//! completes.
//!
//! The generations are real leaf + intermediate + key sets from `certvigil-testutil`.

mod activate_fixture;

use std::env;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use activate_fixture::{self as fx, Snapshot};
use certvigil_deploy::activate::{DeployError, LiveDir};
use certvigil_deploy::fault;
use certvigil_issue::Generation;

const SCENARIO_ENV: &str = "CERTVIGIL_TEST_CHILD";
const STAGING_ENV: &str = "CERTVIGIL_TEST_STAGING";
const RUN_ENV: &str = "CERTVIGIL_TEST_RUN";
const READY: &str = "CERTVIGIL-CHILD-READY";
const RESULT: &str = "CERTVIGIL-CHILD-RESULT";
const SIGABRT: i32 = 6;

/// Indices into the staged generations: two of history, the live one, the one being deployed.
const OLD: usize = 2;
const NEW: usize = 3;

/// The child side of every test below; does nothing when run by the test harness itself.
#[test]
fn child() {
    let Ok(scenario) = env::var(SCENARIO_ENV) else {
        return;
    };
    let generations = fx::staged(Path::new(&env::var(STAGING_ENV).unwrap()));
    let run = PathBuf::from(env::var(RUN_ENV).unwrap());
    let live = fx::live(&run);
    let targets = fx::targets(&run);
    let result = match scenario.as_str() {
        "deploy" => live
            .activate(&generations[NEW])
            .and_then(|_| live.copy_out(&targets)),
        "rollback" => live.rollback().and_then(|_| live.copy_out(&targets)),
        "recover" => live.recover().map(|_| ()),
        "loop" => {
            println!("{READY}");
            let mut i = 1;
            loop {
                live.activate(&generations[i % 3]).unwrap();
                live.copy_out(&targets).unwrap();
                i += 1;
            }
        }
        other => panic!("unknown scenario {other}"),
    };
    let injected = fault::injected();
    match result {
        Ok(()) => println!("{RESULT} ok injected={injected}"),
        Err(e) => println!("{RESULT} err injected={injected} {e}"),
    }
}

#[test]
fn a_crash_at_every_fault_point_recovers_to_exactly_the_old_or_the_new_set() {
    let world = World::new();
    let started = Instant::now();
    let mut crashes = 0;
    for &point in fault::POINTS {
        let scenario = scenario_of(point);
        for n in 1.. {
            let run = world.prepare(scenario, point);
            let out = world.run_child(
                &run,
                scenario,
                &[(fault::CRASH_ENV, format!("{point}@{n}"))],
            );
            if out.status.success() {
                assert!(n > 1, "{point} is never reached by the {scenario} scenario");
                break;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.signal(),
                Some(SIGABRT),
                "{point}@{n}: {}\n{stderr}",
                out.status
            );
            assert!(stderr.contains(&format!("abort at {point}")), "{stderr}");

            fx::live(&run).recover().unwrap();
            let snapshot = fx::check(&run, &world.generations);
            assert_eq!(
                snapshot,
                world.expected(point),
                "state after a crash at {point}@{n}"
            );
            world.finish(&run, scenario);
            crashes += 1;
        }
    }
    eprintln!(
        "{crashes} crashes at {} fault points, each recovered and redeployed, in {:.2?}",
        fault::POINTS.len(),
        started.elapsed()
    );
}

#[test]
fn kill_9_at_random_moments_during_100_deploys() {
    let world = World::new();
    let run = world.fresh_run();
    let live = fx::live(&run);
    let targets = fx::targets(&run);
    live.activate(&world.generations[0]).unwrap();
    live.copy_out(&targets).unwrap();
    let seed = env::var("CERTVIGIL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("seed {seed} (CERTVIGIL_TEST_SEED={seed} repeats this run)");
    let mut rng = XorShift(seed);

    let started = Instant::now();
    let (mut recovered, mut lagging, mut journals) = (0, 0, 0);
    for round in 0..100 {
        let mut child = world
            .child(&run, "loop", &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|line| line.unwrap().contains(READY)),
            "round {round}: the child never got ready"
        );
        std::thread::sleep(Duration::from_micros(rng.next() % 20_001));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: {status}");

        if let Some(recovery) = live.recover().unwrap() {
            recovered += 1;
            journals +=
                usize::from(!recovery.copied_out.is_empty() || !recovery.abandoned.is_empty());
        }
        let snapshot = fx::check(&run, &world.generations[..3]);
        lagging += usize::from(snapshot.copied_out.as_ref() != Some(&snapshot.current));

        // The interrupted deploy completes: activate the next one and copy it out.
        let next = world.generations[..3]
            .iter()
            .position(|g| g.id == snapshot.current)
            .map(|i| &world.generations[(i + 1) % 3])
            .unwrap();
        live.activate(next).unwrap();
        live.copy_out(&targets).unwrap();
        let expected = Snapshot {
            current: next.id.clone(),
            copied_out: Some(next.id.clone()),
        };
        assert_eq!(fx::check(&run, &world.generations[..3]), expected);
    }
    eprintln!(
        "100 SIGKILLs in {:.2?}: recover() had work {recovered} times ({journals} copy-out journals), \
         copy-out one generation behind current {lagging} times",
        started.elapsed()
    );
}

#[test]
fn a_full_disk_at_every_io_point_names_the_stage_and_keeps_a_whole_set() {
    let world = World::new();
    let mut faults = 0;
    for &point in fault::IO_POINTS {
        let scenario = if point.starts_with("rollback.") {
            "rollback"
        } else {
            "deploy"
        };
        for n in 1.. {
            let run = world.prepare(scenario, point);
            let out = world.run_child(&run, scenario, &[(fault::IO_ENV, format!("{point}@{n}"))]);
            assert!(out.status.success(), "{point}@{n}: {}", out.status);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let result = stdout
                .lines()
                .find_map(|line| line.split_once(RESULT).map(|(_, rest)| rest))
                .unwrap_or_else(|| panic!("{point}@{n}: no result in {stdout}"))
                .trim();
            if result.contains("injected=0") {
                assert!(n > 1, "{point} is never reached by the {scenario} scenario");
                break;
            }
            faults += 1;
            let live = fx::live(&run);
            let context = format!("{point}@{n}: {result}");
            if point.starts_with("prune.") {
                // Pruning is housekeeping after a durable swap: logged, and done next time.
                assert!(result.starts_with("ok"), "{context}");
            } else {
                let message = result.split_once(' ').unwrap().1.split_once(' ').unwrap().1;
                let stage = stage_of(point);
                assert!(message.starts_with(&format!("{stage}: ")), "{context}");
                assert!(
                    message.contains(run.to_str().unwrap()),
                    "no path: {context}"
                );
                assert!(message.contains("No space left on device"), "{context}");
            }
            let interrupted = result.contains("recover() completes the copy-out");
            if !interrupted {
                // Nothing half-written: no temporary file and no journal before recover runs.
                assert_eq!(fx::temp_files(&run), Vec::<PathBuf>::new(), "{context}");
                assert!(!live.dir().join("copyout.pending").exists(), "{context}");
            }
            live.recover().unwrap();
            let (old, new) = (&world.generations[OLD].id, &world.generations[NEW].id);
            let expected = match stage_of(point) {
                // The swap was durable before pruning started.
                _ if point.starts_with("prune.") => (new, new),
                "stage" | "activate" => (old, old),
                // A failed rollback leaves the newer set it started from.
                "rollback" => (new, new),
                _ if interrupted => (new, new),
                _ => (new, old),
            };
            let expected = Snapshot {
                current: expected.0.clone(),
                copied_out: Some(expected.1.clone()),
            };
            assert_eq!(fx::check(&run, &world.generations), expected, "{context}");
            world.finish(&run, scenario);
        }
    }
    eprintln!(
        "{faults} injected ENOSPC errors at {} I/O points",
        fault::IO_POINTS.len()
    );
}

#[test]
fn an_injected_error_names_stage_and_path_in_the_api_too() {
    // The same contract through the typed error, in process: a staged file that cannot be
    // read fails stage "stage" at that path.
    let world = World::new();
    let run = world.prepare("deploy", "");
    let live = fx::live(&run);
    let missing = Generation {
        dir: run.join("nowhere"),
        id: "00000000000000000001-ff".into(),
    };
    let err = live.activate(&missing).unwrap_err();
    assert!(matches!(err, DeployError::Io { .. }), "{err:?}");
    assert_eq!(err.path(), run.join("nowhere/cert.pem"));
    assert_eq!(err.stage().to_string(), "stage");
    assert_eq!(
        fx::check(&run, &world.generations).current,
        world.generations[OLD].id
    );
}

/// Staged generations shared by every run, and a fresh directory per run.
struct World {
    tmp: tempfile::TempDir,
    staging: PathBuf,
    generations: Vec<Generation>,
    runs: std::cell::Cell<usize>,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join("staging");
        let generations = fx::stage(&staging, 4);
        Self {
            tmp,
            staging,
            generations,
            runs: std::cell::Cell::new(0),
        }
    }

    fn fresh_run(&self) -> PathBuf {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let run = self.tmp.path().join(format!("run-{n}"));
        std::fs::create_dir(&run).unwrap();
        run
    }

    /// A run directory in the state `scenario` starts from: OLD live and copied out (after
    /// two older generations, so activating NEW prunes one); for "rollback" NEW on top; for
    /// "recover" a deploy that already crashed in the middle of a copy-out.
    fn prepare(&self, scenario: &str, point: &str) -> PathBuf {
        let run = self.fresh_run();
        let live = fx::live(&run);
        let targets = fx::targets(&run);
        for generation in &self.generations[..=OLD] {
            live.activate(generation).unwrap();
        }
        live.copy_out(&targets).unwrap();
        match scenario {
            "rollback" => {
                live.activate(&self.generations[NEW]).unwrap();
                live.copy_out(&targets).unwrap();
            }
            "recover" => {
                // Renaming phase (3 of 5 renames left) or writing phase (3 of 5 temps there).
                let first = match point {
                    "recover.renamed" => "copyout.renamed@2",
                    _ => "copyout.temp_synced@3",
                };
                let out = self.run_child(&run, "deploy", &[(fault::CRASH_ENV, first.into())]);
                assert_eq!(
                    out.status.signal(),
                    Some(SIGABRT),
                    "{first}: {}",
                    out.status
                );
            }
            _ => {}
        }
        run
    }

    fn child(&self, run: &Path, scenario: &str, env: &[(&str, String)]) -> Command {
        // `ulimit -c 0`: a thousand aborts should not leave core files wherever the host's
        // core_pattern points.
        let mut command = Command::new("sh");
        command
            .args(["-c", "ulimit -c 0; exec \"$0\" \"$@\""])
            .arg(env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(SCENARIO_ENV, scenario)
            .env(STAGING_ENV, &self.staging)
            .env(RUN_ENV, run)
            .env_remove(fault::CRASH_ENV)
            .env_remove(fault::IO_ENV)
            .env("RUST_BACKTRACE", "0");
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    fn run_child(&self, run: &Path, scenario: &str, env: &[(&str, String)]) -> Output {
        self.child(run, scenario, env).output().unwrap()
    }

    /// What a crash at `point` must leave after `recover()`: the old set until the swap of
    /// `current`, the new one from then on; old copy-out files until the journal reaches its
    /// renaming phase, new ones from then on.
    fn expected(&self, point: &str) -> Snapshot {
        let index = |name: &str| fault::POINTS.iter().position(|p| *p == name).unwrap();
        let at = index(point);
        let (old, new) = (&self.generations[OLD].id, &self.generations[NEW].id);
        let (current, copied_out) = match scenario_of(point) {
            "deploy" => (
                if at < index("activate.swapped") {
                    old
                } else {
                    new
                },
                if at < index("copyout.journal_written") {
                    old
                } else {
                    new
                },
            ),
            "rollback" => (
                if point == "rollback.symlink_created" {
                    new
                } else {
                    old
                },
                new,
            ),
            _ => (new, if point == "recover.renamed" { new } else { old }),
        };
        Snapshot {
            current: current.clone(),
            copied_out: Some(copied_out.clone()),
        }
    }

    /// Deploying again after the crash completes: the scenario's target state, whole.
    fn finish(&self, run: &Path, scenario: &str) {
        let live: LiveDir = fx::live(run);
        let target = if scenario == "rollback" {
            if live.current().unwrap().as_ref() == Some(&self.generations[NEW].id) {
                live.rollback().unwrap();
            }
            OLD
        } else {
            live.activate(&self.generations[NEW]).unwrap();
            NEW
        };
        live.copy_out(&fx::targets(run)).unwrap();
        let id = self.generations[target].id.clone();
        let expected = Snapshot {
            current: id.clone(),
            copied_out: Some(id),
        };
        assert_eq!(
            fx::check(run, &self.generations),
            expected,
            "after finishing"
        );
        assert_eq!(live.recover().unwrap(), None);
    }
}

fn scenario_of(point: &str) -> &'static str {
    match point.split('.').next() {
        Some("rollback") => "rollback",
        Some("recover") => "recover",
        _ => "deploy",
    }
}

/// The stage an injected error at an I/O point must be reported under.
fn stage_of(point: &str) -> &'static str {
    match point {
        "activate.symlink" | "activate.rename" | "activate.fsync_dir" => "activate",
        _ if point.starts_with("activate.") => "stage",
        _ if point.starts_with("rollback.") => "rollback",
        _ if point.starts_with("prune.") => "activate",
        _ => "copy-out",
    }
}

/// xorshift64: reproducible delays from a printed seed, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
