//! The audit log: the chain as documented (checked with sha256sum, as an operator would),
//! tampering found at the right line, crash fragments repaired, concurrent writers, and key
//! material refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use certvigil_deploy::audit::{
    AuditError, AuditEvent, AuditKind, AuditLog, GENESIS, VerifyError, redact, verify,
};
use serde_json::{Value, json};

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(format!("cert-{}", i % 3), AuditKind::Activated)
        .with_stage("activate")
        .with_detail(json!({"serial": format!("{i:04x}"), "path": "/etc/certvigil/live/www"}))
}

fn write_log(path: &Path, n: usize) -> AuditLog {
    let log = AuditLog::open(path).unwrap();
    for i in 1..=n {
        log.append(&event(i)).unwrap();
    }
    log
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn broken_at(path: &Path) -> (usize, String) {
    match verify(path) {
        Err(VerifyError::Broken(b)) => (b.line, b.reason),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

/// The documented by-hand check of one line: sed, tr, sha256sum.
fn sha256sum_of_line(path: &Path, line: usize) -> String {
    let script = format!(
        "sed -n {line}p \"$0\" | sed 's/,\"hash\":\"[0-9a-f]*\"}}$/}}/' | tr -d '\\n' | sha256sum"
    );
    let out = Command::new("sh")
        .args(["-c", &script, path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn lines_chain_as_documented_and_check_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/audit/audit.jsonl");
    write_log(&path, 5);

    // Created 0600 in directories created 0700.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    let lines = lines(&path);
    assert_eq!(lines.len(), 5);
    let mut prev = GENESIS.to_owned();
    for (i, line) in lines.iter().enumerate() {
        let record: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "seq",
            "ts",
            "certificate",
            "event",
            "stage",
            "detail",
            "prev",
            "hash",
        ] {
            assert!(keys.contains(&key), "{key} missing in {line}");
        }
        assert!(
            line.starts_with(&format!("{{\"seq\":{},\"ts\":\"", i + 1)),
            "{line}"
        );
        assert!(line.ends_with(&format!(
            ",\"hash\":\"{}\"}}",
            record["hash"].as_str().unwrap()
        )));
        assert_eq!(record["event"], "activated");
        assert_eq!(record["prev"], prev.as_str());
        assert_eq!(
            sha256sum_of_line(&path, i + 1),
            record["hash"].as_str().unwrap()
        );
        prev = record["hash"].as_str().unwrap().to_owned();
    }
    let report = verify(&path).unwrap();
    assert_eq!(report.lines, 5);
    assert_eq!(report.last_hash, prev);
    assert!(report.repaired.is_empty());
    assert_eq!(AuditLog::open(&path).unwrap().head().unwrap().hash, prev);
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 2);
    let head = write_log(&path, 3).head().unwrap();
    assert_eq!(head.seq, 5);
    assert_eq!(verify(&path).unwrap().lines, 5);
    // An empty log verifies too.
    let empty = dir.path().join("empty.jsonl");
    AuditLog::open(&empty).unwrap();
    let report = verify(&empty).unwrap();
    assert_eq!((report.lines, report.last_hash.as_str()), (0, GENESIS));
}

#[test]
fn verification_hashes_bytes_not_a_reserialization() {
    // A record written by another tool with its keys in another order and extra spaces is
    // accepted as long as its hash covers its bytes.
    let body = format!(
        "{{\"prev\": \"{GENESIS}\", \"event\":\"issued\",\"seq\":1,\"detail\":{{}},\
         \"certificate\":\"x\",\"stage\":null,\"ts\":\"2026-01-01T00:00:00Z\"}}"
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let line = format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    fs::write(&path, line).unwrap();
    assert_eq!(verify(&path).unwrap().lines, 1);
    // And appending after it continues from its hash.
    let log = AuditLog::open(&path).unwrap();
    log.append(&event(2)).unwrap();
    assert_eq!(verify(&path).unwrap().lines, 2);
}

#[test]
fn an_edited_line_breaks_the_chain_at_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 6);
    let mut lines = lines(&path);
    assert!(lines[3].contains("\"serial\":\"0004\""));
    lines[3] = lines[3].replace("\"serial\":\"0004\"", "\"serial\":\"0005\"");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (line, reason) = broken_at(&path);
    assert_eq!(line, 4);
    assert!(reason.contains("hash mismatch"), "{reason}");
    // The log refuses no append for a mid-file edit (it reads only the tail), but the break
    // stays where it is.
    AuditLog::open(&path).unwrap().append(&event(7)).unwrap();
    assert_eq!(broken_at(&path).0, 4);
}

#[test]
fn a_removed_or_swapped_line_breaks_the_chain_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 6);
    let original = lines(&path);

    let mut removed = original.clone();
    removed.remove(2);
    fs::write(&path, removed.join("\n") + "\n").unwrap();
    let (line, reason) = broken_at(&path);
    assert_eq!(line, 3);
    assert!(reason.contains("seq is 4, expected 3"), "{reason}");

    let mut swapped = original.clone();
    swapped.swap(1, 2);
    fs::write(&path, swapped.join("\n") + "\n").unwrap();
    assert_eq!(broken_at(&path).0, 2);

    // A record recomputed with the right seq but chained to nothing.
    let mut first_again = original.clone();
    first_again.insert(3, original[0].clone());
    fs::write(&path, first_again.join("\n") + "\n").unwrap();
    assert_eq!(broken_at(&path).0, 4);
}

#[test]
fn an_interrupted_append_is_reported_then_repaired_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 4);
    let full = fs::read(&path).unwrap();
    // A crash half-way through line 4.
    let cut = full.len() - 40;
    fs::write(&path, &full[..cut]).unwrap();
    let (line, reason) = broken_at(&path);
    assert_eq!(line, 4);
    assert!(reason.contains("incomplete last line"), "{reason}");

    let log = AuditLog::open(&path).unwrap();
    let head = log.append(&event(5)).unwrap();
    let report = verify(&path).unwrap();
    assert_eq!(report.lines, 6, "fragment, repair record, new record");
    assert_eq!(report.repaired, vec![4]);
    assert_eq!(report.last_hash, head.hash);
    let lines = lines(&path);
    let repair: Value = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(repair["event"], "log_repaired");
    assert_eq!(repair["seq"], 4);
    let line3: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(repair["prev"], line3["hash"]);
    let fragment_start = full[..cut].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(repair["detail"]["offset"], fragment_start);
    assert_eq!(repair["detail"]["bytes"], cut - fragment_start);
    let new: Value = serde_json::from_str(&lines[5]).unwrap();
    assert_eq!(new["seq"], 5);

    // A fragment with nothing before it.
    let lone = dir.path().join("lone.jsonl");
    fs::write(&lone, &full[..20]).unwrap();
    assert_eq!(broken_at(&lone).0, 1);
    AuditLog::open(&lone).unwrap().append(&event(1)).unwrap();
    assert_eq!(verify(&lone).unwrap().repaired, vec![1]);
}

#[test]
fn a_repair_record_covers_only_the_fragment_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3);
    let full = fs::read(&path).unwrap();
    fs::write(&path, &full[..full.len() - 10]).unwrap();
    AuditLog::open(&path).unwrap().append(&event(4)).unwrap();
    // Change the repaired fragment afterwards: its sha256 no longer matches the record.
    let mut lines = lines(&path);
    lines[2] = lines[2].replacen("cert-", "cert_", 1);
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (line, _) = broken_at(&path);
    assert_eq!(line, 3);
}

#[test]
fn an_invalid_last_complete_line_is_refused_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3);
    let mut lines = lines(&path);
    lines[2] = lines[2].replace("cert-0", "cert-9");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let before = fs::read(&path).unwrap();
    let err = AuditLog::open(&path).unwrap_err();
    assert!(matches!(err, AuditError::BrokenTail { .. }), "{err:?}");
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn key_material_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = write_log(&path, 1);
    let before = fs::read(&path).unwrap();
    let pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE...\n-----END EC PRIVATE KEY-----\n";

    let nested = json!({"serial": "01", "files": [{"path": "/x", "content": pem}]});
    let err = redact(&nested).unwrap_err();
    assert_eq!(
        err.to_string().split(':').next().unwrap(),
        "refusing to write detail/files/0/content to the audit log"
    );
    let err = log
        .append(&AuditEvent::new("www", AuditKind::Failed).with_detail(nested))
        .unwrap_err();
    assert!(matches!(err, AuditError::KeyMaterial { .. }), "{err:?}");
    let err = log
        .append(&AuditEvent::new("www", AuditKind::Failed).with_stage(pem))
        .unwrap_err();
    assert!(matches!(&err, AuditError::KeyMaterial { field } if field == "stage"));
    let err = log
        .append(&AuditEvent::new(pem, AuditKind::Failed))
        .unwrap_err();
    assert!(matches!(&err, AuditError::KeyMaterial { field } if field == "certificate"));
    assert_eq!(fs::read(&path).unwrap(), before);

    // Error text about keys is fine.
    let ok = json!({"error": "private key does not match the certificate"});
    redact(&ok).unwrap();
    log.append(&AuditEvent::new("www", AuditKind::Failed).with_detail(ok))
        .unwrap();

    // Oversized details are refused too.
    let huge = json!({"error": "x".repeat(70_000)});
    let err = log
        .append(&AuditEvent::new("www", AuditKind::Failed).with_detail(huge))
        .unwrap_err();
    assert!(matches!(err, AuditError::TooLarge { .. }), "{err:?}");
    assert_eq!(verify(&path).unwrap().lines, 2);
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each writer has its own AuditLog and so its own open file per append, like
                // separate processes: flock(2) is what serializes them.
                let log = AuditLog::open(&path).unwrap();
                for i in 0..50 {
                    log.append(&event(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&path).unwrap();
    assert_eq!(report.lines, 400);
    assert_eq!(AuditLog::open(&path).unwrap().head().unwrap().seq, 400);
}
