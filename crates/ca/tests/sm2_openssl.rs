//! SM2 chains issued by certvigil, checked by OpenSSL 3 (the reference every SM2 user has).

use std::path::Path;
use std::process::Command;

use certvigil_ca::{Ca, InitOptions, IssueRequest, KeyChoice, Profile, write_bundle};
use certvigil_issue::{Identifier, KeyType};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed by scripts/install-deps");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn sm2_bundle(intermediate: bool, dir: &Path) -> Ca {
    let ca = Ca::init(
        &dir.join("ca"),
        &InitOptions {
            key_type: KeyType::Sm2,
            intermediate,
            common_name: "certvigil SM2 test CA".into(),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let mut req = IssueRequest::new(Profile::TlsServer);
    req.identifiers = vec![
        Identifier::parse("sm2.certvigil.test"),
        Identifier::parse("127.0.0.1"),
    ];
    req.key = KeyChoice::Generate(KeyType::Sm2);
    let issued = ca.issue(&req).unwrap();
    write_bundle(&dir.join("out"), &issued, ca.root_pem()).unwrap();
    ca
}

fn verify(args: &[&str]) {
    let mut all = vec!["verify", "-vfyopt", "distid:1234567812345678"];
    all.extend_from_slice(args);
    let (ok, text) = openssl(&all);
    assert!(ok && text.contains(": OK"), "openssl {all:?}:\n{text}");
}

fn check_leaf_and_key(out: &Path) {
    let p = |name: &str| out.join(name).to_str().unwrap().to_owned();
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", &p("cert.pem")]);
    assert!(ok, "{text}");
    assert!(text.contains("Signature Algorithm: SM2-with-SM3"), "{text}");
    assert!(text.contains("ASN1 OID: SM2"), "{text}");
    let (ok, text) = openssl(&["pkey", "-in", &p("privkey.pem"), "-noout"]);
    assert!(ok, "openssl pkey cannot read the SM2 key: {text}");
    let (ok, text) = openssl(&["pkey", "-in", &p("privkey.pem"), "-noout", "-text"]);
    assert!(ok && text.contains("SM2"), "{text}");
}

#[test]
fn sm2_root_to_leaf_passes_openssl_verify() {
    let tmp = tempfile::tempdir().unwrap();
    sm2_bundle(false, tmp.path());
    let out = tmp.path().join("out");
    let p = |name: &str| out.join(name).to_str().unwrap().to_owned();
    verify(&["-CAfile", &p("ca.pem"), &p("cert.pem")]);
    check_leaf_and_key(&out);
}

/// OpenSSL 3.0's `verify` applies `-vfyopt distid:` to the target certificate only and checks
/// the intermediate's signature without an ID, so `-CAfile root -untrusted chain leaf` fails at
/// depth 1 even for a chain made entirely by `openssl x509 -sm3 -sigopt distid:...` (measured
/// with 3.0.19). Every link is therefore verified by OpenSSL as a target: the intermediate
/// against the root, the leaf against the intermediate (`-partial_chain`).
#[test]
fn sm2_root_intermediate_leaf_passes_openssl_verify_link_by_link() {
    let tmp = tempfile::tempdir().unwrap();
    sm2_bundle(true, tmp.path());
    let out = tmp.path().join("out");
    let p = |name: &str| out.join(name).to_str().unwrap().to_owned();
    verify(&["-CAfile", &p("ca.pem"), &p("chain.pem")]);
    verify(&["-partial_chain", "-CAfile", &p("chain.pem"), &p("cert.pem")]);
    // And not against a different SM2 root: the check above is not vacuous.
    let other = tempfile::tempdir().unwrap();
    sm2_bundle(false, other.path());
    let foreign = other.path().join("out/ca.pem");
    let (ok, text) = openssl(&[
        "verify",
        "-vfyopt",
        "distid:1234567812345678",
        "-CAfile",
        foreign.to_str().unwrap(),
        &p("chain.pem"),
    ]);
    assert!(!ok, "{text}");
    check_leaf_and_key(&out);
}
