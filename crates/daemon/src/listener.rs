//! How the daemon is reached: plain HTTP on loopback by default, HTTPS with a certificate that
//! is re-read when its files change (so certvigil can renew its own listener certificate), and
//! HTTP basic authentication in front of /metrics and /status.

use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use certvigil_config::{BasicAuth, ListenerTls};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serves `app` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<&ListenerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = Arc::new(ReloadingCert::load(tls, provider.clone())?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The listener certificate, re-read (at most once a second, on the next handshake) when the
/// certificate or key file changes. A broken new pair is logged and the old one kept.
struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    fn load(tls: &ListenerTls, provider: Arc<rustls::crypto::CryptoProvider>) -> io::Result<Self> {
        let key = read_pair(&tls.cert, &tls.key, &provider)?;
        Ok(Self {
            cert_path: tls.cert.clone(),
            key_path: tls.key.clone(),
            current: Mutex::new(Loaded {
                key,
                stamp: (modified(&tls.cert), modified(&tls.key)),
                checked: Instant::now(),
            }),
            provider,
        })
    }
}

fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> io::Result<Arc<CertifiedKey>> {
    let named = |path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| named(cert, &e))?;
    if chain.is_empty() {
        return Err(named(cert, &"no certificate"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| named(key, &e))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| named(key, &e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| named(key, &format!("does not match {}: {e}", cert.display())))?;
    Ok(Arc::new(certified))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().ok()?;
        if current.checked.elapsed() >= Duration::from_secs(1) {
            current.checked = Instant::now();
            let stamp = (modified(&self.cert_path), modified(&self.key_path));
            if stamp != current.stamp {
                match read_pair(&self.cert_path, &self.key_path, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert_path.display(), "listener certificate reloaded");
                        current.key = key;
                        current.stamp = stamp;
                    }
                    // Half-way through a non-atomic replacement, or broken: keep serving the
                    // old pair and try again on a later handshake.
                    Err(e) => tracing::warn!(error = %e, "listener certificate not reloaded"),
                }
            }
        }
        Some(current.key.clone())
    }
}

/// Middleware: requests without the configured credentials get 401. The password file is read
/// per request (it is tiny), so a rotated password applies without a restart.
pub(crate) async fn require_basic_auth(
    auth: Arc<BasicAuth>,
    request: Request,
    next: Next,
) -> Response {
    let password = match fs::read_to_string(&auth.password_file) {
        Ok(text) => text.trim_end_matches(['\n', '\r']).to_owned(),
        Err(e) => {
            tracing::error!(file = %auth.password_file.display(), error = %e, "cannot read the basic auth password");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .unwrap_or_default();
    let expected = format!("{}:{password}", auth.user);
    if credentials_match(&presented, expected.as_bytes()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"certvigil\"")],
        Body::from("authentication required\n"),
    )
        .into_response()
}

/// Compares digests in constant time, so neither length nor content leaks through timing.
fn credentials_match(presented: &[u8], expected: &[u8]) -> bool {
    let digest = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    aws_lc_rs::constant_time::verify_slices_are_equal(
        digest(presented).as_ref(),
        digest(expected).as_ref(),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_compare_whole_strings() {
        assert!(credentials_match(b"prom:secret", b"prom:secret"));
        assert!(!credentials_match(b"prom:secre", b"prom:secret"));
        assert!(!credentials_match(b"", b"prom:secret"));
    }
}
