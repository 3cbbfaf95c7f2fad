//! A real etcd 3.4 (Debian `etcd-server`) on free loopback ports with client and peer mTLS, and
//! `etcdctl` (Debian `etcd-client`) to talk to it, for the internal CA's acceptance tests.
//!
//! The recipe follows ../shared/RIG.md: one member whose client and peer URLs are
//! `https://127.0.0.1:PORT`, `--client-cert-auth` and `--peer-client-cert-auth` with one trusted
//! CA for both. The serving certificate needs SAN IP:127.0.0.1 and the clientAuth EKU as well,
//! because etcd reuses it as the client certificate of its gateway and peer dials.
//!
//! A missing `/usr/bin/etcd` or `/usr/bin/etcdctl` fails the test with a message naming
//! scripts/install-deps: CI installs them, so nothing is ever skipped silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::servers::{Server, free_port, require};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// How long etcd may take to answer `endpoint health` after it listens.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

/// PEM files of one TLS identity.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What etcd serves and trusts.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// Trusted for client and peer certificates (`--trusted-ca-file`, `--peer-trusted-ca-file`).
    pub ca: PathBuf,
    /// `--cert-file` / `--key-file`.
    pub server: TlsFiles,
    /// `--peer-cert-file` / `--peer-key-file`.
    pub peer: TlsFiles,
}

/// A running single-member etcd, stopped (SIGTERM) when dropped.
pub struct Etcd {
    pub client_port: u16,
    pub peer_port: u16,
    server: Server,
}

impl Etcd {
    /// Starts etcd with its data in `dir/data` and logs in `dir/etcd.{out,err}`, and waits until
    /// both ports accept connections. `health` is a client identity used to wait until
    /// `etcdctl endpoint health` passes.
    pub fn start(dir: &Path, tls: &EtcdTls, health: &TlsFiles) -> Self {
        require(ETCD);
        require(ETCDCTL);
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("https://127.0.0.1:{peer_port}");
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
        let mut cmd = Command::new(ETCD);
        cmd.args(["--name", "s1", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("s1={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--cert-file", &path(&tls.server.cert)])
            .args(["--key-file", &path(&tls.server.key)])
            .args(["--trusted-ca-file", &path(&tls.ca)])
            .arg("--client-cert-auth")
            .args(["--peer-cert-file", &path(&tls.peer.cert)])
            .args(["--peer-key-file", &path(&tls.peer.key)])
            .args(["--peer-trusted-ca-file", &path(&tls.ca)])
            .arg("--peer-client-cert-auth")
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        let server =
            Server::start("etcd", &mut cmd, dir, "TERM").wait_ready(&[client_port, peer_port]);
        let etcd = Self {
            client_port,
            peer_port,
            server,
        };
        let started = Instant::now();
        loop {
            let out = etcd.etcdctl(&tls.ca, health, &["endpoint", "health"]);
            if out.status.success() {
                break;
            }
            assert!(
                started.elapsed() < HEALTHY_TIMEOUT,
                "etcd not healthy after {HEALTHY_TIMEOUT:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                etcd.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    pub fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// Runs `ETCDCTL_API=3 etcdctl` against this member with the given CA and client identity.
    /// Short timeouts: a refused client certificate shows up as "context deadline exceeded".
    pub fn etcdctl(&self, ca: &Path, client: &TlsFiles, args: &[&str]) -> Output {
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.client_url()])
            .arg("--cacert")
            .arg(ca)
            .arg("--cert")
            .arg(&client.cert)
            .arg("--key")
            .arg(&client.key)
            .args(["--dial-timeout", "2s", "--command-timeout", "3s"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{ETCDCTL}: {e}"))
    }

    /// etcd's stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.server.logs()
    }
}
