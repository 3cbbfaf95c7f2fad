//! How challenges are answered. Every presented challenge is remembered so that it is cleaned
//! up on every path, success or failure.

mod http01;
mod tlsalpn01;

use std::path::PathBuf;
use std::sync::Arc;

use certvigil_dns01::{Provider, TxtRecord};

pub use http01::Http01Responder;
use instant_acme::{ChallengeType, KeyAuthorization};
pub use tlsalpn01::TlsAlpnResponder;

#[derive(Clone)]
pub enum Solver {
    /// The built-in responder; the CA must reach it on port 80 (or the test's port).
    Http01(Arc<Http01Responder>),
    /// Files under the document root of a web server that already owns port 80.
    Webroot(PathBuf),
    TlsAlpn01(Arc<TlsAlpnResponder>),
    /// A TXT record published through a DNS provider, checked on the authoritative servers.
    Dns01(Arc<Provider>),
}

/// A challenge answer that is live and must be removed.
pub(crate) enum Presented {
    Http01(Arc<Http01Responder>, String),
    Webroot(PathBuf),
    TlsAlpn01(Arc<TlsAlpnResponder>, String),
    Dns01(Arc<Provider>, TxtRecord),
}

impl Solver {
    pub(crate) fn challenge_type(&self) -> ChallengeType {
        match self {
            Self::Http01(_) | Self::Webroot(_) => ChallengeType::Http01,
            Self::TlsAlpn01(_) => ChallengeType::TlsAlpn01,
            Self::Dns01(_) => ChallengeType::Dns01,
        }
    }

    /// Makes the answer to one challenge available; `identifier` is the bare name or address.
    pub(crate) async fn present(
        &self,
        identifier: &str,
        token: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<Presented, String> {
        match self {
            Self::Http01(responder) => {
                responder.present(token, key_authorization.as_str());
                Ok(Presented::Http01(responder.clone(), token.to_owned()))
            }
            Self::Webroot(root) => {
                let file = http01::webroot_file(root, token)
                    .ok_or_else(|| format!("the CA sent an unsafe token {token:?}"))?;
                http01::write_webroot(&file, key_authorization.as_str())
                    .map_err(|e| format!("writing {}: {e}", file.display()))?;
                Ok(Presented::Webroot(file))
            }
            Self::TlsAlpn01(responder) => {
                responder.present(identifier, key_authorization.digest().as_ref())?;
                Ok(Presented::TlsAlpn01(
                    responder.clone(),
                    identifier.to_owned(),
                ))
            }
            Self::Dns01(provider) => {
                let record = TxtRecord::new(identifier, key_authorization.dns_value());
                let presented = Presented::Dns01(provider.clone(), record.clone());
                if let Err(e) = provider.present(&record).await {
                    // Part of an update may have landed: remove whatever is there.
                    presented.cleanup().await;
                    return Err(e.to_string());
                }
                if let Err(e) = provider.wait_propagated(&record).await {
                    presented.cleanup().await;
                    return Err(e.to_string());
                }
                Ok(presented)
            }
        }
    }
}

impl Presented {
    pub(crate) async fn cleanup(self) {
        match self {
            Self::Http01(responder, token) => responder.cleanup(&token),
            Self::Webroot(file) => {
                if let Err(e) = std::fs::remove_file(&file) {
                    tracing::warn!(file = %file.display(), error = %e, "HTTP-01 webroot cleanup failed");
                }
            }
            Self::TlsAlpn01(responder, name) => responder.cleanup(&name),
            Self::Dns01(provider, record) => {
                if let Err(e) = provider.cleanup(&record).await {
                    tracing::warn!(record = %record.fqdn(), error = %e, "DNS-01 cleanup failed");
                }
            }
        }
    }
}
