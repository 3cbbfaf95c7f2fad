//! Issuance against a real Pebble (Debian `pebble`) on loopback: every challenge type, a CA
//! that rejects half of all nonces, short-lived certificates the planner sees come due, and
//! the failure paths (untrusted directory, unreachable responder).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use certvigil_acme::{
    AcmeClient, AcmeSettings, ErrorClass, Http01Responder, OrderRequest, Outcome, Solver, Step,
    TlsAlpnResponder,
};
use certvigil_core::renewal::{self, Current, Plan, RenewalPolicy};
use certvigil_core::{DecodeOptions, decode};
use certvigil_dns01::{Provider, ProviderConfig, Rfc2136Config};
use certvigil_issue::{Identifier, KeyChoice, KeyType};
use certvigil_testutil::bind::Bind;
use certvigil_testutil::pebble::{Pebble, PebbleOptions};

fn settings(pebble: &Pebble) -> AcmeSettings {
    let mut settings = AcmeSettings::new(&pebble.directory);
    settings.ca_roots = vec![pebble.listener_ca.clone()];
    settings.issued_roots_der = decode(
        pebble.issuing_root_pem().as_bytes(),
        &DecodeOptions::default(),
    )
    .certs;
    assert_eq!(settings.issued_roots_der.len(), 1);
    settings
}

fn request(names: &[&str]) -> OrderRequest {
    OrderRequest {
        identifiers: names.iter().map(|n| Identifier::parse(n)).collect(),
        key: KeyChoice::Generate(KeyType::EcdsaP256),
        replaces: None,
    }
}

async fn http01(pebble: &Pebble) -> Solver {
    let addr: SocketAddr = ([127, 0, 0, 1], pebble.http_port).into();
    Solver::Http01(Arc::new(Http01Responder::bind(addr).await.unwrap()))
}

/// RFC 2136 updates to `bind` with its TSIG key, propagation checked on it.
fn rfc2136(bind: &Bind) -> Provider {
    Provider::from_config(&ProviderConfig::Rfc2136(Rfc2136Config {
        server: bind.addr(),
        zone: None,
        tsig_key_name: bind.key_name.clone(),
        tsig_algorithm: bind.algorithm.clone(),
        tsig_secret_file: Some(bind.secret_file.clone()),
        tsig_secret_env: None,
        ttl: 60,
        timeout: Duration::from_secs(5),
        propagation_timeout: Duration::from_secs(20),
        propagation_servers: vec![bind.addr()],
    }))
    .unwrap()
}

/// OpenSSL's own verdict, independent of our validation code.
fn openssl_verifies(pebble: &Pebble, outcome: &Outcome, dir: &Path) {
    let root = dir.join("root.pem");
    let leaf = dir.join("leaf.pem");
    let chain = dir.join("chain.pem");
    std::fs::write(&root, pebble.issuing_root_pem()).unwrap();
    std::fs::write(&leaf, &outcome.issued.leaf_pem).unwrap();
    std::fs::write(&chain, &outcome.issued.chain_pem).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_chain_that_verifies_and_the_account_is_reused() {
    let pebble = Pebble::start(PebbleOptions::default());
    let state = pebble.state_dir("state");
    let account_file = state.join("account.json");
    let solver = http01(&pebble).await;
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let started = Instant::now();
    let outcome = client
        .issue(
            &request(&["web.certvigil.test", "www.certvigil.test"]),
            &solver,
        )
        .await
        .unwrap();
    eprintln!("HTTP-01 issuance took {:?}", started.elapsed());
    assert!(outcome.leaf.dns_names().any(|n| n == "www.certvigil.test"));
    assert!(!outcome.issued.chain_pem.is_empty());
    openssl_verifies(&pebble, &outcome, &state);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&account_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let id = client.account_id().to_owned();
    drop(client);
    let again = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    assert_eq!(again.account_id(), id, "the stored account is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_chain_that_verifies() {
    let pebble = Pebble::start(PebbleOptions::default());
    let addr: SocketAddr = ([127, 0, 0, 1], pebble.tls_port).into();
    let solver = Solver::TlsAlpn01(Arc::new(TlsAlpnResponder::bind(addr).await.unwrap()));
    let account_file = pebble.state_dir("state").join("account.json");
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let mut req = request(&["alpn.certvigil.test"]);
    req.key = KeyChoice::Generate(KeyType::Rsa2048);
    let outcome = client.issue(&req, &solver).await.unwrap();
    assert!(outcome.leaf.dns_names().any(|n| n == "alpn.certvigil.test"));
    openssl_verifies(&pebble, &outcome, &pebble.state_dir("check"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_of_ten_issuances_succeed_when_half_of_all_nonces_are_rejected() {
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject_percent: 50,
        ..PebbleOptions::default()
    });
    let account_file = pebble.state_dir("state").join("account.json");
    let solver = http01(&pebble).await;
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    for i in 0..10 {
        let name = format!("nonce{i}.certvigil.test");
        let outcome = client
            .issue(&request(&[&name]), &solver)
            .await
            .unwrap_or_else(|e| panic!("issuance {i}: {e}"));
        assert!(outcome.leaf.dns_names().any(|n| n == name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_120_second_certificate_comes_due_under_the_default_policy() {
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(120),
        ..PebbleOptions::default()
    });
    let account_file = pebble.state_dir("state").join("account.json");
    let solver = http01(&pebble).await;
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let outcome = client
        .issue(&request(&["short.certvigil.test"]), &solver)
        .await
        .unwrap();
    let leaf = &outcome.leaf;
    assert!(leaf.lifetime_secs() <= 121, "{}", leaf.lifetime_secs());
    let current = Current {
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        matches_request: true,
        ari_renew_at: None,
    };
    let policy = RenewalPolicy::default();
    let now = unix_now();
    let Plan::NotYet { at } = renewal::plan("short", Some(&current), &policy, now) else {
        panic!("a certificate issued a moment ago is not due yet");
    };
    // Renewal starts with a third of the lifetime left (minus at most 10 % jitter).
    assert!(
        at >= leaf.not_after - 44 && at <= leaf.not_after - 40,
        "at {at}, leaf {leaf:?}"
    );
    while unix_now() < at {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let plan = renewal::plan("short", Some(&current), &policy, unix_now());
    assert!(
        matches!(plan, Plan::Due(renewal::DueReason::Window { .. })),
        "{plan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_bind_with_tsig_issues_a_wildcard_and_removes_the_records() {
    // Pebble's validation authority resolves through this BIND zone; updates are TSIG-signed.
    let bind = Bind::start(
        "certvigil.test",
        &[("dns.certvigil.test", [127, 0, 0, 1].into())],
    );
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(bind.addr().to_string()),
        ..PebbleOptions::default()
    });
    let provider = rfc2136(&bind);
    let account_file = pebble.state_dir("state").join("account.json");
    let solver = Solver::Dns01(Arc::new(provider));
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let started = Instant::now();
    let outcome = client
        .issue(
            &request(&["dns.certvigil.test", "*.dns.certvigil.test"]),
            &solver,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("DNS-01 issuance took {:?}", started.elapsed());
    assert!(
        outcome
            .leaf
            .dns_names()
            .any(|n| n == "*.dns.certvigil.test")
    );
    openssl_verifies(&pebble, &outcome, &pebble.state_dir("check"));
    assert!(
        bind.txt("_acme-challenge.dns.certvigil.test").is_empty(),
        "challenge records are removed after success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dns01_validation_still_removes_the_records() {
    let bind = Bind::start(
        "certvigil.test",
        &[("lost.certvigil.test", [127, 0, 0, 1].into())],
    );
    // Pebble asks pebble-challtestsrv, which never sees what we publish in BIND.
    let pebble = Pebble::start(PebbleOptions::default());
    let provider = rfc2136(&bind);
    let account_file = pebble.state_dir("state").join("account.json");
    let solver = Solver::Dns01(Arc::new(provider));
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let err = client
        .issue(&request(&["lost.certvigil.test"]), &solver)
        .await
        .expect_err("the CA cannot see the record");
    assert_eq!(err.step, Step::Validation, "{err}");
    assert_eq!(err.identifier.as_deref(), Some("lost.certvigil.test"));
    assert!(
        bind.txt("_acme-challenge.lost.certvigil.test").is_empty(),
        "the record is removed after a failure too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_offers_no_ari_so_renewal_windows_are_absent_and_replaces_is_dropped() {
    let pebble = Pebble::start(PebbleOptions::default());
    let account_file = pebble.state_dir("state").join("account.json");
    let solver = http01(&pebble).await;
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let first = client
        .issue(&request(&["ari.certvigil.test"]), &solver)
        .await
        .unwrap();
    let der = decode(first.issued.leaf_pem.as_bytes(), &DecodeOptions::default()).certs;
    assert_eq!(client.renewal_window(&der[0]).await.unwrap(), None);
    let mut again = request(&["ari.certvigil.test"]);
    again.replaces = Some(der[0].clone());
    client
        .issue(&again, &solver)
        .await
        .expect("ordered without `replaces`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_directory_is_refused_with_the_reason() {
    let pebble = Pebble::start(PebbleOptions::default());
    let mut settings = AcmeSettings::new(&pebble.directory);
    settings.retry.max_transient = 0;
    let account_file = pebble.state_dir("state").join("account.json");
    let err = AcmeClient::connect(settings, &account_file)
        .await
        .err()
        .expect("Pebble's listener CA is not trusted");
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(!account_file.exists(), "no account is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_names_the_identifier_and_the_cas_problem() {
    let pebble = Pebble::start(PebbleOptions::default());
    // The responder listens, but not where Pebble's validation authority connects.
    let wrong: SocketAddr = ([127, 0, 0, 1], 0).into();
    let responder = Arc::new(Http01Responder::bind(wrong).await.unwrap());
    let account_file = pebble.state_dir("state").join("account.json");
    let solver = Solver::Http01(responder);
    let client = AcmeClient::connect(settings(&pebble), &account_file)
        .await
        .unwrap();
    let err = client
        .issue(&request(&["unreachable.certvigil.test"]), &solver)
        .await
        .expect_err("validation cannot succeed");
    assert_eq!(err.step, Step::Validation, "{err}");
    assert_eq!(
        err.identifier.as_deref(),
        Some("unreachable.certvigil.test")
    );
    assert_eq!(err.class(), ErrorClass::Rejected);
    let text = err.to_string();
    assert!(
        text.contains("connection") || text.contains("refused"),
        "{text}"
    );
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
