//! TLS-ALPN-01 (RFC 8737): a TLS listener that answers `acme-tls/1` handshakes with a
//! self-signed certificate carrying the acmeIdentifier extension for the requested name.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Default)]
struct Certs(RwLock<HashMap<String, Arc<CertifiedKey>>>);

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TLS-ALPN-01 certificates")
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !acme {
            return None;
        }
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0.read().ok()?.get(&name).cloned()
    }
}

pub struct TlsAlpnResponder {
    certs: Arc<Certs>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsAlpnResponder {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = Arc::new(Certs::default());
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The validator only needs the handshake; it closes the connection itself.
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                });
            }
        });
        Ok(Self {
            certs,
            provider,
            local_addr,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the challenge certificate for `name` (a DNS name or an IP address identifier).
    pub(crate) fn present(
        &self,
        name: &str,
        key_authorization_digest: &[u8],
    ) -> Result<(), String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
            key_authorization_digest,
        )];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let signing = self
            .provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                key.serialize_der(),
            )))
            .map_err(|e| e.to_string())?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        let mut map = self.certs.0.write().map_err(|_| "responder poisoned")?;
        map.insert(sni_name(name), Arc::new(certified));
        Ok(())
    }

    pub(crate) fn cleanup(&self, name: &str) {
        if let Ok(mut map) = self.certs.0.write() {
            map.remove(&sni_name(name));
        }
    }
}

/// RFC 8738 validates IP identifiers by SNI of the reverse-DNS name; DNS names are lower-cased.
fn sni_name(name: &str) -> String {
    match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let mut labels: Vec<String> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            labels.reverse();
            format!("{}.ip6.arpa", labels.join("."))
        }
        Err(_) => name.trim_end_matches('.').to_ascii_lowercase(),
    }
}

impl Drop for TlsAlpnResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_identifiers_use_reverse_dns_sni() {
        assert_eq!(sni_name("192.0.2.1"), "1.2.0.192.in-addr.arpa");
        assert!(sni_name("2001:db8::1").starts_with("1.0.0.0."));
        assert!(sni_name("2001:db8::1").ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert_eq!(sni_name("WWW.Example.test."), "www.example.test");
    }
}
