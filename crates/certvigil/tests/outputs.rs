//! Output formats and the OpenSSL cross-check, through the real binary.

mod support;

use std::collections::HashMap;
use std::process::Command;

use certvigil_testutil::{KeyKind, Pki, Spec};
use support::*;

/// For every certificate of a generated corpus, serial, notBefore, notAfter, fingerprint and
/// subject agree with what `openssl x509` prints.
#[test]
fn fields_agree_with_openssl_x509_on_a_generated_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Cross");
    let kinds = [
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Rsa2048,
        KeyKind::Ed25519,
    ];
    let awkward_names = [
        "plain.example",
        "comma, inc",
        "plus+sign",
        "quote\"d",
        "back\\slash",
        "semi;colon",
        "angle<br>",
        " leading space",
        "#hash",
        "trailing space ",
    ];
    let mut expected = 0;
    for i in 0..40 {
        let mut spec = Spec::leaf(awkward_names[i % awkward_names.len()]);
        spec.dns_names = vec![format!("host{i}.example")];
        spec.key = kinds[i % kinds.len()];
        spec.organization = (i % 3 == 0).then(|| format!("Org {i}, Unit=x"));
        // Serials with the high bit set need a leading zero in DER; OpenSSL hides it.
        let mut serial = vec![(i as u8).wrapping_mul(37) | if i % 2 == 0 { 0x80 } else { 0 }];
        serial.extend_from_slice(&[i as u8; 7]);
        spec.serial = Some(serial);
        spec = spec.valid_days(-(i as i64) - 1, 30 + i as i64 * 11);
        let leaf = pki.leaf(&spec);
        if i % 5 == 0 {
            // Bundles: OpenSSL only reads the first block, so these also test that we
            // read every block while comparing the first.
            write(dir.path(), &format!("c{i}.pem"), pki.fullchain(&leaf));
            expected += 2;
        } else {
            write(dir.path(), &format!("c{i}.pem"), &leaf.pem);
            expected += 1;
        }
    }
    write(dir.path(), "root.pem", &pki.root.cert.pem);
    expected += 1;

    let run = certvigil(&[
        "scan",
        "--format",
        "json",
        "--no-system-trust",
        dir.path().to_str().unwrap(),
    ]);
    let report = run.json();
    let certs = report["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), expected);

    let mut compared = 0;
    for cert in certs.iter().filter(|c| c["index"] == 0) {
        let path = cert["source"].as_str().unwrap();
        let out = openssl(&[
            "x509",
            "-in",
            path,
            "-noout",
            "-serial",
            "-startdate",
            "-enddate",
            "-fingerprint",
            "-sha256",
            "-subject",
            "-issuer",
            "-nameopt",
            "RFC2253",
            "-dateopt",
            "iso_8601",
        ]);
        let fields: HashMap<&str, &str> = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim_end_matches('\n')))
            .collect();
        let serial = fields["serial"].to_lowercase();
        assert_eq!(cert["serial"].as_str().unwrap(), serial, "{path}");
        let fp = fields["sha256 Fingerprint"].replace(':', "").to_lowercase();
        assert_eq!(cert["fingerprint_sha256"].as_str().unwrap(), fp, "{path}");
        assert_eq!(
            cert["subject"].as_str().unwrap(),
            fields["subject"],
            "{path}"
        );
        assert_eq!(cert["issuer"].as_str().unwrap(), fields["issuer"], "{path}");
        // OpenSSL: "2026-01-01 00:00:00Z"; ours: RFC 3339 "2026-01-01T00:00:00Z".
        assert_eq!(
            cert["not_before"].as_str().unwrap().replace('T', " "),
            fields["notBefore"],
            "{path}"
        );
        assert_eq!(
            cert["not_after"].as_str().unwrap().replace('T', " "),
            fields["notAfter"],
            "{path}"
        );
        compared += 1;
    }
    assert_eq!(compared, 41);
}

fn sample_dir() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Out");
    write(dir.path(), "root.pem", &pki.root.cert.pem);
    write(dir.path(), "inter.pem", &pki.intermediate.cert.pem);
    write(
        dir.path(),
        "soon.pem",
        pki.leaf(&Spec::leaf("soon.example").valid_days(-85, 2)).pem,
    );
    write(
        dir.path(),
        "later.pem",
        pki.leaf(&Spec::leaf("later.example").valid_days(-5, 85))
            .pem,
    );
    write(
        dir.path(),
        "mid.pem",
        pki.leaf(&Spec::leaf("mid.example").valid_days(-70, 20)).pem,
    );
    write(
        dir.path(),
        "label\"quote.pem",
        pki.leaf(&Spec::leaf("q\"uote")).pem,
    );
    (dir, pki)
}

/// `scan --format prom -o out dir`, without the system trust store.
fn scan_prom_to(out: &std::path::Path, dir: &std::path::Path) -> Run {
    certvigil(&[
        "scan",
        "--format",
        "prom",
        "--no-system-trust",
        "-o",
        out.to_str().unwrap(),
        dir.to_str().unwrap(),
    ])
}

/// `-o` onto something that is not a regular file (a FIFO here; `/dev/null` and
/// `/dev/stdout` alike) writes into it: replacing it by a renamed file would destroy
/// `/dev/null` for the whole host when run as root.
#[test]
fn output_into_a_fifo_keeps_the_fifo() {
    let (dir, _) = sample_dir();
    let fifo = dir.path().join("out.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let run = scan_prom_to(&fifo, dir.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    // Checked before joining: a replaced FIFO would leave the reader waiting for ever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&kind),
        "the FIFO was replaced by a {kind:?}"
    );
    let text = reader.join().unwrap();
    assert!(
        text.contains("certvigil_cert_not_after_timestamp_seconds{"),
        "{text}"
    );
}

#[test]
fn prometheus_output_passes_promtool_and_uses_seconds() {
    let (dir, _) = sample_dir();
    let out = dir.path().join("metrics/certvigil.prom");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let run = scan_prom_to(&out, dir.path());
    assert_eq!(run.code, 1, "soon.pem is critical: {}", run.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o644,
        "node_exporter runs as another user and must read the file"
    );
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&out).unwrap())
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(
        check.status.success(),
        "promtool rejected the exposition:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let not_after: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("certvigil_cert_not_after_timestamp_seconds{"))
        .collect();
    assert_eq!(not_after.len(), 6);
    let soon = not_after.iter().find(|l| l.contains("soon.pem")).unwrap();
    let value: i64 = soon.rsplit(' ').next().unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now + 86_400..now + 3 * 86_400).contains(&value),
        "a timestamp in seconds: {value}"
    );
    assert!(
        text.contains(r#"certvigil_findings{check="expiring",severity="critical"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("label\\\"quote.pem"),
        "quotes in label values are escaped"
    );
}

#[test]
fn text_table_is_sorted_by_time_left() {
    let (dir, _) = sample_dir();
    let run = certvigil(&["scan", "--no-system-trust", dir.path().to_str().unwrap()]);
    let order: Vec<usize> = ["soon.example", "mid.example", "later.example"]
        .iter()
        .map(|n| {
            run.stdout
                .find(n)
                .unwrap_or_else(|| panic!("{n} missing:\n{}", run.stdout))
        })
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{}", run.stdout);
    assert!(
        !run.stdout.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );
    assert!(run.stdout.contains("CRITICAL"));
}

#[test]
fn nagios_check_contract() {
    let (dir, pki) = sample_dir();
    let d = dir.path().to_str().unwrap();
    let run = certvigil(&["check", "--no-system-trust", d]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout.starts_with("CERTVIGIL CRITICAL - "),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1);
    let perf = run.stdout.split_once(" | ").expect("perfdata").1;
    assert!(perf.contains("days_left="), "{perf}");

    let ok = tempfile::tempdir().unwrap();
    write(ok.path(), "root.pem", &pki.root.cert.pem);
    write(ok.path(), "inter.pem", &pki.intermediate.cert.pem);
    write(
        ok.path(),
        "leaf.pem",
        pki.leaf(&Spec::leaf("ok.example").valid_days(-5, 40)).pem,
    );
    let o = ok.path().to_str().unwrap();
    assert_eq!(certvigil(&["check", "--no-system-trust", o]).code, 0);
    let warn = certvigil(&["check", "--no-system-trust", "-w", "60", "-c", "10", o]);
    assert_eq!(warn.code, 1, "{}", warn.stdout);
    assert!(warn.stdout.starts_with("CERTVIGIL WARNING"));
    assert_eq!(
        certvigil(&["check", "--no-system-trust", "-w", "60", "-c", "50", o]).code,
        2
    );
    let unknown = certvigil(&["check", "/no/such/file.pem"]);
    assert_eq!(unknown.code, 3, "{}", unknown.stdout);
    assert!(unknown.stdout.starts_with("CERTVIGIL UNKNOWN"));
}

#[test]
fn inspect_shows_fields_extensions_and_chain_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Insp");
    let mut spec = Spec::leaf("inspect.example");
    spec.ip_names.push("10.1.2.3".parse().unwrap());
    let leaf = pki.leaf(&spec);
    let path = write(
        dir.path(),
        "full.pem",
        format!("{}{}", pki.fullchain(&leaf), leaf.key_pem()),
    );
    let run = certvigil(&["inspect", "--no-system-trust", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    for needle in [
        "2 certificate(s), 1 private key(s)",
        "Certificate 0 (leaf)",
        "Certificate 1 (intermediate CA)",
        "DNS:inspect.example, IP:10.1.2.3",
        "ECDSA P-256 (256 bits)",
        "Subject Alternative Name: DNS:inspect.example, 10.1.2.3",
        "Basic Constraints (critical): CA:TRUE",
        "Private key: present, matches",
        "Issued by:   Insp Intermediate CA (certificate 1 in this source): signature verified",
        "left)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(
        !out.contains("PRIVATE KEY"),
        "key material is never printed"
    );
}

#[test]
fn json_wire_format_has_the_documented_fields() {
    let (dir, _) = sample_dir();
    let run = certvigil(&[
        "scan",
        "-f",
        "json",
        "--no-system-trust",
        dir.path().to_str().unwrap(),
    ]);
    let report = run.json();
    let cert = &report["certificates"][0];
    for field in [
        "source",
        "source_kind",
        "index",
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "seconds_left",
        "fingerprint_sha256",
        "sans",
        "key_algorithm",
        "key_bits",
        "signature_algorithm",
        "is_ca",
        "self_signed",
        "trust_anchor",
        "issuer_link",
    ] {
        assert!(
            cert.get(field).is_some(),
            "certificate field {field} missing: {cert}"
        );
    }
    let finding = &report["findings"][0];
    for field in [
        "check",
        "severity",
        "source",
        "fingerprint_sha256",
        "message",
    ] {
        assert!(
            finding.get(field).is_some(),
            "finding field {field} missing: {finding}"
        );
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/json-format.md"
    ))
    .expect("docs/json-format.md documents the wire format");
    for field in cert
        .as_object()
        .unwrap()
        .keys()
        .chain(finding.as_object().unwrap().keys())
    {
        assert!(
            doc.contains(&format!("`{field}`")),
            "docs/json-format.md does not document `{field}`"
        );
    }
}
