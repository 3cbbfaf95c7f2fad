//! The internal CA through its public API: profiles, lifetimes, files and modes, refusals, and
//! what `open` says about a damaged directory. Real keys and certificates, nothing mocked.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certvigil_ca::{Ca, CaError, InitOptions, IssueRequest, KeyChoice, Profile, write_bundle};
use certvigil_core::cert::{SanRef, key_usage};
use certvigil_core::{Certificate, DecodeOptions, decode};
use certvigil_issue::{Identifier, Issued, KeyType, SecretPem};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn leaf(issued: &Issued) -> Certificate {
    let der = decode(issued.leaf_pem.as_bytes(), &DecodeOptions::default()).certs;
    assert_eq!(der.len(), 1);
    Certificate::from_der(&der[0]).unwrap()
}

fn new_ca(dir: &Path, key_type: KeyType, intermediate: bool) -> Ca {
    Ca::init(
        dir,
        &InitOptions {
            key_type,
            intermediate,
            ..InitOptions::default()
        },
    )
    .unwrap()
}

fn request(profile: Profile, names: &[&str]) -> IssueRequest {
    let mut req = IssueRequest::new(profile);
    req.identifiers = names.iter().map(|n| Identifier::parse(n)).collect();
    req
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn each_profile_gets_its_ekus_key_usage_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::EcdsaP256, false);
    // (profile, serverAuth, clientAuth)
    let table = [
        (Profile::EtcdServer, true, true),
        (Profile::EtcdPeer, true, true),
        (Profile::EtcdClient, false, true),
        (Profile::GrpcServer, true, false),
        (Profile::GrpcClient, false, true),
        (Profile::TlsServer, true, false),
    ];
    for (profile, server, client) in table {
        let mut req = request(profile, &["etcd-1.certvigil.test", "127.0.0.1", "::1"]);
        req.common_name = Some("alice".into());
        let cert = leaf(&ca.issue(&req).unwrap());
        let eku = cert.profile.extended_key_usage.clone().unwrap();
        assert_eq!(
            (eku.server_auth, eku.client_auth, eku.any),
            (server, client, false),
            "{profile}"
        );
        assert!(eku.other.is_none(), "{profile}");
        assert_eq!(
            cert.profile.key_usage,
            Some(key_usage::DIGITAL_SIGNATURE),
            "{profile}"
        );
        assert!(!cert.profile.is_ca, "{profile}");
        assert_eq!(&*cert.subject, "CN=alice", "{profile}");
        let sans: Vec<String> = cert.sans.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            sans,
            ["DNS:etcd-1.certvigil.test", "IP:127.0.0.1", "IP:::1"],
            "{profile}"
        );
        assert_eq!(cert.serial.as_bytes().len(), 16, "{profile}");
        assert!(cert.authority_key_id.is_some() && cert.subject_key_id.is_some());
    }
}

#[test]
fn etcd_peer_ip_sans_and_client_cn_without_sans() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::EcdsaP256, true);
    let peer = leaf(
        &ca.issue(&request(Profile::EtcdPeer, &["10.0.0.5", "127.0.0.1"]))
            .unwrap(),
    );
    let ips: Vec<_> = peer
        .sans
        .iter()
        .filter_map(|s| match s {
            SanRef::Ip(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ips, ["10.0.0.5", "127.0.0.1"]);
    assert_eq!(
        &*peer.subject, "CN=10.0.0.5",
        "first identifier becomes the CN"
    );

    let mut req = IssueRequest::new(Profile::EtcdClient);
    req.common_name = Some("root".into());
    let client = leaf(&ca.issue(&req).unwrap());
    assert_eq!(&*client.subject, "CN=root");
    assert!(client.sans.is_empty());
    assert!(client.issuer.contains("Intermediate"), "{}", client.issuer);
}

#[test]
fn rsa_leaves_also_get_key_encipherment() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::EcdsaP384, false);
    let mut req = request(Profile::TlsServer, &["rsa.certvigil.test"]);
    req.key = KeyChoice::Generate(KeyType::Rsa2048);
    let cert = leaf(&ca.issue(&req).unwrap());
    assert_eq!(
        cert.profile.key_usage,
        Some(key_usage::DIGITAL_SIGNATURE | key_usage::KEY_ENCIPHERMENT)
    );
    req.key = KeyChoice::Generate(KeyType::Ed25519);
    assert_eq!(
        leaf(&ca.issue(&req).unwrap()).profile.key_usage,
        Some(key_usage::DIGITAL_SIGNATURE)
    );
}

#[test]
fn lifetime_is_honoured_and_not_before_is_backdated() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::EcdsaP256, false);
    let mut req = request(Profile::GrpcServer, &["api.certvigil.test"]);
    req.lifetime = Duration::from_secs(3 * 3600);
    let before = now();
    let cert = leaf(&ca.issue(&req).unwrap());
    let after = now();
    assert!(
        (before - 61..=after - 59).contains(&cert.not_before),
        "{}",
        cert.not_before
    );
    assert!((before + 3 * 3600..=after + 3 * 3600).contains(&cert.not_after));

    let default = leaf(
        &ca.issue(&request(Profile::GrpcServer, &["api.certvigil.test"]))
            .unwrap(),
    );
    assert_eq!(default.not_after - default.not_before, 7 * 86400 + 60);

    // The CA's own dates are explicit, not rcgen's 4096 default.
    let root = ca.issuing_cert();
    let ten_years = 10 * 365 * 86400;
    assert!(
        (root.not_after - before - ten_years).abs() < 120,
        "{}",
        root.not_after
    );
    assert_eq!(ca.not_after(), root.not_after);
}

#[test]
fn requests_that_cannot_be_right_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::EcdsaP256, false);
    let err = |req: &IssueRequest| ca.issue(req).unwrap_err().to_string();

    assert!(err(&request(Profile::EtcdServer, &[])).contains("needs at least one DNS name"));
    assert!(err(&request(Profile::EtcdClient, &[])).contains("needs a common name"));
    assert!(err(&request(Profile::TlsServer, &["bad name.test"])).contains("not a DNS name"));
    let mut req = request(Profile::TlsServer, &["a.test"]);
    req.lifetime = Duration::from_secs(11 * 365 * 86400);
    assert!(
        err(&req).contains("would outlive the issuing CA"),
        "{}",
        err(&req)
    );
    req.lifetime = Duration::ZERO;
    assert!(err(&req).contains("too short"));
    req.lifetime = Duration::from_secs(3600);
    req.key = KeyChoice::Reuse(SecretPem::new(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
    ));
    let text = err(&req);
    assert!(text.contains("the key to reuse"), "{text}");
    assert!(!text.contains("AAAA"), "{text}");
}

#[test]
fn a_reused_key_is_certified_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::EcdsaP256, false);
    for key_type in [KeyType::EcdsaP256, KeyType::Sm2] {
        let mut req = request(Profile::EtcdPeer, &["127.0.0.1"]);
        req.key = KeyChoice::Generate(key_type);
        let first = ca.issue(&req).unwrap();
        req.key = KeyChoice::Reuse(first.key.clone());
        let second = ca.issue(&req).unwrap();
        assert_eq!(second.key.expose(), first.key.expose());
        assert_eq!(leaf(&second).key_id, leaf(&first).key_id);
        assert_ne!(leaf(&second).serial, leaf(&first).serial);
    }
}

#[test]
fn init_writes_keys_0600_certificates_0644_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = new_ca(&dir, KeyType::EcdsaP256, true);
    for (file, want) in [
        ("root.key", 0o600),
        ("intermediate.key", 0o600),
        ("root.pem", 0o644),
        ("intermediate.pem", 0o644),
        ("ca.json", 0o644),
    ] {
        assert_eq!(mode(&dir.join(file)), want, "{file}");
    }
    let root_before = fs::read(dir.join("root.pem")).unwrap();

    let again = Ca::init(&dir, &InitOptions::default()).unwrap_err();
    assert!(matches!(again, CaError::AlreadyExists { .. }), "{again}");
    assert!(again.to_string().contains("refusing to overwrite"));
    assert_eq!(fs::read(dir.join("root.pem")).unwrap(), root_before);
    // Nothing left behind next to it either.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ca"]);

    // A directory with any other file in it is not taken over either; an empty one is.
    let busy = tmp.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("notes.txt"), "mine").unwrap();
    assert!(matches!(
        Ca::init(&busy, &InitOptions::default()),
        Err(CaError::AlreadyExists { .. })
    ));
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    Ca::init(&empty, &InitOptions::default()).unwrap();

    let out = tmp.path().join("out");
    let issued = ca.issue(&request(Profile::TlsServer, &["a.test"])).unwrap();
    write_bundle(&out, &issued, ca.root_pem()).unwrap();
    for (file, want) in [
        ("privkey.pem", 0o600),
        ("cert.pem", 0o644),
        ("chain.pem", 0o644),
        ("fullchain.pem", 0o644),
        ("ca.pem", 0o644),
    ] {
        assert_eq!(mode(&out.join(file)), want, "{file}");
    }
    assert_eq!(
        fs::read_to_string(out.join("ca.pem")).unwrap(),
        ca.root_pem()
    );
}

#[test]
fn open_names_the_file_and_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let other = tmp.path().join("other");
    new_ca(&dir, KeyType::EcdsaP256, false);
    new_ca(&other, KeyType::EcdsaP256, true);
    let opened = Ca::open(&dir).unwrap();
    assert_eq!(opened.key_type(), Some(KeyType::EcdsaP256));

    let open_err = |dir: &Path| Ca::open(dir).unwrap_err().to_string();

    // The key of another CA.
    fs::copy(dir.join("root.key"), tmp.path().join("root.key.good")).unwrap();
    fs::copy(other.join("root.key"), dir.join("root.key")).unwrap();
    let text = open_err(&dir);
    assert!(
        text.contains(&format!("{}", dir.join("root.key").display())),
        "{text}"
    );
    assert!(text.contains("does not match the certificate"), "{text}");
    fs::copy(tmp.path().join("root.key.good"), dir.join("root.key")).unwrap();

    // A key file that is not a key.
    fs::write(dir.join("root.key"), "garbage").unwrap();
    let text = open_err(&dir);
    assert!(text.contains("root.key: not a PEM private key"), "{text}");
    fs::copy(tmp.path().join("root.key.good"), dir.join("root.key")).unwrap();

    // A leaf where the root should be.
    let ca = Ca::open(&dir).unwrap();
    let issued = ca.issue(&request(Profile::TlsServer, &["a.test"])).unwrap();
    fs::copy(dir.join("root.pem"), tmp.path().join("root.pem.good")).unwrap();
    fs::write(dir.join("root.pem"), &issued.leaf_pem).unwrap();
    let text = open_err(&dir);
    assert!(text.contains("root.pem: not a CA certificate"), "{text}");
    fs::copy(tmp.path().join("root.pem.good"), dir.join("root.pem")).unwrap();

    // Missing files, each named.
    fs::remove_file(dir.join("root.key")).unwrap();
    let text = open_err(&dir);
    assert!(
        text.contains("root.key: missing (the root CA key)"),
        "{text}"
    );

    // An intermediate from another CA.
    fs::copy(
        other.join("intermediate.pem"),
        tmp.path().join("foreign.pem"),
    )
    .unwrap();
    let mixed = tmp.path().join("mixed");
    new_ca(&mixed, KeyType::EcdsaP256, true);
    fs::copy(
        other.join("intermediate.pem"),
        mixed.join("intermediate.pem"),
    )
    .unwrap();
    let text = open_err(&mixed);
    assert!(
        text.contains("intermediate.pem: not signed by the root"),
        "{text}"
    );

    // With an intermediate the root key may be offline; the CA still issues.
    fs::remove_file(other.join("root.key")).unwrap();
    let offline = Ca::open(&other).unwrap();
    offline
        .issue(&request(Profile::TlsServer, &["a.test"]))
        .unwrap();

    let text = open_err(&tmp.path().join("nowhere"));
    assert!(text.contains("ca.json: missing"), "{text}");
}

#[test]
fn a_half_written_ca_directory_is_not_accepted() {
    // What a crash in the middle of `init` could leave if files were written in place: the
    // root is there, the metadata (written last) is not.
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    new_ca(&good, KeyType::EcdsaP256, true);
    let half = tmp.path().join("half");
    fs::create_dir(&half).unwrap();
    for f in ["root.pem", "root.key", "intermediate.pem"] {
        fs::copy(good.join(f), half.join(f)).unwrap();
    }
    let text = Ca::open(&half).unwrap_err().to_string();
    assert!(text.contains("ca.json: missing"), "{text}");
    // With the metadata but without the issuing key it still refuses, naming the key.
    fs::copy(good.join("ca.json"), half.join("ca.json")).unwrap();
    let text = Ca::open(&half).unwrap_err().to_string();
    assert!(text.contains("intermediate.key: missing"), "{text}");
    // A truncated certificate is named too.
    fs::copy(good.join("intermediate.key"), half.join("intermediate.key")).unwrap();
    let pem = fs::read_to_string(good.join("intermediate.pem")).unwrap();
    fs::write(half.join("intermediate.pem"), &pem[..pem.len() / 2]).unwrap();
    let text = Ca::open(&half).unwrap_err().to_string();
    assert!(
        text.contains("intermediate.pem: holds no certificate"),
        "{text}"
    );
    fs::write(half.join("intermediate.pem"), &pem).unwrap();
    Ca::open(&half).unwrap();
}

#[test]
fn debug_and_errors_never_show_key_material() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = new_ca(&dir, KeyType::EcdsaP256, false);
    let sm2 = new_ca(&tmp.path().join("sm2"), KeyType::Sm2, false);
    let key_pem = fs::read_to_string(dir.join("root.key")).unwrap();
    let sm2_key_pem = fs::read_to_string(tmp.path().join("sm2/root.key")).unwrap();
    let issued = ca.issue(&request(Profile::TlsServer, &["a.test"])).unwrap();
    let mut req = request(Profile::TlsServer, &["a.test"]);
    req.key = KeyChoice::Reuse(issued.key.clone());
    let shown = format!("{ca:?} {ca:#?} {sm2:?} {issued:?} {req:?}");
    for secret in [&key_pem, &sm2_key_pem, &issued.key.expose().to_owned()] {
        let body: String = secret.lines().nth(1).unwrap().to_owned();
        assert!(!shown.contains(&body), "key material in Debug: {shown}");
    }
    assert!(shown.contains("redacted"), "{shown}");
    assert!(
        shown.contains("ecdsa-p256") && shown.contains("sm2"),
        "{shown}"
    );
}

#[test]
fn sm2_ca_issues_chains_that_certvigil_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = new_ca(&tmp.path().join("ca"), KeyType::Sm2, true);
    assert_eq!(ca.key_type(), Some(KeyType::Sm2));
    let mut req = request(Profile::EtcdServer, &["127.0.0.1", "sm2.certvigil.test"]);
    req.key = KeyChoice::Generate(KeyType::Sm2);
    let issued = ca.issue(&req).unwrap();
    // `issue` validated it already; validate again from the outside, against the root only.
    let cert = issued
        .validate(&req.identifiers, &[ca.root_der().to_vec()], now(), 0)
        .unwrap();
    assert_eq!(cert.profile.signature_algorithm.to_string(), "SM2-with-SM3");
    // And not against another CA's root.
    let other = new_ca(&tmp.path().join("other"), KeyType::Sm2, false);
    assert!(
        issued
            .validate(&req.identifiers, &[other.root_der().to_vec()], now(), 0)
            .is_err()
    );
}

/// Prints the cost of one issuance (`cargo test -p certvigil-ca --release -- --nocapture
/// issue_timing`); asserts only a generous bound so a slow CI machine does not fail it.
#[test]
fn issue_timing() {
    let tmp = tempfile::tempdir().unwrap();
    for key_type in [KeyType::EcdsaP256, KeyType::Sm2] {
        let ca = new_ca(&tmp.path().join(key_type.as_str()), key_type, true);
        let mut req = request(Profile::EtcdPeer, &["127.0.0.1"]);
        req.key = KeyChoice::Generate(key_type);
        ca.issue(&req).unwrap();
        let n = 20;
        let started = Instant::now();
        for _ in 0..n {
            ca.issue(&req).unwrap();
        }
        let each = started.elapsed() / n;
        println!("{key_type}: {each:?} per leaf (key generation, signing, validation)");
        assert!(each < Duration::from_secs(1), "{key_type}: {each:?}");
    }
}
