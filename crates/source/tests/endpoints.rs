//! Probes real servers on loopback: nginx, `openssl s_server`, postfix, dovecot, PostgreSQL
//! and slapd from the Debian packages (see scripts/install-deps), plus hostile listeners.
//! Every test starts its own servers on free ports in its own temporary directory; the
//! harness is `certvigil_testutil::servers`, shared with the command-line tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certvigil_source::endpoint::{EndpointSpec, ProbeOutcome, StartTls, probe, root_store};
use certvigil_testutil::servers::{self, Certs, NginxSite, free_port, server_dir};
use certvigil_testutil::{Issued, Spec, self_signed_leaf};
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn anchors(certs: &Certs) -> Arc<RootCertStore> {
    Arc::new(root_store(std::slice::from_ref(&certs.pki.root.cert.der)))
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

#[tokio::test]
async fn nginx_sni_expiry_chains_and_versions() {
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("nginx", d);
    let pki = &certs.pki;

    let a = pki.leaf(&Spec::leaf("a.test"));
    let b = pki.leaf(&Spec::leaf("b.test"));
    let expired = pki.leaf(&Spec::leaf("expired.test").valid_days(-90, -1));
    let lonely = pki.leaf(&Spec::leaf("lonely.test"));
    let own = self_signed_leaf(&Spec::leaf("self.test"));
    let v12 = certs.local_leaf("v12.test");
    let v13 = certs.local_leaf("v13.test");

    let (sni, expired_port, no_intermediate, self_signed, tls12_port, tls13_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _nginx = servers::nginx(
        d,
        &[
            NginxSite::new(sni, &certs.write_pair("a", &a, false))
                .listen("default_server")
                .directives("server_name a.test;"),
            NginxSite::new(sni, &certs.write_pair("b", &b, false))
                .directives("server_name b.test;"),
            NginxSite::new(expired_port, &certs.write_pair("expired", &expired, false)),
            NginxSite::new(no_intermediate, &certs.write_pair("lonely", &lonely, true)),
            NginxSite::new(self_signed, &certs.write_pair("self", &own, true)),
            NginxSite::new(tls12_port, &certs.write_pair("v12", &v12, false))
                .directives("ssl_protocols TLSv1.2;"),
            NginxSite::new(tls13_port, &certs.write_pair("v13", &v13, false))
                .listen("http2")
                .directives("ssl_protocols TLSv1.3;"),
        ],
    );
    let anchors = anchors(&certs);

    // SNI picks the certificate; the second probe of the same name still records the chain.
    let sni_a = with_sni(spec(&format!("localhost:{sni}")), "a.test");
    assert_trusted(&probe(&sni_a, anchors.clone()).await, &a, 2);
    let again = probe(&sni_a, anchors.clone()).await;
    assert_trusted(&again, &a, 2);
    assert_eq!(again.info.sni.as_deref(), Some("a.test"));
    let sni_b = probe(
        &with_sni(spec(&format!("localhost:{sni}")), "b.test"),
        anchors.clone(),
    )
    .await;
    assert_trusted(&sni_b, &b, 2);
    assert_ne!(sni_b.chain[0], again.chain[0]);

    // No matching server_name: nginx's default certificate, which does not cover the name.
    let by_name = probe(&spec(&format!("localhost:{sni}")), anchors.clone()).await;
    assert_eq!(by_name.error, None);
    assert_eq!(by_name.chain[0], a.der);
    assert!(
        verify_error(&by_name).contains("not valid for name"),
        "{by_name:#?}"
    );
    // No SNI at all for an IP; the IP is what must be covered.
    let by_ip = probe(&spec(&format!("127.0.0.1:{sni}")), anchors.clone()).await;
    assert_eq!(by_ip.info.sni, None);
    assert_eq!(by_ip.chain[0], a.der);
    assert!(
        verify_error(&by_ip).contains("not valid for name"),
        "{by_ip:#?}"
    );

    let expired_out = probe(
        &with_sni(spec(&format!("127.0.0.1:{expired_port}")), "expired.test"),
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
        &with_sni(spec(&format!("127.0.0.1:{no_intermediate}")), "lonely.test"),
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
        &with_sni(spec(&format!("127.0.0.1:{self_signed}")), "self.test"),
        anchors.clone(),
    )
    .await;
    assert_eq!(own_out.error, None);
    assert_eq!(own_out.chain, vec![own.der.clone()]);
    verify_error(&own_out);
    // Trusting the self-signed leaf itself does not make it an acceptable server chain.
    let own_anchor = Arc::new(root_store(std::slice::from_ref(&own.der)));
    let own_trusted = probe(
        &with_sni(spec(&format!("127.0.0.1:{self_signed}")), "self.test"),
        own_anchor,
    )
    .await;
    assert_eq!(own_trusted.chain, vec![own.der.clone()]);

    let mut tls12 = spec(&format!("127.0.0.1:{tls12_port}"));
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

    let mut tls13 = spec(&format!("localhost:{tls13_port}"));
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

#[tokio::test]
async fn openssl_s_server_requiring_client_certificates() {
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("mtls", d);
    let (client_cert, client_key) = servers::client_cert(&certs, "client");

    let (port13, port12) = (free_port(), free_port());
    let _tls13 = servers::s_server(&certs, &certs.local_leaf("mtls.test"), port13, &[]);
    let _tls12 = servers::s_server(&certs, &certs.local_leaf("mtls.test"), port12, &["-tls1_2"]);
    let anchors = anchors(&certs);

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
    mismatched.client_key = Some(d.join(format!("s_server-{port13}.key")));
    let out = probe(&mismatched, anchors.clone()).await;
    assert!(error(&out).starts_with("client key"), "{out:#?}");
    assert!(out.chain.is_empty());
}

// ---------------------------------------------------------------------------------------
// STARTTLS: postfix, dovecot, PostgreSQL, slapd
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn postfix_smtp_starttls() {
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("postfix", d);
    let leaf = certs.local_leaf("mx.certvigil.test");
    let (cert, key) = certs.write_pair("smtpd", &leaf, false);
    let port = free_port();
    let _postfix = servers::postfix(d, &cert, &key, port);

    let anchors = anchors(&certs);
    let smtp = spec(&format!("smtp://localhost:{port}"));
    assert_eq!(smtp.starttls, Some(StartTls::Smtp));
    assert_trusted(&probe(&smtp, anchors.clone()).await, &leaf, 2);
    let submission = spec(&format!("submission://mx.certvigil.test@127.0.0.1:{port}"));
    let out = probe(&with_sni(submission, "mx.certvigil.test"), anchors).await;
    assert_trusted(&out, &leaf, 2);
}

#[tokio::test]
async fn dovecot_imap_and_pop3_starttls() {
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("dovecot", d);
    let leaf = certs.local_leaf("mail.certvigil.test");
    let (cert, key) = certs.write_pair("mail", &leaf, false);
    let (imap, pop3) = (free_port(), free_port());
    let _dovecot = servers::dovecot(d, &cert, &key, imap, pop3);

    let anchors = anchors(&certs);
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

#[tokio::test]
async fn postgres_sslrequest() {
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("postgres", d);
    let leaf = certs.local_leaf("db.certvigil.test");
    let (cert, key) = certs.write_pair("db", &leaf, false);
    let port = free_port();
    let _postgres = servers::postgres(d, &cert, &key, port);

    let db = spec(&format!(
        "postgresql://app@localhost:{port}/app?sslmode=require"
    ));
    assert_eq!(db.starttls, Some(StartTls::Postgres));
    let out = probe(&db, anchors(&certs)).await;
    assert_trusted(&out, &leaf, 2);
    assert_eq!(out.info.tls_version.as_deref(), Some("TLSv1.3"));
}

#[tokio::test]
async fn slapd_ldap_starttls() {
    let dir = server_dir();
    let d = dir.path();
    let certs = Certs::new("slapd", d);
    let leaf = certs.local_leaf("ldap.certvigil.test");
    let (cert, key) = certs.write_pair("ldap", &leaf, false);
    let port = free_port();
    let _slapd = servers::slapd(d, &cert, &key, port);

    let ldap = spec(&format!("ldap://localhost:{port}"));
    assert_eq!(ldap.starttls, Some(StartTls::Ldap));
    assert_trusted(&probe(&ldap, anchors(&certs)).await, &leaf, 2);
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
