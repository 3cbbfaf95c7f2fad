//! A real BIND 9 (`named`) on a free loopback port, authoritative for one test zone and accepting
//! RFC 2136 updates signed with a fresh TSIG key, for the DNS-01 tests of certvigil-dns01 and the
//! ACME tests (point Pebble's `-dnsserver` at [`Bind::addr`]).
//!
//! The recipe follows ../shared/RIG.md: `named -g -c` as root without `-u`, a top-level
//! `controls { };` (no rndc channel on port 953, so instances never collide), no pid file or
//! session key under /run, `recursion no`, a key from `tsig-keygen` and `update-policy { grant KEY
//! zonesub ANY; }`. Every name a test resolves gets an explicit A record: a wildcard would stop
//! answering for `www` once `_acme-challenge.www` exists (empty non-terminal, NODATA).
//!
//! A missing `/usr/sbin/named` fails the test with a message naming scripts/install-deps.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::servers::{READY_TIMEOUT, Server, free_port, require, server_dir, write};

/// The server binary (Debian package `bind9`).
pub const NAMED: &str = "/usr/sbin/named";
/// The key generator (Debian package `bind9`).
pub const TSIG_KEYGEN: &str = "/usr/sbin/tsig-keygen";
/// `dig` (Debian package `bind9-dnsutils`, pulled in by `dnsutils`).
pub const DIG: &str = "/usr/bin/dig";

/// What to start: one primary zone with A records, a TSIG key of some algorithm, and optionally
/// a second zone whose file does not load (every query and update for it gets SERVFAIL).
#[derive(Clone, Debug)]
pub struct BindSpec<'a> {
    /// The zone, e.g. `certvigil.test` (a trailing dot is allowed).
    pub zone: &'a str,
    /// Names (absolute like `www.certvigil.test`, or `@` for the apex) and their addresses.
    /// `ns.<zone>` (the zone's NS host) always resolves to 127.0.0.1.
    pub a_records: &'a [(&'a str, Ipv4Addr)],
    /// `hmac-sha256` (the default), `hmac-sha384` or `hmac-sha512`.
    pub algorithm: &'a str,
    /// The key name, `certvigil-key` by default.
    pub key_name: &'a str,
    /// A zone configured with a file that fails to load: named answers SERVFAIL for it.
    pub broken_zone: Option<&'a str>,
    /// The grant rules inside `update-policy { ... };` of the zone; default
    /// `grant KEY zonesub ANY;`.
    pub update_policy: Option<&'a str>,
}

impl<'a> BindSpec<'a> {
    pub fn new(zone: &'a str, a_records: &'a [(&'a str, Ipv4Addr)]) -> Self {
        Self {
            zone,
            a_records,
            algorithm: "hmac-sha256",
            key_name: "certvigil-key",
            broken_zone: None,
            update_policy: None,
        }
    }
}

/// A running named; stopped (SIGTERM) when dropped, its directory removed afterwards.
pub struct Bind {
    /// The UDP and TCP port on 127.0.0.1.
    pub port: u16,
    /// The zone without a trailing dot.
    pub zone: String,
    /// The TSIG key name known to named.
    pub key_name: String,
    /// `hmac-sha256` etc.
    pub algorithm: String,
    /// The TSIG secret, base64 as in named.conf.
    pub secret_b64: String,
    /// The key in named.conf syntax, as `nsupdate -k` takes it.
    pub key_file: PathBuf,
    /// The secret alone (base64 and a newline), as certvigil's `tsig_secret_file` takes it.
    pub secret_file: PathBuf,
    /// Declared before `dir`: fields drop in order, so named stops before its directory goes.
    pub server: Server,
    pub dir: TempDir,
}

impl Bind {
    /// Starts named for `zone` with the given A records and an hmac-sha256 key.
    pub fn start(zone: &str, a_records: &[(&str, Ipv4Addr)]) -> Self {
        Self::start_with(&BindSpec::new(zone, a_records))
    }

    pub fn start_with(spec: &BindSpec<'_>) -> Self {
        require(NAMED);
        require(TSIG_KEYGEN);
        let zone = spec.zone.trim_end_matches('.').to_ascii_lowercase();
        let dir = server_dir();
        let d = dir.path();

        let out = Command::new(TSIG_KEYGEN)
            .args(["-a", spec.algorithm, spec.key_name])
            .output()
            .unwrap_or_else(|e| panic!("{TSIG_KEYGEN}: {e}"));
        assert!(
            out.status.success(),
            "tsig-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key_text = String::from_utf8(out.stdout).unwrap();
        let secret_b64 = key_text
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret \""))
            .and_then(|l| l.strip_suffix("\";"))
            .unwrap_or_else(|| panic!("no secret in tsig-keygen output:\n{key_text}"))
            .to_owned();
        let key_file = write(d, "tsig.key", &key_text);
        let secret_file = write(d, "tsig.secret", &format!("{secret_b64}\n"));

        write(d, "zone.db", &zone_file(&zone, spec.a_records));
        let grant = format!("grant {} zonesub ANY;", spec.key_name);
        let policy = spec.update_policy.unwrap_or(&grant);
        let mut zones = zone_stanza(&zone, "zone.db", policy);
        if let Some(broken) = spec.broken_zone {
            write(d, "broken.db", "this is not a zone file\n");
            zones.push_str(&zone_stanza(
                broken.trim_end_matches('.'),
                "broken.db",
                &grant,
            ));
        }

        let port = free_port();
        let conf = format!(
            r#"options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file none;
    session-keyfile none;
    recursion no;
    notify no;
}};
controls {{ }};
include "{key}";
{zones}"#,
            d = d.display(),
            key = key_file.display(),
        );
        let conf_path = write(d, "named.conf", &conf);

        let server = Server::start(
            "named",
            Command::new(NAMED).arg("-g").arg("-c").arg(&conf_path),
            d,
            "TERM",
        )
        .wait_ready(&[port]);
        let bind = Self {
            port,
            zone,
            key_name: spec.key_name.to_owned(),
            algorithm: spec.algorithm.to_owned(),
            secret_b64,
            key_file,
            secret_file,
            server,
            dir,
        };
        bind.wait_zone_loaded();
        bind
    }

    /// 127.0.0.1 and the port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The values of the TXT records at `name` as `dig +short` prints them (quotes removed;
    /// several strings of one record are concatenated), sorted.
    pub fn txt(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .dig(name, "TXT")
            .lines()
            .map(|l| {
                l.split('"')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 1)
                    .map(|(_, s)| s)
                    .collect()
            })
            .collect();
        values.sort();
        values
    }

    /// `dig +short +norec @127.0.0.1 -p PORT NAME TYPE`; panics when dig fails.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        require(DIG);
        let out = Command::new(DIG)
            .args([
                "+short",
                "+norec",
                "+time=2",
                "+tries=1",
                "@127.0.0.1",
                "-p",
            ])
            .arg(self.port.to_string())
            .args([name, rtype])
            .output()
            .unwrap_or_else(|e| panic!("{DIG}: {e}"));
        assert!(
            out.status.success(),
            "dig {name} {rtype}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server.logs()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// named may listen before the zone is loaded: wait until the SOA answers.
    fn wait_zone_loaded(&self) {
        let started = Instant::now();
        loop {
            let out = Command::new(DIG)
                .args(["+norec", "+time=1", "+tries=1", "@127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .args([self.zone.as_str(), "SOA"])
                .output()
                .unwrap_or_else(|e| panic!("{DIG}: {e}"));
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("status: NOERROR") && text.contains("flags: qr aa") {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "named did not serve {} after {READY_TIMEOUT:?}:\n{text}\n{}",
                self.zone,
                self.server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn zone_file(zone: &str, a_records: &[(&str, Ipv4Addr)]) -> String {
    let mut text = format!(
        "$TTL 60\n\
         @ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n\
         @ IN NS ns.{zone}.\n\
         ns.{zone}. IN A 127.0.0.1\n"
    );
    for (name, ip) in a_records {
        let name = name.trim_end_matches('.');
        let owner = if name == "@" {
            "@".to_owned()
        } else {
            assert!(
                name == zone || name.ends_with(&format!(".{zone}")),
                "{name} is not in the zone {zone}"
            );
            format!("{name}.")
        };
        text.push_str(&format!("{owner} IN A {ip}\n"));
    }
    text
}

fn zone_stanza(zone: &str, file: &str, policy: &str) -> String {
    format!(
        "zone \"{zone}\" {{\n    type primary;\n    file \"{file}\";\n    \
         update-policy {{ {policy} }};\n}};\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_file_has_soa_ns_and_explicit_a_records() {
        let text = zone_file(
            "certvigil.test",
            &[
                ("www.certvigil.test", Ipv4Addr::new(127, 0, 0, 2)),
                ("@", Ipv4Addr::LOCALHOST),
            ],
        );
        assert!(text.contains("@ IN SOA ns.certvigil.test. "));
        assert!(text.contains("www.certvigil.test. IN A 127.0.0.2\n"));
        assert!(text.contains("@ IN A 127.0.0.1\n"));
    }
}
