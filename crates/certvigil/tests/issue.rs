//! `certvigil issue` end to end through the real binary: a real Pebble on loopback for ACME,
//! an internal CA on disk, and the failure a busy challenge port causes.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use certvigil_testutil::pebble::{Pebble, PebbleOptions};
use support::*;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A configuration with one ACME issuer (HTTP-01 on Pebble's validation port) plus `extra`.
fn acme_config(pebble: &Pebble, state: &Path, extra: &str) -> PathBuf {
    let root = write(state, "pebble-root.pem", pebble.issuing_root_pem());
    let text = format!(
        r#"
[renewal]
state_dir = "{state}"

[[issuer]]
name = "pebble"
type = "acme"
directory = "{directory}"
ca_roots = ["{listener_ca}"]
trusted_roots = ["{root}"]
challenge = "http-01"
listen = "127.0.0.1:{http_port}"
{extra}
"#,
        state = state.display(),
        directory = pebble.directory,
        listener_ca = pebble.listener_ca.display(),
        root = root.display(),
        http_port = pebble.http_port,
    );
    write(state, "certvigil.toml", text)
}

fn only_generation(state: &Path, name: &str) -> PathBuf {
    let dir = state.join("staging").join(name);
    let generations: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
    generations.into_iter().next().unwrap()
}

#[test]
fn issue_stages_a_complete_generation_that_scan_accepts() {
    let pebble = Pebble::start(PebbleOptions::default());
    let state = pebble.state_dir("state");
    let config = acme_config(
        &pebble,
        &state,
        r#"
[[certificate]]
name = "web"
issuer = "pebble"
names = ["web.certvigil.test", "www.certvigil.test"]
key_type = "ecdsa-p384"
"#,
    );
    let run = certvigil(&["issue", "-c", path(&config), "web"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with("web: issued serial "),
        "{}",
        run.stdout
    );

    let generation = only_generation(&state, "web");
    for file in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
        assert!(generation.join(file).is_file(), "{file} missing");
    }
    let mode = fs::metadata(generation.join("privkey.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        path(&generation.join("cert.pem")),
    ]);
    assert!(
        text.contains("DNS:www.certvigil.test") && text.contains("384"),
        "{text}"
    );

    // The staged files pair up: scan sees the key matching the certificate.
    let scan = certvigil(&[
        "scan",
        "--format",
        "json",
        "--no-system-trust",
        path(&generation),
    ]);
    let report = scan.json();
    let certs = report["certificates"].as_array().unwrap();
    assert!(
        certs
            .iter()
            .any(|c| c["sans"].to_string().contains("www.certvigil.test")),
        "{report:#}"
    );
    assert!(
        !scan.stdout.contains("key_mismatch"),
        "staged key and certificate must match:\n{}",
        scan.stdout
    );
    assert!(
        !run.stderr.contains("PRIVATE KEY"),
        "a key leaked to the log"
    );
}

#[test]
fn twenty_certificates_issue_concurrently_from_one_account() {
    let pebble = Pebble::start(PebbleOptions::default());
    let state = pebble.state_dir("state");
    let certificates: String = (0..20)
        .map(|i| {
            format!(
                "[[certificate]]\nname = \"c{i}\"\nissuer = \"pebble\"\nnames = [\"c{i}.certvigil.test\"]\n"
            )
        })
        .collect();
    let config = acme_config(&pebble, &state, &certificates);
    let started = Instant::now();
    let run = certvigil(&["issue", "-c", path(&config), "--all"]);
    eprintln!("20 concurrent issuances: {:?}", started.elapsed());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.lines().count(), 20, "{}", run.stdout);
    for i in 0..20 {
        only_generation(&state, &format!("c{i}"));
    }
    let accounts: Vec<_> = fs::read_dir(state.join("accounts")).unwrap().collect();
    assert_eq!(accounts.len(), 1, "one account for all of them");
}

#[test]
fn a_busy_challenge_port_is_named_and_nothing_is_staged() {
    let pebble = Pebble::start(PebbleOptions::default());
    let state = pebble.state_dir("state");
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", pebble.http_port)).unwrap();
    let config = acme_config(
        &pebble,
        &state,
        "[[certificate]]\nname = \"web\"\nissuer = \"pebble\"\nnames = [\"web.certvigil.test\"]\n",
    );
    let run = certvigil(&["issue", "-c", path(&config), "web"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let expected = format!("cannot listen on 127.0.0.1:{}", pebble.http_port);
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(!state.join("staging").join("web").exists());
}

#[test]
fn unknown_names_and_bad_configs_are_operational_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "c.toml",
        "[[issuer]]\nname = \"x\"\ntype = \"acme\"\ndirectory = \"http://plain/dir\"\n",
    );
    let run = certvigil(&["issue", "-c", path(&config), "--all"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("issuer[0].directory"), "{}", run.stderr);

    let config = write(
        dir.path(),
        "d.toml",
        "[[issuer]]\nname = \"x\"\ntype = \"acme\"\ndirectory = \"https://ca/dir\"\n[[certificate]]\nname = \"a\"\nissuer = \"x\"\nnames = [\"a.test\"]\n",
    );
    let run = certvigil(&["issue", "-c", path(&config), "b"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("no [[certificate]] named \"b\" (configured: a)"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_internal_ca_issues_an_etcd_peer_certificate_through_the_same_command() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    certvigil_ca::Ca::init(&ca_dir, &certvigil_ca::InitOptions::default()).unwrap();
    let config = write(
        dir.path(),
        "c.toml",
        format!(
            r#"
[renewal]
state_dir = "{state}"
[[issuer]]
name = "internal"
type = "internal-ca"
dir = "{ca}"
[[certificate]]
name = "etcd-1"
issuer = "internal"
profile = "etcd-peer"
names = ["127.0.0.1", "etcd-1.internal"]
lifetime = "2d"
"#,
            state = dir.path().join("state").display(),
            ca = ca_dir.display()
        ),
    );
    let run = certvigil(&["issue", "-c", path(&config), "etcd-1"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let generation = only_generation(&dir.path().join("state"), "etcd-1");
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        path(&generation.join("cert.pem")),
    ]);
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    let verify = openssl(&[
        "verify",
        "-CAfile",
        path(&ca_dir.join("root.pem")),
        path(&generation.join("cert.pem")),
    ]);
    assert!(verify.contains(": OK"), "{verify}");
}

const EAB_HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

#[test]
fn external_account_binding_is_required_and_works_and_no_secret_reaches_the_log() {
    let pebble = Pebble::start(PebbleOptions {
        eab_keys: vec![("kid-1".into(), EAB_HMAC.into())],
        ..PebbleOptions::default()
    });
    let state = pebble.state_dir("state");
    let certificate =
        "[[certificate]]\nname = \"web\"\nissuer = \"pebble\"\nnames = [\"eab.certvigil.test\"]\n";

    let without = acme_config(&pebble, &state, certificate);
    let run = certvigil(&["issue", "-c", path(&without), "web"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("externalAccountRequired"),
        "{}",
        run.stderr
    );

    let hmac_file = write(&state, "eab.key", EAB_HMAC);
    let with = acme_config(
        &pebble,
        &state,
        &format!(
            "eab_kid = \"kid-1\"\neab_hmac_file = \"{}\"\n{certificate}",
            hmac_file.display()
        ),
    );
    let run = certvigil_with(
        &["issue", "-c", path(&with), "web"],
        None,
        &[("CERTVIGIL_LOG", "trace")],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let account: serde_json::Value = serde_json::from_slice(
        &fs::read(
            fs::read_dir(state.join("accounts"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    let account_key = account["key_pkcs8"].as_str().expect("stored account key");
    let generation = only_generation(&state, "web");
    let leaf_key = fs::read_to_string(generation.join("privkey.pem")).unwrap();
    let leaf_key_body = leaf_key.lines().nth(1).unwrap();
    for secret in [account_key, EAB_HMAC, leaf_key_body] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "a secret reached the output"
        );
    }
    assert!(
        run.stderr.len() > 1000,
        "trace logging was on: {}",
        run.stderr.len()
    );
}

#[test]
fn a_chain_that_does_not_lead_to_the_trusted_root_is_never_staged() {
    let pebble = Pebble::start(PebbleOptions::default());
    let state = pebble.state_dir("state");
    let config = acme_config(
        &pebble,
        &state,
        "[[certificate]]\nname = \"web\"\nissuer = \"pebble\"\nnames = [\"web.certvigil.test\"]\n",
    );
    // Swap the root the issued chain must lead to for an unrelated one.
    let other = certvigil_testutil::Pki::new("not pebble");
    write(&state, "pebble-root.pem", &other.root.cert.pem);
    let run = certvigil(&["issue", "-c", path(&config), "web"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("issued certificate check") && run.stderr.contains("trusted roots"),
        "{}",
        run.stderr
    );
    assert!(!state.join("staging").join("web").exists());
}

#[test]
fn plan_follows_a_short_lived_certificate_and_notices_changed_requests() {
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(120),
        ..PebbleOptions::default()
    });
    let state = pebble.state_dir("state");
    let certificates = "[[certificate]]\nname = \"web\"\nissuer = \"pebble\"\nnames = [\"plan.certvigil.test\"]\n[[certificate]]\nname = \"later\"\nissuer = \"pebble\"\nnames = [\"later.certvigil.test\"]\n";
    let config = acme_config(&pebble, &state, certificates);

    let run = certvigil(&["plan", "-c", path(&config)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("web: due now (never issued)"),
        "{}",
        run.stdout
    );

    let issued = certvigil(&["issue", "-c", path(&config), "web"]);
    assert_eq!(issued.code, 0, "{}", issued.stderr);
    let run = certvigil(&["plan", "-c", path(&config), "web"]);
    assert!(run.stdout.starts_with("web: renew at "), "{}", run.stdout);
    let cert = only_generation(&state, "web").join("cert.pem");
    let not_after = openssl(&["x509", "-noout", "-enddate", "-in", path(&cert)]);
    assert!(not_after.starts_with("notAfter="), "{not_after}");

    // Asking for another name makes the staged certificate insufficient at once.
    let changed = acme_config(
        &pebble,
        &state,
        &certificates.replace("plan.certvigil.test", "other.certvigil.test"),
    );
    let run = certvigil(&["plan", "-c", path(&changed), "web"]);
    assert!(
        run.stdout
            .contains("web: due now (the names or key type changed)"),
        "{}",
        run.stdout
    );
    let run = certvigil(&["plan", "-c", path(&config), "nope"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn webroot_mode_writes_the_token_where_a_real_web_server_serves_it_and_removes_it() {
    let pebble = Pebble::start(PebbleOptions::default());
    let state = pebble.state_dir("state");
    let webroot = pebble.state_dir("www");
    // The web server that owns the port: Python's, serving the document root as is.
    let mut server = certvigil_testutil::servers::Server::start(
        "python-http",
        std::process::Command::new("python3").args([
            "-m",
            "http.server",
            &pebble.http_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
            webroot.to_str().unwrap(),
        ]),
        &state,
        "TERM",
    );
    server = server.wait_ready(&[pebble.http_port]);
    let root = write(&state, "pebble-root.pem", pebble.issuing_root_pem());
    let config = write(
        &state,
        "webroot.toml",
        format!(
            r#"
[renewal]
state_dir = "{state}"
[[issuer]]
name = "pebble"
type = "acme"
directory = "{directory}"
ca_roots = ["{listener_ca}"]
trusted_roots = ["{root}"]
challenge = "http-01"
webroot = "{webroot}"
[[certificate]]
name = "web"
issuer = "pebble"
names = ["webroot.certvigil.test"]
"#,
            state = state.display(),
            directory = pebble.directory,
            listener_ca = pebble.listener_ca.display(),
            root = root.display(),
            webroot = webroot.display(),
        ),
    );
    let run = certvigil(&["issue", "-c", path(&config), "web"]);
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        server.logs()
    );
    assert!(
        server.logs().contains("/.well-known/acme-challenge/"),
        "{}",
        server.logs()
    );
    let tokens = webroot.join(".well-known/acme-challenge");
    assert_eq!(
        fs::read_dir(&tokens).unwrap().count(),
        0,
        "tokens are removed"
    );
    only_generation(&state, "web");
}

#[test]
fn reuse_key_keeps_the_key_and_a_new_key_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    certvigil_ca::Ca::init(&ca_dir, &certvigil_ca::InitOptions::default()).unwrap();
    let config = |reuse: bool| {
        write(
            dir.path(),
            "c.toml",
            format!(
                "[renewal]\nstate_dir = \"{}\"\n[[issuer]]\nname = \"ca\"\ntype = \"internal-ca\"\ndir = \"{}\"\n[[certificate]]\nname = \"svc\"\nissuer = \"ca\"\nprofile = \"grpc-server\"\nnames = [\"svc.internal\"]\nreuse_key = {reuse}\n",
                dir.path().join("state").display(),
                ca_dir.display()
            ),
        )
    };
    let keys = |dir: &Path| -> Vec<String> {
        let mut generations: Vec<PathBuf> = fs::read_dir(dir.join("state/staging/svc"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        generations.sort();
        generations
            .iter()
            .map(|g| fs::read_to_string(g.join("privkey.pem")).unwrap())
            .collect()
    };
    for reuse in [false, false, true] {
        let cfg = config(reuse);
        let run = certvigil(&["issue", "-c", path(&cfg), "svc"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let keys = keys(dir.path());
    assert_eq!(keys.len(), 3);
    assert_ne!(keys[0], keys[1], "a new key per issuance by default");
    assert_eq!(keys[1], keys[2], "reuse_key keeps the previous key");
}
