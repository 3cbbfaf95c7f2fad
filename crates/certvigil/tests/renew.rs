//! `certvigil renew` end to end: a real Pebble issuing 120-second certificates, a real nginx
//! under continuous `wrk` load reloaded by signal, a real etcd 3.4 with client-certificate
//! authentication rotated from the internal CA, a reload hook that does nothing, crashes
//! between stages, and two renewals racing.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certvigil_testutil::pebble::{Pebble, PebbleOptions};
use certvigil_testutil::servers::{self, NginxSite, free_port};
use support::*;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The serial the endpoint serves, seen by OpenSSL (independently of certvigil's probe).
fn served_serial(port: u16, sni: &str) -> String {
    served_serials(port, sni, 1).remove(0)
}

/// The serials of `n` handshakes in a row.
fn served_serials(port: u16, sni: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| one_served_serial(port, sni)).collect()
}

fn one_served_serial(port: u16, sni: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {sni} -no_ticket </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_uppercase()
}

fn staged_count(state: &Path, name: &str) -> usize {
    fs::read_dir(state.join("staging").join(name)).map_or(0, |d| d.count())
}

/// The serial `renew` printed for `name` ("renewed, deployed and verified: serial X").
fn renewed_serial(stdout: &str, name: &str) -> Option<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))?;
    let serial = line.split("serial ").nth(1)?;
    Some(serial.trim().replace(':', "").to_ascii_uppercase())
}

struct Web {
    pebble: Pebble,
    state: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Web {
    fn new(validity_secs: u64) -> Self {
        let pebble = Pebble::start(PebbleOptions {
            validity_secs: Some(validity_secs),
            ..PebbleOptions::default()
        });
        let state = pebble.state_dir("state");
        Self {
            pebble,
            state,
            dir: servers::server_dir(),
            port: free_port(),
        }
    }

    fn live(&self) -> PathBuf {
        self.dir.path().join("live")
    }

    /// A configuration renewing `web` with `reload` (TOML of one [[...reload]] table body).
    fn config(&self, file: &str, renew_before: &str, reload: &str, grace: &str) -> PathBuf {
        let root = write(
            &self.state,
            "pebble-root.pem",
            self.pebble.issuing_root_pem(),
        );
        write(
            &self.state,
            file,
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
listen = "127.0.0.1:{http_port}"
[[certificate]]
name = "web"
issuer = "pebble"
names = ["web.certvigil.test"]
renew_before = "{renew_before}"
[certificate.deploy]
dir = "{live}"
verify_grace = "{grace}"
[[certificate.deploy.reload]]
{reload}
[[certificate.deploy.verify]]
endpoint = "127.0.0.1:{port}"
sni = "web.certvigil.test"
"#,
                state = self.state.display(),
                directory = self.pebble.directory,
                listener_ca = self.pebble.listener_ca.display(),
                root = root.display(),
                http_port = self.pebble.http_port,
                live = self.live().display(),
                port = self.port,
            ),
        )
    }

    fn signal_reload(&self) -> String {
        format!(
            "signal = \"HUP\"\npid_file = \"{}\"\nprocess = \"nginx\"",
            self.dir.path().join("nginx.pid").display()
        )
    }

    /// nginx serving a throw-away certificate from the live paths until certvigil puts the
    /// real one there (its symlink replaces the placeholder directory's link).
    fn nginx_with_placeholder(&self) -> servers::Server {
        let certs = servers::Certs::new("placeholder", self.dir.path());
        let leaf = certs.local_leaf("placeholder.test");
        let generation = self
            .live()
            .join("generations")
            .join("00000000000000000000-placeholder");
        fs::create_dir_all(&generation).unwrap();
        fs::write(generation.join("fullchain.pem"), &leaf.pem).unwrap();
        fs::write(generation.join("cert.pem"), &leaf.pem).unwrap();
        fs::write(generation.join("chain.pem"), "").unwrap();
        fs::write(generation.join("privkey.pem"), leaf.key_pem()).unwrap();
        std::os::unix::fs::symlink(
            "generations/00000000000000000000-placeholder",
            self.live().join("current"),
        )
        .unwrap();
        self.nginx()
    }

    fn nginx(&self) -> servers::Server {
        let live = self.live().join("current");
        let pair = (live.join("fullchain.pem"), live.join("privkey.pem"));
        servers::nginx(self.dir.path(), &[NginxSite::new(self.port, &pair)])
    }
}

#[derive(Default, Debug)]
struct Load {
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    runs: u32,
}

/// Runs `wrk` in 3-second slices until `stop`, adding up what each slice reports.
fn load(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Load> {
    servers::require("/usr/bin/wrk");
    std::thread::spawn(move || {
        let mut total = Load::default();
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new("wrk")
                .args(["-t2", "-c16", "-d3s", "-H", "Connection: close"])
                .arg(format!("https://127.0.0.1:{port}/"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            total.runs += 1;
            for line in text.lines().map(str::trim) {
                if let Some(n) = line
                    .split(" requests in ")
                    .next()
                    .filter(|_| line.contains(" requests in "))
                {
                    total.requests += n.trim().parse::<u64>().unwrap_or(0);
                }
                if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
                    total.non_2xx += n.trim().parse::<u64>().unwrap_or(1);
                }
                if let Some(rest) = line.strip_prefix("Socket errors:") {
                    total.socket_errors += rest
                        .split(',')
                        .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                        .sum::<u64>();
                }
            }
        }
        total
    })
}

#[test]
fn ten_renewals_under_load_with_zero_failed_requests_each_new_serial_served() {
    let web = Web::new(120);
    // Due two seconds after issuance: ten real renewals of 120-second certificates in a test.
    let config = web.config("web.toml", "118s", &web.signal_reload(), "10s");

    // First pass: nginx is not running yet, so the signal finds no pid file; the certificate is
    // issued and live, and the reload is owed.
    let first = certvigil(&["renew", "-c", path(&config)]);
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("pending at stage activated"),
        "{}",
        first.stdout
    );
    let nginx = web.nginx();
    // The next pass resumes at the reload: no second issuance.
    let resumed = certvigil(&["renew", "--force", "-c", path(&config)]);
    assert_eq!(resumed.code, 4, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(staged_count(&web.state, "web"), 1, "resumed, not re-issued");

    let stop = Arc::new(AtomicBool::new(false));
    let wrk = load(web.port, stop.clone());
    let mut serials = vec![renewed_serial(&resumed.stdout, "web").unwrap()];
    let started = Instant::now();
    let mut passes = 0;
    while serials.len() < 11 && started.elapsed() < Duration::from_secs(150) {
        passes += 1;
        let run = certvigil(&["renew", "-c", path(&config)]);
        match run.code {
            0 => std::thread::sleep(Duration::from_millis(300)),
            4 => {
                let serial = renewed_serial(&run.stdout, "web").unwrap();
                // Verified means served on every new connection, not just on one.
                for seen in served_serials(web.port, "web.certvigil.test", 3) {
                    assert_eq!(seen, serial);
                }
                assert!(!serials.contains(&serial));
                serials.push(serial);
            }
            other => panic!(
                "renew exited {other}:\n{}\n{}\n{}",
                run.stdout,
                run.stderr,
                nginx.logs()
            ),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let load = wrk.join().unwrap();
    eprintln!(
        "{} renewals in {:?} ({passes} passes) under load: {load:?}",
        serials.len() - 1,
        started.elapsed()
    );
    assert_eq!(serials.len(), 11, "ten renewals: {serials:?}");
    assert!(load.requests > 1000, "{load:?}");
    assert_eq!(load.non_2xx, 0, "{load:?}");
    assert_eq!(load.socket_errors, 0, "{load:?}");

    let audit = certvigil(&["audit", "verify", path(&web.state.join("audit.log"))]);
    assert_eq!(audit.code, 0, "{}\n{}", audit.stdout, audit.stderr);
}

#[test]
fn a_reload_hook_that_does_nothing_is_caught_and_rolled_back() {
    // certbot 2.1 and lego 4.9 both exit 0 in this setup: their deploy hooks succeed, and
    // neither looks at what the server then serves.
    let web = Web::new(3600);
    let config = web.config("web.toml", "1/3", &web.signal_reload(), "10s");
    let first = certvigil(&["renew", "-c", path(&config)]);
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    let _nginx = web.nginx();
    let good = certvigil(&["renew", "--force", "-c", path(&config)]);
    assert_eq!(good.code, 4, "{}\n{}", good.stdout, good.stderr);
    let live_serial = renewed_serial(&good.stdout, "web").unwrap();
    let current = fs::read_link(web.live().join("current")).unwrap();

    let noop = web.config("noop.toml", "1/3", "command = [\"true\"]", "2s");
    let run = certvigil(&["renew", "--force", "-c", path(&noop)]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("does not serve the new certificate")
            && run.stdout.contains("rolled back"),
        "{}",
        run.stdout
    );
    assert_eq!(staged_count(&web.state, "web"), 2);
    assert_eq!(fs::read_link(web.live().join("current")).unwrap(), current);
    assert_eq!(served_serial(web.port, "web.certvigil.test"), live_serial);
    let log = fs::read_to_string(web.state.join("audit.log")).unwrap();
    assert!(log.contains("\"rolled_back\""), "{log}");

    // `status` tells the same story: the previous certificate is live, the failure is kept.
    let status = certvigil(&["status", "--json", "-c", path(&noop)]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let entry = &status.json()[0];
    assert_eq!(entry["certificate"], "web");
    assert_eq!(entry["stage"], "idle");
    assert_eq!(
        entry["serial"].as_str().unwrap().to_ascii_uppercase(),
        live_serial
    );
    assert_eq!(entry["failure"]["step"], "verify", "{entry:#}");
    assert_eq!(entry["failure"]["attempt"], 1);
    assert!(entry["last_success"].is_string());
}

#[test]
fn a_crash_at_each_stage_boundary_resumes_without_issuing_again() {
    for point in certvigil_renew::RENEW_POINTS {
        let web = Web::new(3600);
        let _nginx = web.nginx_with_placeholder();
        let config = web.config("web.toml", "1/3", &web.signal_reload(), "10s");
        // The pass dies at `point`, as under kill -9.
        let crashed = certvigil_with(
            &["renew", "-c", path(&config)],
            None,
            &[("CERTVIGIL_FAULT", point)],
        );
        assert_ne!(
            crashed.code, 0,
            "{point}: {}\n{}",
            crashed.stdout, crashed.stderr
        );
        assert_ne!(crashed.code, 4, "{point}: the pass must not have finished");
        let run = certvigil(&["renew", "-c", path(&config)]);
        assert_eq!(run.code, 4, "{point}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(
            staged_count(&web.state, "web"),
            1,
            "{point}: the crashed pass's certificate is the one deployed"
        );
        let serial = renewed_serial(&run.stdout, "web").unwrap();
        assert_eq!(
            served_serial(web.port, "web.certvigil.test"),
            serial,
            "{point}"
        );
    }
}

#[test]
fn two_renewals_at_once_issue_one_certificate() {
    let web = Web::new(3600);
    let config = web.config("web.toml", "1/3", "command = [\"true\"]", "1s");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_certvigil"))
            .args(["renew", "-c", path(&config), "--dry-run"])
            .output()
            .unwrap()
    };
    // A dry run changes nothing.
    assert!(String::from_utf8_lossy(&spawn().stdout).contains("would renew (missing)"));
    assert_eq!(staged_count(&web.state, "web"), 0);

    let run = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_certvigil"))
            .args(["renew", "-c", path(config)])
            .env("CERTVIGIL_CACHE_DIR", cache_dir())
            .spawn()
            .unwrap()
    };
    let a = run(&config);
    let b = run(&config);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(staged_count(&web.state, "web"), 1, "{a:?}\n{b:?}");
}

#[test]
fn etcd_serves_a_rotated_server_certificate_without_a_restart() {
    let dir = servers::server_dir();
    let ca_dir = dir.path().join("ca");
    let ca = certvigil_ca::Ca::init(&ca_dir, &certvigil_ca::InitOptions::default()).unwrap();
    // Peer and client certificates for the harness, straight from the library.
    let issue = |profile, names: &[&str], cn: Option<&str>, stem: &str| {
        let mut request = certvigil_ca::IssueRequest::new(profile);
        request.identifiers = names
            .iter()
            .map(|n| certvigil_issue::Identifier::parse(n))
            .collect();
        request.common_name = cn.map(str::to_owned);
        let issued = ca.issue(&request).unwrap();
        let cert = write(dir.path(), &format!("{stem}.pem"), issued.fullchain_pem());
        let key = write(dir.path(), &format!("{stem}.key"), issued.key.expose());
        certvigil_testutil::etcd::TlsFiles { cert, key }
    };
    let peer = issue(
        certvigil_ca::Profile::EtcdPeer,
        &["127.0.0.1"],
        None,
        "peer",
    );
    let client = issue(
        certvigil_ca::Profile::EtcdClient,
        &[],
        Some("root"),
        "client",
    );
    let root = write(dir.path(), "ca.pem", ca.root_pem());

    let state = dir.path().join("state");
    let live = dir.path().join("live");
    let config = |verify: &str| {
        write(
            dir.path(),
            "etcd.toml",
            format!(
                r#"
[renewal]
state_dir = "{state}"
[[issuer]]
name = "internal"
type = "internal-ca"
dir = "{ca}"
[[certificate]]
name = "etcd-server"
issuer = "internal"
profile = "etcd-server"
names = ["127.0.0.1", "localhost"]
lifetime = "1h"
[certificate.deploy]
dir = "{live}"
{verify}
"#,
                state = state.display(),
                ca = ca_dir.display(),
                live = live.display(),
            ),
        )
    };
    let first = certvigil(&["renew", "-c", path(&config(""))]);
    assert_eq!(first.code, 4, "{}\n{}", first.stdout, first.stderr);
    let first_serial = renewed_serial(&first.stdout, "etcd-server").unwrap();

    let tls = certvigil_testutil::etcd::EtcdTls {
        ca: root.clone(),
        server: certvigil_testutil::etcd::TlsFiles {
            cert: live.join("current/fullchain.pem"),
            key: live.join("current/privkey.pem"),
        },
        peer,
    };
    let etcd = certvigil_testutil::etcd::Etcd::start(dir.path(), &tls, &client);
    let verify = format!(
        "[[certificate.deploy.verify]]\nendpoint = \"127.0.0.1:{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        etcd.client_port,
        client.cert.display(),
        client.key.display()
    );
    let rotated = certvigil(&["renew", "--force", "-c", path(&config(&verify))]);
    assert_eq!(
        rotated.code,
        4,
        "{}\n{}\n{}",
        rotated.stdout,
        rotated.stderr,
        etcd.logs()
    );
    let new_serial = renewed_serial(&rotated.stdout, "etcd-server").unwrap();
    assert_ne!(new_serial, first_serial);
    assert_eq!(served_serial(etcd.client_port, "localhost"), new_serial);
    let put = etcd.etcdctl(&root, &client, &["put", "rotated", "yes"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}
