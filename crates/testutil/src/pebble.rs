//! Pebble, Let's Encrypt's ACME test CA (Debian `pebble`), on free loopback ports, with its
//! own throw-away HTTPS listener certificate and `pebble-challtestsrv` as its DNS (every A
//! query answers 127.0.0.1), or any DNS server the test names (BIND for RFC 2136).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::servers::{Certs, Server, free_ports, require, server_dir, write};

#[derive(Default)]
pub struct PebbleOptions {
    /// PEBBLE_WFE_NONCEREJECT: percentage of good nonces rejected (Pebble's default is 5).
    pub nonce_reject_percent: u32,
    /// `certificateValidityPeriod` in seconds; `None` keeps Pebble's five years.
    pub validity_secs: Option<u64>,
    /// PEBBLE_AUTHZREUSE: percentage of valid authorizations reused (default 50).
    pub authz_reuse_percent: u32,
    /// The DNS server the validation authority asks; `None` starts pebble-challtestsrv.
    pub dns_server: Option<String>,
    pub eab_keys: Vec<(String, String)>,
}

pub struct Pebble {
    pub directory: String,
    /// The CA of Pebble's own HTTPS listener: what an ACME client must trust for `directory`.
    pub listener_ca: PathBuf,
    /// Where the validation authority connects for HTTP-01 and TLS-ALPN-01 (on 127.0.0.1).
    pub http_port: u16,
    pub tls_port: u16,
    management: String,
    _server: Server,
    _dns: Option<Server>,
    dir: TempDir,
}

impl Pebble {
    pub fn start(options: PebbleOptions) -> Self {
        let pebble = require("/usr/bin/pebble");
        let dir = server_dir();
        let certs = Certs::new("pebble listener", dir.path());
        let listener = certs.local_leaf("localhost");
        let (cert, key) = certs.write_pair("listener", &listener, false);
        let listener_ca = certs.write_root();

        let mut dns = None;
        let dns_server = match &options.dns_server {
            Some(server) => server.clone(),
            None => {
                let challtest = require("/usr/bin/pebble-challtestsrv");
                // Ports are picked, released and then bound by the server: a parallel test can
                // take one in between, so a start that loses that race is retried on others.
                let (server, dns_port) = retry_on_taken_ports("pebble-challtestsrv", || {
                    let [dns_port, mgmt_port] = free_ports::<2>();
                    let server = Server::start(
                        "pebble-challtestsrv",
                        Command::new(challtest).args([
                            // Only IPv4: the validation authority would dial ::1 first otherwise.
                            "-defaultIPv6",
                            "",
                            "-http01",
                            "",
                            "-https01",
                            "",
                            "-tlsalpn01",
                            "",
                            "-dns01",
                            &format!("127.0.0.1:{dns_port}"),
                            "-management",
                            &format!("127.0.0.1:{mgmt_port}"),
                        ]),
                        dir.path(),
                        "TERM",
                    );
                    server.try_wait_ready(&[mgmt_port]).map(|s| (s, dns_port))
                });
                dns = Some(server);
                format!("127.0.0.1:{dns_port}")
            }
        };

        let (server, (acme, management, http_port, tls_port)) =
            retry_on_taken_ports("pebble", || {
                let [acme, management, http_port, tls_port] = free_ports::<4>();
                let mut config = serde_like_config(&[
                    ("listenAddress", format!("\"127.0.0.1:{acme}\"")),
                    (
                        "managementListenAddress",
                        format!("\"127.0.0.1:{management}\""),
                    ),
                    ("certificate", format!("{:?}", cert.display().to_string())),
                    ("privateKey", format!("{:?}", key.display().to_string())),
                    ("httpPort", http_port.to_string()),
                    ("tlsPort", tls_port.to_string()),
                    ("ocspResponderURL", "\"\"".into()),
                    (
                        "externalAccountBindingRequired",
                        (!options.eab_keys.is_empty()).to_string(),
                    ),
                ]);
                if let Some(secs) = options.validity_secs {
                    config.push_str(&format!(",\n    \"certificateValidityPeriod\": {secs}"));
                }
                if !options.eab_keys.is_empty() {
                    let keys: Vec<String> = options
                        .eab_keys
                        .iter()
                        .map(|(kid, hmac)| format!("{kid:?}: {hmac:?}"))
                        .collect();
                    config.push_str(&format!(
                        ",\n    \"externalAccountMACKeys\": {{{}}}",
                        keys.join(", ")
                    ));
                }
                let config_file = write(
                    dir.path(),
                    "pebble-config.json",
                    &format!("{{\n  \"pebble\": {{\n{config}\n  }}\n}}\n"),
                );
                let server = Server::start(
                    "pebble",
                    Command::new(pebble)
                        .arg("-config")
                        .arg(&config_file)
                        .args(["-dnsserver", &dns_server])
                        .env("PEBBLE_VA_NOSLEEP", "1")
                        .env(
                            "PEBBLE_WFE_NONCEREJECT",
                            options.nonce_reject_percent.to_string(),
                        )
                        .env("PEBBLE_AUTHZREUSE", options.authz_reuse_percent.to_string())
                        .current_dir(dir.path()),
                    dir.path(),
                    "TERM",
                );
                server
                    .try_wait_ready(&[acme, management])
                    .map(|s| (s, (acme, management, http_port, tls_port)))
            });
        Self {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            listener_ca,
            http_port,
            tls_port,
            management: format!("https://127.0.0.1:{management}"),
            _server: server,
            _dns: dns,
            dir,
        }
    }

    /// The root that signs issued certificates (regenerated at every Pebble start), PEM.
    pub fn issuing_root_pem(&self) -> String {
        self.management_get("/roots/0")
    }

    pub fn management_get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(&self.listener_ca)
            .arg(format!("{}{path}", self.management))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "GET {path} from Pebble: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 answer")
    }

    /// A fresh path for state (accounts, staging) that lives as long as this Pebble.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).unwrap();
        path
    }
}

/// Runs `attempt` until it does not fail on a port someone else took (at most five times).
fn retry_on_taken_ports<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..5 {
        match attempt() {
            Ok(value) => return value,
            Err(e) if e.contains("address already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{what}: every port it was given was taken:\n{last}")
}

fn serde_like_config(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("    \"{k}\": {v}"))
        .collect::<Vec<_>>()
        .join(",\n")
}
