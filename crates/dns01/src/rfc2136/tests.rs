use std::time::Duration;

use super::*;
use crate::{Provider, ProviderConfig};

/// base64 of "certvigil-test-secret-0123456789" (32 bytes).
const SECRET_B64: &str = "Y2VydHZpZ2lsLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=";

fn config() -> Rfc2136Config {
    Rfc2136Config {
        server: "127.0.0.1:5353".parse().unwrap(),
        zone: None,
        tsig_key_name: "certvigil-key".into(),
        tsig_algorithm: "hmac-sha256".into(),
        tsig_secret_file: None,
        tsig_secret_env: Some("CERTVIGIL_TEST_TSIG".into()),
        ttl: 60,
        timeout: Duration::from_secs(10),
        propagation_timeout: Duration::from_secs(60),
        propagation_servers: vec![],
    }
}

fn env_with(secret: &'static str) -> impl Fn(&str) -> Option<String> {
    move |var| (var == "CERTVIGIL_TEST_TSIG").then(|| secret.to_owned())
}

#[test]
fn secret_from_env_bare_or_as_a_tsig_keygen_block() {
    let p = Rfc2136::from_config_with_env(&config(), env_with(SECRET_B64)).unwrap();
    assert_eq!(p.signer.key(), b"certvigil-test-secret-0123456789");

    let block = "key \"certvigil-key\" {\n\talgorithm hmac-sha256;\n\tsecret \
                 \"Y2VydHZpZ2lsLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=\";\n};\n";
    assert_eq!(
        decode_secret(block).unwrap().as_slice(),
        b"certvigil-test-secret-0123456789"
    );
    assert_eq!(
        decode_secret(&format!("  {SECRET_B64}\n"))
            .unwrap()
            .as_slice(),
        b"certvigil-test-secret-0123456789"
    );
}

#[test]
fn secret_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tsig.secret");
    std::fs::write(&path, format!("{SECRET_B64}\n")).unwrap();
    let mut c = config();
    c.tsig_secret_env = None;
    c.tsig_secret_file = Some(path.clone());
    let p = Rfc2136::from_config_with_env(&c, |_| None).unwrap();
    assert_eq!(p.signer.key(), b"certvigil-test-secret-0123456789");

    c.tsig_secret_file = Some(dir.path().join("missing"));
    let err = Rfc2136::from_config_with_env(&c, |_| None).unwrap_err();
    assert_eq!(err.step, Step::Config);
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn secret_source_must_be_exactly_one() {
    let mut c = config();
    c.tsig_secret_env = None;
    let err = Rfc2136::from_config_with_env(&c, |_| None).unwrap_err();
    assert!(err.to_string().contains("TSIG secret is missing"), "{err}");

    let mut c = config();
    c.tsig_secret_file = Some("/etc/certvigil/tsig.secret".into());
    let err = Rfc2136::from_config_with_env(&c, env_with(SECRET_B64)).unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");

    let err = Rfc2136::from_config_with_env(&config(), |_| None).unwrap_err();
    assert!(
        err.to_string()
            .contains("environment variable CERTVIGIL_TEST_TSIG is not set"),
        "{err}"
    );
}

#[test]
fn bad_secrets_are_refused_without_quoting_them() {
    // Not base64: the error must not echo any of it.
    let bad = "s3cr3t-with-invalid-chars!!";
    let err = Rfc2136::from_config_with_env(&config(), env_with(bad)).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("not valid base64"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    let err = Rfc2136::from_config_with_env(&config(), env_with("c2hvcnQ=")).unwrap_err();
    assert!(err.to_string().contains("only 5 bytes"), "{err}");
    let err = Rfc2136::from_config_with_env(&config(), env_with("  \n")).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn algorithms() {
    for (text, alg) in [
        ("hmac-sha256", TsigAlgorithm::HmacSha256),
        ("HMAC-SHA384.", TsigAlgorithm::HmacSha384),
        ("hmac-sha512", TsigAlgorithm::HmacSha512),
    ] {
        assert_eq!(parse_algorithm(text).unwrap(), alg);
    }
    for text in ["hmac-md5", "hmac-sha1", "hmac-sha224", ""] {
        let err = parse_algorithm(text).unwrap_err();
        assert!(
            err.to_string()
                .contains("hmac-sha256, hmac-sha384 or hmac-sha512")
        );
    }
}

#[test]
fn secret_never_appears_in_debug_or_display() {
    let p = Rfc2136::from_config_with_env(&config(), env_with(SECRET_B64)).unwrap();
    let provider = Provider::Rfc2136(p);
    let debug = format!("{provider:?} {provider:#?}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains("certvigil-key"), "{debug}");
    for leak in [
        SECRET_B64,
        "certvigil-test-secret",
        "99, 101, 114, 116", // the key bytes as a Debug'd Vec<u8>
        "6365727476",        // ... or as hex
    ] {
        assert!(!debug.contains(leak), "{leak} in {debug}");
    }
    // The configuration holds only where the secret is, never the secret.
    let c = config();
    assert!(!format!("{c:?}").contains(SECRET_B64));
}

#[test]
fn record_names_go_to_the_wire_as_punycode() {
    let name = record_name(&TxtRecord::new("*.bücher.example.test", "v")).unwrap();
    assert_eq!(
        name.to_ascii(),
        "_acme-challenge.xn--bcher-kva.example.test."
    );
    assert!(name.is_fqdn());
    for bad in ["", "*", " . "] {
        assert!(record_name(&TxtRecord::new(bad, "v")).is_err(), "{bad:?}");
    }
    assert!(txt_rdata("").is_err());
    assert!(txt_rdata(&"x".repeat(256)).is_err());
    assert!(txt_rdata(&"x".repeat(255)).is_ok());
}

#[test]
fn provider_config_from_toml_with_defaults() {
    let config: ProviderConfig = toml::from_str(
        r#"
        provider = "rfc2136"
        server = "192.0.2.53:53"
        tsig_key_name = "certvigil-key"
        tsig_secret_file = "/etc/certvigil/tsig.secret"
        "#,
    )
    .unwrap();
    let ProviderConfig::Rfc2136(c) = config else {
        panic!("{config:?}")
    };
    assert_eq!(c.server, "192.0.2.53:53".parse().unwrap());
    assert_eq!(c.zone, None);
    assert_eq!(c.tsig_algorithm, "hmac-sha256");
    assert_eq!(c.ttl, 60);
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.propagation_timeout, Duration::from_secs(60));
    assert!(c.propagation_servers.is_empty());

    let config: ProviderConfig = toml::from_str(
        r#"
        provider = "rfc2136"
        server = "[2001:db8::53]:5353"
        zone = "example.test"
        tsig_key_name = "k"
        tsig_algorithm = "hmac-sha512"
        tsig_secret_env = "TSIG_SECRET"
        ttl = 30
        timeout = "500ms"
        propagation_timeout = 120
        propagation_servers = ["192.0.2.1:53", "192.0.2.2:53"]
        "#,
    )
    .unwrap();
    let ProviderConfig::Rfc2136(c) = config else {
        panic!("{config:?}")
    };
    assert_eq!(c.timeout, Duration::from_millis(500));
    assert_eq!(c.propagation_timeout, Duration::from_secs(120));
    assert_eq!(c.propagation_servers.len(), 2);

    let config: ProviderConfig = toml::from_str(
        r#"
        provider = "exec"
        present = ["/usr/local/bin/dns-hook", "add"]
        cleanup = ["/usr/local/bin/dns-hook", "del"]
        timeout = "30s"
        "#,
    )
    .unwrap();
    let ProviderConfig::Exec(c) = config else {
        panic!("{config:?}")
    };
    assert_eq!(c.present, ["/usr/local/bin/dns-hook", "add"]);
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert!(c.propagation_servers.is_empty());
}

#[test]
fn provider_config_rejects_unknown_keys_and_bad_values() {
    for (text, expect) in [
        (
            "provider = \"rfc2136\"\nserver = \"192.0.2.53:53\"\ntsig_key_name = \"k\"\ntsig_secret = \"x\"",
            "tsig_secret",
        ),
        (
            "provider = \"exec\"\npresent = [\"a\"]\ncleanup = [\"b\"]\nshell = true",
            "shell",
        ),
        ("provider = \"route53\"", "route53"),
        (
            "provider = \"exec\"\npresent = [\"a\"]\ncleanup = [\"b\"]\ntimeout = \"soon\"",
            "soon",
        ),
        (
            "provider = \"exec\"\npresent = [\"a\"]\ncleanup = [\"b\"]\ntimeout = -1",
            "negative",
        ),
    ] {
        let err = toml::from_str::<ProviderConfig>(text).unwrap_err();
        assert!(err.to_string().contains(expect), "{expect}: {err}");
    }
}
