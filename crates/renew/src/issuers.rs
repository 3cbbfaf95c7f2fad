use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use certvigil_acme::{
    AcmeClient, AcmeError, AcmeSettings, Eab, ErrorClass, Http01Responder, OrderRequest, Solver,
    TlsAlpnResponder,
};
use certvigil_ca::{Ca, CaError};
use certvigil_config::{
    AcmeIssuerConfig, CertificateConfig, ChallengeConfig, Config, IssuerKind, SecretRef,
};
use certvigil_core::renewal::{self, Current, Plan};
use certvigil_core::{Certificate, DecodeOptions, decode, hostname};
use certvigil_issue::{Generation, Issued, KeyChoice, SecretPem, Staging, StagingError};
use tokio::sync::{Mutex, OnceCell};

use crate::ari::{AriSchedule, AriStore};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("certificate {0:?} is not configured")]
    UnknownCertificate(String),
    #[error("issuer {issuer:?}: {message}")]
    Setup { issuer: String, message: String },
    /// The challenge responder or DNS provider could not be set up (a busy port ...).
    #[error("issuer {issuer:?}: {message}")]
    Responder { issuer: String, message: String },
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error("internal CA: {0}")]
    Ca(#[from] CaError),
    #[error(transparent)]
    Staging(#[from] StagingError),
}

impl IssueError {
    /// How the scheduler treats this failure: `transient`, `rate_limited`, `rejected` or
    /// `configuration` (not retried until the configuration changes).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Acme(e) => match e.class() {
                ErrorClass::BadNonce | ErrorClass::Transient => "transient",
                ErrorClass::RateLimited => "rate_limited",
                ErrorClass::Rejected => "rejected",
                ErrorClass::Configuration => "configuration",
            },
            Self::Ca(CaError::Io { .. }) | Self::Staging(_) | Self::Responder { .. } => "transient",
            Self::Ca(_) | Self::Setup { .. } | Self::UnknownCertificate(_) => "configuration",
        }
    }

    /// When the CA asked us to come back (unix seconds), if it did.
    pub fn retry_at(&self) -> Option<i64> {
        let Self::Acme(e) = self else {
            return None;
        };
        let at = e.retry_at()?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        Some(at.as_secs() as i64)
    }
}

/// The planner's verdict on one managed certificate, and what it was based on.
#[derive(Debug)]
pub struct PlanReport {
    pub name: String,
    pub plan: Plan,
    /// The certificate in place: the live one when deployed, else the newest staged one.
    pub current: Option<Certificate>,
    pub generation: Option<Generation>,
    /// The CA's ARI window and the point picked in it.
    pub ari: Option<AriSchedule>,
}

/// A certificate issued and written to the staging area.
#[derive(Debug)]
pub struct Staged {
    pub generation: Generation,
    pub leaf: Certificate,
}

enum Live {
    /// The account is connected on first use; the challenge solver (which may hold a port)
    /// only when something is issued.
    Acme {
        client: Box<AcmeClient>,
        config: Box<AcmeIssuerConfig>,
        solver: OnceCell<Solver>,
    },
    Ca(Box<Ca>),
}

/// The configured issuers, connected on first use and shared by concurrent issuances.
pub struct Issuers {
    config: Config,
    staging: Staging,
    live: HashMap<String, OnceCell<Arc<Live>>>,
    http01: Mutex<HashMap<SocketAddr, Arc<Http01Responder>>>,
    tlsalpn: Mutex<HashMap<SocketAddr, Arc<TlsAlpnResponder>>>,
}

impl Issuers {
    pub fn new(config: Config) -> Self {
        let staging = Staging::new(config.renewal.staging_dir());
        let live = config
            .issuers
            .iter()
            .map(|i| (i.name.clone(), OnceCell::new()))
            .collect();
        Self {
            config,
            staging,
            live,
            http01: Mutex::default(),
            tlsalpn: Mutex::default(),
        }
    }

    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn ari_store(&self) -> AriStore {
        AriStore::new(self.config.renewal.state_dir.join("ari"))
    }

    fn certificate(&self, name: &str) -> Result<&CertificateConfig, IssueError> {
        self.config
            .certificates
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| IssueError::UnknownCertificate(name.to_owned()))
    }

    /// The certificate in place for `name`: the live generation when it is deployed, else the
    /// newest staged one, with its parsed leaf. A generation whose certificate no longer
    /// parses counts as absent: it will be replaced.
    fn current(
        &self,
        name: &str,
    ) -> Result<Option<(Generation, Vec<u8>, Certificate)>, IssueError> {
        let cert = self.certificate(name)?;
        let generation = match cert.live_dir(&self.config.renewal) {
            // A deployed certificate is judged by what is live, not by what was staged last
            // (a rolled-back generation must not count as renewed).
            Some(live) => match fs::read_link(live.join("current")) {
                Ok(target) => {
                    let id = target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Some(Generation {
                        dir: live.join("generations").join(&id),
                        id,
                    })
                }
                Err(_) => None,
            },
            None => self.staging.latest(name)?,
        };
        let Some(generation) = generation else {
            return Ok(None);
        };
        let path = generation.cert();
        let bytes = fs::read(&path).map_err(|source| StagingError {
            path: path.clone(),
            source,
        })?;
        let der = decode(&bytes, &DecodeOptions::default())
            .certs
            .into_iter()
            .next();
        match der.and_then(|der| Certificate::from_der(&der).ok().map(|c| (der, c))) {
            Some((der, leaf)) => Ok(Some((generation, der, leaf))),
            None => {
                tracing::warn!(file = %path.display(), "staged certificate does not parse; treating it as missing");
                Ok(None)
            }
        }
    }

    /// Is certificate `name` due at `now`? Asks the CA for its ARI window when the stored one
    /// is stale (network errors only log: the stored point, or the local window, still holds).
    pub async fn plan(&self, name: &str, now: i64) -> Result<PlanReport, IssueError> {
        let cert = self.certificate(name)?;
        let current = self.current(name)?;
        let ari = match &current {
            Some((_, der, leaf)) => self.ari_schedule(cert, der, leaf, now).await,
            None => None,
        };
        let input = current.as_ref().map(|(_, _, leaf)| Current {
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            matches_request: matches_request(cert, leaf),
            ari_renew_at: ari.as_ref().map(|a| a.renew_at),
        });
        let plan = renewal::plan(name, input.as_ref(), &cert.renewal, now);
        let (generation, current) = match current {
            Some((generation, _, leaf)) => (Some(generation), Some(leaf)),
            None => (None, None),
        };
        Ok(PlanReport {
            name: name.to_owned(),
            plan,
            current,
            generation,
            ari,
        })
    }

    async fn ari_schedule(
        &self,
        cert: &CertificateConfig,
        der: &[u8],
        leaf: &Certificate,
        now: i64,
    ) -> Option<AriSchedule> {
        let issuer = self.config.issuers.iter().find(|i| i.name == cert.issuer)?;
        if !matches!(issuer.kind, IssuerKind::Acme(_)) {
            return None;
        }
        let store = self.ari_store();
        let serial = leaf.serial_hex();
        let stored = store.load(&cert.name, &serial);
        if stored.as_ref().is_some_and(|s| s.next_check > now) {
            return stored;
        }
        let window = match self.live(&cert.issuer).await {
            Ok(live) => match live.as_ref() {
                Live::Acme { client, .. } => client.renewal_window(der).await,
                Live::Ca(_) => return None,
            },
            Err(e) => {
                tracing::warn!(certificate = %cert.name, error = %e, "cannot ask the CA for its renewal window");
                return stored;
            }
        };
        match window {
            Ok(Some(w)) => {
                let next_check = w
                    .next_check
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(now, |d| d.as_secs() as i64);
                store
                    .update(&cert.name, &serial, (w.start, w.end), next_check, fastrand::f64())
                    .inspect_err(|e| tracing::warn!(certificate = %cert.name, error = %e, "cannot persist the ARI schedule"))
                    .ok()
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(certificate = %cert.name, error = %e, "renewal window lookup failed");
                stored
            }
        }
    }

    /// Issues certificate `name` now, whatever its renewal plan says, and stages it.
    pub async fn issue(&self, name: &str) -> Result<Staged, IssueError> {
        let cert = self.certificate(name)?;
        let live = self.live(&cert.issuer).await?;
        // ARI (RFC 9773 §5): the new order names the certificate it replaces, when this CA
        // gave a renewal window for it (so it knows the certificate).
        let ari = self.ari_store();
        let replaces = self
            .current(name)?
            .filter(|(_, _, leaf)| ari.load(name, &leaf.serial_hex()).is_some())
            .map(|(_, der, _)| der);
        let key = self.key_choice(cert)?;
        let (issued, leaf) = match live.as_ref() {
            Live::Acme {
                client,
                config,
                solver,
            } => {
                let solver = solver
                    .get_or_try_init(|| self.solver(&config.challenge))
                    .await
                    .map_err(|message| IssueError::Responder {
                        issuer: cert.issuer.clone(),
                        message,
                    })?;
                let outcome = client
                    .issue(
                        &OrderRequest {
                            identifiers: cert.identifiers.clone(),
                            key,
                            replaces,
                        },
                        solver,
                    )
                    .await?;
                (outcome.issued, outcome.leaf)
            }
            Live::Ca(ca) => {
                let issued = ca.issue(&ca_request(cert, key))?;
                let leaf = leaf_of(&issued)?;
                (issued, leaf)
            }
        };
        let generation =
            self.staging
                .stage(&cert.name, &issued, unix_nanos(), &leaf.serial_hex())?;
        tracing::info!(
            certificate = %cert.name,
            serial = %leaf.serial_hex(),
            not_after = leaf.not_after,
            generation = %generation.dir.display(),
            "issued and staged"
        );
        Ok(Staged { generation, leaf })
    }

    fn key_choice(&self, cert: &CertificateConfig) -> Result<KeyChoice, IssueError> {
        if cert.reuse_key
            && let Some(previous) = self.staging.latest(&cert.name)?
        {
            let path = previous.key();
            let pem = fs::read_to_string(&path).map_err(|source| StagingError {
                path: path.clone(),
                source,
            })?;
            return Ok(KeyChoice::Reuse(SecretPem::new(pem)));
        }
        Ok(KeyChoice::Generate(cert.key_type))
    }

    async fn live(&self, issuer: &str) -> Result<Arc<Live>, IssueError> {
        let cell = self.live.get(issuer).ok_or_else(|| IssueError::Setup {
            issuer: issuer.to_owned(),
            message: "not configured".into(),
        })?;
        cell.get_or_try_init(|| self.connect(issuer))
            .await
            .map(Arc::clone)
    }

    async fn connect(&self, name: &str) -> Result<Arc<Live>, IssueError> {
        let issuer = self
            .config
            .issuers
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| IssueError::Setup {
                issuer: name.to_owned(),
                message: "not configured".into(),
            })?;
        let live = match &issuer.kind {
            IssuerKind::InternalCa { dir } => Live::Ca(Box::new(Ca::open(dir)?)),
            IssuerKind::Acme(acme) => {
                let settings = acme_settings(acme).map_err(|message| IssueError::Setup {
                    issuer: name.to_owned(),
                    message,
                })?;
                let account_file = self
                    .config
                    .renewal
                    .accounts_dir()
                    .join(account_file_name(name, &acme.directory));
                Live::Acme {
                    client: Box::new(AcmeClient::connect(settings, &account_file).await?),
                    config: acme.clone(),
                    solver: OnceCell::new(),
                }
            }
        };
        Ok(Arc::new(live))
    }

    async fn solver(&self, challenge: &ChallengeConfig) -> Result<Solver, String> {
        Ok(match challenge {
            ChallengeConfig::Http01 { listen } => {
                let mut map = self.http01.lock().await;
                let responder = match map.get(listen) {
                    Some(r) => r.clone(),
                    None => {
                        let r = Arc::new(Http01Responder::bind(*listen).await.map_err(|e| {
                            format!("the HTTP-01 responder cannot listen on {listen}: {e}")
                        })?);
                        map.insert(*listen, r.clone());
                        r
                    }
                };
                Solver::Http01(responder)
            }
            ChallengeConfig::Webroot { root } => Solver::Webroot(root.clone()),
            ChallengeConfig::TlsAlpn01 { listen } => {
                let mut map = self.tlsalpn.lock().await;
                let responder = match map.get(listen) {
                    Some(r) => r.clone(),
                    None => {
                        let r = Arc::new(TlsAlpnResponder::bind(*listen).await.map_err(|e| {
                            format!("the TLS-ALPN-01 responder cannot listen on {listen}: {e}")
                        })?);
                        map.insert(*listen, r.clone());
                        r
                    }
                };
                Solver::TlsAlpn01(responder)
            }
            ChallengeConfig::Dns01(provider) => Solver::Dns01(Arc::new(
                certvigil_dns01::Provider::from_config(provider).map_err(|e| e.to_string())?,
            )),
        })
    }
}

/// The certificate still answers the request: every name covered, the key type asked for.
fn matches_request(cert: &CertificateConfig, leaf: &Certificate) -> bool {
    cert.identifiers
        .iter()
        .all(|id| hostname::covers(leaf, &id.to_string()))
        && cert
            .key_type
            .matches(&leaf.profile.key_algorithm, leaf.profile.key_bits)
}

fn ca_request(cert: &CertificateConfig, key: KeyChoice) -> certvigil_ca::IssueRequest {
    let profile = cert.profile.unwrap_or(certvigil_ca::Profile::TlsServer);
    let mut request = certvigil_ca::IssueRequest::new(profile);
    request.identifiers = cert.identifiers.clone();
    request.common_name = cert.common_name.clone();
    if let Some(lifetime) = cert.lifetime {
        request.lifetime = lifetime;
    }
    request.key = key;
    request
}

fn leaf_of(issued: &Issued) -> Result<Certificate, IssueError> {
    let der = decode(issued.leaf_pem.as_bytes(), &DecodeOptions::default())
        .certs
        .into_iter()
        .next();
    der.and_then(|der| Certificate::from_der(&der).ok())
        .ok_or_else(|| {
            IssueError::Ca(CaError::Request(
                "the internal CA returned no parsable leaf".into(),
            ))
        })
}

fn acme_settings(config: &AcmeIssuerConfig) -> Result<AcmeSettings, String> {
    let mut settings = AcmeSettings::new(&config.directory);
    settings.contact = config.contact.clone();
    settings.ca_roots = config.ca_roots.clone();
    settings.profile = config.profile.clone();
    settings.request_timeout = config.request_timeout;
    settings.order_timeout = config.order_timeout;
    for path in &config.trusted_roots {
        let bytes = fs::read(path).map_err(|e| format!("trusted_roots {}: {e}", path.display()))?;
        let certs = decode(&bytes, &DecodeOptions::default()).certs;
        if certs.is_empty() {
            return Err(format!("trusted_roots {}: no certificate", path.display()));
        }
        settings.issued_roots_der.extend(certs);
    }
    if let (Some(kid), Some(secret)) = (&config.eab_kid, &config.eab_hmac) {
        settings.eab = Some(Eab {
            kid: kid.clone(),
            hmac_key: read_eab_key(secret)?,
        });
    }
    Ok(settings)
}

/// The EAB HMAC key as CAs hand it out: base64url (padding and standard base64 tolerated).
fn read_eab_key(secret: &SecretRef) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = Zeroizing::new(match secret {
        SecretRef::File(path) => fs::read_to_string(path)
            .map_err(|e| format!("eab_hmac_file {}: {e}", path.display()))?,
        SecretRef::Env(var) => {
            std::env::var(var).map_err(|_| format!("eab_hmac_env: ${var} is not set"))?
        }
    });
    let trimmed = text.trim().trim_end_matches('=');
    let engines = [
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(trimmed).ok())
        .filter(|key| !key.is_empty())
        .map(Zeroizing::new)
        .ok_or_else(|| "the EAB HMAC key is not base64url".to_owned())
}

/// One account per issuer and directory: changing the directory URL registers a new account
/// instead of sending the old one's key to another CA.
fn account_file_name(issuer: &str, directory: &str) -> PathBuf {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory.as_bytes());
    let short: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    PathBuf::from(format!("{issuer}-{short}.json"))
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_files_differ_per_directory() {
        let a = account_file_name("le", "https://a.example/dir");
        let b = account_file_name("le", "https://b.example/dir");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().starts_with("le-"));
    }

    #[test]
    fn eab_keys_decode_from_base64url_and_errors_do_not_echo_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("eab");
        fs::write(
            &file,
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
        )
        .unwrap();
        let key = read_eab_key(&SecretRef::File(file.clone())).unwrap();
        assert_eq!(key.len(), 48);
        fs::write(&file, "not base64 at all!!").unwrap();
        let err = read_eab_key(&SecretRef::File(file)).unwrap_err();
        assert!(!err.contains("at all"), "{err}");
    }
}
