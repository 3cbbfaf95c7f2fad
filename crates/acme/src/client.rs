//! One ACME account on one directory, and the order flow on top of it.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use certvigil_core::Certificate;
use certvigil_issue::{Identifier, Issued, KeyChoice};
use instant_acme::{
    Account, AccountCredentials, AuthorizationHandle, AuthorizationStatus, Authorizations,
    CertificateIdentifier, ExternalAccountKey, NewAccount, NewOrder, Order, OrderStatus,
};
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::error::{AcmeError, ErrorKind, Step, problem_type};
use crate::retry::{Retrier, RetryPolicy, retrying};
use crate::solver::{Presented, Solver};
use crate::transport::Transport;

/// External account binding (RFC 8555 §7.3.4): the key id and HMAC key the CA handed out.
pub struct Eab {
    pub kid: String,
    pub hmac_key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact: Vec<String>,
    /// Roots trusted for the directory's HTTPS in addition to the system store.
    pub ca_roots: Vec<PathBuf>,
    pub eab: Option<Eab>,
    pub profile: Option<String>,
    /// Roots the issued chain must lead to; empty checks only that each link is signed.
    pub issued_roots_der: Vec<Vec<u8>>,
    pub request_timeout: Duration,
    /// The longest an order may take from creation to download.
    pub order_timeout: Duration,
    pub retry: RetryPolicy,
}

impl AcmeSettings {
    pub fn new(directory: impl Into<String>) -> Self {
        Self {
            directory: directory.into(),
            contact: Vec::new(),
            ca_roots: Vec::new(),
            eab: None,
            profile: None,
            issued_roots_der: Vec::new(),
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Debug)]
pub struct OrderRequest {
    pub identifiers: Vec<Identifier>,
    pub key: KeyChoice,
    /// The certificate this order replaces (ARI, RFC 9773 §5), DER.
    pub replaces: Option<Vec<u8>>,
}

/// The CA's suggested renewal window for one certificate (ARI, RFC 9773), unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: i64,
    pub end: i64,
    pub explanation_url: Option<String>,
    /// When to ask again.
    pub next_check: SystemTime,
}

/// A certificate the CA issued and that passed [`Issued::validate`].
#[derive(Debug)]
pub struct Outcome {
    pub issued: Issued,
    pub leaf: Certificate,
    /// The order's URL, for the audit trail.
    pub order_url: String,
}

/// One ACME account on one directory. How challenges are answered is chosen per issuance, so
/// an account can be used (ARI, planning) without holding a challenge port.
pub struct AcmeClient {
    account: Account,
    transport: Transport,
    settings: AcmeSettings,
    /// Written while a new-order request is in flight, read while an authorization is
    /// fetched: see [`AcmeClient::new_order`].
    order_gate: tokio::sync::RwLock<()>,
}

/// Accepted lateness of the CA's clock for a brand-new certificate's notBefore.
const ISSUED_SKEW_SECS: i64 = 300;

impl AcmeClient {
    /// Loads the account stored in `account_file`, or registers one and stores it (0600).
    pub async fn connect(settings: AcmeSettings, account_file: &Path) -> Result<Self, AcmeError> {
        let transport = Transport::new(&settings.ca_roots, settings.request_timeout)?;
        let account = match read_credentials(account_file)? {
            Some(credentials) => {
                let builder = Account::builder_with_http(Box::new(transport.clone()));
                builder
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| AcmeError::from_acme(Step::Directory, e))?
            }
            None => register(&settings, &transport, account_file).await?,
        };
        Ok(Self {
            account,
            transport,
            settings,
            order_gate: tokio::sync::RwLock::new(()),
        })
    }

    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// Orders, validates, finalizes and downloads one certificate. Challenge answers are
    /// removed on every path; nothing is returned unless it passed [`Issued::validate`].
    pub async fn issue(
        &self,
        request: &OrderRequest,
        solver: &Solver,
    ) -> Result<Outcome, AcmeError> {
        let started = Instant::now();
        let ids: Vec<instant_acme::Identifier> = request
            .identifiers
            .iter()
            .map(|id| match id {
                Identifier::Dns(name) => instant_acme::Identifier::Dns(name.clone()),
                Identifier::Ip(ip) => instant_acme::Identifier::Ip(*ip),
            })
            .collect();
        let mut order = self.new_order(&ids, request.replaces.as_deref()).await?;

        let mut presented = Vec::new();
        let answered = self
            .answer_challenges(&mut order, solver, &mut presented)
            .await;
        let ready = match answered {
            Ok(()) => self.wait_ready(&mut order, started).await,
            Err(e) => Err(e),
        };
        for p in presented {
            p.cleanup().await;
        }
        ready?;

        let (key_pair, key_pem) = request.key.key_pair().map_err(|e| {
            AcmeError::new(
                Step::Finalize,
                ErrorKind::Config(format!("private key: {e}")),
            )
        })?;
        let names: Vec<String> = request
            .identifiers
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut params = rcgen::CertificateParams::new(names)
            .map_err(|e| AcmeError::new(Step::Finalize, ErrorKind::Config(format!("CSR: {e}"))))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key_pair)
            .map_err(|e| AcmeError::new(Step::Finalize, ErrorKind::Config(format!("CSR: {e}"))))?;
        retrying!(
            self.retrier(Step::Finalize),
            order.finalize_csr(csr.der()).await
        );

        let chain_pem = self.wait_certificate(&mut order, started).await?;
        let (leaf_pem, chain_pem) = split_leaf(&chain_pem);
        let issued = Issued {
            leaf_pem,
            chain_pem,
            key: key_pem,
        };
        let now = unix_now();
        let leaf = issued
            .validate(
                &request.identifiers,
                &self.settings.issued_roots_der,
                now,
                ISSUED_SKEW_SECS,
            )
            .map_err(|e| AcmeError::new(Step::Verify, e.into()))?;
        Ok(Outcome {
            issued,
            leaf,
            order_url: order.url().to_owned(),
        })
    }

    /// The CA's renewal window for `cert_der`, or `None` when the directory has no ARI.
    pub async fn renewal_window(
        &self,
        cert_der: &[u8],
    ) -> Result<Option<RenewalWindow>, AcmeError> {
        let der = CertificateDer::from(cert_der.to_vec());
        let id = CertificateIdentifier::try_from(&der).map_err(|e| {
            AcmeError::new(
                Step::RenewalInfo,
                ErrorKind::Config(format!("certificate: {e}")),
            )
        })?;
        let mut retrier = self.retrier(Step::RenewalInfo);
        loop {
            match self.account.renewal_info(&id).await {
                Ok((info, retry_after)) => {
                    let window = info.suggested_window;
                    return Ok(Some(RenewalWindow {
                        start: window.start.unix_timestamp(),
                        end: window.end.unix_timestamp(),
                        explanation_url: info.explanation_url,
                        next_check: SystemTime::now() + retry_after,
                    }));
                }
                Err(instant_acme::Error::Unsupported(_)) => return Ok(None),
                Err(e) => retrier.after(e).await?,
            }
        }
    }

    fn retrier(&self, step: Step) -> Retrier<'_> {
        Retrier::new(&self.settings.retry, &self.transport, step)
    }

    async fn new_order(
        &self,
        ids: &[instant_acme::Identifier],
        replaces: Option<&[u8]>,
    ) -> Result<Order, AcmeError> {
        if let Some(profile) = &self.settings.profile
            && !self.account.profiles().any(|p| p.name == profile)
        {
            let mut offered: Vec<&str> = self.account.profiles().map(|p| p.name).collect();
            offered.sort_unstable();
            let offered = if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            };
            return Err(AcmeError::new(
                Step::NewOrder,
                ErrorKind::Config(format!(
                    "the CA does not offer profile {profile:?} (offered: {offered})"
                )),
            ));
        }
        let mut retrier = self.retrier(Step::NewOrder);
        let replaced = replaces.and_then(|der| {
            match CertificateIdentifier::try_from(&CertificateDer::from(der.to_vec())) {
                Ok(id) => Some(id.into_owned()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot name the replaced certificate; ordering without `replaces`");
                    None
                }
            }
        });
        let mut with_replaces = replaced.is_some();
        loop {
            let mut new_order = NewOrder::new(ids);
            if let Some(profile) = &self.settings.profile {
                new_order = new_order.profile(profile);
            }
            if with_replaces && let Some(id) = &replaced {
                new_order = new_order.replaces(id.clone());
            }
            // A new-order request goes out alone: no other new-order and no authorization
            // fetch of this account is in flight with it. Pebble 2.4.0 (Debian's) deadlocks
            // for good otherwise: its new-order reads every authorization of the account
            // under the store's read lock, while an authorization fetch holds that
            // authorization's lock and waits for the store, behind any pending write.
            let created = {
                let _alone = self.order_gate.write().await;
                self.account.new_order(&new_order).await
            };
            match created {
                Ok(order) => return Ok(order),
                // Someone (another node, an earlier crashed run) already replaced it: the new
                // certificate is still wanted, just not as "the" replacement.
                Err(instant_acme::Error::Api(p))
                    if with_replaces && problem_type(&p) == Some("alreadyReplaced") =>
                {
                    tracing::info!(
                        "the CA says the certificate was already replaced; ordering without `replaces`"
                    );
                    with_replaces = false;
                }
                // The directory has no ARI: `replaces` cannot be sent.
                Err(instant_acme::Error::Unsupported(_)) if with_replaces => {
                    with_replaces = false;
                }
                Err(e) => retrier.after(e).await?,
            }
        }
    }

    async fn answer_challenges(
        &self,
        order: &mut Order,
        solver: &Solver,
        presented: &mut Vec<Presented>,
    ) -> Result<(), AcmeError> {
        let wanted = solver.challenge_type();
        let mut done: HashSet<String> = HashSet::new();
        let mut retrier = self.retrier(Step::Authorization);
        'fetch: loop {
            let mut authorizations = order.authorizations();
            while let Some(next) = self.next_authorization(&mut authorizations).await {
                let mut authz = match next {
                    Ok(authz) => authz,
                    Err(e) => {
                        retrier.after(e).await?;
                        continue 'fetch;
                    }
                };
                let url = authz.url().to_owned();
                if done.contains(&url) {
                    continue;
                }
                let name = authz.identifier().identifier.to_string_value();
                match authz.status {
                    AuthorizationStatus::Valid => {
                        done.insert(url);
                        continue;
                    }
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(AcmeError::new(
                            Step::Authorization,
                            ErrorKind::Config(format!("authorization is {other:?}")),
                        )
                        .for_identifier(name));
                    }
                }
                let offered: Vec<String> = authz
                    .challenges
                    .iter()
                    .map(|c| format!("{:?}", c.r#type))
                    .collect();
                let Some(mut challenge) = authz.challenge(wanted.clone()) else {
                    return Err(AcmeError::new(
                        Step::Challenge,
                        ErrorKind::Config(format!(
                            "the CA does not offer {wanted:?} (offered: {})",
                            offered.join(", ")
                        )),
                    )
                    .for_identifier(name));
                };
                let key_authorization = challenge.key_authorization();
                let token = challenge.token.clone();
                let answer = solver
                    .present(&name, &token, &key_authorization)
                    .await
                    .map_err(|e| {
                        AcmeError::new(Step::Challenge, ErrorKind::Responder(e))
                            .for_identifier(&name)
                    })?;
                presented.push(answer);
                retrying!(
                    self.retrier(Step::Challenge).for_identifier(&name),
                    challenge.set_ready().await
                );
                done.insert(url);
            }
            return Ok(());
        }
    }

    /// Fetches the next authorization, never while a new-order request is in flight.
    async fn next_authorization<'a>(
        &self,
        authorizations: &'a mut Authorizations<'_>,
    ) -> Option<Result<AuthorizationHandle<'a>, instant_acme::Error>> {
        let _shared = self.order_gate.read().await;
        authorizations.next().await
    }

    async fn wait_ready(&self, order: &mut Order, started: Instant) -> Result<(), AcmeError> {
        let mut poll = Poll::new(started, self.settings.order_timeout);
        loop {
            poll.wait(&self.transport).await?;
            let state = retrying!(self.retrier(Step::Validation), order.refresh().await);
            match state.status {
                OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => return Ok(()),
                OrderStatus::Invalid => return Err(self.explain_invalid(order).await),
                OrderStatus::Pending => {}
            }
        }
    }

    async fn wait_certificate(
        &self,
        order: &mut Order,
        started: Instant,
    ) -> Result<String, AcmeError> {
        let mut poll = Poll::new(started, self.settings.order_timeout);
        loop {
            if let Some(pem) = retrying!(self.retrier(Step::Download), order.certificate().await) {
                return Ok(pem);
            }
            poll.wait(&self.transport).await?;
        }
    }

    /// The CA's problem document of the challenge that failed, with its identifier.
    async fn explain_invalid(&self, order: &mut Order) -> AcmeError {
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = self.next_authorization(&mut authorizations).await {
            let name = authz.identifier().identifier.to_string_value();
            let refreshed = {
                let _shared = self.order_gate.read().await;
                authz.refresh().await
            };
            if refreshed.is_err() {
                continue;
            }
            if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.clone()) {
                return AcmeError::new(Step::Validation, ErrorKind::Problem(Box::new(problem)))
                    .for_identifier(name);
            }
        }
        match order.state().error.clone() {
            Some(problem) => {
                AcmeError::new(Step::Validation, ErrorKind::Problem(Box::new(problem)))
            }
            None => AcmeError::new(
                Step::Validation,
                ErrorKind::Responder("the order became invalid without a problem document".into()),
            ),
        }
    }
}

trait IdentifierText {
    fn to_string_value(&self) -> String;
}

impl IdentifierText for instant_acme::Identifier {
    fn to_string_value(&self) -> String {
        match self {
            Self::Dns(name) => name.clone(),
            Self::Ip(ip) => ip.to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// Order polling: fast at first (a local CA answers in milliseconds), then backing off to a
/// second; a Retry-After from the CA wins.
struct Poll {
    delay: Duration,
    deadline: Instant,
    timeout: Duration,
}

impl Poll {
    fn new(started: Instant, timeout: Duration) -> Self {
        Self {
            delay: Duration::from_millis(10),
            deadline: started + timeout,
            timeout,
        }
    }

    async fn wait(&mut self, transport: &Transport) -> Result<(), AcmeError> {
        let hinted = transport
            .take_retry_after()
            .and_then(|at| at.duration_since(SystemTime::now()).ok());
        let wait = hinted.unwrap_or(self.delay);
        if Instant::now() + wait > self.deadline {
            return Err(AcmeError::new(
                Step::Validation,
                ErrorKind::Timeout(self.timeout),
            ));
        }
        tokio::time::sleep(wait).await;
        self.delay = (self.delay * 3 / 2).min(Duration::from_secs(1));
        Ok(())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The first PEM certificate, and the rest of the file.
fn split_leaf(pem: &str) -> (String, String) {
    const END: &str = "-----END CERTIFICATE-----";
    match pem.find(END) {
        Some(at) => {
            let cut = at + END.len();
            let leaf = format!("{}\n", pem[..cut].trim_start());
            let rest = pem[cut..].trim_start();
            (leaf, rest.to_owned())
        }
        None => (pem.to_owned(), String::new()),
    }
}

fn read_credentials(path: &Path) -> Result<Option<AccountCredentials>, AcmeError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AcmeError::new(
                Step::Account,
                ErrorKind::Config(format!("reading {}: {e}", path.display())),
            ));
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        AcmeError::new(
            Step::Account,
            ErrorKind::Config(format!(
                "{} is not a valid account file ({e}); it may be half-written. Move it away to \
                 register a new account, or restore it from a backup",
                path.display()
            )),
        )
    })
}

async fn register(
    settings: &AcmeSettings,
    transport: &Transport,
    account_file: &Path,
) -> Result<Account, AcmeError> {
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let new_account = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let eab = settings
        .eab
        .as_ref()
        .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
    let mut retrier = Retrier::new(&settings.retry, transport, Step::Account);
    let (account, credentials) = loop {
        let builder = Account::builder_with_http(Box::new(transport.clone()));
        match builder
            .create(&new_account, settings.directory.clone(), eab.as_ref())
            .await
        {
            Ok(created) => break created,
            Err(e) => retrier.after(e).await?,
        }
    };
    let json = Zeroizing::new(serde_json::to_vec(&credentials).map_err(|e| {
        AcmeError::new(
            Step::Account,
            ErrorKind::Config(format!("account JSON: {e}")),
        )
    })?);
    certvigil_issue::write_file_atomic(account_file, &json, 0o600).map_err(|e| {
        AcmeError::new(
            Step::Account,
            ErrorKind::Config(format!(
                "registered account {} but could not save {}: {e}",
                account.id(),
                account_file.display()
            )),
        )
    })?;
    tracing::info!(account = account.id(), file = %account_file.display(), "registered ACME account");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_leaf_separates_the_first_certificate() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let (leaf, chain) = split_leaf(pem);
        assert_eq!(
            leaf,
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            chain,
            "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"
        );
    }

    #[test]
    fn a_half_written_account_file_is_named_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("account.json");
        fs::write(&file, b"{\"id\": \"https://ca/acct/1\", \"key_pk").unwrap();
        let err = read_credentials(&file).err().unwrap().to_string();
        assert!(
            err.contains("account.json") && err.contains("half-written"),
            "{err}"
        );
        assert!(fs::read(&file).unwrap().starts_with(b"{\"id\""));
        assert!(
            read_credentials(&dir.path().join("absent.json"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn eab_debug_hides_the_hmac_key() {
        let eab = Eab {
            kid: "kid-1".into(),
            hmac_key: Zeroizing::new(b"super-secret-hmac".to_vec()),
        };
        let shown = format!("{eab:?}");
        assert!(
            shown.contains("kid-1") && !shown.contains("super-secret"),
            "{shown}"
        );
    }
}
