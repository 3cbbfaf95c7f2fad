//! The systemd units in deploy/systemd: parsed and checked key by key, verified with
//! `systemd-analyze verify` when it is installed, and their command lines run against the
//! real binary.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_certvigil");
const INSTALLED_BIN: &str = "/usr/local/bin/certvigil";
const UNITS: [&str; 3] = [
    "certvigil.service",
    "certvigil-check.service",
    "certvigil-check.timer",
];
const TEXTFILE: &str = "/var/lib/prometheus/node-exporter/certvigil.prom";

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
}

fn read_unit(name: &str) -> String {
    let path = unit_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `section -> key -> every value assigned, in order` (systemd allows repeated keys).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse(name: &str) -> Unit {
    let text = read_unit(name);
    let mut unit = Unit::new();
    let mut section = None;
    let mut pending = String::new();
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        // Backslash continuation lines join with a space.
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let line = std::mem::take(&mut pending);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            unit.entry(name.to_owned()).or_default();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            panic!("{name}:{}: not `Key=value`: {raw:?}", no + 1);
        };
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("{name}:{}: key outside a section", no + 1));
        unit.get_mut(section)
            .unwrap()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    assert!(pending.is_empty(), "{name}: dangling continuation line");
    unit
}

/// The single value of `key` in `section`.
fn get<'a>(unit: &'a Unit, name: &str, section: &str, key: &str) -> &'a str {
    let values = unit
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("{name}: [{section}] {key}= is missing"));
    assert_eq!(
        values.len(),
        1,
        "{name}: [{section}] {key}= set more than once"
    );
    &values[0]
}

/// Hardening shared by both services: key and exact value.
const HARDENING: &[(&str, &str)] = &[
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "read-only"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
    ("SupplementaryGroups", "ssl-cert"),
];

fn check_hardening(unit: &Unit, name: &str) {
    for (key, want) in HARDENING {
        assert_eq!(
            get(unit, name, "Service", key),
            *want,
            "{name}: [Service] {key}="
        );
    }
    let read_only = get(unit, name, "Service", "ReadOnlyPaths");
    assert!(
        read_only.split_whitespace().any(|p| p == "/etc/ssl"),
        "{name}: ReadOnlyPaths= lacks /etc/ssl: {read_only:?}"
    );
    assert!(
        !unit["Service"].contains_key("DynamicUser"),
        "{name}: the units use a static user (see the comment at the top)"
    );
    let user = get(unit, name, "Service", "User");
    assert!(!user.is_empty() && user != "root", "{name}: User={user}");
}

#[test]
fn daemon_unit_has_the_expected_settings() {
    let name = "certvigil.service";
    let unit = parse(name);
    let service = |key| get(&unit, name, "Service", key);
    assert_eq!(service("Type"), "notify");
    assert_eq!(service("NotifyAccess"), "main");
    assert_eq!(
        service("ExecStart"),
        format!("{INSTALLED_BIN} daemon --config /etc/certvigil/certvigil.toml")
    );
    assert_eq!(service("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(service("WatchdogSec"), "60s");
    assert_eq!(service("Restart"), "on-failure");
    assert_eq!(service("User"), "certvigil");
    assert_eq!(service("StateDirectory"), "certvigil");
    assert_eq!(service("CacheDirectory"), "certvigil");
    assert_eq!(service("Environment"), "CERTVIGIL_CACHE_DIR=%C/certvigil");
    check_hardening(&unit, name);
    assert_eq!(get(&unit, name, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn check_unit_has_the_expected_settings() {
    let name = "certvigil-check.service";
    let unit = parse(name);
    let service = |key| get(&unit, name, "Service", key);
    assert_eq!(service("Type"), "oneshot");
    let exec: Vec<&str> = service("ExecStart").split_whitespace().collect();
    assert_eq!(exec[..2], [INSTALLED_BIN, "scan"]);
    assert!(
        exec.windows(2).any(|w| w == ["--format", "prom"]),
        "{exec:?}"
    );
    assert!(exec.windows(2).any(|w| w == ["-o", TEXTFILE]), "{exec:?}");
    let textfile_dir = Path::new(TEXTFILE).parent().unwrap().to_str().unwrap();
    assert_eq!(service("ReadWritePaths"), textfile_dir);
    let cache = service("CacheDirectory");
    assert_eq!(
        service("Environment"),
        format!("CERTVIGIL_CACHE_DIR=%C/{cache}")
    );
    check_hardening(&unit, name);
    assert!(
        !unit.contains_key("Install"),
        "{name} is started by the timer, not enabled on its own"
    );
}

#[test]
fn timer_runs_the_check_daily() {
    let name = "certvigil-check.timer";
    let unit = parse(name);
    let timer = |key| get(&unit, name, "Timer", key);
    assert_eq!(timer("OnCalendar"), "daily");
    assert_eq!(timer("Persistent"), "true");
    assert_eq!(timer("Unit"), "certvigil-check.service");
    assert!(!timer("RandomizedDelaySec").is_empty());
    assert_eq!(get(&unit, name, "Install", "WantedBy"), "timers.target");
}

/// The command lines of both services are accepted by the real binary.
#[test]
fn exec_start_command_lines_are_accepted_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();

    // The check service's flags, with the output redirected and an empty directory to scan.
    let exec = get(
        &parse("certvigil-check.service"),
        "check",
        "Service",
        "ExecStart",
    )
    .to_owned();
    let out = dir.path().join("certvigil.prom");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == TEXTFILE {
                out.display().to_string()
            } else {
                a.to_owned()
            }
        })
        .chain([empty.display().to_string()])
        .collect();
    let run = Command::new(BIN)
        .args(&args)
        .arg("--no-cache")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.exists(), "{} was not written", out.display());

    // The daemon's flags: `config check` on a file with errors must fail on its content,
    // and `daemon --config` on a missing file must fail on the file, not on the flags.
    let exec = get(
        &parse("certvigil.service"),
        "daemon",
        "Service",
        "ExecStart",
    )
    .to_owned();
    let mut args: Vec<String> = exec.split_whitespace().skip(1).map(str::to_owned).collect();
    let missing = dir.path().join("missing.toml");
    *args.last_mut().unwrap() = missing.display().to_string();
    let run = Command::new(BIN).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("missing.toml") && !stderr.contains("unexpected argument"),
        "{args:?}: {stderr}"
    );
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Some(analyze) = find_in_path("systemd-analyze") else {
        eprintln!(
            "systemd-analyze is unavailable: the units were checked by parsing only \
             (the other tests in this file)"
        );
        return;
    };
    // verify insists that ExecStart= exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in UNITS {
        let text = read_unit(name).replace(INSTALLED_BIN, BIN);
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let run = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    // verify reports most problems (unknown keys, bad values) as warnings with status 0, so
    // any line about our units fails the test; other lines concern the host's own units.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("certvigil")).collect();
    assert!(
        run.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        run.status
    );
    if !stderr.trim().is_empty() {
        eprintln!("systemd-analyze verify, about other units:\n{stderr}");
    }
}
