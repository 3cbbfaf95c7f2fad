//! `certvigil scan` on files and directories, end to end through the real binary.

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use certvigil_testutil::{Pki, Spec};
use support::*;

fn scan_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["scan", "--format", "json", "--no-system-trust"];
    all.extend_from_slice(args);
    let run = certvigil(&all);
    assert!(
        run.code == 0 || run.code == 1,
        "exit {}: {}",
        run.code,
        run.stderr
    );
    (run.code, run.json())
}

#[test]
fn certbot_live_layout_is_reported_by_its_live_names_and_keys_pair() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("LE");
    let leaf = pki.leaf(&Spec::leaf("shop.example"));
    let other = pki.leaf(&Spec::leaf("other.example"));
    let archive = dir.path().join("archive/shop");
    write(&archive, "cert1.pem", &leaf.pem);
    write(&archive, "chain1.pem", &pki.intermediate.cert.pem);
    write(&archive, "fullchain1.pem", pki.fullchain(&leaf));
    // The renewal wrote a key that does not match: the outage certvigil exists to catch.
    write(&archive, "privkey1.pem", other.key_pem());
    let live = dir.path().join("live/shop");
    std::fs::create_dir_all(&live).unwrap();
    for (link, target) in [
        ("cert.pem", "cert1.pem"),
        ("chain.pem", "chain1.pem"),
        ("fullchain.pem", "fullchain1.pem"),
        ("privkey.pem", "privkey1.pem"),
    ] {
        symlink(format!("../../archive/shop/{target}"), live.join(link)).unwrap();
    }
    write(dir.path(), "root.pem", &pki.root.cert.pem);

    let (code, report) = scan_json(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "key mismatch is critical");
    let sources: Vec<&str> = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.iter().all(|s| !s.contains("/archive/")),
        "{sources:?}"
    );
    assert!(
        sources
            .iter()
            .any(|s| s.ends_with("live/shop/fullchain.pem"))
    );
    assert!(
        has_finding(&report, "key_mismatch", "live/shop/cert.pem"),
        "{:#?}",
        findings(&report)
    );
    assert!(has_finding(
        &report,
        "key_mismatch",
        "live/shop/fullchain.pem"
    ));
    let msg = message_of(&report, "key_mismatch", "live/shop/fullchain.pem");
    assert!(msg.contains("privkey.pem"), "{msg}");
    // The leaf file alone chains through chain.pem to the root: no chain finding.
    assert!(
        !has_finding(&report, "chain_incomplete", "live/shop/cert.pem"),
        "{:#?}",
        findings(&report)
    );
    let leaf_entry = certs_from(&report, "live/shop/cert.pem")[0];
    assert_eq!(leaf_entry["issuer_link"], "verified");
}

#[test]
fn kubernetes_secret_volume_uses_stable_names() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Kube");
    let leaf = pki.leaf(&Spec::leaf("api.cluster.local"));
    let vol = dir.path().join("secret");
    let stamp = vol.join("..2026_11_25_10_00_00.000000001");
    write(&stamp, "tls.crt", pki.fullchain(&leaf));
    write(&stamp, "tls.key", leaf.key_pem());
    write(&stamp, "ca.crt", &pki.root.cert.pem);
    symlink("..2026_11_25_10_00_00.000000001", vol.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        symlink(format!("..data/{name}"), vol.join(name)).unwrap();
    }
    let (code, report) = scan_json(&[vol.to_str().unwrap()]);
    assert_eq!(code, 0, "{:#?}", findings(&report));
    let sources: Vec<&str> = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert!(sources.iter().all(|s| !s.contains("..")), "{sources:?}");
    assert_eq!(certs_from(&report, "secret/tls.crt").len(), 2);
    assert!(findings(&report).is_empty(), "{:#?}", findings(&report));
}

#[test]
fn hostile_and_broken_files_each_get_a_named_finding_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("Bad");
    let good = pki.leaf(&Spec::leaf("good.example"));
    write(d, "good.pem", pki.fullchain(&good));
    write(d, "root.pem", &pki.root.cert.pem);
    let truncated = &good.pem[..good.pem.len() / 2];
    write(d, "truncated.pem", truncated);
    write(
        d,
        "junk.pem",
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    write(d, "empty.crt", b"");
    let mut trailing = good.der.clone();
    trailing.extend_from_slice(b"garbage");
    write(d, "trailing.der", trailing);
    let mut corrupt = good.pem.clone().into_bytes();
    corrupt[80] = b'!';
    write(d, "corrupt.pem", corrupt);
    let sparse = std::fs::File::create(d.join("huge.pem")).unwrap();
    sparse.set_len(3 * 1024 * 1024 * 1024).unwrap();
    std::fs::create_dir(d.join("loop")).unwrap();
    symlink("..", d.join("loop/back")).unwrap();
    symlink("nowhere.pem", d.join("dangling.pem")).unwrap();

    let started = std::time::Instant::now();
    let (_, report) = scan_json(&[d.to_str().unwrap()]);
    assert!(
        started.elapsed().as_secs() < 20,
        "a sparse 3 GiB file must not be read"
    );
    let expect = [
        ("parse_error", "truncated.pem", "truncated"),
        ("parse_error", "junk.pem", "binary data of unknown format"),
        ("parse_error", "empty.crt", "empty"),
        ("parse_error", "trailing.der", "trailing"),
        ("parse_error", "corrupt.pem", "block 1"),
        ("read_error", "huge.pem", "over the"),
        ("read_error", "back", "symlink loop"),
        ("read_error", "dangling.pem", "no such file"),
    ];
    for (check, source, reason) in expect {
        let msg = message_of(&report, check, source);
        assert!(msg.contains(reason), "{source}: {msg}");
    }
    assert_eq!(
        certs_from(&report, "/good.pem").len(),
        2,
        "the good file is still reported"
    );
}

#[test]
fn unreadable_file_is_a_read_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Perm");
    let path = write(
        dir.path(),
        "secret.pem",
        pki.leaf(&Spec::leaf("p.example")).pem,
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    // root reads anything, so drop to nobody when the tests run as root.
    let is_root = unsafe_free_uid() == 0;
    let run = if is_root {
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_certvigil"),
            ])
            .args([
                "scan",
                "--format",
                "json",
                "--no-system-trust",
                dir.path().to_str().unwrap(),
            ])
            .output()
            .expect("setpriv (util-linux) is needed to test permissions as root");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    } else {
        certvigil(&[
            "scan",
            "--format",
            "json",
            "--no-system-trust",
            dir.path().to_str().unwrap(),
        ])
    };
    assert_eq!(run.code, 0, "{}", run.stderr);
    let msg = message_of(&run.json(), "read_error", "secret.pem");
    assert!(msg.contains("permission denied"), "{msg}");
}

fn unsafe_free_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

#[test]
fn pkcs12_both_encodings_with_password_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("P12");
    let leaf = pki.leaf(&Spec::leaf("p12.example"));
    let cert = write(d, "in/leaf.pem", pki.fullchain(&leaf));
    let key = write(d, "in/leaf.key", leaf.key_pem());
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let modern = d.join("out/modern.p12");
    let legacy = d.join("out/legacy.pfx");
    std::fs::create_dir_all(d.join("out")).unwrap();
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        c,
        "-inkey",
        k,
        "-out",
        modern.to_str().unwrap(),
        "-passout",
        "pass:s3cret",
    ]);
    openssl(&[
        "pkcs12",
        "-export",
        "-legacy",
        "-in",
        c,
        "-inkey",
        k,
        "-out",
        legacy.to_str().unwrap(),
        "-passout",
        "pass:s3cret",
    ]);
    let pw = write(d, "pw.txt", "s3cret\n");
    let out = d.join("out");

    let run = certvigil(&[
        "scan",
        "-f",
        "json",
        "--no-system-trust",
        "--password-file",
        pw.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let report = run.json();
    for name in ["modern.p12", "legacy.pfx"] {
        let certs = certs_from(&report, name);
        assert_eq!(certs.len(), 2, "{name}: {:#?}", findings(&report));
        assert!(!has_finding(&report, "key_mismatch", name));
        assert!(!has_finding(&report, "parse_error", name));
    }
    let run = certvigil_with(
        &[
            "scan",
            "-f",
            "json",
            "--no-system-trust",
            "--password-env",
            "P12_PW",
            modern.to_str().unwrap(),
        ],
        None,
        &[("P12_PW", "s3cret")],
    );
    assert_eq!(certs_from(&run.json(), "modern.p12").len(), 2);

    let run = certvigil_with(
        &[
            "scan",
            "-f",
            "json",
            "--no-system-trust",
            "--password-env",
            "P12_PW",
            out.to_str().unwrap(),
        ],
        None,
        &[("P12_PW", "wrong")],
    );
    let msg = message_of(&run.json(), "parse_error", "legacy.pfx");
    assert!(msg.contains("wrong password"), "{msg}");
}

#[test]
fn pkcs7_pem_and_der_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("P7");
    let leaf = pki.leaf(&Spec::leaf("p7.example"));
    let chain = write(
        d,
        "src/chain.pem",
        format!("{}{}", pki.fullchain(&leaf), pki.root.cert.pem),
    );
    let chain = chain.to_str().unwrap();
    std::fs::create_dir_all(d.join("p7")).unwrap();
    let pem = d.join("p7/bundle.p7b");
    let der = d.join("p7/bundle-der.p7c");
    openssl(&[
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        chain,
        "-out",
        pem.to_str().unwrap(),
    ]);
    openssl(&[
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        chain,
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let (_, report) = scan_json(&[d.join("p7").to_str().unwrap()]);
    for name in ["bundle.p7b", "bundle-der.p7c"] {
        let certs = certs_from(&report, name);
        assert_eq!(certs.len(), 3, "{name}: {:#?}", findings(&report));
        assert_eq!(certs[0]["subject"], "CN=p7.example");
        assert_eq!(certs[0]["issuer_link"], "verified");
    }
    assert!(findings(&report).is_empty(), "{:#?}", findings(&report));
}

#[test]
fn crls_are_listed_and_stale_ones_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("CRL");
    write(
        dir.path(),
        "fresh.crl",
        pki.intermediate.crl(-1, 6, &[&[1, 2, 3]]),
    );
    write(dir.path(), "stale.crl", pki.intermediate.crl(-10, -2, &[]));
    let (_, report) = scan_json(&[dir.path().to_str().unwrap()]);
    let crls = report["crls"].as_array().unwrap();
    assert_eq!(crls.len(), 2);
    let fresh = crls
        .iter()
        .find(|c| c["source"].as_str().unwrap().ends_with("fresh.crl"))
        .unwrap();
    assert_eq!(fresh["revoked"], 1);
    assert_eq!(fresh["issuer"], "CN=CRL Intermediate CA");
    assert!(fresh["next_update"].as_str().unwrap().ends_with('Z'));
    assert!(has_finding(&report, "crl_expired", "stale.crl"));
    assert!(!has_finding(&report, "crl_expired", "fresh.crl"));
}

#[test]
fn weak_keys_and_sha1_signatures_from_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let p = |n: &str| format!("{d}/{n}");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-subj",
        "/CN=Old CA",
        "-days",
        "30",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        &p("weak.key"),
        "-out",
        &p("weak.csr"),
        "-subj",
        "/CN=weak.example",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("weak.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-sha1",
        "-days",
        "30",
        "-out",
        &p("weak.crt"),
    ]);
    std::fs::remove_file(p("weak.csr")).unwrap();
    let (_, report) = scan_json(&[d]);
    assert!(
        has_finding(&report, "weak_key", "weak.crt"),
        "{:#?}",
        findings(&report)
    );
    assert!(has_finding(&report, "weak_signature", "weak.crt"));
    let cert = certs_from(&report, "weak.crt")[0];
    assert_eq!(cert["key_bits"], 1024);
    assert_eq!(cert["signature_algorithm"], "sha1WithRSAEncryption");
    assert_eq!(
        cert["issuer_link"], "verified",
        "SHA-1 links are still checked"
    );
    assert!(!has_finding(&report, "key_mismatch", "weak.crt"));
}

#[test]
fn sm2_certificates_parse_and_verify_with_the_default_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let p = |n: &str| format!("{d}/{n}");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:SM2",
        "-out",
        &p("root.key"),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("root.key"),
        "-sm3",
        "-sigopt",
        "distid:1234567812345678",
        "-subj",
        "/CN=SM2 Root",
        "-days",
        "365",
        "-out",
        &p("root.pem"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:SM2",
        "-out",
        &p("leaf.key"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &p("leaf.key"),
        "-sm3",
        "-sigopt",
        "distid:1234567812345678",
        "-subj",
        "/CN=sm2.example",
        "-out",
        &p("leaf.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("root.pem"),
        "-CAkey",
        &p("root.key"),
        "-CAcreateserial",
        "-sm3",
        "-sigopt",
        "distid:1234567812345678",
        "-vfyopt",
        "distid:1234567812345678",
        "-days",
        "90",
        "-out",
        &p("leaf.crt"),
    ]);
    std::fs::remove_file(p("leaf.csr")).unwrap();
    let (_, report) = scan_json(&[d]);
    let leaf = certs_from(&report, "leaf.crt")[0];
    assert_eq!(leaf["key_algorithm"], "SM2");
    assert_eq!(leaf["signature_algorithm"], "SM2-with-SM3");
    assert_eq!(leaf["issuer_link"], "verified", "{:#?}", findings(&report));
    assert!(!has_finding(&report, "key_mismatch", "leaf.crt"));

    // Flip a bit inside the signature: the link must fail.
    let pem = std::fs::read_to_string(p("leaf.crt")).unwrap();
    let der = openssl_der(&p("leaf.crt"));
    let mut bad = der.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x01;
    let tampered = tempfile::tempdir().unwrap();
    write(
        tampered.path(),
        "root.pem",
        std::fs::read(p("root.pem")).unwrap(),
    );
    write(tampered.path(), "leaf.der", bad);
    let (code, report) = scan_json(&[tampered.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        has_finding(&report, "signature_invalid", "leaf.der"),
        "{:#?}\n{pem}",
        findings(&report)
    );
}

fn openssl_der(pem_path: &str) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-in", pem_path, "-outform", "DER"])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    out.stdout
}

#[test]
fn kubeconfig_and_kubectl_objects_from_file_and_stdin() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("K8s");
    let mut admin_spec = Spec::leaf("kubernetes-admin");
    admin_spec.dns_names.clear();
    admin_spec.client_auth = true;
    admin_spec.server_auth = false;
    let admin = pki.leaf(&admin_spec);
    let wrong_key = pki.leaf(&Spec::leaf("x")).key_pem();
    let file_user = pki.leaf(&Spec::leaf("file-user"));
    write(dir.path(), "pki/user.crt", &file_user.pem);
    write(dir.path(), "pki/user.key", &wrong_key);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n- name: file\n  user:\n    client-certificate: pki/user.crt\n    client-key: pki/user.key\n",
        b64(&pki.root.cert.pem),
        b64(&pki.fullchain(&admin)),
        b64(&admin.key_pem()),
    );
    let path = write(dir.path(), "admin.conf", kubeconfig);
    let (code, report) = scan_json(&["--role", "tls-client", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{:#?}", findings(&report));
    let admin_certs: Vec<_> = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source_detail"] == "users[admin].client-certificate-data")
        .collect();
    assert_eq!(admin_certs.len(), 2);
    assert_eq!(admin_certs[0]["source_kind"], "kubeconfig");
    assert!(
        certs_from(&report, "admin.conf")
            .iter()
            .any(|c| c["subject"] == "CN=K8s Root CA")
    );
    // The referenced files are read and paired; their key is wrong.
    assert!(
        has_finding(&report, "key_mismatch", "pki/user.crt"),
        "{:#?}",
        findings(&report)
    );
    assert!(
        has_finding(&report, "key_usage", "pki/user.crt"),
        "file-user lacks clientAuth"
    );

    let web = pki.leaf(&Spec::leaf("web.prod.svc").valid_days(-80, 3));
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": [
            {"kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"namespace": "prod", "name": "web-tls"},
             "data": {"tls.crt": b64(&pki.fullchain(&web)), "tls.key": b64(&web.key_pem()), "ca.crt": b64(&pki.root.cert.pem)}},
            {"kind": "ConfigMap", "metadata": {"namespace": "kube-system", "name": "kube-root-ca.crt"},
             "data": {"ca.crt": pki.root.cert.pem}},
            {"kind": "Secret", "type": "Opaque", "metadata": {"namespace": "prod", "name": "db"},
             "data": {"password": b64("hunter2")}}
        ]
    });
    let run = certvigil_with(
        &["scan", "-f", "json", "--no-system-trust", "-"],
        Some(list.to_string().as_bytes()),
        &[],
    );
    let report = run.json();
    assert_eq!(run.code, 1, "{}\n{:#?}", run.stderr, findings(&report));
    let web_certs = certs_from(&report, "secret/prod/web-tls");
    assert_eq!(web_certs.len(), 3, "tls.crt (2) + ca.crt (1)");
    assert!(has_finding(&report, "expiring", "secret/prod/web-tls"));
    assert!(!has_finding(&report, "key_mismatch", "secret/prod/web-tls"));
    assert_eq!(
        certs_from(&report, "configmap/kube-system/kube-root-ca.crt").len(),
        1
    );
    assert!(!report["certificates"].to_string().contains("hunter2"));

    // The same objects as multi-document YAML in a file.
    let yaml = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(serde_yaml_doc)
        .collect::<Vec<_>>()
        .join("---\n");
    let path = write(dir.path(), "objects.yaml", yaml);
    let (_, report) = scan_json(&[path.to_str().unwrap()]);
    assert_eq!(
        certs_from(&report, "secret/prod/web-tls").len(),
        3,
        "{:#?}",
        findings(&report)
    );
}

/// JSON is valid YAML; one document per object keeps the test free of a YAML writer.
fn serde_yaml_doc(value: &serde_json::Value) -> String {
    format!("{value}\n")
}

#[test]
fn include_and_exclude_globs() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Glob");
    write(dir.path(), "a/keep.crt", pki.leaf(&Spec::leaf("keep")).pem);
    write(dir.path(), "b/skip.crt", pki.leaf(&Spec::leaf("skip")).pem);
    write(
        dir.path(),
        "a/other.pem",
        pki.leaf(&Spec::leaf("other")).pem,
    );
    let d = dir.path().to_str().unwrap();
    let (_, report) = scan_json(&["--include", "*.crt", "--exclude", "**/b/**", d]);
    let subjects: Vec<&str> = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["CN=keep"]);
}

#[test]
fn exit_codes_follow_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Exit");
    write(dir.path(), "root.pem", &pki.root.cert.pem);
    write(dir.path(), "inter.pem", &pki.intermediate.cert.pem);
    write(
        dir.path(),
        "warn.pem",
        pki.leaf(&Spec::leaf("w").valid_days(-70, 20)).pem,
    );
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        certvigil(&["scan", "--no-system-trust", d]).code,
        0,
        "warnings do not fail by default"
    );
    assert_eq!(
        certvigil(&["scan", "--no-system-trust", "--fail-on", "warning", d]).code,
        1
    );
    write(
        dir.path(),
        "dead.pem",
        pki.leaf(&Spec::leaf("d").valid_days(-90, -1)).pem,
    );
    assert_eq!(certvigil(&["scan", "--no-system-trust", d]).code, 1);
    assert_eq!(
        certvigil(&["scan", "--no-system-trust", "--fail-on", "never", d]).code,
        0
    );
    let missing = certvigil(&["scan", "/definitely/not/here.pem"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("/definitely/not/here.pem"),
        "{}",
        missing.stderr
    );
    assert_eq!(certvigil(&["scan", "--warn-fraction", "2", d]).code, 2);
}

#[test]
fn bare_scan_reads_the_trust_store_and_finishes() {
    let run = certvigil(&["scan", "--format", "json"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let report = run.json();
    let anchors = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["trust_anchor"] == true)
        .count();
    assert!(
        anchors > 50,
        "the Debian trust store has over a hundred roots, got {anchors}"
    );
    assert_eq!(report["format_version"], 1);
}

#[test]
fn what_if_time_travel_with_at() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("At");
    write(dir.path(), "root.pem", &pki.root.cert.pem);
    write(dir.path(), "inter.pem", &pki.intermediate.cert.pem);
    write(
        dir.path(),
        "leaf.pem",
        pki.leaf(&Spec::leaf("later").valid_days(-10, 80)).pem,
    );
    let d = dir.path().to_str().unwrap();
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(100))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, report) = scan_json(&["--at", &later, d]);
    assert_eq!(code, 1);
    assert!(has_finding(&report, "expired", "leaf.pem"));
}

#[test]
fn verified_signatures_are_cached_and_bad_ones_are_never() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let pki = Pki::new("Cache");
    write(dir.path(), "root.pem", &pki.root.cert.pem);
    write(dir.path(), "inter.pem", &pki.intermediate.cert.pem);
    for i in 0..5 {
        write(
            dir.path(),
            &format!("leaf{i}.pem"),
            pki.leaf(&Spec::leaf(&format!("c{i}.example"))).pem,
        );
    }
    let mut bad = pki.leaf(&Spec::leaf("bad.example")).der;
    let at = bad.len() - 5;
    bad[at] ^= 0x20;
    write(dir.path(), "bad.der", bad);
    let env = [
        ("CERTVIGIL_CACHE_DIR", cache.path().to_str().unwrap()),
        ("CERTVIGIL_LOG", "certvigil_source=debug"),
    ];
    let args = [
        "scan",
        "-f",
        "json",
        "--no-system-trust",
        dir.path().to_str().unwrap(),
    ];
    let first = certvigil_with(&args, None, &env);
    assert!(first.stderr.contains("cached=0"), "{}", first.stderr);
    assert!(cache.path().join("verified-links").is_file());
    let second = certvigil_with(&args, None, &env);
    // Five leaves and the intermediate come from the cache; the bad leaf is checked again.
    assert!(second.stderr.contains("cached=6"), "{}", second.stderr);
    for run in [&first, &second] {
        let report = run.json();
        assert!(has_finding(&report, "signature_invalid", "bad.der"));
        assert_eq!(
            report["findings"].as_array().unwrap().len(),
            1,
            "{:#?}",
            findings(&report)
        );
        assert_eq!(
            certs_from(&report, "leaf3.pem")[0]["issuer_link"],
            "verified"
        );
    }
    let no_cache = certvigil_with(
        &[
            "scan",
            "--no-cache",
            "-f",
            "json",
            "--no-system-trust",
            dir.path().to_str().unwrap(),
        ],
        None,
        &env,
    );
    assert!(no_cache.stderr.contains("cached=0"), "{}", no_cache.stderr);
}

#[test]
fn oversized_stdin_is_reported_not_truncated() {
    let pki = Pki::new("Stdin");
    let mut input = pki.leaf(&Spec::leaf("big.example")).pem.into_bytes();
    input.extend(std::iter::repeat_n(b'\n', 4096));
    let run = certvigil_with(
        &[
            "scan",
            "-f",
            "json",
            "--no-system-trust",
            "--max-file-size",
            "1024",
            "-",
        ],
        Some(&input),
        &[],
    );
    let report = run.json();
    let msg = message_of(&report, "read_error", "stdin");
    assert!(msg.contains("byte limit"), "{msg}");
    assert!(report["certificates"].as_array().unwrap().is_empty());
}

/// `scan` saves what it decoded; the next `scan` takes unchanged files from there (a `stat`
/// each), reads changed ones, and reports exactly what a scan from scratch reports. The saved
/// form holds no key material, and a damaged one only costs speed.
#[test]
fn decoded_files_are_saved_for_the_next_scan() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let pki = Pki::new("Saved files");
    let leaf = pki.leaf(&Spec::leaf("saved.example"));
    write(dir.path(), "leaf.pem", &leaf.pem);
    write(dir.path(), "leaf.key", leaf.key_pem());
    write(
        dir.path(),
        "other.pem",
        &pki.leaf(&Spec::leaf("other.example")).pem,
    );
    write(dir.path(), "broken.pem", &leaf.pem[..leaf.pem.len() / 2]);
    // Files changed within the last two seconds are never remembered.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let env = [
        ("CERTVIGIL_CACHE_DIR", cache.path().to_str().unwrap()),
        ("CERTVIGIL_LOG", "certvigil=info,certvigil_source=debug"),
    ];
    let d = dir.path().to_str().unwrap();
    let args = ["scan", "-f", "json", "--no-system-trust", d];
    let summary = |run: &Run| {
        let report = run.json();
        let mut certs: Vec<String> = report["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c["source"], c["fingerprint_sha256"]))
            .collect();
        certs.sort();
        let mut found = findings(&report);
        found.sort();
        (certs, found)
    };

    let first = certvigil_with(&args, None, &env);
    assert!(first.stderr.contains("from_memory=0"), "{}", first.stderr);
    let saved = only(scan_caches(cache.path()));
    let meta = std::fs::metadata(&saved).expect("the decoded files are saved");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let bytes = std::fs::read(&saved).unwrap();
    let key_der = pem_body(&leaf.key_pem());
    assert!(
        key_der
            .windows(16)
            .all(|w| !bytes.windows(16).any(|b| b == w)),
        "the saved cache holds no part of the private key"
    );

    let second = certvigil_with(&args, None, &env);
    assert!(second.stderr.contains("from_memory=4"), "{}", second.stderr);
    assert_eq!(summary(&second), summary(&first));
    assert!(has_finding(&second.json(), "parse_error", "broken.pem"));

    // A one-off scan of one file keeps a cache of its own: it neither loads the directory's
    // nor replaces it with one file.
    let other = format!("{d}/other.pem");
    let one_off = certvigil_with(
        &["scan", "-f", "json", "--no-system-trust", &other],
        None,
        &env,
    );
    assert!(
        one_off.stderr.contains("from_memory=0"),
        "{}",
        one_off.stderr
    );
    assert_eq!(scan_caches(cache.path()).len(), 2);
    let again = certvigil_with(&args, None, &env);
    assert!(again.stderr.contains("from_memory=4"), "{}", again.stderr);

    let renewed = pki.leaf(&Spec::leaf("saved.example"));
    let tmp = write(dir.path(), ".leaf.pem.new", &renewed.pem);
    std::fs::rename(&tmp, dir.path().join("leaf.pem")).unwrap();
    let third = certvigil_with(&args, None, &env);
    assert!(third.stderr.contains("from_memory=3"), "{}", third.stderr);
    let no_cache = certvigil_with(
        &["scan", "--no-cache", "-f", "json", "--no-system-trust", d],
        None,
        &env,
    );
    assert!(
        !no_cache.stderr.contains("file cache"),
        "{}",
        no_cache.stderr
    );
    assert_eq!(summary(&third), summary(&no_cache));
    assert!(!certs_from(&third.json(), "leaf.pem").is_empty());
    assert_eq!(
        certs_from(&third.json(), "leaf.pem")[0]["fingerprint_sha256"],
        certvigil_core::Certificate::from_der(&renewed.der)
            .unwrap()
            .fingerprint_hex()
    );
    // The renewed key no longer matches: the key file was remembered, the pairing is redone.
    assert!(has_finding(&third.json(), "key_mismatch", "leaf.pem"));

    std::fs::write(&saved, b"CVFILES\nnot a cache").unwrap();
    let damaged = certvigil_with(&args, None, &env);
    assert!(
        damaged.stderr.contains("file cache not used"),
        "{}",
        damaged.stderr
    );
    assert_eq!(summary(&damaged), summary(&no_cache));
}

fn scan_caches(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("scan-files-")
        })
        .collect();
    found.sort();
    found
}

fn only<T: std::fmt::Debug>(mut items: Vec<T>) -> T {
    assert_eq!(items.len(), 1, "{items:?}");
    items.pop().unwrap()
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}
