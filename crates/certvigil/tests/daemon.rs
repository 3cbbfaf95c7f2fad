//! `certvigil daemon` end to end: real HTTP, real signals, and a real Prometheus scraping it.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certvigil_testutil::{Pki, Spec};
use support::write;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    get_with(port, path, "")
}

/// A GET with extra header lines (each ending in CRLF): (status, body).
fn get_with(port: u16, path: &str, headers: &str) -> Option<(u16, String)> {
    let (status, raw) = get_raw(port, path, headers)?;
    Some((
        status,
        raw.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    ))
}

/// A GET returning raw bytes: (status, headers, body).
fn get_bytes(port: u16, path: &str, headers: &str) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, response[split + 4..].to_vec()))
}

/// A GET with extra header lines: (status, the whole response with its headers).
fn get_raw(port: u16, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

struct Daemon {
    child: Child,
    port: u16,
    /// stderr goes to a file: a pipe nobody reads would block the daemon once it fills.
    log: tempfile::NamedTempFile,
}

impl Daemon {
    fn start(config: &Path, port: u16) -> Self {
        Self::spawn(config, port, None)
    }

    /// With a cache directory kept across restarts (debug logs from the scan).
    fn start_cached(config: &Path, port: u16, cache: &Path) -> Self {
        Self::spawn(config, port, Some(cache))
    }

    fn spawn(config: &Path, port: u16, cache: Option<&Path>) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_certvigil"));
        match cache {
            Some(dir) => command
                .args(["daemon", "--config"])
                .env("CERTVIGIL_CACHE_DIR", dir)
                .env("CERTVIGIL_LOG", "info,certvigil_source=debug"),
            None => command
                .args(["daemon", "--no-cache", "--config"])
                .env("CERTVIGIL_LOG", "info"),
        };
        let child = command
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn certvigil daemon");
        let daemon = Self { child, port, log };
        wait_for("/readyz", Duration::from_secs(30), || {
            matches!(get(port, "/readyz"), Some((200, _)))
        });
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn metrics(&self) -> String {
        let (status, body) = get(self.port, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        body
    }
}

/// A real Prometheus scraping `target_port` every second (evaluating `rules` every second),
/// killed when dropped, also when an assertion fails.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16, rules: Option<&Path>) -> Self {
        let port = free_port();
        let rule_files = rules.map_or_else(String::new, |r| {
            format!("rule_files: ['{}']\n", r.display())
        });
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: certvigil\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus (Debian package prometheus) must be installed: scripts/install-deps",
            );
        Self { child, port }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, port: u16, sources: &str) -> String {
    format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\nscan_interval = \"1s\"\nsystem_trust = false\n{sources}",
    ) + &format!("# {}\n", dir.display())
}

#[test]
fn serves_rescans_reloads_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Daemon");
    let certs = dir.path().join("certs");
    write(&certs, "root.pem", &pki.root.cert.pem);
    let first = pki.leaf(&Spec::leaf("first.example"));
    write(&certs, "first.pem", pki.fullchain(&first));
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!("[[source]]\npath = \"{}\"\n", certs.display());
    std::fs::write(&config_path, config(dir.path(), port, &sources)).unwrap();

    let mut daemon = Daemon::start(&config_path, port);
    assert_eq!(get(port, "/healthz").unwrap(), (200, "ok\n".to_owned()));
    let fingerprint =
        |der: &[u8]| certvigil_core::cert::hex(&certvigil_core::cert::fingerprint(der));
    assert!(daemon.metrics().contains(&fingerprint(&first.der)));
    let (status, body) = get(port, "/status").unwrap();
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["format_version"], 1);
    let accept = "Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n";
    let (status, raw) = get_raw(port, "/metrics", accept).unwrap();
    assert_eq!(status, 200);
    assert!(
        raw.to_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{raw}"
    );
    assert!(raw.ends_with("# EOF\n"));
    // Prometheus asks for gzip; the snapshot is kept compressed and sent as is.
    let (status, head, body) = get_bytes(port, "/metrics", "Accept-Encoding: gzip\r\n").unwrap();
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("certvigil_build_info"));
    let (_, head, body) = get_bytes(port, "/status", "Accept-Encoding: gzip\r\n").unwrap();
    assert!(
        head.to_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut json = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut json)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["format_version"],
        1
    );
    let (_, plain) = get_raw(port, "/metrics", "").unwrap();
    assert!(plain.contains("text/plain; version=0.0.4") && !plain.contains("# EOF"));

    // A certificate that appears later is picked up by the next scan.
    let second = pki.leaf(&Spec::leaf("second.example"));
    write(&certs, "second.pem", &second.pem);
    wait_for(
        "the new certificate in /metrics",
        Duration::from_secs(10),
        || daemon.metrics().contains(&fingerprint(&second.der)),
    );

    // A broken configuration is rejected and the daemon keeps serving the old one.
    std::fs::write(
        &config_path,
        "[daemon]\nlisten = \"nowhere\"\n[[source]]\ncolour = 1\n",
    )
    .unwrap();
    daemon.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.metrics().contains(&fingerprint(&second.der)));

    // A good one takes effect: with no sources left, the certificates disappear.
    let only_root = format!(
        "[[source]]\npath = \"{}\"\n",
        certs.join("root.pem").display()
    );
    std::fs::write(&config_path, config(dir.path(), port, &only_root)).unwrap();
    daemon.signal("HUP");
    wait_for(
        "the reloaded configuration",
        Duration::from_secs(10),
        || !daemon.metrics().contains(&fingerprint(&first.der)),
    );

    daemon.signal("TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let log = daemon.log();
    assert!(log.contains("new configuration rejected"), "{log}");
    assert!(
        log.contains("daemon.listen"),
        "every error is logged: {log}"
    );
}

#[test]
fn a_real_prometheus_scrapes_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Scraped");
    let leaf = pki.leaf(&Spec::leaf("scraped.example"));
    write(dir.path(), "certs/leaf.pem", pki.fullchain(&leaf));
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!(
        "[[source]]\npath = \"{}\"\n",
        dir.path().join("certs").display()
    );
    // With the x509-certificate-exporter names too: both must survive a real scrape.
    let text = config(dir.path(), port, &sources)
        .replace("[daemon]\n", "[daemon]\nx509_exporter_compat = true\n");
    std::fs::write(&config_path, text).unwrap();
    let _daemon = Daemon::start(&config_path, port);

    let prometheus = Prometheus::start(dir.path(), port, None);
    let prom_port = prometheus.port;
    let query = "/api/v1/query?query=certvigil_cert_not_after_timestamp_seconds";
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        if let Some((200, body)) = get(prom_port, query) {
            if body.contains(&leaf_fingerprint(&leaf.der)) {
                break true;
            }
            last = body;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let compat = get(prom_port, "/api/v1/query?query=x509_cert_not_after");
    drop(prometheus);
    assert!(
        found,
        "Prometheus never stored the certificate's series; last answer: {last}"
    );
    let (_, compat) = compat.expect("query x509_cert_not_after");
    assert!(
        compat.contains("scraped.example"),
        "compat series missing: {compat}"
    );
}

fn leaf_fingerprint(der: &[u8]) -> String {
    certvigil_core::cert::hex(&certvigil_core::cert::fingerprint(der))
}

/// The outage the drift check exists for: the file was renewed, the service never reloaded.
#[test]
fn renewed_but_not_reloaded_is_caught_by_handshake() {
    use certvigil_testutil::servers::{Certs, NginxSite, free_port as port, nginx};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    let certs = Certs::new("Drift", &dir.path().join("tls"));
    let old = certs.local_leaf("web.test");
    let pair = certs.write_pair("web", &old, false);
    let web_port = port();
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let _nginx = nginx(
        &nginx_dir,
        &[NginxSite::new(web_port, &pair).directives("server_name web.test;")],
    );

    let daemon_port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let target = format!(
        "[[target]]\nname = \"web\"\ncert = \"{}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:{web_port}\"\nsni = \"web.test\"\ntimeout = \"3s\"\n",
        pair.0.display(),
        pair.1.display()
    );
    std::fs::write(&config_path, config(dir.path(), daemon_port, &target)).unwrap();
    let daemon = Daemon::start(&config_path, daemon_port);
    let series = |value: u8| {
        format!(
            "certvigil_target_served_matches_disk{{target=\"web\",cert=\"{}\",endpoint=\"127.0.0.1:{web_port}\"}} {value}",
            pair.0.display()
        )
    };
    wait_for("served == disk", Duration::from_secs(15), || {
        daemon.metrics().contains(&series(1))
    });

    // Renewal writes new files; nginx keeps serving the old certificate until it reloads.
    let new = certs.local_leaf("web.test");
    certs.write_pair("web", &new, false);
    wait_for("served != disk", Duration::from_secs(15), || {
        daemon.metrics().contains(&series(0))
    });
    let (_, body) = get(daemon_port, "/status").unwrap();
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stale: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "served_stale")
        .collect();
    assert_eq!(stale.len(), 1, "{:#}", report["findings"]);
    assert_eq!(stale[0]["severity"], "critical");
    assert!(
        stale[0]["message"].as_str().unwrap().contains("reload"),
        "{}",
        stale[0]["message"]
    );

    let reload = Command::new("/usr/sbin/nginx")
        .args([
            "-p",
            &format!("{}/", nginx_dir.display()),
            "-c",
            "nginx.conf",
            "-s",
            "reload",
        ])
        .status()
        .expect("nginx");
    assert!(reload.success());
    wait_for(
        "served == disk after the reload",
        Duration::from_secs(15),
        || daemon.metrics().contains(&series(1)),
    );
}

/// With an hour between scans, only the file watch can explain a quick update: an atomic
/// rename (how renewals write) and a kubelet-style `..data` symlink swap.
#[test]
fn file_changes_trigger_a_rescan_without_waiting_for_the_interval() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Watch");
    let certs = dir.path().join("certs");
    write(&certs, "root.pem", &pki.root.cert.pem);
    let volume = dir.path().join("secret");
    let first_gen = volume.join("..2026_01_01");
    let old = pki.leaf(&Spec::leaf("old.example"));
    write(&first_gen, "tls.crt", pki.fullchain(&old));
    symlink("..2026_01_01", volume.join("..data")).unwrap();
    symlink("..data/tls.crt", volume.join("tls.crt")).unwrap();

    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!(
        "[[source]]\npath = \"{}\"\n[[source]]\npath = \"{}\"\n",
        certs.display(),
        volume.display()
    );
    let text = config(dir.path(), port, &sources)
        .replace("scan_interval = \"1s\"", "scan_interval = \"1h\"");
    std::fs::write(&config_path, text).unwrap();
    let daemon = Daemon::start(&config_path, port);
    let fingerprint =
        |der: &[u8]| certvigil_core::cert::hex(&certvigil_core::cert::fingerprint(der));
    assert!(daemon.metrics().contains(&fingerprint(&old.der)));

    // Renewal-style write: a temporary file renamed over the final name.
    let renewed = pki.leaf(&Spec::leaf("renewed.example"));
    write(&certs, ".renewed.pem.tmp", &renewed.pem);
    std::fs::rename(certs.join(".renewed.pem.tmp"), certs.join("renewed.pem")).unwrap();
    wait_for(
        "the renamed-in certificate",
        Duration::from_secs(10),
        || daemon.metrics().contains(&fingerprint(&renewed.der)),
    );

    // The kubelet's atomic update: a new timestamped directory, then `..data` swapped to it.
    let rotated = pki.leaf(&Spec::leaf("rotated.example"));
    write(
        &volume.join("..2026_02_01"),
        "tls.crt",
        pki.fullchain(&rotated),
    );
    symlink("..2026_02_01", volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    wait_for("the rotated Secret", Duration::from_secs(10), || {
        let metrics = daemon.metrics();
        metrics.contains(&fingerprint(&rotated.der)) && !metrics.contains(&fingerprint(&old.der))
    });
}

/// The sd_notify protocol as systemd sees it, on a real datagram socket.
#[test]
fn tells_systemd_ready_reloading_stopping_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    std::fs::write(
        &config_path,
        config(dir.path(), port, "[[source]]\npath = \"/nonexistent\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_certvigil"))
        .args(["daemon", "--no-cache", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let receive_until = |needle: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never received {needle}; got {seen:?}"
            );
            if let Ok(n) = socket.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('|');
            }
        }
    };
    receive_until("READY=1", &mut seen);
    receive_until("WATCHDOG=1", &mut seen);
    seen.clear();
    let kill = |signal: &str| {
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(kill("-HUP").success());
    receive_until("RELOADING=1", &mut seen);
    assert!(seen.contains("MONOTONIC_USEC="), "{seen}");
    receive_until("READY=1", &mut seen);
    assert!(kill("-TERM").success());
    receive_until("STOPPING=1", &mut seen);
    assert!(child.wait().unwrap().success());
}

/// Structured logs: one JSON object per finding that appears, with fingerprint, source and
/// not_after; never key material.
#[test]
fn json_logs_carry_finding_events() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Logs");
    let certs = dir.path().join("certs");
    write(&certs, "root.pem", &pki.root.cert.pem);
    let expired = pki.leaf(&Spec::leaf("gone.example").valid_days(-60, -2));
    write(
        &certs,
        "gone.pem",
        format!("{}{}", pki.fullchain(&expired), expired.key_pem()),
    );
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!("[[source]]\npath = \"{}\"\n", certs.display());
    std::fs::write(&config_path, config(dir.path(), port, &sources)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_certvigil"))
        .args(["--log-format", "json", "daemon", "--no-cache", "--config"])
        .arg(&config_path)
        .env("CERTVIGIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("/readyz", Duration::from_secs(30), || {
        matches!(get(port, "/readyz"), Some((200, _)))
    });
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let expired_events: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "finding" && e["check"] == "expired")
        .collect();
    assert_eq!(
        expired_events.len(),
        1,
        "logged once, not once per scan: {log}"
    );
    let event = expired_events[0];
    assert_eq!(event["severity"], "critical");
    assert!(event["source"].as_str().unwrap().ends_with("gone.pem"));
    assert_eq!(event["fingerprint"].as_str().unwrap().len(), 64);
    assert!(event["not_after"].as_str().unwrap().ends_with('Z'));
    assert!(!log.contains("PRIVATE KEY"), "no key material in logs");
}

/// 1,000 certificate files rewritten (non-atomically, then truncated and deleted) while 20
/// clients scrape and the configuration is reloaded in a storm: every scrape succeeds, and at
/// the end no series is stale or duplicated, and no file descriptor leaked.
#[test]
fn churn_and_sighup_storm_while_scraped() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Churn");
    let certs = dir.path().join("certs");
    let leaves: Vec<_> = (0..50)
        .map(|i| pki.leaf(&Spec::leaf(&format!("c{i}.example"))))
        .collect();
    for i in 0..1000 {
        write(
            &certs,
            &format!("c{i:04}.pem"),
            &leaves[i % leaves.len()].pem,
        );
    }
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!("[[source]]\npath = \"{}\"\n", certs.display());
    std::fs::write(&config_path, config(dir.path(), port, &sources)).unwrap();
    let daemon = Daemon::start(&config_path, port);
    let pid = daemon.child.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let fds_before = fds();

    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let scrapers: Vec<_> = (0..20)
        .map(|_| {
            let (stop, scrapes, failures) = (stop.clone(), scrapes.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(port, "/metrics") {
                        Some((200, body)) if body.contains("certvigil_build_info") => {
                            scrapes.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Rewrite every file in place (truncate, then write), rotating which leaf each holds.
    for round in 1..=3 {
        for i in 0..1000 {
            let path = certs.join(format!("c{i:04}.pem"));
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(leaves[(i + round) % leaves.len()].pem.as_bytes())
                .unwrap();
        }
        for _ in 0..5 {
            daemon.signal("HUP");
        }
    }
    // Truncated and deleted files must not break anything either.
    std::fs::File::create(certs.join("c0000.pem")).unwrap();
    for i in 1..500 {
        std::fs::remove_file(certs.join(format!("c{i:04}.pem"))).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for scraper in scrapers {
        scraper.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed scrapes");
    assert!(scrapes.load(Ordering::Relaxed) > 100, "scrapers barely ran");

    // The final state: 500 files left, 499 with a certificate, one empty.
    wait_for("the final inventory", Duration::from_secs(10), || {
        let metrics = daemon.metrics();
        metrics
            .lines()
            .filter(|l| l.starts_with("certvigil_cert_not_after_timestamp_seconds{"))
            .count()
            == 500
    });
    let metrics = daemon.metrics();
    let mut series: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s))
        .collect();
    let total = series.len();
    series.sort_unstable();
    series.dedup();
    assert_eq!(series.len(), total, "duplicate series");
    assert!(
        !metrics.contains("c0001.pem"),
        "a deleted file's series lingers"
    );
    assert!(
        metrics.contains("certvigil_source_errors{reason=\"parse\"} 1"),
        "the empty file is reported"
    );
    assert!(
        fds() <= fds_before + 8,
        "file descriptors leaked: {fds_before} -> {}",
        fds()
    );
}

/// The shipped alert rules in a real Prometheus scraping the daemon: an expired certificate
/// fires CertificateExpired, a renewal behind nginx without reload fires CertvigilServedStale,
/// and the reload clears it. (`for:` is shortened so the test does not wait minutes.)
#[test]
fn shipped_alerts_fire_and_clear_in_a_real_prometheus() {
    use certvigil_testutil::servers::{Certs, NginxSite, nginx};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    let certs = Certs::new("Alerts", &dir.path().join("tls"));
    let served = certs.local_leaf("web.test");
    let pair = certs.write_pair("web", &served, false);
    let web_port = free_port();
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let _nginx = nginx(
        &nginx_dir,
        &[NginxSite::new(web_port, &pair).directives("server_name web.test;")],
    );
    let expired = certs.pki.leaf(&Spec::leaf("old.test").valid_days(-90, -1));
    write(&dir.path().join("fixtures"), "old.pem", &expired.pem);

    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!(
        "[[source]]\npath = \"{}\"\n[[target]]\nname = \"web\"\ncert = \"{}\"\nendpoint = \"127.0.0.1:{web_port}\"\nsni = \"web.test\"\n",
        dir.path().join("fixtures").display(),
        pair.0.display()
    );
    std::fs::write(&config_path, config(dir.path(), port, &sources)).unwrap();
    let _daemon = Daemon::start(&config_path, port);

    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/certvigil-alerts.yml"
    ))
    .unwrap();
    let rules: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for:") {
                l.split("for:").next().unwrap().to_owned() + "for: 0s"
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rules_path = dir.path().join("rules.yml");
    std::fs::write(&rules_path, rules).unwrap();
    let prometheus = Prometheus::start(dir.path(), port, Some(&rules_path));
    let prom_port = prometheus.port;
    let firing = |name: &str| {
        get(prom_port, "/api/v1/alerts").is_some_and(|(status, body)| {
            status == 200
                && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                    v["data"]["alerts"].as_array().is_some_and(|alerts| {
                        alerts
                            .iter()
                            .any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
                    })
                })
        })
    };
    {
        wait_for("CertificateExpired firing", Duration::from_secs(60), || {
            firing("CertificateExpired")
        });
        assert!(!firing("CertvigilServedStale"), "nothing is stale yet");
        let renewed = certs.local_leaf("web.test");
        certs.write_pair("web", &renewed, false);
        wait_for(
            "CertvigilServedStale firing",
            Duration::from_secs(60),
            || firing("CertvigilServedStale"),
        );
        let reload = Command::new("/usr/sbin/nginx")
            .args([
                "-p",
                &format!("{}/", nginx_dir.display()),
                "-c",
                "nginx.conf",
                "-s",
                "reload",
            ])
            .status()
            .unwrap();
        assert!(reload.success());
        wait_for(
            "CertvigilServedStale cleared",
            Duration::from_secs(60),
            || !firing("CertvigilServedStale"),
        );
    }
}

#[test]
fn the_daemon_renews_managed_certificates_and_exports_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    certvigil_ca::Ca::init(&ca_dir, &certvigil_ca::InitOptions::default()).unwrap();
    let port = free_port();
    let state = dir.path().join("state");
    let managed = format!(
        "[renewal]\nstate_dir = \"{}\"\ncheck_interval = \"1s\"\n\
         [[issuer]]\nname = \"internal\"\ntype = \"internal-ca\"\ndir = \"{}\"\n\
         [[certificate]]\nname = \"grpc\"\nissuer = \"internal\"\nprofile = \"grpc-server\"\n\
         names = [\"grpc.internal\"]\nlifetime = \"10m\"\n[certificate.deploy]\n",
        state.display(),
        ca_dir.display()
    );
    let config_path = dir.path().join("certvigil.toml");
    std::fs::write(&config_path, config(dir.path(), port, &managed)).unwrap();
    let daemon = Daemon::start(&config_path, port);

    // The first pass issues and activates it; the next scan reports the live set and the CA.
    wait_for(
        "a renewed certificate in /metrics",
        Duration::from_secs(20),
        || {
            daemon
                .metrics()
                .contains("certvigil_renewal_last_success_timestamp_seconds{certificate=\"grpc\"}")
        },
    );
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("certvigil_renewal_stage{certificate=\"grpc\",stage=\"idle\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certvigil_renewal_consecutive_failures{certificate=\"grpc\"} 0"),
        "{metrics}"
    );
    let next = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("certvigil_renewal_next_timestamp_seconds{certificate=\"grpc\"} ")
        })
        .expect("next renewal exported")
        .parse::<i64>()
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Ten minutes of lifetime, renewed with a third left: due in about six and a half minutes.
    assert!(
        (now + 300..=now + 420).contains(&next),
        "next {next}, now {now}"
    );
    wait_for(
        "the live set and the CA scanned",
        Duration::from_secs(20),
        || {
            let m = daemon.metrics();
            m.contains("live/grpc/current") && m.contains("root.pem")
        },
    );
    assert!(!daemon.log().contains("PRIVATE KEY"));
}

#[test]
fn https_listener_with_basic_auth_and_a_certificate_reloaded_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certvigil_testutil::servers::Certs::new("listener", dir.path());
    let first = certs.local_leaf("localhost");
    let (cert, key) = certs.write_pair("listener", &first, false);
    let root = certs.write_root();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let listener = format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\nscan_interval = \"1s\"\nsystem_trust = false\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\nbasic_auth_user = \"prometheus\"\n\
         basic_auth_password_file = \"{}\"\n",
        cert.display(),
        key.display(),
        password.display()
    );
    std::fs::write(&config_path, listener).unwrap();

    let curl = |path: &str, user: Option<&str>| -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&root)
            .arg(format!("https://localhost:{port}{path}"));
        if let Some(user) = user {
            cmd.args(["-u", user]);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_certvigil"))
        .args(["daemon", "--no-cache", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("HTTPS /readyz", Duration::from_secs(30), || {
        curl("/readyz", None) == "200"
    });
    assert_eq!(curl("/healthz", None), "200", "liveness stays open");
    assert_eq!(curl("/metrics", None), "401");
    assert_eq!(curl("/metrics", Some("prometheus:wrong")), "401");
    assert_eq!(curl("/status", Some("other:s3cret")), "401");
    assert_eq!(curl("/metrics", Some("prometheus:s3cret")), "200");

    // A renewed listener certificate is served without a restart.
    let serial = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = serial();
    let second = certs.local_leaf("localhost");
    let (new_cert, new_key) = certs.write_pair("listener-next", &second, false);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    wait_for(
        "the renewed listener certificate",
        Duration::from_secs(10),
        || serial() != before,
    );
    assert_eq!(curl("/metrics", Some("prometheus:s3cret")), "200");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn each_configured_source_reports_up_items_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Per source");
    let certs = dir.path().join("certs");
    write(&certs, "a.pem", &pki.leaf(&Spec::leaf("a.example")).pem);
    write(&certs, "sub/b.pem", &pki.leaf(&Spec::leaf("b.example")).pem);
    write(
        &certs,
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    let missing = dir.path().join("not-there");
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!(
        "[[source]]\npath = \"{}\"\nlabels = {{ team = \"pki\" }}\n[[source]]\npath = \"{}\"\n",
        certs.display(),
        missing.display()
    );
    std::fs::write(&config_path, config(dir.path(), port, &sources)).unwrap();
    let daemon = Daemon::start(&config_path, port);
    let metrics = daemon.metrics();
    let has = |line: String| assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    let (c, m) = (certs.display(), missing.display());
    has(format!("certvigil_source_up{{source=\"{c}\"}} 1"));
    has(format!("certvigil_source_items{{source=\"{c}\"}} 2"));
    has(format!(
        "certvigil_source_problems{{source=\"{c}\",reason=\"parse\"}} 1"
    ));
    has(format!("certvigil_source_up{{source=\"{m}\"}} 0"));
    has(format!("certvigil_source_items{{source=\"{m}\"}} 0"));
    // The source's labels ride on its certificate series (both certificates, none elsewhere).
    let labelled = metrics
        .lines()
        .filter(|l| {
            l.starts_with("certvigil_cert_not_after_timestamp_seconds{")
                && l.contains(",team=\"pki\"}")
        })
        .count();
    assert_eq!(labelled, 2, "{metrics}");
    // Scan durations accumulate in a histogram across scans.
    has("# TYPE certvigil_scan_seconds histogram".to_owned());
    wait_for("a second scan", Duration::from_secs(10), || {
        daemon
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("certvigil_scan_seconds_count "))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 2)
    });
    let metrics = daemon.metrics();
    let inf = metrics
        .lines()
        .find_map(|l| l.strip_prefix("certvigil_scan_seconds_bucket{le=\"+Inf\"} "))
        .unwrap();
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("certvigil_scan_seconds_count "))
        .unwrap();
    assert_eq!(inf, count);
}

/// An endpoint with `interval` is probed on its own schedule: the daemon wakes up for it
/// although the scan interval is an hour, and file-triggered rescans in between do not
/// connect to it again.
#[test]
fn endpoints_are_probed_on_their_own_interval() {
    use std::sync::atomic::Ordering;
    // A server that is not TLS (the probe fails at the handshake), counting connections.
    let (endpoint, connections) =
        certvigil_testutil::servers::Listener::garbage_counted(b"220 not tls\r\n");
    let endpoint_port = endpoint.port;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Interval");
    let certs = dir.path().join("certs");
    write(&certs, "root.pem", &pki.root.cert.pem);
    let port = free_port();
    let sources = format!(
        "[[source]]\npath = \"{}\"\n[[source]]\nendpoint = \"127.0.0.1:{endpoint_port}\"\ntimeout = \"2s\"\ninterval = \"3s\"\n",
        certs.display()
    );
    let config_path = dir.path().join("certvigil.toml");
    let text = config(dir.path(), port, &sources)
        .replace("scan_interval = \"1s\"", "scan_interval = \"1h\"");
    std::fs::write(&config_path, text).unwrap();
    let daemon = Daemon::start(&config_path, port);
    let started = Instant::now();
    // The first scan and its follow-up rescan: one probe between them.
    wait_for("the first probe", Duration::from_secs(10), || {
        connections.load(Ordering::SeqCst) >= 1
    });
    // File changes within the interval rescan without probing.
    for i in 0..3 {
        let leaf = pki.leaf(&Spec::leaf(&format!("n{i}.example")));
        write(&certs, &format!("n{i}.pem"), &leaf.pem);
        let fingerprint = certvigil_core::cert::hex(&certvigil_core::cert::fingerprint(&leaf.der));
        wait_for("the new file", Duration::from_secs(10), || {
            daemon.metrics().contains(&fingerprint)
        });
        // Between probes, a rescan still reports the endpoint's last outcome.
        let failing =
            format!("certvigil_endpoint_probe_error{{source=\"127.0.0.1:{endpoint_port}\"");
        assert!(daemon.metrics().contains(&failing), "{failing}");
    }
    let elapsed = started.elapsed();
    if elapsed < Duration::from_millis(2500) {
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "rescans reuse the probe"
        );
    }
    // Woken for the endpoint (3 s less up to 10 %) with the scan interval at an hour.
    wait_for("the scheduled probe", Duration::from_secs(10), || {
        connections.load(Ordering::SeqCst) >= 2
    });
    let probes = connections.load(Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        probes as f64 <= elapsed / 2.7 + 2.0,
        "{probes} probes in {elapsed:.1} s: only when due"
    );
}

/// A stopped daemon leaves its decoded files behind; the next start takes the unchanged ones
/// from there and reads only the file renewed while it was down.
#[test]
fn a_restarted_daemon_reads_only_what_changed_while_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Restart");
    let certs = dir.path().join("certs");
    let leaves: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let leaf = pki.leaf(&Spec::leaf(&format!("{name}.example")));
            write(&certs, &format!("{name}.pem"), &leaf.pem);
            leaf
        })
        .collect();
    // Files changed within the last two seconds are never remembered.
    std::thread::sleep(Duration::from_millis(2100));
    let cache = dir.path().join("cache");
    let port = free_port();
    let config_path = dir.path().join("certvigil.toml");
    let sources = format!("[[source]]\npath = \"{}\"\n", certs.display());
    std::fs::write(&config_path, config(dir.path(), port, &sources)).unwrap();
    let fingerprint =
        |der: &[u8]| certvigil_core::cert::hex(&certvigil_core::cert::fingerprint(der));

    let mut first = Daemon::start_cached(&config_path, port, &cache);
    for leaf in &leaves {
        assert!(first.metrics().contains(&fingerprint(&leaf.der)));
    }
    first.signal("TERM");
    assert!(first.child.wait().unwrap().success());
    assert!(first.log().contains("file cache saved"), "{}", first.log());
    assert!(cache.join("files").is_file());

    let renewed = pki.leaf(&Spec::leaf("b.example"));
    let tmp = write(&certs, ".b.pem.new", &renewed.pem);
    std::fs::rename(&tmp, certs.join("b.pem")).unwrap();

    let second = Daemon::start_cached(&config_path, port, &cache);
    let log = second.log();
    assert!(log.contains("file cache loaded"), "{log}");
    assert!(
        log.contains("from_memory=2"),
        "only b.pem is read again: {log}"
    );
    let metrics = second.metrics();
    assert!(metrics.contains(&fingerprint(&renewed.der)));
    assert!(!metrics.contains(&fingerprint(&leaves[1].der)));
    assert!(metrics.contains(&fingerprint(&leaves[0].der)));
    assert!(metrics.contains(&fingerprint(&leaves[2].der)));
}
