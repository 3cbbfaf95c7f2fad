//! The HTTPS client under instant-acme: the system trust store plus the operator's extra roots
//! (never "skip verification"), a deadline per request so a stalled directory cannot hang a
//! renewal, and the last Retry-After a 429 or 503 carried, which instant-acme does not expose.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::AcmeError;

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

#[derive(Clone)]
pub(crate) struct Transport {
    inner: Inner,
    timeout: Duration,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl Transport {
    pub(crate) fn new(extra_roots: &[PathBuf], timeout: Duration) -> Result<Self, AcmeError> {
        let mut roots = RootCertStore::empty();
        // A host without a readable system store still works with explicit roots.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for path in extra_roots {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| AcmeError::config(format!("ca_roots {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(AcmeError::config(format!(
                    "ca_roots {}: no certificate in the file",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| AcmeError::config(format!("ca_roots {}: {e}", path.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(AcmeError::config(
                "no trusted roots: the system store is empty and no ca_roots are configured".into(),
            ));
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout,
            retry_after: Arc::default(),
        })
    }

    /// The Retry-After of the latest 429 or 503 response, consumed by the caller.
    pub(crate) fn take_retry_after(&self) -> Option<SystemTime> {
        self.retry_after.lock().ok()?.take()
    }
}

impl HttpClient for Transport {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().to_string();
        let fut = HttpClient::request(&self.inner, req);
        let timeout = self.timeout;
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let rsp = tokio::time::timeout(timeout, fut).await.map_err(|_| {
                instant_acme::Error::Other(
                    format!("no response from {uri} within {timeout:?}").into(),
                )
            })??;
            if matches!(
                rsp.parts.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) && let Some(at) = parse_retry_after(&rsp.parts.headers)
                && let Ok(mut slot) = retry_after.lock()
            {
                *slot = Some(slot.map_or(at, |prev| prev.max(at)));
            }
            Ok(rsp)
        })
    }
}

fn parse_retry_after(headers: &http::HeaderMap) -> Option<SystemTime> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(SystemTime::now() + Duration::from_secs(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        let at = parse_retry_after(&headers).unwrap();
        let wait = at.duration_since(SystemTime::now()).unwrap();
        assert!(wait > Duration::from_secs(6) && wait <= Duration::from_secs(7));

        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        let at = parse_retry_after(&headers).unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_445_412_480
        );
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), None);
    }
}
