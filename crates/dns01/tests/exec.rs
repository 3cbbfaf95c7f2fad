//! The exec hook provider with real processes: the environment it gets, failures with their
//! stderr, and timeouts that kill the hook's whole process group.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use certvigil_dns01::{ErrorKind, ExecHook, ExecHookConfig, Provider, Step, TxtRecord};
use certvigil_testutil::bind::Bind;
use certvigil_testutil::servers::server_dir;

fn hook(present: &[&str], cleanup: &[&str], timeout: Duration) -> Provider {
    let config = ExecHookConfig {
        present: present.iter().map(|s| s.to_string()).collect(),
        cleanup: cleanup.iter().map(|s| s.to_string()).collect(),
        timeout,
        propagation_servers: vec![],
        propagation_timeout: Duration::from_secs(5),
    };
    Provider::Exec(ExecHook::from_config(&config).unwrap())
}

fn record() -> TxtRecord {
    TxtRecord::new(
        "*.certvigil.test",
        "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0",
    )
}

#[tokio::test]
async fn hook_gets_the_record_in_its_environment_and_argv_verbatim() {
    let dir = server_dir();
    let out = dir.path().join("calls");
    let script = format!(
        r#"printf '%s|%s|%s|%s|%s\n' "$CERTVIGIL_DNS01_EVENT" "$CERTVIGIL_DNS01_NAME" "$CERTVIGIL_DNS01_VALUE" "$CERTVIGIL_DNS01_DOMAIN" "$*" >> {}"#,
        out.display()
    );
    // Arguments reach the program as they are: no shell expands `$HOME` or splits "a b".
    let provider = hook(
        &["sh", "-c", &script, "sh", "a b", "$HOME"],
        &["sh", "-c", &script, "sh", "gone"],
        Duration::from_secs(10),
    );
    provider.present(&record()).await.unwrap();
    // Without propagation_servers the hook is trusted: nothing to wait for.
    let started = Instant::now();
    provider.wait_propagated(&record()).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(10));
    provider.cleanup(&record()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "present|_acme-challenge.certvigil.test.|LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0\
         |*.certvigil.test|a b $HOME\n\
         cleanup|_acme-challenge.certvigil.test.|LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0\
         |*.certvigil.test|gone\n"
    );
}

#[tokio::test]
async fn failing_hook_reports_its_status_and_the_end_of_its_stderr() {
    let script = "for i in $(seq 1 30); do echo \"noise $i\" >&2; done; \
                  echo 'api.example: 403 invalid token' >&2; exit 3";
    let provider = hook(&["sh", "-c", script], &["true"], Duration::from_secs(10));
    let err = provider.present(&record()).await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.step, Step::Present);
    assert_eq!(err.name, "_acme-challenge.certvigil.test.");
    let ErrorKind::HookFailed { status, stderr, .. } = &err.kind else {
        panic!("{err:?}");
    };
    assert_eq!(status, "exited with status 3");
    assert!(
        stderr.ends_with("api.example: 403 invalid token"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 20, "only the last lines: {stderr}");
    assert!(!stderr.contains("noise 10\n"), "{stderr}");
    let text = err.to_string();
    assert!(text.contains("hook sh exited with status 3"), "{text}");
    assert!(text.contains("403 invalid token"), "{text}");

    // Killed by a signal.
    let provider = hook(
        &["sh", "-c", "kill -9 $$"],
        &["true"],
        Duration::from_secs(10),
    );
    let err = provider.present(&record()).await.unwrap_err();
    assert!(
        matches!(&err.kind, ErrorKind::HookFailed { status, .. } if status == "was killed by signal 9"),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let provider = hook(
        &["true"],
        &["/nonexistent/dns-hook"],
        Duration::from_secs(10),
    );
    let err = provider.cleanup(&record()).await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.step, Step::Cleanup);
    assert!(
        matches!(&err.kind, ErrorKind::HookSpawn { program, .. } if program == "/nonexistent/dns-hook"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    // An empty argv never gets this far.
    let config = ExecHookConfig {
        present: vec![],
        cleanup: vec!["true".into()],
        timeout: Duration::from_secs(1),
        propagation_servers: vec![],
        propagation_timeout: Duration::from_secs(1),
    };
    let err = ExecHook::from_config(&config).unwrap_err();
    assert_eq!(err.step, Step::Config);
    assert_eq!(err.name, "present");
}

#[tokio::test]
async fn hanging_hook_is_killed_with_its_children_at_the_timeout() {
    let dir = server_dir();
    let d = dir.path().display();
    // Two sleeps: one in the background, one in the foreground of the shell.
    let script = format!(
        "echo $$ > {d}/sh.pid; sleep 100 & echo $! > {d}/bg.pid; \
         echo 'waiting for the API' >&2; sleep 100"
    );
    let provider = hook(
        &["sh", "-c", &script],
        &["true"],
        Duration::from_millis(500),
    );
    let started = Instant::now();
    let err = provider.present(&record()).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("after {took:?}: {err}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    let ErrorKind::HookTimeout { stderr, .. } = &err.kind else {
        panic!("{err:?}");
    };
    assert_eq!(stderr, "waiting for the API");
    assert!(err.is_retryable());

    let group = read_pid(&dir.path().join("sh.pid"));
    let background = read_pid(&dir.path().join("bg.pid"));
    assert_group_gone(group, &[background]);
}

#[tokio::test]
async fn dropping_the_future_kills_the_hook_group() {
    let dir = server_dir();
    let d = dir.path().display();
    let script = format!("echo $$ > {d}/sh.pid; sleep 100 & echo $! > {d}/bg.pid; sleep 100");
    let provider = hook(&["sh", "-c", &script], &["true"], Duration::from_secs(60));
    let record = record();
    let cancelled =
        tokio::time::timeout(Duration::from_millis(300), provider.present(&record)).await;
    assert!(cancelled.is_err(), "the hook should still be running");
    let group = read_pid(&dir.path().join("sh.pid"));
    let background = read_pid(&dir.path().join("bg.pid"));
    assert_group_gone(group, &[background]);
}

#[tokio::test]
async fn hook_driving_nsupdate_then_propagation_check_against_bind() {
    let bind = Bind::start(
        "certvigil.test",
        &[("www.certvigil.test", Ipv4Addr::LOCALHOST)],
    );
    let key = bind.key_file.display();
    let port = bind.port;
    let present = format!(
        "printf 'server 127.0.0.1 {port}\\nupdate add %s 60 TXT %s\\nsend\\n' \
         \"$CERTVIGIL_DNS01_NAME\" \"$CERTVIGIL_DNS01_VALUE\" | nsupdate -k {key}"
    );
    let cleanup = format!(
        "printf 'server 127.0.0.1 {port}\\nupdate delete %s TXT %s\\nsend\\n' \
         \"$CERTVIGIL_DNS01_NAME\" \"$CERTVIGIL_DNS01_VALUE\" | nsupdate -k {key}"
    );
    let config = ExecHookConfig {
        present: vec!["sh".into(), "-c".into(), present],
        cleanup: vec!["sh".into(), "-c".into(), cleanup],
        timeout: Duration::from_secs(10),
        propagation_servers: vec![bind.addr()],
        propagation_timeout: Duration::from_secs(5),
    };
    let provider = Provider::Exec(ExecHook::from_config(&config).unwrap());
    let record = TxtRecord::new("www.certvigil.test", "hook-value-0123456789");
    provider.present(&record).await.unwrap();
    provider.wait_propagated(&record).await.unwrap();
    assert_eq!(
        bind.txt("_acme-challenge.www.certvigil.test"),
        vec!["hook-value-0123456789"]
    );
    provider.cleanup(&record).await.unwrap();
    assert!(bind.txt("_acme-challenge.www.certvigil.test").is_empty());

    // A value the hook never published: the check names the server.
    let never = TxtRecord::new("www.certvigil.test", "never-published");
    let config = ExecHookConfig {
        propagation_timeout: Duration::from_millis(300),
        ..config
    };
    let provider = Provider::Exec(ExecHook::from_config(&config).unwrap());
    let err = provider.wait_propagated(&never).await.unwrap_err();
    eprintln!("{err}");
    assert!(
        err.to_string()
            .contains(&format!("{} (answered NXDOMAIN)", bind.addr())),
        "{err}"
    );
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Waits up to 2 s until no live process is left in process group `group` and none of
/// `pids` lives (zombies count as gone: PID 1 of a container may be slow to reap them).
fn assert_group_gone(group: i32, pids: &[i32]) {
    let started = Instant::now();
    loop {
        let alive = live_processes(group, pids);
        if alive.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "still alive after the hook was killed: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn live_processes(group: i32, pids: &[i32]) -> Vec<String> {
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(after_comm) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let (state, pgrp) = (fields[0], fields[2].parse::<i32>().unwrap_or(0));
        if state != "Z" && (pgrp == group || pids.contains(&pid)) {
            alive.push(stat.trim().to_owned());
        }
    }
    alive
}
