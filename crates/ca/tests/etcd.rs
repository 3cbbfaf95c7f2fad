//! A real etcd 3.4 with client and peer mTLS, every certificate issued by certvigil's internal CA,
//! and `etcdctl` writing and reading with a certvigil-issued client certificate. Needs the Debian
//! packages etcd-server and etcd-client (scripts/install-deps); fails, never skips, without them.

use std::path::Path;
use std::time::Instant;

use certvigil_ca::{Ca, InitOptions, IssueRequest, Profile, write_bundle};
use certvigil_issue::Identifier;
use certvigil_testutil::etcd::{Etcd, EtcdTls, TlsFiles};
use certvigil_testutil::servers::server_dir;

fn issue(ca: &Ca, req: &IssueRequest, out: &Path) -> TlsFiles {
    let issued = ca.issue(req).unwrap();
    write_bundle(out, &issued, ca.root_pem()).unwrap();
    TlsFiles {
        // fullchain: with an intermediate, peers only trust the root.
        cert: out.join("fullchain.pem"),
        key: out.join("privkey.pem"),
    }
}

fn names(profile: Profile) -> IssueRequest {
    let mut req = IssueRequest::new(profile);
    req.identifiers = vec![
        Identifier::parse("127.0.0.1"),
        Identifier::parse("localhost"),
    ];
    req
}

fn client(ca: &Ca, user: &str, out: &Path) -> TlsFiles {
    let mut req = IssueRequest::new(Profile::EtcdClient);
    req.common_name = Some(user.into());
    issue(ca, &req, out)
}

#[test]
fn etcd_with_client_and_peer_mtls_from_the_internal_ca() {
    let started = Instant::now();
    let dir = server_dir();
    let d = dir.path();
    let ca = Ca::init(
        &d.join("ca"),
        &InitOptions {
            common_name: "certvigil etcd test CA".into(),
            intermediate: true,
            ..InitOptions::default()
        },
    )
    .unwrap();
    let tls = EtcdTls {
        ca: d.join("server/ca.pem"),
        server: issue(&ca, &names(Profile::EtcdServer), &d.join("server")),
        peer: issue(&ca, &names(Profile::EtcdPeer), &d.join("peer")),
    };
    let alice = client(&ca, "alice", &d.join("alice"));
    let etcd = Etcd::start(d, &tls, &alice);
    let ready = started.elapsed();

    let put = etcd.etcdctl(
        &tls.ca,
        &alice,
        &["put", "/certvigil/ca", "issued-by-certvigil"],
    );
    assert!(
        put.status.success(),
        "put failed: {}{}",
        String::from_utf8_lossy(&put.stderr),
        etcd.logs()
    );
    assert_eq!(String::from_utf8_lossy(&put.stdout).trim(), "OK");
    let get = etcd.etcdctl(
        &tls.ca,
        &alice,
        &["get", "/certvigil/ca", "--print-value-only"],
    );
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        "issued-by-certvigil"
    );

    // The peer listener also requires and accepts certvigil certificates: an etcd-peer leaf
    // completes a handshake there (openssl as the peer client), a foreign one does not.
    let peer_probe = |client: &TlsFiles| {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", etcd.peer_port),
            ])
            .arg("-CAfile")
            .arg(&tls.ca)
            .arg("-cert")
            .arg(&client.cert)
            .arg("-key")
            .arg(&client.key)
            // s_client sends only the first certificate of -cert; the intermediate goes here.
            .arg("-cert_chain")
            .arg(client.cert.with_file_name("chain.pem"))
            // TLS 1.2: the server judges the client certificate inside the handshake, so the
            // verdict never races with s_client closing (in TLS 1.3 it comes after Finished).
            .args(["-verify_return_error", "-brief", "-tls1_2"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let ok = peer_probe(&tls.peer);
    let text = String::from_utf8_lossy(&ok.stderr);
    assert!(
        ok.status.success() && text.contains("Verification: OK") && !text.contains("alert"),
        "etcd refused its own CA's peer certificate: {text}"
    );

    // A client certificate from a different certvigil CA is refused, on both ports.
    // Same shape and names as the real one (intermediate, CN), only the keys differ.
    let other = Ca::init(
        &d.join("other-ca"),
        &InitOptions {
            common_name: "certvigil etcd test CA".into(),
            intermediate: true,
            ..InitOptions::default()
        },
    )
    .unwrap();
    let mallory = client(&other, "alice", &d.join("mallory"));
    let foreign_peer = issue(&other, &names(Profile::EtcdPeer), &d.join("foreign-peer"));
    let refused = peer_probe(&foreign_peer);
    let text = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("alert bad certificate"), "{text}");
    let denied = etcd.etcdctl(&tls.ca, &mallory, &["get", "/certvigil/ca"]);
    assert!(
        !denied.status.success(),
        "a foreign client certificate was accepted"
    );
    let why = String::from_utf8_lossy(&denied.stderr);
    assert!(why.contains("context deadline exceeded"), "{why}");
    assert!(
        !String::from_utf8_lossy(&denied.stdout).contains("issued-by-certvigil"),
        "the value leaked to a foreign client"
    );
    let denied_put = etcd.etcdctl(&tls.ca, &mallory, &["put", "/certvigil/ca", "overwritten"]);
    assert!(!denied_put.status.success());
    let still = etcd.etcdctl(
        &tls.ca,
        &alice,
        &["get", "/certvigil/ca", "--print-value-only"],
    );
    assert_eq!(
        String::from_utf8_lossy(&still.stdout).trim(),
        "issued-by-certvigil"
    );
    let logs = etcd.logs();
    // etcd dials itself (gRPC gateway) with the serving certificate: without clientAuth in
    // etcd-server it logs this for every such connection while etcdctl keeps working.
    assert!(
        !logs.contains("incompatible key usage"),
        "etcd rejected its own serving certificate as a client:\n{logs}"
    );
    assert!(
        logs.contains("certificate signed by unknown authority")
            || logs.contains("bad certificate"),
        "etcd did not log the rejected handshake:\n{logs}"
    );
    println!(
        "etcd ready {ready:?} after start of test (CA init + 3 leaves + etcd start + health); total {:?}",
        started.elapsed()
    );
}
