//! `certvigil ca init` and `certvigil ca issue` through the real binary, and `certvigil scan` of
//! what they wrote.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::{Run, certvigil};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_then_issue_writes_the_bundle_and_scan_shows_the_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = tmp.path().join("etcd-1");
    let init = ok(certvigil(&[
        "ca",
        "init",
        "--dir",
        path(&ca),
        "--cn",
        "Example etcd CA",
        "--intermediate",
    ]));
    assert!(
        init.stdout.contains("CN=Example etcd CA Intermediate"),
        "{}",
        init.stdout
    );
    assert_eq!(mode(&ca.join("root.key")), 0o600);
    assert_eq!(mode(&ca.join("intermediate.key")), 0o600);

    let issue = ok(certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&ca),
        "--profile",
        "etcd-peer",
        "--name",
        "etcd-1.certvigil.test",
        "--name",
        "127.0.0.1",
        "--lifetime",
        "36h",
        "--out",
        path(&out),
    ]));
    assert!(
        issue
            .stdout
            .contains("issued CN=etcd-1.certvigil.test (etcd-peer)"),
        "{}",
        issue.stdout
    );
    for (file, want) in [
        ("cert.pem", 0o644),
        ("chain.pem", 0o644),
        ("fullchain.pem", 0o644),
        ("ca.pem", 0o644),
        ("privkey.pem", 0o600),
    ] {
        assert_eq!(mode(&out.join(file)), want, "{file}");
    }
    assert_eq!(
        fs::read_to_string(out.join("ca.pem")).unwrap(),
        fs::read_to_string(ca.join("root.pem")).unwrap()
    );

    // OpenSSL agrees with the chain and the purpose.
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(out.join("ca.pem"))
        .arg("-untrusted")
        .arg(out.join("chain.pem"))
        .arg(out.join("cert.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // scan sees the leaf, with the chain complete once the CA's root is trusted.
    let scan = ok(certvigil(&[
        "scan",
        path(&out.join("fullchain.pem")),
        "--ca-file",
        path(&out.join("ca.pem")),
        "--no-system-trust",
        "--format",
        "json",
        "--fail-on",
        "warning",
    ]));
    let json = scan.json();
    let certs = json["certificates"].as_array().unwrap();
    let leaf = certs
        .iter()
        .find(|c| c["subject"] == "CN=etcd-1.certvigil.test")
        .unwrap_or_else(|| panic!("no leaf in {}", scan.stdout));
    assert_eq!(leaf["issuer"], "CN=Example etcd CA Intermediate");
    assert_eq!(
        leaf["sans"],
        serde_json::json!(["DNS:etcd-1.certvigil.test", "IP:127.0.0.1"])
    );
    assert_eq!(
        leaf["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    let left = leaf["seconds_left"].as_i64().unwrap();
    assert!((36 * 3600 - 120..=36 * 3600).contains(&left), "{left}");
    let findings = json["findings"].as_array().unwrap();
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn ca_errors_exit_2_and_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    ok(certvigil(&["ca", "init", "--dir", path(&ca)]));

    let again = certvigil(&["ca", "init", "--dir", path(&ca)]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );

    let out = tmp.path().join("out");
    let no_cn = certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&ca),
        "--profile",
        "etcd-client",
        "--out",
        path(&out),
    ]);
    assert_eq!(no_cn.code, 2);
    assert!(
        no_cn.stderr.contains("needs a common name"),
        "{}",
        no_cn.stderr
    );
    assert!(!out.exists(), "nothing is written for a refused request");

    let missing = certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&tmp.path().join("nowhere")),
        "--profile",
        "tls-server",
        "--name",
        "a.test",
        "--out",
        path(&out),
    ]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("nowhere/ca.json: missing"),
        "{}",
        missing.stderr
    );

    fs::write(ca.join("root.key"), "not a key").unwrap();
    let broken = certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&ca),
        "--profile",
        "tls-server",
        "--name",
        "a.test",
        "--out",
        path(&out),
    ]);
    assert_eq!(broken.code, 2);
    assert!(
        broken.stderr.contains("root.key: not a PEM private key"),
        "{}",
        broken.stderr
    );

    let profile = certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&ca),
        "--profile",
        "etcd",
        "--out",
        path(&out),
    ]);
    assert_eq!(profile.code, 2);
    assert!(
        profile.stderr.contains("known: etcd-server"),
        "{}",
        profile.stderr
    );
}

#[test]
fn ca_sm2_from_the_command_line_verifies_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = tmp.path().join("out");
    ok(certvigil(&[
        "ca",
        "init",
        "--dir",
        path(&ca),
        "--key-type",
        "sm2",
    ]));
    ok(certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&ca),
        "--profile",
        "grpc-client",
        "--cn",
        "svc-a",
        "--key-type",
        "sm2",
        "--out",
        path(&out),
    ]));
    let verify = Command::new("openssl")
        .args(["verify", "-vfyopt", "distid:1234567812345678", "-CAfile"])
        .arg(out.join("ca.pem"))
        .arg(out.join("cert.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // Reissue for the same key: --reuse-key keeps the public key.
    let again = tmp.path().join("again");
    ok(certvigil(&[
        "ca",
        "issue",
        "--dir",
        path(&ca),
        "--profile",
        "grpc-client",
        "--cn",
        "svc-a",
        "--reuse-key",
        path(&out.join("privkey.pem")),
        "--out",
        path(&again),
    ]));
    assert_eq!(
        fs::read(out.join("privkey.pem")).unwrap(),
        fs::read(again.join("privkey.pem")).unwrap()
    );
}
