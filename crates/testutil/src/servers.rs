//! Real servers on loopback for acceptance tests: nginx, `openssl s_server`, postfix, dovecot,
//! PostgreSQL and slapd from the Debian packages (see scripts/install-deps), plus plain TCP
//! listeners that misbehave.
//!
//! Every server runs in its own temporary directory on a free port and is stopped when its
//! [`Server`] is dropped. A missing server binary fails the test with a message naming
//! scripts/install-deps: CI installs them all, so nothing is ever skipped silently.

use std::fs;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Issued, Pki, Spec};

/// How long a server may take to start listening.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Fails (never skips) when a server binary is missing: CI installs them all.
pub fn require(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the test servers with scripts/install-deps (as root)"
    );
    path
}

pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` distinct loopback ports nobody listens on right now (held together while picked).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A world-readable temp dir: several servers drop privileges before reading their files.
pub fn server_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("certvigil-ep-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

/// Runs a command to completion; failure panics with its output.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server process, stopped with `stop_signal` (then SIGKILL) when dropped.
pub struct Server {
    name: String,
    child: Child,
    stop_signal: &'static str,
    logs: Vec<PathBuf>,
}

impl Server {
    /// Spawns `cmd` with stdout and stderr in `<dir>/<name>.out` and `.err`.
    pub fn start(
        name: impl Into<String>,
        cmd: &mut Command,
        dir: &Path,
        stop_signal: &'static str,
    ) -> Self {
        let name = name.into();
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Self {
            name,
            child,
            stop_signal,
            logs: vec![out, err],
        }
    }

    /// Another log file to show when the server fails to start.
    pub fn log_also(mut self, path: PathBuf) -> Self {
        self.logs.push(path);
        self
    }

    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                format!(
                    "--- {}\n{}",
                    p.display(),
                    fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Waits until every port accepts TCP connections; panics with the logs otherwise.
    pub fn wait_ready(self, ports: &[u16]) -> Self {
        self.try_wait_ready(ports).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Server::wait_ready`], but returns the failure (with the logs) instead of
    /// panicking, for callers that retry on other ports.
    pub fn try_wait_ready(mut self, ports: &[u16]) -> Result<Self, String> {
        let started = Instant::now();
        for port in ports {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!(
                        "{} exited with {status} before listening:\n{}",
                        self.name,
                        self.logs()
                    ));
                }
                if started.elapsed() >= READY_TIMEOUT {
                    return Err(format!(
                        "{} not listening on {port} after {READY_TIMEOUT:?}:\n{}",
                        self.name,
                        self.logs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(self)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-s", self.stop_signal, &pid])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test PKI and the directory its PEM files go to.
pub struct Certs {
    pub pki: Pki,
    pub dir: PathBuf,
}

impl Certs {
    pub fn new(name: &str, dir: &Path) -> Self {
        Self {
            pki: Pki::new(name),
            dir: dir.to_owned(),
        }
    }

    /// A leaf for `name` that is also valid for localhost and 127.0.0.1.
    pub fn local_leaf(&self, name: &str) -> Issued {
        let mut spec = Spec::leaf(name);
        spec.dns_names.push("localhost".into());
        spec.ip_names.push([127, 0, 0, 1].into());
        self.pki.leaf(&spec)
    }

    /// Writes `<stem>.crt` (leaf + intermediate unless `leaf_only`) and `<stem>.key` (0600).
    pub fn write_pair(&self, stem: &str, leaf: &Issued, leaf_only: bool) -> (PathBuf, PathBuf) {
        let chain = if leaf_only {
            leaf.pem.clone()
        } else {
            self.pki.fullchain(leaf)
        };
        let cert = write(&self.dir, &format!("{stem}.crt"), &chain);
        let key = write(&self.dir, &format!("{stem}.key"), &leaf.key_pem());
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }

    /// Writes the root certificate to `root.crt`.
    pub fn write_root(&self) -> PathBuf {
        write(&self.dir, "root.crt", &self.pki.root.cert.pem)
    }

    /// Writes the intermediate certificate to `intermediate.crt`.
    pub fn write_intermediate(&self) -> PathBuf {
        write(
            &self.dir,
            "intermediate.crt",
            &self.pki.intermediate.cert.pem,
        )
    }
}

// ---------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------

/// One nginx `server` block listening with TLS on 127.0.0.1.
pub struct NginxSite {
    pub port: u16,
    /// Extra `listen` parameters, e.g. `default_server` or `http2`.
    pub listen: String,
    /// Extra directives, e.g. `server_name a.test;` or `ssl_protocols TLSv1.3;`.
    pub directives: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl NginxSite {
    /// A site serving the certificate file and key of `pair` (as [`Certs::write_pair`]).
    pub fn new(port: u16, pair: &(PathBuf, PathBuf)) -> Self {
        Self {
            port,
            listen: String::new(),
            directives: String::new(),
            cert: pair.0.clone(),
            key: pair.1.clone(),
        }
    }

    pub fn listen(mut self, parameters: &str) -> Self {
        self.listen = parameters.to_owned();
        self
    }

    pub fn directives(mut self, directives: &str) -> Self {
        self.directives = directives.to_owned();
        self
    }

    fn block(&self) -> String {
        format!(
            "server {{ listen 127.0.0.1:{} ssl {}; {} ssl_certificate {}; \
             ssl_certificate_key {}; return 200 \"ok\\n\"; }}\n",
            self.port,
            self.listen,
            self.directives,
            self.cert.display(),
            self.key.display()
        )
    }
}

/// Starts nginx in `dir` with `sites` (TLS 1.2 and 1.3 unless a site says otherwise) and
/// waits until every site's port listens.
pub fn nginx(dir: &Path, sites: &[NginxSite]) -> Server {
    let nginx = require("/usr/sbin/nginx");
    let tmp = dir.join("tmp");
    if !tmp.exists() {
        fs::create_dir(&tmp).unwrap();
    }
    // As root, workers would otherwise switch to an unprivileged user.
    let user = if is_root() { "user root;" } else { "" };
    let blocks: String = sites.iter().map(NginxSite::block).collect();
    let conf = format!(
        "{user}\nworker_processes 1;\npid nginx.pid;\nerror_log error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\naccess_log off;\nclient_body_temp_path tmp/body;\nproxy_temp_path tmp/proxy;\n\
         fastcgi_temp_path tmp/fastcgi;\nuwsgi_temp_path tmp/uwsgi;\nscgi_temp_path tmp/scgi;\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n{blocks}}}\n"
    );
    write(dir, "nginx.conf", &conf);
    let prefix = format!("{}/", dir.display());
    let mut ports: Vec<u16> = sites.iter().map(|s| s.port).collect();
    ports.sort_unstable();
    ports.dedup();
    Server::start(
        "nginx",
        Command::new(nginx).args(["-p", &prefix, "-c", "nginx.conf", "-g", "daemon off;"]),
        dir,
        "TERM",
    )
    .log_also(dir.join("error.log"))
    .wait_ready(&ports)
}

// ---------------------------------------------------------------------------------------
// openssl s_server
// ---------------------------------------------------------------------------------------

/// `openssl s_server -Verify 1` on `port`: serves `leaf` and the intermediate of `certs`
/// and requires a client certificate issued by the root of `certs`. `extra` are more
/// s_server options, e.g. `-tls1_2`.
pub fn s_server(certs: &Certs, leaf: &Issued, port: u16, extra: &[&str]) -> Server {
    let openssl = require("/usr/bin/openssl");
    let name = format!("s_server-{port}");
    let (cert, key) = certs.write_pair(&name, leaf, true);
    let intermediate = certs.write_intermediate();
    let root = certs.write_root();
    let accept = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(openssl);
    cmd.args(["s_server", "-accept", &accept, "-www", "-Verify", "1"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-cert_chain")
        .arg(&intermediate)
        .arg("-CAfile")
        .arg(&root)
        .args(extra);
    Server::start(name, &mut cmd, &certs.dir, "TERM").wait_ready(&[port])
}

/// A client certificate (clientAuth only) issued by the root of `certs`, written as
/// `<stem>.crt` and `<stem>.key`.
pub fn client_cert(certs: &Certs, stem: &str) -> (PathBuf, PathBuf) {
    let mut spec = Spec::leaf("client.test");
    spec.server_auth = false;
    spec.client_auth = true;
    let client = certs.pki.root.issue(&spec);
    certs.write_pair(stem, &client, true)
}

// ---------------------------------------------------------------------------------------
// postfix, dovecot, PostgreSQL, slapd
// ---------------------------------------------------------------------------------------

const POSTFIX_SERVICES: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// A postfix master in `dir` with smtpd (STARTTLS offered) on 127.0.0.1:`port`, as host
/// mx.certvigil.test, serving the `cert` chain file with `key`.
pub fn postfix(dir: &Path, cert: &Path, key: &Path, port: u16) -> Server {
    let postfix = require("/usr/sbin/postfix");
    let master = require("/usr/lib/postfix/sbin/master");
    let conf = dir.join("conf");
    fs::create_dir(&conf).unwrap();
    fs::create_dir(dir.join("data")).unwrap();
    fs::create_dir(dir.join("spool")).unwrap();
    run(Command::new("chown").arg("postfix").arg(dir.join("data")));
    let main_cf = format!(
        "compatibility_level = 3.6\nqueue_directory = {d}/spool\ndata_directory = {d}/data\n\
         mail_owner = postfix\nmyhostname = mx.certvigil.test\ninet_interfaces = loopback-only\n\
         inet_protocols = ipv4\nmydestination =\nalias_maps =\nalias_database =\n\
         maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
         smtpd_tls_chain_files = {key}, {cert}\nsmtpd_tls_security_level = may\n",
        d = dir.display(),
        key = key.display(),
        cert = cert.display(),
    );
    write(&conf, "main.cf", &main_cf);
    let master_cf = format!("127.0.0.1:{port} inet n - n - - smtpd\n{POSTFIX_SERVICES}");
    write(&conf, "master.cf", &master_cf);
    let check = Command::new(postfix)
        .arg("-c")
        .arg(&conf)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "postfix check failed: {}\n{}",
        String::from_utf8_lossy(&check.stderr),
        fs::read_to_string(dir.join("maillog")).unwrap_or_default()
    );
    Server::start(
        "postfix",
        Command::new(master).arg("-c").arg(&conf).arg("-d"),
        dir,
        "TERM",
    )
    .log_also(dir.join("maillog"))
    .wait_ready(&[port])
}

/// dovecot in `dir` with IMAP and POP3 (STARTTLS) on 127.0.0.1:`imap` and :`pop3`.
pub fn dovecot(dir: &Path, cert: &Path, key: &Path, imap: u16, pop3: u16) -> Server {
    let dovecot = require("/usr/sbin/dovecot");
    let conf = format!(
        "protocols = imap pop3\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
         instance_name = certvigil-{imap}\nlog_path = {d}/dovecot.log\n\
         ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n\
         passdb {{\n  driver = static\n  args = password=unused\n}}\n\
         userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home=/nonexistent\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  \
         inet_listener pop3s {{\n    port = 0\n  }}\n}}\n",
        d = dir.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = write(dir, "dovecot.conf", &conf);
    Server::start(
        "dovecot",
        Command::new(dovecot).arg("-c").arg(&conf_path).arg("-F"),
        dir,
        "TERM",
    )
    .log_also(dir.join("dovecot.log"))
    .wait_ready(&[imap, pop3])
}

/// The newest `/usr/lib/postgresql/*/bin/<name>`.
pub fn postgres_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.exists());
    versions.sort();
    let path = versions.pop().unwrap_or_else(|| {
        panic!("/usr/lib/postgresql/*/bin/{name} is missing: run scripts/install-deps")
    });
    PathBuf::from(require(path.to_str().unwrap()))
}

/// PostgreSQL refuses to run as root: drop to the postgres user when we are root.
fn as_postgres(program: &Path) -> Command {
    if !is_root() {
        return Command::new(program);
    }
    let mut cmd = Command::new(require("/usr/bin/setpriv"));
    cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    cmd
}

/// A fresh PostgreSQL cluster in `dir/data` listening on 127.0.0.1:`port` with `ssl=on`.
/// `cert` and `key` must be inside `dir` (handed to the postgres user when we are root).
pub fn postgres(dir: &Path, cert: &Path, key: &Path, port: u16) -> Server {
    let initdb = postgres_bin("initdb");
    let postgres = postgres_bin("postgres");
    if is_root() {
        run(Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(dir));
    }
    let data = dir.join("data");
    run(as_postgres(&initdb)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .env("LC_ALL", "C"));
    let mut cmd = as_postgres(&postgres);
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()));
    Server::start("postgres", &mut cmd, dir, "INT").wait_ready(&[port])
}

/// slapd in `dir` with plain LDAP (StartTLS) on 127.0.0.1:`port`.
pub fn slapd(dir: &Path, cert: &Path, key: &Path, port: u16) -> Server {
    let slapd = require("/usr/sbin/slapd");
    require("/etc/ldap/schema/core.schema");
    fs::create_dir(dir.join("db")).unwrap();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\npidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n\
         database mdb\nmaxsize 10485760\nsuffix \"dc=certvigil,dc=test\"\n\
         rootdn \"cn=admin,dc=certvigil,dc=test\"\nrootpw unused\ndirectory {d}/db\n",
        d = dir.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = write(dir, "slapd.conf", &conf);
    let url = format!("ldap://127.0.0.1:{port}/");
    Server::start(
        "slapd",
        Command::new(slapd)
            .arg("-f")
            .arg(&conf_path)
            .args(["-h", &url, "-d", "0"]),
        dir,
        "TERM",
    )
    .wait_ready(&[port])
}

// ---------------------------------------------------------------------------------------
// Misbehaving TCP listeners
// ---------------------------------------------------------------------------------------

/// A loopback TCP listener serving each connection on its own thread until dropped.
pub struct Listener {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn new<F>(serve: F) -> Self
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let serve = serve.clone();
                std::thread::spawn(move || serve(stream));
            }
        });
        Self {
            port,
            stop,
            accept: Some(accept),
        }
    }

    /// Accepts and never says a word; each connection ends when the client closes it.
    pub fn silent() -> Self {
        Self::new(|stream| drain(&stream))
    }

    /// Answers every connection with `bytes` (not TLS), then waits for the client to close.
    pub fn garbage(bytes: &'static [u8]) -> Self {
        Self::garbage_counted(bytes).0
    }

    /// As [`Self::garbage`], counting the connections: how often a probe really connected.
    pub fn garbage_counted(bytes: &'static [u8]) -> (Self, Arc<AtomicUsize>) {
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let listener = Self::new(move |mut stream| {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(bytes);
            drain(&stream);
        });
        (listener, connections)
    }
}

/// Reads and discards until the peer closes (or 30 s pass).
fn drain(mut stream: &TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = io::copy(&mut stream, &mut io::sink());
    let _ = stream.shutdown(Shutdown::Both);
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
