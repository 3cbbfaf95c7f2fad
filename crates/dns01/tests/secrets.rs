//! The TSIG secret never reaches the logs. Its own test binary: the subscriber is global, so
//! tracing's per-callsite interest cache cannot be spoiled by tests running on other threads.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use certvigil_dns01::{Provider, Rfc2136, Rfc2136Config, TxtRecord};
use certvigil_testutil::bind::Bind;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn rfc2136(bind: &Bind, secret_file: std::path::PathBuf) -> Provider {
    let config = Rfc2136Config {
        server: bind.addr(),
        zone: None,
        tsig_key_name: bind.key_name.clone(),
        tsig_algorithm: bind.algorithm.clone(),
        tsig_secret_file: Some(secret_file),
        tsig_secret_env: None,
        ttl: 60,
        timeout: Duration::from_secs(2),
        propagation_timeout: Duration::from_secs(5),
        propagation_servers: vec![bind.addr()],
    };
    Provider::Rfc2136(Rfc2136::from_config(&config).unwrap())
}

/// Every log line of a whole present / propagation / cleanup cycle, at TRACE and including
/// hickory's own logs (which print the signed messages), is free of the TSIG secret; so is a
/// failed update with a wrong secret.
#[tokio::test]
async fn tsig_secret_never_reaches_the_logs() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let bind = Bind::start(
        "certvigil.test",
        &[("www.certvigil.test", Ipv4Addr::LOCALHOST)],
    );
    let provider = rfc2136(&bind, bind.secret_file.clone());
    let record = TxtRecord::new("www.certvigil.test", "logs-0123456789");
    provider.present(&record).await.unwrap();
    provider.wait_propagated(&record).await.unwrap();
    provider.cleanup(&record).await.unwrap();

    let wrong_secret = "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJzLWtleQ==";
    let wrong_file = bind.path().join("wrong.secret");
    std::fs::write(&wrong_file, wrong_secret).unwrap();
    rfc2136(&bind, wrong_file)
        .present(&record)
        .await
        .unwrap_err();

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("RFC 2136 update answered"), "{logs}");
    assert!(
        logs.contains("TSIG"),
        "hickory's message logs are in: {logs}"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(&bind.secret_b64)
        .unwrap();
    let as_debug = format!("{:?}", &key[..6]);
    let as_debug = as_debug.trim_matches(['[', ']']);
    let as_hex: String = key[..6].iter().map(|b| format!("{b:02x}")).collect();
    for leak in [bind.secret_b64.as_str(), wrong_secret, as_debug, &as_hex] {
        assert!(!logs.contains(leak), "{leak} found in the logs");
    }
}
