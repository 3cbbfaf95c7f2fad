//! Shared helpers for the command-line tests: run the real binary, write files, call openssl.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn certvigil(args: &[&str]) -> Run {
    certvigil_with(args, None, &[])
}

pub fn certvigil_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certvigil"));
    // Tests never share the user's signature cache.
    cmd.env("CERTVIGIL_CACHE_DIR", cache_dir());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn certvigil");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input).expect("write stdin");
    }
    drop(pipe);
    let out = child.wait_with_output().expect("wait certvigil");
    finish(out)
}

/// One cache directory per test process, so tests exercise the cache without touching $HOME.
pub fn cache_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("cache tempdir"))
        .path()
        .to_path_buf()
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs openssl; a missing binary fails the test (CI installs it).
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (scripts/install-deps)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Findings of a JSON report as (check, severity, source) triples.
pub fn findings(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
                f["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn has_finding(report: &serde_json::Value, check: &str, source_suffix: &str) -> bool {
    findings(report)
        .iter()
        .any(|(c, _, s)| c == check && s.ends_with(source_suffix))
}

pub fn message_of(report: &serde_json::Value, check: &str, source_suffix: &str) -> String {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check && f["source"].as_str().unwrap().ends_with(source_suffix))
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| {
            panic!(
                "no {check} finding for {source_suffix}: {:#?}",
                findings(report)
            )
        })
}

pub fn certs_from<'a>(
    report: &'a serde_json::Value,
    source_suffix: &str,
) -> Vec<&'a serde_json::Value> {
    report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"].as_str().unwrap().ends_with(source_suffix))
        .collect()
}
