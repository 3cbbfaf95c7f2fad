//! Live TLS endpoints: connect, optionally speak a STARTTLS preamble, complete a handshake
//! and record the chain the server presented together with rustls' verdict on it.
//!
//! The verdict never stops the handshake: an expired or untrusted chain is exactly what a
//! probe is meant to see.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use certvigil_core::inventory::EndpointInfo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::starttls;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A plaintext protocol upgraded to TLS in-band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartTls {
    Smtp,
    Imap,
    Pop3,
    Postgres,
    Ldap,
}

impl StartTls {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "SMTP",
            Self::Imap => "IMAP",
            Self::Pop3 => "POP3",
            Self::Postgres => "PostgreSQL",
            Self::Ldap => "LDAP",
        }
    }
}

/// One endpoint to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Connect host: a DNS name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// The name sent as SNI and checked against the certificate; `None` for IP hosts.
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// PEM certificate chain presented when the server asks for a client certificate.
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Budget for the whole probe: resolve, connect, STARTTLS and handshake.
    pub timeout: Duration,
    pub starttls: Option<StartTls>,
    /// `host:port`, or `[v6]:port`.
    pub display: String,
    /// How often a long-running process probes it (with jitter, see `ProbeSchedule`); `None`:
    /// at every scan.
    pub interval: Option<Duration>,
}

impl EndpointSpec {
    /// A spec for `host` and `port` with defaults: SNI from a DNS host, 10 s, no STARTTLS.
    pub fn new(host: &str, port: u16) -> Self {
        let host = host.to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        let display = match ip {
            Some(IpAddr::V6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        Self {
            sni: ip.is_none().then(|| host.clone()),
            host,
            port,
            alpn: Vec::new(),
            client_cert: None,
            client_key: None,
            timeout: DEFAULT_TIMEOUT,
            starttls: None,
            display,
            interval: None,
        }
    }

    /// Parses `host:port`, `[v6]:port` or a URL whose scheme names a TLS service (`https`,
    /// `smtps`, `imap`, `postgres`, ...). Returns `None` for anything else, such as a path.
    pub fn parse(arg: &str) -> Option<Self> {
        let (scheme, rest) = match arg.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, arg),
        };
        let Some(scheme) = scheme else {
            if arg.contains('/') {
                return None;
            }
            let (host, port) = split_host_port(arg)?;
            return Some(Self::new(host, port?));
        };
        let (default_port, starttls) = scheme_defaults(&scheme)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (host, port) = split_host_port(authority)?;
        let mut spec = Self::new(host, port.unwrap_or(default_port));
        spec.starttls = starttls;
        Some(spec)
    }

    fn server_name(&self) -> Result<ServerName<'static>, ProbeError> {
        let name = self.sni.as_deref().unwrap_or(&self.host);
        ServerName::try_from(name)
            .map(|name| name.to_owned())
            .map_err(|_| ProbeError::Setup(format!("invalid server name {name:?}")))
    }
}

/// Default port and STARTTLS protocol of a URL scheme.
fn scheme_defaults(scheme: &str) -> Option<(u16, Option<StartTls>)> {
    Some(match scheme {
        "https" => (443, None),
        "smtp" => (25, Some(StartTls::Smtp)),
        "submission" => (587, Some(StartTls::Smtp)),
        "smtps" => (465, None),
        "imap" => (143, Some(StartTls::Imap)),
        "imaps" => (993, None),
        "pop3" => (110, Some(StartTls::Pop3)),
        "pop3s" => (995, None),
        "ldap" => (389, Some(StartTls::Ldap)),
        "ldaps" => (636, None),
        "postgres" | "postgresql" => (5432, Some(StartTls::Postgres)),
        _ => return None,
    })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. The inner `None` is a missing port;
/// an outer `None` is a malformed authority.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            host.parse::<Ipv6Addr>().ok()?;
            let port = if after.is_empty() {
                None
            } else {
                Some(after.strip_prefix(':')?)
            };
            (host, port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let forbidden = |c: char| c.is_whitespace() || c.is_control() || "/\\@[]".contains(c);
            if host.is_empty() || host.contains(forbidden) {
                return None;
            }
            (host, port)
        }
    };
    match port {
        None => Some((host, None)),
        Some(port) => Some((host, Some(parse_port(port)?))),
    }
}

fn parse_port(port: &str) -> Option<u16> {
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok().filter(|port| *port != 0)
}

/// What one probe saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeOutcome {
    /// DER certificates as presented, leaf first; filled whenever the server sent them, even
    /// when the handshake then failed.
    pub chain: Vec<Vec<u8>>,
    /// `verify_error` is only meaningful when `chain` is not empty.
    pub info: EndpointInfo,
    /// Why the probe did not complete, naming the step.
    pub error: Option<String>,
}

/// Builds a trust store from DER certificates, skipping those webpki cannot use as anchors.
pub fn root_store(anchors: &[Vec<u8>]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(
        anchors
            .iter()
            .map(|der| CertificateDer::from(der.as_slice())),
    );
    store
}

/// Probes one endpoint. Never fails: problems are reported in [`ProbeOutcome::error`].
pub async fn probe(spec: &EndpointSpec, anchors: Arc<RootCertStore>) -> ProbeOutcome {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut info = EndpointInfo {
        sni: spec.sni.clone(),
        ..EndpointInfo::default()
    };
    let result = run(spec, anchors, &seen, &mut info).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    info.verify_error = seen.verify_error;
    ProbeOutcome {
        chain: seen.chain,
        info,
        error: result.err().map(|e| e.to_string()),
    }
}

/// Which part of the probe a timeout interrupted.
#[derive(Debug)]
enum Step {
    Resolve(String),
    Connect(SocketAddr),
    StartTls(&'static str),
    Handshake,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(host) => write!(f, "resolving {host}"),
            Self::Connect(addr) => write!(f, "connecting to {addr}"),
            Self::StartTls(what) => write!(f, "waiting for {what}"),
            Self::Handshake => f.write_str("during TLS handshake"),
        }
    }
}

#[derive(Debug)]
enum ProbeError {
    /// The probe could not even be prepared: a bad client certificate, an invalid name.
    Setup(String),
    Resolve(String, io::Error),
    NoAddress(String),
    Connect(Vec<(SocketAddr, io::Error)>),
    Timeout(Duration, Step),
    StartTls(StartTls, starttls::Error),
    Handshake(io::Error),
    ClientCertRejected(io::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(reason) => f.write_str(reason),
            Self::Resolve(host, e) => write!(f, "resolve {host}: {e}"),
            Self::NoAddress(host) => write!(f, "resolve {host}: no addresses"),
            Self::Connect(failures) => {
                for (i, (addr, e)) in failures.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}connect to {addr}: {}", describe_io(e))?;
                }
                Ok(())
            }
            Self::Timeout(after, step) => write!(f, "timed out after {after:?} {step}"),
            Self::StartTls(protocol, e) => write!(f, "{} STARTTLS: {e}", protocol.as_str()),
            Self::Handshake(e) => write!(f, "TLS handshake: {}", describe_tls(e)),
            Self::ClientCertRejected(e) => write!(
                f,
                "TLS handshake: server rejected the connection after asking for a client \
                 certificate: {}",
                describe_tls(e)
            ),
        }
    }
}

async fn run(
    spec: &EndpointSpec,
    anchors: Arc<RootCertStore>,
    seen: &Arc<Mutex<Seen>>,
    info: &mut EndpointInfo,
) -> Result<(), ProbeError> {
    let deadline = Instant::now() + spec.timeout;
    let timed_out = |step| ProbeError::Timeout(spec.timeout, step);
    let server_name = spec.server_name()?;
    let client_auth = Arc::new(ClientAuth::load(spec)?);
    let config = client_config(spec, anchors, seen.clone(), client_auth.clone());

    let mut tcp = connect(spec, deadline).await?;
    if let Some(protocol) = spec.starttls {
        starttls::negotiate(protocol, &mut tcp, deadline)
            .await
            .map_err(|e| match e {
                starttls::Error::Timeout(what) => timed_out(Step::StartTls(what)),
                e => ProbeError::StartTls(protocol, e),
            })?;
    }

    let started = Instant::now();
    let handshake = TlsConnector::from(Arc::new(config)).connect(server_name, tcp);
    let mut tls = match timeout_at(deadline, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) if client_auth.refused() => return Err(ProbeError::ClientCertRejected(e)),
        Ok(Err(e)) => return Err(ProbeError::Handshake(e)),
        Err(_) => return Err(timed_out(Step::Handshake)),
    };
    let elapsed = started.elapsed();
    info.handshake_ms = elapsed.as_millis().try_into().unwrap_or(u64::MAX);
    describe_session(&tls, info);

    if client_auth.refused() {
        await_rejection(
            &mut tls,
            deadline.min(Instant::now() + elapsed + Duration::from_millis(100)),
        )
        .await
        .map_err(ProbeError::ClientCertRejected)?;
    }
    let _ = timeout_at(deadline, tls.shutdown()).await;
    Ok(())
}

/// In TLS 1.3 the client finishes first, so a server that insists on a client certificate
/// only says so in an alert after our side of the handshake is done. Waits briefly for it.
async fn await_rejection(tls: &mut TlsStream<TcpStream>, until: Instant) -> Result<(), io::Error> {
    let mut byte = [0u8; 1];
    match timeout_at(until, tls.read(&mut byte)).await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

async fn connect(spec: &EndpointSpec, deadline: Instant) -> Result<TcpStream, ProbeError> {
    let timed_out = |step| ProbeError::Timeout(spec.timeout, step);
    let addrs: Vec<SocketAddr> = match spec.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, spec.port)],
        Err(_) => timeout_at(
            deadline,
            tokio::net::lookup_host((spec.host.as_str(), spec.port)),
        )
        .await
        .map_err(|_| timed_out(Step::Resolve(spec.host.clone())))?
        .map_err(|e| ProbeError::Resolve(spec.host.clone(), e))?
        .collect(),
    };
    if addrs.is_empty() {
        return Err(ProbeError::NoAddress(spec.host.clone()));
    }
    let mut failures = Vec::new();
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Nagle would hold back the small STARTTLS lines.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => failures.push((addr, e)),
            Err(_) => return Err(timed_out(Step::Connect(addr))),
        }
    }
    Err(ProbeError::Connect(failures))
}

fn client_config(
    spec: &EndpointSpec,
    anchors: Arc<RootCertStore>,
    seen: Arc<Mutex<Seen>>,
    client_auth: Arc<ClientAuth>,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = RecordingVerifier::new(anchors, provider.clone(), seen);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(client_auth);
    // A resumed session skips certificate verification, so the chain would not be recorded.
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    config.alpn_protocols = spec.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

fn describe_session(tls: &TlsStream<TcpStream>, info: &mut EndpointInfo) {
    let (_, conn) = tls.get_ref();
    info.tls_version = conn.protocol_version().map(|v| match v {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        other => format!("{other:?}"),
    });
    info.cipher_suite = conn.negotiated_cipher_suite().map(|s| {
        let suite = s.suite();
        suite
            .as_str()
            .map_or_else(|| format!("{suite:?}"), str::to_owned)
    });
    info.alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
}

/// Short, lower-case reasons for the socket errors a probe meets.
pub(crate) fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::BrokenPipe => "connection closed by peer (broken pipe)".into(),
        _ => e.to_string(),
    }
}

fn describe_tls(e: &io::Error) -> String {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidMessage(_) => format!("the server's reply is not TLS ({tls})"),
            _ => tls.to_string(),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed by server mid-handshake".into(),
        _ => describe_io(e),
    }
}

/// What the verifier saw: the presented chain and webpki's verdict on it.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<Vec<u8>>,
    verify_error: Option<String>,
}

/// Records the chain, asks webpki for a verdict, and accepts regardless. Handshake
/// signatures are still checked, so the session is genuinely with the certificate's key.
#[derive(Debug)]
struct RecordingVerifier {
    /// `None` when there are no trust anchors: every chain is then untrusted.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Arc<Mutex<Seen>>,
}

impl RecordingVerifier {
    fn new(
        anchors: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        seen: Arc<Mutex<Seen>>,
    ) -> Self {
        let algorithms = provider.signature_verification_algorithms;
        let webpki = WebPkiServerVerifier::builder_with_provider(anchors, provider)
            .build()
            .ok();
        Self {
            webpki,
            algorithms,
            seen,
        }
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.to_vec())
            .collect();
        let verify_error = match &self.webpki {
            Some(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .err()
                .map(|e| e.to_string()),
            None => Some("no trust anchors to verify against".to_owned()),
        };
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Seen {
            chain,
            verify_error,
        };
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Offers the configured client certificate, if any, and notes whether the server asked.
#[derive(Debug)]
struct ClientAuth {
    key: Option<Arc<CertifiedKey>>,
    requested: AtomicBool,
}

impl ClientAuth {
    fn load(spec: &EndpointSpec) -> Result<Self, ProbeError> {
        let key = match (&spec.client_cert, &spec.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Arc::new(load_certified_key(cert, key)?)),
            _ => {
                return Err(ProbeError::Setup(
                    "client certificate: both a certificate and a key are needed".into(),
                ));
            }
        };
        Ok(Self {
            key,
            requested: AtomicBool::new(false),
        })
    }

    /// The server asked for a client certificate and we had none to give.
    fn refused(&self) -> bool {
        self.key.is_none() && self.requested.load(Ordering::Relaxed)
    }
}

impl ResolvesClientCert for ClientAuth {
    fn resolve(
        &self,
        _issuers: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, ProbeError> {
    let setup = |what: &str, path: &Path, e: &dyn fmt::Display| {
        ProbeError::Setup(format!("client {what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| setup("certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(setup("certificate", cert, &"no CERTIFICATE block"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| setup("key", key, &e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| setup("key", key, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(arg: &str) -> (String, u16, Option<StartTls>, Option<String>, String) {
        let spec = EndpointSpec::parse(arg).unwrap_or_else(|| panic!("{arg} should parse"));
        (spec.host, spec.port, spec.starttls, spec.sni, spec.display)
    }

    #[test]
    fn bare_host_port() {
        assert_eq!(
            parsed("Example.COM:8443"),
            (
                "example.com".into(),
                8443,
                None,
                Some("example.com".into()),
                "example.com:8443".into()
            )
        );
        assert_eq!(
            parsed("127.0.0.1:443"),
            ("127.0.0.1".into(), 443, None, None, "127.0.0.1:443".into())
        );
        assert_eq!(
            parsed("[::1]:8443"),
            ("::1".into(), 8443, None, None, "[::1]:8443".into())
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            parsed("https://example.com"),
            (
                "example.com".into(),
                443,
                None,
                Some("example.com".into()),
                "example.com:443".into()
            )
        );
        assert_eq!(parsed("https://example.com:8443/a/b?c#d").1, 8443);
        assert_eq!(parsed("https://[2001:db8::1]/x").4, "[2001:db8::1]:443");
        assert_eq!(parsed("HTTPS://user:pw@example.com:9/").0, "example.com");
        assert_eq!(parsed("smtp://mx.example.com").1, 25);
        assert_eq!(parsed("smtp://mx.example.com").2, Some(StartTls::Smtp));
        assert_eq!(parsed("submission://mx:2587").2, Some(StartTls::Smtp));
        assert_eq!(parsed("submission://mx").1, 587);
        assert_eq!(parsed("smtps://mx").1, 465);
        assert_eq!(parsed("smtps://mx").2, None);
        assert_eq!(parsed("imap://mail").1, 143);
        assert_eq!(parsed("imap://mail").2, Some(StartTls::Imap));
        assert_eq!(parsed("imaps://mail").1, 993);
        assert_eq!(parsed("pop3://mail").2, Some(StartTls::Pop3));
        assert_eq!(parsed("pop3://mail").1, 110);
        assert_eq!(parsed("pop3s://mail").1, 995);
        assert_eq!(parsed("ldap://dir").2, Some(StartTls::Ldap));
        assert_eq!(parsed("ldap://dir").1, 389);
        assert_eq!(parsed("ldaps://dir").1, 636);
        assert_eq!(parsed("postgres://u@db/app").2, Some(StartTls::Postgres));
        assert_eq!(parsed("postgresql://db:6543").1, 6543);
        assert_eq!(parsed("postgresql://db").1, 5432);
    }

    #[test]
    fn defaults() {
        let spec = EndpointSpec::parse("db.example:5432").unwrap();
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
        assert!(spec.alpn.is_empty() && spec.client_cert.is_none() && spec.client_key.is_none());
    }

    #[test]
    fn not_endpoints() {
        for arg in [
            "",
            "/etc/ssl/certs",
            "certs/server.pem",
            "./host:443",
            "server.pem",
            "example.com",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:+443",
            "example.com:https",
            ":443",
            "::1:443",
            "[::1]",
            "[::1]443",
            "[not-v6]:443",
            "C:\\certs\\a.pem",
            "ftp://example.com",
            "https://",
            "https://:443",
            "https://host:99999",
            "https://a b:443",
            "file:///etc/ssl/cert.pem",
        ] {
            assert_eq!(EndpointSpec::parse(arg), None, "{arg:?}");
        }
    }

    #[test]
    fn url_without_port_in_brackets() {
        assert_eq!(parsed("ldaps://[::1]").4, "[::1]:636");
    }

    #[test]
    fn root_store_skips_garbage() {
        assert!(root_store(&[b"not a certificate".to_vec()]).is_empty());
    }
}
