//! Probes real servers on loopback: nginx, `openssl s_server`, postfix, dovecot, PostgreSQL
//! and slapd from the Debian packages (see scripts/install-deps), plus hostile listeners.
//! Every test starts its own servers on free ports in its own temporary directory.

use std::fs;
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certvigil_source::endpoint::{EndpointSpec, ProbeOutcome, StartTls, probe, root_store};
use certvigil_testutil::{Issued, Pki, Spec, self_signed_leaf};
use rustls::RootCertStore;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Fails (never skips) when a server binary is missing: CI installs them all.
fn require(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the test servers with scripts/install-deps (as root)"
    );
    path
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A world-readable temp dir: several servers drop privileges before reading their files.
fn server_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("certvigil-ep-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server process, stopped with `stop_signal` when dropped.
struct Server {
    name: &'static str,
    child: Child,
    stop_signal: &'static str,
    logs: Vec<PathBuf>,
}

impl Server {
    fn start(name: &'static str, cmd: &mut Command, dir: &Path, stop_signal: &'static str) -> Self {
        let out = dir.join(format!("{name}.out"));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(dir.join(format!("{name}.err"))).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Self {
            name,
            child,
            stop_signal,
            logs: vec![out.clone(), out.with_extension("err")],
        }
    }

    fn log_also(mut self, path: PathBuf) -> Self {
        self.logs.push(path);
        self
    }

    fn logs(&self) -> String {
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

    /// Waits until every port accepts TCP connections.
    fn wait_ready(mut self, ports: &[u16]) -> Self {
        let started = Instant::now();
        for port in ports {
            while StdStream::connect(("127.0.0.1", *port)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "{} exited with {status} before listening:\n{}",
                        self.name,
                        self.logs()
                    );
                }
                assert!(
                    started.elapsed() < READY_TIMEOUT,
                    "{} not listening on {port} after {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self
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

/// A test PKI and its PEM files.
struct Certs {
    pki: Pki,
    dir: PathBuf,
}

impl Certs {
    fn new(name: &str, dir: &Path) -> Self {
        Self {
            pki: Pki::new(name),
            dir: dir.to_owned(),
        }
    }

    fn anchors(&self) -> Arc<RootCertStore> {
        Arc::new(root_store(std::slice::from_ref(&self.pki.root.cert.der)))
    }

    /// A leaf for `name` that is also valid for localhost and 127.0.0.1.
    fn local_leaf(&self, name: &str) -> Issued {
        let mut spec = Spec::leaf(name);
        spec.dns_names.push("localhost".into());
        spec.ip_names.push([127, 0, 0, 1].into());
        self.pki.leaf(&spec)
    }

    /// Writes `<stem>.crt` (leaf + intermediate unless `leaf_only`) and `<stem>.key`.
    fn write_pair(&self, stem: &str, leaf: &Issued, leaf_only: bool) -> (PathBuf, PathBuf) {
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
}

fn spec(arg: &str) -> EndpointSpec {
    let mut spec = EndpointSpec::parse(arg).unwrap_or_else(|| panic!("{arg} is an endpoint"));
    spec.timeout = Duration::from_secs(10);
    spec
}

fn with_sni(mut spec: EndpointSpec, sni: &str) -> EndpointSpec {
    spec.sni = Some(sni.into());
    spec
}

/// A probe that must complete: no error, the expected leaf first, a trusted chain.
fn assert_trusted(outcome: &ProbeOutcome, leaf: &Issued, chain_len: usize) {
    assert_eq!(outcome.error, None, "{outcome:#?}");
    assert_eq!(outcome.chain.len(), chain_len, "{outcome:#?}");
    assert_eq!(outcome.chain[0], leaf.der, "leaf differs: {outcome:#?}");
    assert_eq!(outcome.info.verify_error, None, "{outcome:#?}");
    assert!(outcome.info.tls_version.is_some() && outcome.info.cipher_suite.is_some());
}

fn verify_error(outcome: &ProbeOutcome) -> &str {
    outcome
        .info
        .verify_error
        .as_deref()
        .unwrap_or_else(|| panic!("no verify error: {outcome:#?}"))
}

fn error(outcome: &ProbeOutcome) -> &str {
    outcome
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("no error: {outcome:#?}"))
}

// ---------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------

struct NginxPorts {
    sni: u16,
    expired: u16,
    no_intermediate: u16,
    self_signed: u16,
    tls12: u16,
    tls13: u16,
}

fn nginx_server(cert: &(PathBuf, PathBuf), listen: String, extra: &str) -> String {
    format!(
        "server {{ listen {listen}; {extra} ssl_certificate {}; ssl_certificate_key {}; \
         return 200 \"ok\\n\"; }}\n",
        cert.0.display(),
        cert.1.display()
    )
}

#[tokio::test]
async fn nginx_sni_expiry_chains_and_versions() {
    let nginx = require("/usr/sbin/nginx");
    let dir = server_dir();
    let d = dir.path();
    fs::create_dir(d.join("tmp")).unwrap();
    let certs = Certs::new("nginx", d);
    let pki = &certs.pki;

    let a = pki.leaf(&Spec::leaf("a.test"));
    let b = pki.leaf(&Spec::leaf("b.test"));
    let expired = pki.leaf(&Spec::leaf("expired.test").valid_days(-90, -1));
    let lonely = pki.leaf(&Spec::leaf("lonely.test"));
    let own = self_signed_leaf(&Spec::leaf("self.test"));
    let v12 = certs.local_leaf("v12.test");
    let v13 = certs.local_leaf("v13.test");

    let ports = NginxPorts {
        sni: free_port(),
        expired: free_port(),
        no_intermediate: free_port(),
        self_signed: free_port(),
        tls12: free_port(),
        tls13: free_port(),
    };
    let listen = |port: u16| format!("127.0.0.1:{port} ssl");
    let servers = [
        nginx_server(
            &certs.write_pair("a", &a, false),
            format!("{} default_server", listen(ports.sni)),
            "server_name a.test;",
        ),
        nginx_server(
            &certs.write_pair("b", &b, false),
            listen(ports.sni),
            "server_name b.test;",
        ),
        nginx_server(
            &certs.write_pair("expired", &expired, false),
            listen(ports.expired),
            "",
        ),
        nginx_server(
            &certs.write_pair("lonely", &lonely, true),
            listen(ports.no_intermediate),
            "",
        ),
        nginx_server(
            &certs.write_pair("self", &own, true),
            listen(ports.self_signed),
            "",
        ),
        nginx_server(
            &certs.write_pair("v12", &v12, false),
            listen(ports.tls12),
            "ssl_protocols TLSv1.2;",
        ),
        nginx_server(
            &certs.write_pair("v13", &v13, false),
            format!("{} http2", listen(ports.tls13)),
            "ssl_protocols TLSv1.3;",
        ),
    ];
    // As root, workers would otherwise switch to an unprivileged user.
    let user = if is_root() { "user root;" } else { "" };
    let conf = format!(
        "{user}\nworker_processes 1;\npid nginx.pid;\nerror_log error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\naccess_log off;\nclient_body_temp_path tmp/body;\nproxy_temp_path tmp/proxy;\n\
         fastcgi_temp_path tmp/fastcgi;\nuwsgi_temp_path tmp/uwsgi;\nscgi_temp_path tmp/scgi;\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n{}}}\n",
        servers.concat()
    );
    write(d, "nginx.conf", &conf);
    let prefix = format!("{}/", d.display());
    let _nginx = Server::start(
        "nginx",
        Command::new(nginx).args(["-p", &prefix, "-c", "nginx.conf", "-g", "daemon off;"]),
        d,
        "TERM",
    )
    .log_also(d.join("error.log"))
    .wait_ready(&[
        ports.sni,
        ports.expired,
        ports.no_intermediate,
        ports.self_signed,
        ports.tls12,
        ports.tls13,
    ]);
    let anchors = certs.anchors();

    // SNI picks the certificate; the second probe of the same name still records the chain.
    let sni_a = with_sni(spec(&format!("localhost:{}", ports.sni)), "a.test");
    assert_trusted(&probe(&sni_a, anchors.clone()).await, &a, 2);
    let again = probe(&sni_a, anchors.clone()).await;
    assert_trusted(&again, &a, 2);
    assert_eq!(again.info.sni.as_deref(), Some("a.test"));
    let sni_b = probe(
        &with_sni(spec(&format!("localhost:{}", ports.sni)), "b.test"),
        anchors.clone(),
    )
    .await;
    assert_trusted(&sni_b, &b, 2);
    assert_ne!(sni_b.chain[0], again.chain[0]);

    // No matching server_name: nginx's default certificate, which does not cover the name.
    let by_name = probe(&spec(&format!("localhost:{}", ports.sni)), anchors.clone()).await;
    assert_eq!(by_name.error, None);
    assert_eq!(by_name.chain[0], a.der);
    assert!(
        verify_error(&by_name).contains("not valid for name"),
        "{by_name:#?}"
    );
    // No SNI at all for an IP; the IP is what must be covered.
    let by_ip = probe(&spec(&format!("127.0.0.1:{}", ports.sni)), anchors.clone()).await;
    assert_eq!(by_ip.info.sni, None);
    assert_eq!(by_ip.chain[0], a.der);
    assert!(
        verify_error(&by_ip).contains("not valid for name"),
        "{by_ip:#?}"
    );

    let expired_out = probe(
        &with_sni(
            spec(&format!("127.0.0.1:{}", ports.expired)),
            "expired.test",
        ),
        anchors.clone(),
    )
    .await;
    assert_eq!(expired_out.error, None);
    assert_eq!(
        expired_out.chain,
        vec![expired.der.clone(), pki.intermediate.cert.der.clone()]
    );
    assert!(
        verify_error(&expired_out).contains("expired"),
        "{expired_out:#?}"
    );

    let lonely_out = probe(
        &with_sni(
            spec(&format!("127.0.0.1:{}", ports.no_intermediate)),
            "lonely.test",
        ),
        anchors.clone(),
    )
    .await;
    assert_eq!(lonely_out.error, None);
    assert_eq!(lonely_out.chain, vec![lonely.der.clone()]);
    assert!(
        verify_error(&lonely_out).contains("UnknownIssuer"),
        "{lonely_out:#?}"
    );

    let own_out = probe(
        &with_sni(
            spec(&format!("127.0.0.1:{}", ports.self_signed)),
            "self.test",
        ),
        anchors.clone(),
    )
    .await;
    assert_eq!(own_out.error, None);
    assert_eq!(own_out.chain, vec![own.der.clone()]);
    verify_error(&own_out);
    // Trusting the self-signed leaf itself does not make it an acceptable server chain.
    let own_anchor = Arc::new(root_store(std::slice::from_ref(&own.der)));
    let own_trusted = probe(
        &with_sni(
            spec(&format!("127.0.0.1:{}", ports.self_signed)),
            "self.test",
        ),
        own_anchor,
    )
    .await;
    assert_eq!(own_trusted.chain, vec![own.der.clone()]);

    let mut tls12 = spec(&format!("127.0.0.1:{}", ports.tls12));
    tls12.alpn = vec!["h2".into(), "http/1.1".into()];
    let tls12_out = probe(&tls12, anchors.clone()).await;
    assert_trusted(&tls12_out, &v12, 2);
    assert_eq!(tls12_out.info.tls_version.as_deref(), Some("TLSv1.2"));
    assert!(
        tls12_out
            .info
            .cipher_suite
            .as_deref()
            .unwrap()
            .starts_with("TLS_ECDHE_"),
        "{tls12_out:#?}"
    );
    assert_eq!(tls12_out.info.alpn.as_deref(), Some("http/1.1"));

    let mut tls13 = spec(&format!("localhost:{}", ports.tls13));
    tls13.alpn = vec!["h2".into(), "http/1.1".into()];
    let tls13_out = probe(&tls13, anchors.clone()).await;
    assert_trusted(&tls13_out, &v13, 2);
    assert_eq!(tls13_out.info.tls_version.as_deref(), Some("TLSv1.3"));
    assert!(
        tls13_out
            .info
            .cipher_suite
            .as_deref()
            .unwrap()
            .starts_with("TLS13_"),
        "{tls13_out:#?}"
    );
    assert_eq!(tls13_out.info.alpn.as_deref(), Some("h2"));

    // Without the test root nothing is trusted, but everything is still recorded.
    let untrusted = probe(&tls13, Arc::new(RootCertStore::empty())).await;
    assert_eq!(untrusted.error, None);
    assert_eq!(untrusted.chain.len(), 2);
    verify_error(&untrusted);
}

// ---------------------------------------------------------------------------------------
// openssl s_server with mandatory client certificates
// ---------------------------------------------------------------------------------------

fn s_server(openssl: &str, dir: &Path, certs: &Certs, port: u16, extra: &[&str]) -> Server {
    let leaf = certs.local_leaf("mtls.test");
    let (cert, key) = certs.write_pair("server", &leaf, true);
    let intermediate = write(dir, "intermediate.crt", &certs.pki.intermediate.cert.pem);
    let root = write(dir, "root.crt", &certs.pki.root.cert.pem);
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
    Server::start(
        if extra.is_empty() {
            "s_server"
        } else {
            "s_server12"
        },
        &mut cmd,
        dir,
        "TERM",
    )
    .wait_ready(&[port])
}

#[tokio::test]
async fn openssl_s_server_requiring_client_certificates() {
    let openssl = require("/usr/bin/openssl");
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("mtls", d);
    let mut client_spec = Spec::leaf("client.test");
    client_spec.server_auth = false;
    client_spec.client_auth = true;
    let client = certs.pki.root.issue(&client_spec);
    let (client_cert, client_key) = certs.write_pair("client", &client, true);

    let (port13, port12) = (free_port(), free_port());
    let _tls13 = s_server(openssl, d, &certs, port13, &[]);
    let _tls12 = s_server(openssl, d, &certs, port12, &["-tls1_2"]);
    let anchors = certs.anchors();

    for port in [port13, port12] {
        let without = probe(&spec(&format!("localhost:{port}")), anchors.clone()).await;
        assert_eq!(
            without.chain.len(),
            2,
            "chain must be recorded: {without:#?}"
        );
        assert_eq!(without.info.verify_error, None, "{without:#?}");
        assert!(
            error(&without).contains("client certificate"),
            "{without:#?}"
        );

        let mut with = spec(&format!("localhost:{port}"));
        with.client_cert = Some(client_cert.clone());
        with.client_key = Some(client_key.clone());
        let with = probe(&with, anchors.clone()).await;
        assert_eq!(with.error, None, "{with:#?}");
        assert_eq!(with.chain, without.chain);
        let expected = if port == port13 { "TLSv1.3" } else { "TLSv1.2" };
        assert_eq!(with.info.tls_version.as_deref(), Some(expected));
    }

    // A key that does not belong to the certificate is refused before connecting.
    let mut mismatched = spec(&format!("localhost:{port13}"));
    mismatched.client_cert = Some(client_cert.clone());
    mismatched.client_key = Some(d.join("server.key"));
    let out = probe(&mismatched, anchors.clone()).await;
    assert!(error(&out).starts_with("client key"), "{out:#?}");
    assert!(out.chain.is_empty());
}

// ---------------------------------------------------------------------------------------
// STARTTLS: postfix, dovecot, PostgreSQL, slapd
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

#[tokio::test]
async fn postfix_smtp_starttls() {
    let postfix = require("/usr/sbin/postfix");
    let master = require("/usr/lib/postfix/sbin/master");
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("postfix", d);
    let leaf = certs.local_leaf("mx.certvigil.test");
    let (cert, key) = certs.write_pair("smtpd", &leaf, false);
    let port = free_port();

    let conf = d.join("conf");
    fs::create_dir(&conf).unwrap();
    fs::create_dir(d.join("data")).unwrap();
    fs::create_dir(d.join("spool")).unwrap();
    run(Command::new("chown").arg("postfix").arg(d.join("data")));
    let main_cf = format!(
        "compatibility_level = 3.6\nqueue_directory = {d}/spool\ndata_directory = {d}/data\n\
         mail_owner = postfix\nmyhostname = mx.certvigil.test\ninet_interfaces = loopback-only\n\
         inet_protocols = ipv4\nmydestination =\nalias_maps =\nalias_database =\n\
         maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
         smtpd_tls_chain_files = {key}, {cert}\nsmtpd_tls_security_level = may\n",
        d = d.display(),
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
        fs::read_to_string(d.join("maillog")).unwrap_or_default()
    );
    let _master = Server::start(
        "postfix",
        Command::new(master).arg("-c").arg(&conf).arg("-d"),
        d,
        "TERM",
    )
    .log_also(d.join("maillog"))
    .wait_ready(&[port]);

    let anchors = certs.anchors();
    let smtp = spec(&format!("smtp://localhost:{port}"));
    assert_eq!(smtp.starttls, Some(StartTls::Smtp));
    assert_trusted(&probe(&smtp, anchors.clone()).await, &leaf, 2);
    let submission = spec(&format!("submission://mx.certvigil.test@127.0.0.1:{port}"));
    let out = probe(&with_sni(submission, "mx.certvigil.test"), anchors).await;
    assert_trusted(&out, &leaf, 2);
}

#[tokio::test]
async fn dovecot_imap_and_pop3_starttls() {
    let dovecot = require("/usr/sbin/dovecot");
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("dovecot", d);
    let leaf = certs.local_leaf("mail.certvigil.test");
    let (cert, key) = certs.write_pair("mail", &leaf, false);
    let (imap, pop3) = (free_port(), free_port());
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
        d = d.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = write(d, "dovecot.conf", &conf);
    let _dovecot = Server::start(
        "dovecot",
        Command::new(dovecot).arg("-c").arg(&conf_path).arg("-F"),
        d,
        "TERM",
    )
    .log_also(d.join("dovecot.log"))
    .wait_ready(&[imap, pop3]);

    let anchors = certs.anchors();
    let imap_spec = spec(&format!("imap://localhost:{imap}"));
    assert_eq!(imap_spec.starttls, Some(StartTls::Imap));
    assert_trusted(&probe(&imap_spec, anchors.clone()).await, &leaf, 2);
    let pop3_spec = spec(&format!("pop3://localhost:{pop3}"));
    assert_eq!(pop3_spec.starttls, Some(StartTls::Pop3));
    assert_trusted(&probe(&pop3_spec, anchors.clone()).await, &leaf, 2);

    // The wrong preamble for the port fails at the step that went wrong.
    let mut wrong = spec(&format!("localhost:{imap}"));
    wrong.starttls = Some(StartTls::Smtp);
    let out = probe(&wrong, anchors).await;
    assert!(
        error(&out).starts_with("SMTP STARTTLS: unexpected SMTP greeting"),
        "{out:#?}"
    );
    assert!(out.chain.is_empty());
}

fn postgres_bin(name: &str) -> PathBuf {
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

#[tokio::test]
async fn postgres_sslrequest() {
    let initdb = postgres_bin("initdb");
    let postgres = postgres_bin("postgres");
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("postgres", d);
    let leaf = certs.local_leaf("db.certvigil.test");
    let (cert, key) = certs.write_pair("db", &leaf, false);
    if is_root() {
        run(Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(d));
    }
    let data = d.join("data");
    run(as_postgres(&initdb)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .env("LC_ALL", "C"));
    let port = free_port();
    let mut cmd = as_postgres(&postgres);
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(d)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()));
    let _postgres = Server::start("postgres", &mut cmd, d, "INT").wait_ready(&[port]);

    let db = spec(&format!(
        "postgresql://app@localhost:{port}/app?sslmode=require"
    ));
    assert_eq!(db.starttls, Some(StartTls::Postgres));
    let out = probe(&db, certs.anchors()).await;
    assert_trusted(&out, &leaf, 2);
    assert_eq!(out.info.tls_version.as_deref(), Some("TLSv1.3"));
}

#[tokio::test]
async fn slapd_ldap_starttls() {
    let slapd = require("/usr/sbin/slapd");
    require("/etc/ldap/schema/core.schema");
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("slapd", d);
    let leaf = certs.local_leaf("ldap.certvigil.test");
    let (cert, key) = certs.write_pair("ldap", &leaf, false);
    fs::create_dir(d.join("db")).unwrap();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\npidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n\
         database mdb\nmaxsize 10485760\nsuffix \"dc=certvigil,dc=test\"\n\
         rootdn \"cn=admin,dc=certvigil,dc=test\"\nrootpw unused\ndirectory {d}/db\n",
        d = d.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = write(d, "slapd.conf", &conf);
    let port = free_port();
    let url = format!("ldap://127.0.0.1:{port}/");
    let _slapd = Server::start(
        "slapd",
        Command::new(slapd)
            .arg("-f")
            .arg(&conf_path)
            .args(["-h", &url, "-d", "0"]),
        d,
        "TERM",
    )
    .wait_ready(&[port]);

    let ldap = spec(&format!("ldap://localhost:{port}"));
    assert_eq!(ldap.starttls, Some(StartTls::Ldap));
    assert_trusted(&probe(&ldap, certs.anchors()).await, &leaf, 2);
}

// ---------------------------------------------------------------------------------------
// Hostile and broken endpoints
// ---------------------------------------------------------------------------------------

/// Serves every connection with `serve` until the test ends.
async fn listener<F, Fut>(serve: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    port
}

fn quick(port: u16, starttls: Option<StartTls>) -> EndpointSpec {
    let mut spec = spec(&format!("127.0.0.1:{port}"));
    spec.timeout = Duration::from_secs(1);
    spec.starttls = starttls;
    spec
}

async fn probe_quick(port: u16, starttls: Option<StartTls>) -> ProbeOutcome {
    let started = Instant::now();
    let out = probe(&quick(port, starttls), Arc::new(RootCertStore::empty())).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}: {out:#?}",
        started.elapsed()
    );
    assert!(out.chain.is_empty(), "{out:#?}");
    out
}

#[tokio::test]
async fn silent_server_times_out_naming_the_step() {
    let port = listener(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let tls = probe_quick(port, None).await;
    assert_eq!(error(&tls), "timed out after 1s during TLS handshake");
    let cases = [
        (StartTls::Smtp, "SMTP greeting"),
        (StartTls::Imap, "IMAP greeting"),
        (StartTls::Pop3, "POP3 greeting"),
        (StartTls::Postgres, "PostgreSQL SSLRequest reply"),
        (StartTls::Ldap, "LDAP StartTLS response"),
    ];
    let probes: Vec<_> = cases
        .iter()
        .map(|(protocol, _)| tokio::spawn(probe_quick(port, Some(*protocol))))
        .collect();
    for ((_, waiting_for), probe) in cases.iter().zip(probes) {
        let out = probe.await.unwrap();
        assert_eq!(
            error(&out),
            format!("timed out after 1s waiting for {waiting_for}")
        );
    }
}

#[tokio::test]
async fn garbage_is_reported_not_trusted() {
    let port = listener(|mut stream| async move {
        let _ = stream
            .write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\xff\xfe")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let tls = probe_quick(port, None).await;
    assert!(
        error(&tls).starts_with("TLS handshake: the server's reply is not TLS"),
        "{tls:#?}"
    );
    let smtp = probe_quick(port, Some(StartTls::Smtp)).await;
    assert!(
        error(&smtp).starts_with("SMTP STARTTLS: unexpected SMTP greeting: \"SSH-2.0"),
        "{smtp:#?}"
    );
    let imap = probe_quick(port, Some(StartTls::Imap)).await;
    assert!(
        error(&imap).contains("unexpected IMAP greeting"),
        "{imap:#?}"
    );
    let ldap = probe_quick(port, Some(StartTls::Ldap)).await;
    assert!(
        error(&ldap).contains("unexpected LDAP StartTLS response"),
        "{ldap:#?}"
    );
    // 'S' would mean "go ahead"; the bytes after it are not ours to hand to TLS.
    let postgres = probe_quick(port, Some(StartTls::Postgres)).await;
    assert!(
        error(&postgres).starts_with("PostgreSQL STARTTLS: "),
        "{postgres:#?}"
    );

    let endless = listener(|mut stream| async move {
        let line = [b'x'; 4096];
        while stream.write_all(&line).await.is_ok() {}
    })
    .await;
    let out = probe_quick(endless, Some(StartTls::Pop3)).await;
    assert!(error(&out).contains("longer than 8192 bytes"), "{out:#?}");
}

#[tokio::test]
async fn server_closing_mid_handshake() {
    let port = listener(|mut stream| async move {
        let mut hello = [0u8; 4096];
        let _ = stream.read(&mut hello).await;
        // The start of a ServerHello record, then nothing.
        let _ = stream
            .write_all(&[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00])
            .await;
    })
    .await;
    let out = probe_quick(port, None).await;
    assert_eq!(
        error(&out),
        "TLS handshake: connection closed by server mid-handshake"
    );

    let hangup = listener(|stream| async move { drop(stream) }).await;
    let out = probe_quick(hangup, Some(StartTls::Smtp)).await;
    assert!(
        error(&out).contains("closed by server while waiting for SMTP greeting"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn refusals() {
    let closed = free_port();
    let out = probe_quick(closed, None).await;
    assert_eq!(
        error(&out),
        format!("connect to 127.0.0.1:{closed}: connection refused")
    );

    let no_ssl = listener(|mut stream| async move {
        let mut request = [0u8; 8];
        if stream.read_exact(&mut request).await.is_ok() {
            let _ = stream.write_all(b"N").await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let out = probe_quick(no_ssl, Some(StartTls::Postgres)).await;
    assert!(error(&out).contains("refused STARTTLS"), "{out:#?}");

    let no_starttls = listener(|mut stream| async move {
        let _ = stream.write_all(b"220 mx ESMTP\r\n").await;
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"250-mx\r\n250 PIPELINING\r\n").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let out = probe_quick(no_starttls, Some(StartTls::Smtp)).await;
    assert_eq!(error(&out), "SMTP STARTTLS: server does not offer STARTTLS");

    let injected = listener(|mut stream| async move {
        let _ = stream.write_all(b"+OK ready\r\n").await;
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"+OK begin TLS\r\n+OK injected\r\n").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let out = probe_quick(injected, Some(StartTls::Pop3)).await;
    assert!(
        error(&out).contains("unexpected data after agreeing to STARTTLS"),
        "{out:#?}"
    );
}
