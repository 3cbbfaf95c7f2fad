//! `certvigil audit verify` through the binary: an intact log, an edited serial, a removed
//! line, an interrupted last write (and its repair), an unreadable file.

mod support;

use std::fs;
use std::path::Path;

use certvigil_deploy::audit::{AuditEvent, AuditKind, AuditLog};
use serde_json::json;
use support::certvigil;

fn write_log(path: &Path, n: usize) {
    let log = AuditLog::open(path).unwrap();
    for i in 1..=n {
        log.append(
            &AuditEvent::new("www", AuditKind::Verified)
                .with_stage("verify")
                .with_detail(json!({"serial": format!("{i:04x}"), "endpoint": "127.0.0.1:443"})),
        )
        .unwrap();
    }
}

fn rewrite_lines(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn verify(path: &Path) -> (i32, String) {
    let run = certvigil(&["audit", "verify", path.to_str().unwrap()]);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    (run.code, run.stdout)
}

#[test]
fn intact_log_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 7);
    assert_eq!(
        verify(&path),
        (0, format!("{}: 7 lines, chain intact\n", path.display()))
    );
}

#[test]
fn edited_serial_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 7);
    rewrite_lines(&path, |lines| {
        assert!(lines[3].contains("\"serial\":\"0004\""));
        lines[3] = lines[3].replace("\"serial\":\"0004\"", "\"serial\":\"0044\"");
    });
    let (code, out) = verify(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "{}: chain broken at line 4: hash mismatch",
            path.display()
        )),
        "{out}"
    );
}

#[test]
fn removed_line_is_reported_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 7);
    rewrite_lines(&path, |lines| {
        lines.remove(4);
    });
    let (code, out) = verify(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "{}: chain broken at line 5: seq is 6, expected 5",
            path.display()
        )),
        "{out}"
    );
}

#[test]
fn truncated_last_line_is_reported_then_repaired_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 7);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 30]).unwrap();
    let (code, out) = verify(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "{}: chain broken at line 7: incomplete last line",
            path.display()
        )),
        "{out}"
    );

    write_log(&path, 1);
    assert_eq!(
        verify(&path),
        (
            0,
            format!(
                "{}: 9 lines, chain intact (interrupted write repaired at line 7)\n",
                path.display()
            )
        )
    );
}

#[test]
fn missing_file_is_an_operational_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.log");
    let run = certvigil(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nope.log"), "{}", run.stderr);
    assert!(run.stderr.contains("No such file"), "{}", run.stderr);
}
