//! Reload adapters against real processes: a real nginx reloaded by signal, stale and broken
//! pid files, failing, hanging and environment-dumping commands, and systemd through a fake
//! `systemctl` script given as the adapter's binary (this machine runs no systemd; nothing
//! touches PATH).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certvigil_deploy::reload::{
    Hook, HookEnv, HookEvent, Reload, ReloadError, SignalTarget, Stage, SystemdAction, unique,
};
use certvigil_source::EndpointSpec;
use certvigil_source::endpoint::{probe, root_store};
use certvigil_testutil::servers::{Certs, NginxSite, free_port, nginx, server_dir};

fn hook_env(dir: &Path) -> HookEnv {
    HookEnv {
        certificate: "www".to_owned(),
        domains: vec!["www.example.test".to_owned(), "example.test".to_owned()],
        cert_path: dir.join("live/www/cert.pem"),
        key_path: dir.join("live/www/privkey.pem"),
        chain_path: dir.join("live/www/chain.pem"),
        fullchain_path: dir.join("live/www/fullchain.pem"),
        old_serial: Some("0a0b0c".to_owned()),
        new_serial: "1d2e3f".to_owned(),
        not_after: 1_800_000_000,
        event: HookEvent::Deploy,
    }
}

fn command(argv: &[&str], shell: bool) -> Hook {
    Hook::new(Reload::Command {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        shell,
    })
}

fn strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| (*s).to_owned()).collect()
}

/// Written by `install`, not by this process: a child that another test thread forks while
/// this process holds the script open for writing would keep it "text file busy" (ETXTBSY)
/// until that child execs, and running the script would fail now and then.
fn executable(path: &Path, body: &str) {
    let source = path.with_extension("source");
    fs::write(&source, body).unwrap();
    let installed = Command::new("install")
        .args(["-m", "755"])
        .arg(&source)
        .arg(path)
        .status()
        .unwrap();
    assert!(installed.success(), "install {}", path.display());
}

/// The DER leaf nginx serves on `port`.
async fn served_leaf(port: u16) -> Vec<u8> {
    let outcome = probe(
        &EndpointSpec::new("127.0.0.1", port),
        Arc::new(root_store(&[])),
    )
    .await;
    outcome
        .chain
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no certificate served: {:?}", outcome.error))
}

/// Alive means in /proc and not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

fn pids_in(path: &Path) -> Vec<u32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn assert_all_gone(pids: &[u32]) {
    let started = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still alive: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The script of the hanging-hook tests: `sh` waits on two background sleeps; every pid of
/// the group goes to the file `$1`.
const HANG: &str =
    "echo $$ >> \"$1\"; sleep 100 & echo $! >> \"$1\"; sleep 100 & echo $! >> \"$1\"; wait";

fn wait_for_pids(path: &Path, n: usize) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let pids = pids_in(path);
        if pids.len() >= n {
            return pids;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "pids: {pids:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn signal_to_real_nginx_serves_the_new_certificate() {
    let dir = server_dir();
    let certs = Certs::new("reload", dir.path());
    let old = certs.local_leaf("old.test");
    let pair = certs.write_pair("site", &old, false);
    let port = free_port();
    let server = nginx(dir.path(), &[NginxSite::new(port, &pair)]);
    assert_eq!(served_leaf(port).await, old.der);

    // Swap the files the way activation does (rename over), without telling nginx.
    let new = certs.local_leaf("new.test");
    let next = certs.write_pair("next", &new, false);
    fs::rename(&next.0, &pair.0).unwrap();
    fs::rename(&next.1, &pair.1).unwrap();
    assert_eq!(
        served_leaf(port).await,
        old.der,
        "nginx reloads only when told"
    );

    let prefix = format!("{}/", dir.path().display());
    let hook = Hook {
        reload: Reload::Signal {
            target: SignalTarget::PidFile(dir.path().join("nginx.pid")),
            signal: "HUP".to_owned(),
            expect_process: Some("nginx".to_owned()),
        },
        pre_check: Some(strings(&[
            "/usr/sbin/nginx",
            "-t",
            "-q",
            "-p",
            &prefix,
            "-c",
            "nginx.conf",
        ])),
        timeout: Duration::from_secs(10),
    };
    let started = Instant::now();
    let outcome = hook
        .run(&hook_env(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.logs()));
    let hook_done = started.elapsed();
    let master: u32 = fs::read_to_string(dir.path().join("nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(outcome.signalled, Some(master));

    let mut probes = 0;
    while served_leaf(port).await != new.der {
        probes += 1;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "nginx still serves the old certificate 5 s after SIGHUP:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "nginx: pre-check + SIGHUP {:.1} ms; new certificate served {:.1} ms after the hook \
         started ({probes} probes still saw the old one)",
        hook_done.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn pid_file_of_another_process_is_refused_and_not_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleep = Command::new("sleep").arg("100").spawn().unwrap();
    let pid_file = dir.path().join("nginx.pid");
    fs::write(&pid_file, format!("{}\n", sleep.id())).unwrap();
    let hook = Hook::new(Reload::Signal {
        target: SignalTarget::PidFile(pid_file.clone()),
        signal: "HUP".to_owned(),
        expect_process: Some("nginx".to_owned()),
    });

    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    match &err {
        ReloadError::WrongProcess {
            pid,
            found,
            expected,
            ..
        } => {
            assert_eq!(*pid, sleep.id());
            assert_eq!(found, "sleep");
            assert_eq!(expected, "nginx");
        }
        other => panic!("expected WrongProcess, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&pid_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains("no signal sent"), "{message}");
    // SIGHUP would have ended the sleep (its default action is to terminate).
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sleep.try_wait().unwrap().is_none(),
        "the sleep got a signal"
    );
    sleep.kill().unwrap();
    sleep.wait().unwrap();
}

#[tokio::test]
async fn missing_empty_and_garbage_pid_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (None, "does not exist"),
        (Some(""), "is empty"),
        (Some(" \n"), "is empty"),
        (Some("nginx\n"), "does not hold a pid: \"nginx\""),
        (Some("-1\n"), "does not hold a pid"),
        (Some("0\n"), "not a usable pid"),
        (Some("4294967295"), "not a usable pid"),
    ];
    for (i, (contents, expected)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("{i}.pid"));
        if let Some(contents) = contents {
            fs::write(&path, contents).unwrap();
        }
        let hook = Hook::new(Reload::Signal {
            target: SignalTarget::PidFile(path.clone()),
            signal: "HUP".to_owned(),
            expect_process: None,
        });
        let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
        assert!(
            matches!(&err, ReloadError::PidFile { path: p, .. } if *p == path),
            "{contents:?}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(expected), "{contents:?}: {message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    // A pid file left by a process that has exited.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let path = dir.path().join("stale.pid");
    fs::write(&path, pid.to_string()).unwrap();
    let hook = Hook::new(Reload::Signal {
        target: SignalTarget::PidFile(path),
        signal: "SIGHUP".to_owned(),
        expect_process: Some("nginx".to_owned()),
    });
    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    assert!(
        matches!(err, ReloadError::NoProcess { pid: p, .. } if p == pid),
        "{err:?}"
    );
}

#[tokio::test]
async fn command_exiting_1_reports_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let hook = command(
        &[
            "sh",
            "-c",
            "echo starting; echo 'reload: no such site' >&2; exit 1",
        ],
        false,
    );
    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    let ReloadError::CommandFailed { status, stderr, .. } = &err else {
        panic!("expected CommandFailed, got {err:?}");
    };
    assert_eq!(status, "exited with status 1");
    assert_eq!(stderr, "reload: no such site");
    let message = err.to_string();
    assert!(
        message.starts_with("reload hook command [\"sh\", \"-c\""),
        "{message}"
    );
    assert!(message.contains("exited with status 1"), "{message}");
    assert!(message.contains("reload: no such site"), "{message}");

    // A program that does not exist.
    let err = command(&["/nonexistent/reload-me"], false)
        .run(&hook_env(dir.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReloadError::Spawn { program, .. } if program == "/nonexistent/reload-me"),
        "{err:?}"
    );
}

#[tokio::test]
async fn stderr_lines_mentioning_a_private_key_are_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let hook = command(
        &[
            "k=PRIVATE; echo checking >&2; echo \"-----BEGIN $k KEY-----\" >&2; \
             echo MIGH''AgEAMBMG >&2; echo \"-----END $k KEY-----\" >&2; echo done >&2; exit 3",
        ],
        true,
    );
    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    let message = err.to_string();
    assert!(!message.contains("BEGIN PRIVATE KEY"), "{message}");
    assert!(!message.contains("MIGHAgEAMBMG"), "{message}");
    assert!(
        message.ends_with(
            "stderr:\nchecking\n[line withheld: it mentions a private key]\n\
             [line withheld: it mentions a private key]\n\
             [line withheld: it mentions a private key]\ndone"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn failing_pre_check_skips_the_reload() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("reloaded");
    let reload = command(&["touch", marker.to_str().unwrap()], false);

    let mut hook = reload.clone();
    hook.pre_check = Some(strings(&[
        "sh",
        "-c",
        "echo 'nginx: [emerg] cannot load certificate' >&2; exit 1",
    ]));
    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    let ReloadError::PreCheck { status, stderr, .. } = &err else {
        panic!("expected PreCheck, got {err:?}");
    };
    assert_eq!(status, "exited with status 1");
    assert!(stderr.contains("cannot load certificate"), "{stderr}");
    assert!(err.to_string().contains("reload not attempted"), "{err}");
    assert!(!marker.exists(), "the reload ran after a failed pre-check");

    // The same reload behind a passing pre-check runs.
    let mut hook = reload;
    hook.pre_check = Some(strings(&["true"]));
    hook.run(&hook_env(dir.path())).await.unwrap();
    assert!(marker.exists());
}

#[tokio::test]
async fn hanging_hook_is_killed_with_its_children_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let mut hook = command(&[HANG, pids.to_str().unwrap()], true);
    hook.timeout = Duration::from_millis(500);

    let started = Instant::now();
    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            ReloadError::Timeout {
                stage: Stage::Reload,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("killed its process group"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let pids = pids_in(&pids);
    assert_eq!(pids.len(), 3, "sh and both sleeps: {pids:?}");
    assert_all_gone(&pids);

    // The timeout covers the pre-check too.
    let marker = dir.path().join("reloaded");
    let mut hook = command(&["touch", marker.to_str().unwrap()], false);
    hook.pre_check = Some(strings(&["sleep", "100"]));
    hook.timeout = Duration::from_millis(300);
    let err = hook.run(&hook_env(dir.path())).await.unwrap_err();
    assert!(
        matches!(
            err,
            ReloadError::Timeout {
                stage: Stage::PreCheck,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!marker.exists());
}

#[tokio::test]
async fn dropped_hook_future_kills_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let hook = command(&[HANG, pids.to_str().unwrap()], true);
    let env = hook_env(dir.path());
    let running = hook.run(&env);
    let gave_up = tokio::time::timeout(Duration::from_millis(500), running).await;
    assert!(gave_up.is_err(), "the hook cannot finish on its own");
    let pids = wait_for_pids(&pids, 3);
    assert_all_gone(&pids);
}

#[tokio::test]
async fn hook_environment_reaches_the_command_and_the_pre_check() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env");
    let pre_dump = dir.path().join("pre-env");
    let mut hook = command(&["env > \"$1\"", dump.to_str().unwrap()], true);
    hook.pre_check = Some(strings(&[
        "sh",
        "-c",
        "env > \"$0\"",
        pre_dump.to_str().unwrap(),
    ]));
    let mut env = hook_env(dir.path());
    env.event = HookEvent::Rollback;
    hook.run(&env).await.unwrap();

    let live = dir.path().join("live/www");
    let expected = [
        ("CERTVIGIL_CERT_NAME", "www".to_owned()),
        (
            "CERTVIGIL_DOMAINS",
            "www.example.test example.test".to_owned(),
        ),
        (
            "CERTVIGIL_CERT_PATH",
            live.join("cert.pem").display().to_string(),
        ),
        (
            "CERTVIGIL_KEY_PATH",
            live.join("privkey.pem").display().to_string(),
        ),
        (
            "CERTVIGIL_CHAIN_PATH",
            live.join("chain.pem").display().to_string(),
        ),
        (
            "CERTVIGIL_FULLCHAIN_PATH",
            live.join("fullchain.pem").display().to_string(),
        ),
        ("CERTVIGIL_OLD_SERIAL", "0a0b0c".to_owned()),
        ("CERTVIGIL_NEW_SERIAL", "1d2e3f".to_owned()),
        ("CERTVIGIL_NOT_AFTER", "2027-01-15T08:00:00Z".to_owned()),
        ("CERTVIGIL_EVENT", "rollback".to_owned()),
        ("RENEWED_LINEAGE", live.display().to_string()),
        (
            "RENEWED_DOMAINS",
            "www.example.test example.test".to_owned(),
        ),
    ];
    for file in [&dump, &pre_dump] {
        let text = fs::read_to_string(file).unwrap();
        for (name, value) in &expected {
            let line = format!("{name}={value}");
            assert!(
                text.lines().any(|l| l == line),
                "{} lacks {line}:\n{text}",
                file.display()
            );
        }
        // The inherited environment is still there (hooks need PATH).
        assert!(text.lines().any(|l| l.starts_with("PATH=")));
    }

    // No previous certificate: the variable is set and empty.
    env.old_serial = None;
    hook.run(&env).await.unwrap();
    let text = fs::read_to_string(&dump).unwrap();
    assert!(text.lines().any(|l| l == "CERTVIGIL_OLD_SERIAL="), "{text}");
}

/// A stand-in for systemctl: records its arguments, and fails like the real one for the unit
/// `missing.service` (exit 5, "Unit ... not found.") and `broken.service` (exit 1).
fn fake_systemctl(dir: &Path) -> (PathBuf, PathBuf) {
    let calls = dir.join("systemctl.calls");
    let script = dir.join("systemctl");
    executable(
        &script,
        &format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\n\
             unit=\"$3\"\n\
             case \"$unit\" in\n\
             missing.service) echo \"Failed to $2 $unit: Unit $unit not found.\" >&2; exit 5;;\n\
             broken.service) echo \"Job for $unit failed because the control process exited \
             with error code.\" >&2; exit 1;;\n\
             esac\nexit 0\n",
            calls = calls.display()
        ),
    );
    (script, calls)
}

fn systemd(unit: &str, action: SystemdAction, systemctl: &Path) -> Hook {
    Hook::new(Reload::Systemd {
        unit: unit.to_owned(),
        action,
        systemctl: Some(systemctl.to_owned()),
    })
}

#[tokio::test]
async fn systemd_adapter_runs_systemctl_and_checks_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let (systemctl, calls) = fake_systemctl(dir.path());
    let env = hook_env(dir.path());

    systemd("nginx.service", SystemdAction::Reload, &systemctl)
        .run(&env)
        .await
        .unwrap();
    systemd(
        "postfix.service",
        SystemdAction::ReloadOrRestart,
        &systemctl,
    )
    .run(&env)
    .await
    .unwrap();
    systemd("dovecot.service", SystemdAction::Restart, &systemctl)
        .run(&env)
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(&calls).unwrap(),
        "--no-ask-password reload nginx.service\n\
         --no-ask-password reload-or-restart postfix.service\n\
         --no-ask-password restart dovecot.service\n"
    );

    let err = systemd("missing.service", SystemdAction::Reload, &systemctl)
        .run(&env)
        .await
        .unwrap_err();
    let ReloadError::UnitNotFound { unit, stderr, .. } = &err else {
        panic!("expected UnitNotFound, got {err:?}");
    };
    assert_eq!(unit, "missing.service");
    assert!(
        stderr.contains("Unit missing.service not found."),
        "{stderr}"
    );
    assert!(
        err.to_string().starts_with(
            "reload hook systemctl reload missing.service: unit missing.service not found"
        ),
        "{err}"
    );

    let err = systemd("broken.service", SystemdAction::Reload, &systemctl)
        .run(&env)
        .await
        .unwrap_err();
    let ReloadError::Systemctl { status, stderr, .. } = &err else {
        panic!("expected Systemctl, got {err:?}");
    };
    assert_eq!(status, "exited with status 1");
    assert!(stderr.contains("Job for broken.service failed"), "{stderr}");
}

#[test]
fn dedup_key_is_equal_only_for_hooks_doing_the_same_thing() {
    let signal = |pid_file: &str, name: &str| {
        Hook::new(Reload::Signal {
            target: SignalTarget::PidFile(pid_file.into()),
            signal: name.to_owned(),
            expect_process: Some("nginx".to_owned()),
        })
    };
    let unit = |name: &str, action| {
        Hook::new(Reload::Systemd {
            unit: name.to_owned(),
            action,
            systemctl: None,
        })
    };
    let key = Hook::dedup_key;

    assert_eq!(
        key(&signal("/run/nginx.pid", "HUP")),
        key(&signal("/run/nginx.pid", "SIGHUP"))
    );
    assert_ne!(
        key(&signal("/run/nginx.pid", "HUP")),
        key(&signal("/run/nginx.pid", "USR1"))
    );
    assert_ne!(
        key(&signal("/run/nginx.pid", "HUP")),
        key(&signal("/run/other.pid", "HUP"))
    );
    assert_eq!(
        key(&unit("nginx", SystemdAction::Reload)),
        key(&unit("nginx.service", SystemdAction::Reload))
    );
    assert_ne!(
        key(&unit("nginx", SystemdAction::Reload)),
        key(&unit("nginx", SystemdAction::Restart))
    );
    assert_ne!(
        key(&unit("nginx", SystemdAction::Reload)),
        key(&unit("postfix", SystemdAction::Reload))
    );
    assert_eq!(
        key(&command(&["/usr/sbin/postfix", "reload"], false)),
        key(&command(&["/usr/sbin/postfix", "reload"], false))
    );
    assert_ne!(
        key(&command(&["/usr/sbin/postfix", "reload"], false)),
        key(&command(&["/usr/sbin/postfix", "reload", "-v"], false))
    );
    assert_ne!(
        key(&command(&["postfix reload"], true)),
        key(&command(&["postfix reload"], false))
    );
    let mut checked = unit("nginx", SystemdAction::Reload);
    checked.pre_check = Some(strings(&["nginx", "-t"]));
    assert_ne!(key(&checked), key(&unit("nginx", SystemdAction::Reload)));
    // The timeout does not change what the hook does.
    let mut slow = unit("nginx", SystemdAction::Reload);
    slow.timeout = Duration::from_secs(300);
    assert_eq!(key(&slow), key(&unit("nginx", SystemdAction::Reload)));

    // Three certificates on one nginx, one on postfix: two reloads.
    let hooks = [
        unit("nginx", SystemdAction::Reload),
        unit("postfix", SystemdAction::Reload),
        unit("nginx.service", SystemdAction::Reload),
        slow,
    ];
    let once = unique(&hooks);
    assert_eq!(once.len(), 2);
    assert!(std::ptr::eq(once[0], &hooks[0]));
    assert!(std::ptr::eq(once[1], &hooks[1]));
}

#[tokio::test]
async fn unusable_hooks_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let env = hook_env(dir.path());
    let marker = dir.path().join("ran");
    let mut zero = command(&["touch", marker.to_str().unwrap()], false);
    zero.timeout = Duration::ZERO;
    let bad = [
        (command(&[], false), "the command is empty"),
        (zero, "more than 0s"),
        (
            Hook::new(Reload::Signal {
                target: SignalTarget::Pid(1),
                signal: "HUPP".to_owned(),
                expect_process: None,
            }),
            "unknown signal \"HUPP\"",
        ),
        (
            Hook::new(Reload::Signal {
                target: SignalTarget::Pid(0),
                signal: "HUP".to_owned(),
                expect_process: None,
            }),
            "not a usable pid",
        ),
        (
            Hook::new(Reload::Systemd {
                unit: String::new(),
                action: SystemdAction::Reload,
                systemctl: None,
            }),
            "unit name is empty",
        ),
    ];
    for (hook, expected) in bad {
        let err = hook.run(&env).await.unwrap_err();
        assert!(matches!(err, ReloadError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(!marker.exists());
}
