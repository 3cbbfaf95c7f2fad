//! The RFC 2136 provider against a real BIND 9 (`named`, Debian package `bind9`) on a free
//! loopback port, with a fresh TSIG key per test. Nothing is mocked.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use certvigil_dns01::{Dns01Error, ErrorKind, Provider, Rfc2136, Rfc2136Config, Step, TxtRecord};
use certvigil_testutil::bind::{Bind, BindSpec};
use certvigil_testutil::servers::{free_port, server_dir};

const ZONE: &str = "certvigil.test";

fn names() -> Vec<(&'static str, Ipv4Addr)> {
    vec![
        ("certvigil.test", Ipv4Addr::LOCALHOST),
        ("www.certvigil.test", Ipv4Addr::LOCALHOST),
        ("api.certvigil.test", Ipv4Addr::LOCALHOST),
    ]
}

fn config(bind: &Bind) -> Rfc2136Config {
    Rfc2136Config {
        server: bind.addr(),
        zone: None,
        tsig_key_name: bind.key_name.clone(),
        tsig_algorithm: bind.algorithm.clone(),
        tsig_secret_file: Some(bind.secret_file.clone()),
        tsig_secret_env: None,
        ttl: 60,
        timeout: Duration::from_secs(2),
        propagation_timeout: Duration::from_secs(5),
        propagation_servers: vec![bind.addr()],
    }
}

fn provider(config: &Rfc2136Config) -> Provider {
    Provider::Rfc2136(Rfc2136::from_config(config).expect("provider from config"))
}

/// A secret file holding `secret` (base64), inside the server's directory.
fn secret_file(bind: &Bind, secret: &str) -> PathBuf {
    let path = bind.path().join("other.secret");
    std::fs::write(&path, secret).unwrap();
    path
}

fn value(tag: &str) -> String {
    // 43 characters like a real key authorization digest.
    format!("{tag:_<43}")
}

#[tokio::test]
async fn two_values_for_one_name_then_cleanup_removes_exactly_one() {
    let bind = Bind::start(ZONE, &names());
    let provider = provider(&config(&bind));
    let apex = TxtRecord::new("certvigil.test", value("apex"));
    let wildcard = TxtRecord::new("*.certvigil.test", value("wildcard"));
    assert_eq!(apex.fqdn(), wildcard.fqdn());

    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    provider.wait_propagated(&apex).await.unwrap();
    provider.wait_propagated(&wildcard).await.unwrap();
    assert_eq!(
        bind.txt("_acme-challenge.certvigil.test"),
        vec![value("apex"), value("wildcard")],
        "dig sees both values"
    );

    provider.cleanup(&apex).await.unwrap();
    assert_eq!(
        bind.txt("_acme-challenge.certvigil.test"),
        vec![value("wildcard")]
    );
    // The remaining value still counts as propagated; the removed one no longer does.
    provider.wait_propagated(&wildcard).await.unwrap();

    provider.cleanup(&wildcard).await.unwrap();
    assert!(bind.txt("_acme-challenge.certvigil.test").is_empty());
    // The A records the ACME validation needs are untouched.
    assert_eq!(bind.dig("certvigil.test", "A").trim(), "127.0.0.1");
    // Cleaning up a value that is not there is not an error (RFC 2136 ignores it).
    provider.cleanup(&wildcard).await.unwrap();
}

#[tokio::test]
async fn present_is_idempotent_and_other_names_are_untouched() {
    let bind = Bind::start(ZONE, &names());
    let provider = provider(&config(&bind));
    let www = TxtRecord::new("www.certvigil.test", value("www"));
    let api = TxtRecord::new("api.certvigil.test.", value("api"));
    provider.present(&www).await.unwrap();
    provider.present(&www).await.unwrap();
    provider.present(&api).await.unwrap();
    assert_eq!(
        bind.txt("_acme-challenge.www.certvigil.test"),
        vec![value("www")]
    );
    assert_eq!(
        bind.txt("_acme-challenge.api.certvigil.test"),
        vec![value("api")]
    );
    // RIG.md: an A record keeps answering next to the new _acme-challenge child.
    assert_eq!(bind.dig("www.certvigil.test", "A").trim(), "127.0.0.1");
    provider.cleanup(&www).await.unwrap();
    assert!(bind.txt("_acme-challenge.www.certvigil.test").is_empty());
    assert_eq!(
        bind.txt("_acme-challenge.api.certvigil.test"),
        vec![value("api")]
    );
}

#[tokio::test]
async fn configured_zone_and_sha512_key() {
    let names = names();
    let mut spec = BindSpec::new(ZONE, &names);
    spec.algorithm = "hmac-sha512";
    let bind = Bind::start_with(&spec);
    let mut config = config(&bind);
    config.zone = Some("certvigil.test.".into());
    let provider = provider(&config);
    let record = TxtRecord::new("www.certvigil.test", value("sha512"));
    provider.present(&record).await.unwrap();
    provider.wait_propagated(&record).await.unwrap();
    provider.cleanup(&record).await.unwrap();
    assert!(bind.txt("_acme-challenge.www.certvigil.test").is_empty());
}

#[tokio::test]
async fn wrong_tsig_secret_is_a_clear_error_and_writes_nothing() {
    let bind = Bind::start(ZONE, &names());
    let mut config = config(&bind);
    // A valid key of the right length, just not the server's.
    config.tsig_secret_file = Some(secret_file(
        &bind,
        "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJzLWtleQ==",
    ));
    let provider = provider(&config);
    let record = TxtRecord::new("www.certvigil.test", value("wrongkey"));
    let err = provider.present(&record).await.unwrap_err();
    eprintln!("{err}");
    let text = err.to_string();
    assert_eq!(err.step, Step::Present);
    assert!(
        matches!(&err.kind, ErrorKind::NotAuthorized { code, tsig_error, .. }
            if code == "NOTAUTH" && tsig_error.as_deref() == Some("BADSIG")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    for part in [
        "present of _acme-challenge.www.certvigil.test.",
        &bind.addr().to_string(),
        "NOTAUTH",
        "BADSIG",
        "TSIG",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(bind.txt("_acme-challenge.www.certvigil.test").is_empty());

    // An unknown key name: BADKEY.
    let mut config = self::config(&bind);
    config.tsig_key_name = "nobody-key".into();
    let err = self::provider(&config).present(&record).await.unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(&err.kind, ErrorKind::NotAuthorized { tsig_error, .. }
            if tsig_error.as_deref() == Some("BADKEY")),
        "{err}"
    );
    assert!(bind.txt("_acme-challenge.www.certvigil.test").is_empty());
}

#[tokio::test]
async fn key_not_allowed_for_the_name_is_refused() {
    let names = names();
    let mut spec = BindSpec::new(ZONE, &names);
    // The key may only touch the challenge record of www.
    spec.update_policy = Some("grant certvigil-key name _acme-challenge.www.certvigil.test. TXT;");
    let bind = Bind::start_with(&spec);
    let provider = provider(&config(&bind));
    provider
        .present(&TxtRecord::new("www.certvigil.test", value("allowed")))
        .await
        .unwrap();
    let err = provider
        .present(&TxtRecord::new("api.certvigil.test", value("denied")))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(&err.kind, ErrorKind::NotAuthorized { code, tsig_error: None, .. }
            if code == "REFUSED"),
        "{err:?}"
    );
    assert!(err.to_string().contains("update-policy"), "{err}");
    assert!(bind.txt("_acme-challenge.api.certvigil.test").is_empty());
}

#[tokio::test]
async fn servfail_zone_is_a_clear_error() {
    let names = names();
    let mut spec = BindSpec::new(ZONE, &names);
    spec.broken_zone = Some("broken.test");
    let bind = Bind::start_with(&spec);
    let record = TxtRecord::new("www.broken.test", value("servfail"));

    // With the zone configured, the update itself gets SERVFAIL.
    let mut config = config(&bind);
    config.zone = Some("broken.test".into());
    let err = provider(&config).present(&record).await.unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(&err.kind, ErrorKind::ServerFailure { code, .. } if code == "SERVFAIL"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("SERVFAIL") && text.contains(&bind.addr().to_string()),
        "{text}"
    );
    assert!(text.contains("_acme-challenge.www.broken.test."), "{text}");

    // Without it, the SOA lookup already gets SERVFAIL.
    config.zone = None;
    let err = provider(&config).cleanup(&record).await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.step, Step::Cleanup);
    assert!(
        matches!(&err.kind, ErrorKind::ServerFailure { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn name_outside_the_servers_zones_is_refused() {
    let bind = Bind::start(ZONE, &names());
    let config = config(&bind);
    let record = TxtRecord::new("www.elsewhere.test", value("elsewhere"));
    let err = provider(&config).present(&record).await.unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(&err.kind, ErrorKind::ZoneNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("REFUSED"), "{err}");

    // A configured zone that does not hold the name is a configuration error, caught before
    // anything is sent.
    let mut config = config;
    config.zone = Some("certvigil.test".into());
    let err = provider(&config).present(&record).await.unwrap_err();
    eprintln!("{err}");
    assert!(matches!(&err.kind, ErrorKind::Config(_)), "{err:?}");
}

#[tokio::test]
async fn unreachable_server_fails_within_the_timeout() {
    let port = free_port();
    let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let dir = server_dir();
    let secret = dir.path().join("tsig.secret");
    std::fs::write(&secret, "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJzLWtleQ==").unwrap();
    let config = Rfc2136Config {
        server: dead,
        zone: Some(ZONE.into()),
        tsig_key_name: "certvigil-key".into(),
        tsig_algorithm: "hmac-sha256".into(),
        tsig_secret_file: Some(secret),
        tsig_secret_env: None,
        ttl: 60,
        timeout: Duration::from_secs(1),
        propagation_timeout: Duration::from_secs(1),
        propagation_servers: vec![],
    };
    let provider = provider(&config);
    let record = TxtRecord::new("www.certvigil.test", value("dead"));
    let started = Instant::now();
    let err = provider.present(&record).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("after {took:?}: {err}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        matches!(&err.kind, ErrorKind::Timeout { server, .. } | ErrorKind::Network { server, .. }
            if *server == dead),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&dead.to_string()), "{err}");
}

#[tokio::test]
async fn propagation_timeout_names_the_servers_missing_the_value() {
    let bind = Bind::start(ZONE, &names());
    // A second server for the same zone that never receives the update: a lagging secondary.
    let lagging = Bind::start(ZONE, &names());
    let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut config = config(&bind);
    config.propagation_timeout = Duration::from_millis(1500);
    config.propagation_servers = vec![bind.addr(), lagging.addr(), dead];
    let provider = provider(&config);
    let record = TxtRecord::new("www.certvigil.test", value("lagging"));
    provider.present(&record).await.unwrap();

    let started = Instant::now();
    let err: Dns01Error = provider.wait_propagated(&record).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("after {took:?}: {err}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3000),
        "took {took:?}"
    );
    assert_eq!(err.step, Step::Propagation);
    let ErrorKind::NotPropagated { missing, .. } = &err.kind else {
        panic!("{err:?}");
    };
    let missing: Vec<SocketAddr> = missing.iter().map(|(s, _)| *s).collect();
    assert_eq!(missing, vec![lagging.addr(), dead], "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{} (answered NXDOMAIN)", lagging.addr())),
        "{text}"
    );
    assert!(text.contains(&dead.to_string()), "{text}");
    assert!(!text.contains(&format!("{} (", bind.addr())), "{text}");
    provider.cleanup(&record).await.unwrap();
}

#[tokio::test]
async fn default_propagation_servers_are_the_update_server_and_the_ns_hosts() {
    let bind = Bind::start(ZONE, &names());
    let mut config = config(&bind);
    config.propagation_servers = vec![];
    let Provider::Rfc2136(provider) = provider(&config) else {
        unreachable!()
    };
    let record = TxtRecord::new("www.certvigil.test", value("ns"));
    assert_eq!(provider.zone(&record).await.unwrap(), "certvigil.test.");
    // The harness's zone has `@ NS ns.certvigil.test.` with `ns A 127.0.0.1`.
    assert_eq!(
        provider.authoritative_servers(&record).await.unwrap(),
        vec![bind.addr(), "127.0.0.1:53".parse().unwrap()]
    );
}

#[tokio::test]
async fn present_and_propagated_latency() {
    let bind = Bind::start(ZONE, &names());
    let provider = provider(&config(&bind));
    let mut timings = Vec::new();
    for i in 0..20 {
        let record = TxtRecord::new("www.certvigil.test", value(&format!("lat{i}")));
        let started = Instant::now();
        provider.present(&record).await.unwrap();
        let presented = started.elapsed();
        provider.wait_propagated(&record).await.unwrap();
        let visible = started.elapsed();
        provider.cleanup(&record).await.unwrap();
        timings.push((presented, visible, started.elapsed()));
    }
    timings.sort_by_key(|t| t.1);
    let median = timings[timings.len() / 2];
    eprintln!(
        "median of 20 against local BIND: present {:?}, present+propagated {:?}, \
         +cleanup {:?}; slowest present+propagated {:?}",
        median.0,
        median.1,
        median.2,
        timings.last().unwrap().1
    );
    assert!(median.1 < Duration::from_millis(200), "{timings:?}");
}
