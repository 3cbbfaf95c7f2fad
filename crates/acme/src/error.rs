use std::fmt;
use std::time::SystemTime;

use certvigil_issue::ValidationError;
use instant_acme::Problem;

/// Where in the ACME exchange something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Configuration,
    Directory,
    Account,
    NewOrder,
    Authorization,
    Challenge,
    Validation,
    Finalize,
    Download,
    Verify,
    RenewalInfo,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Configuration => "configuration",
            Self::Directory => "directory",
            Self::Account => "account",
            Self::NewOrder => "new order",
            Self::Authorization => "authorization",
            Self::Challenge => "challenge",
            Self::Validation => "validation",
            Self::Finalize => "finalize",
            Self::Download => "certificate download",
            Self::Verify => "issued certificate check",
            Self::RenewalInfo => "renewal info",
        })
    }
}

/// How the scheduler should treat a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The nonce was stale: try again at once.
    BadNonce,
    /// Network trouble or a 5xx: back off exponentially with jitter.
    Transient,
    /// 429 / rateLimited: wait for Retry-After (if any).
    RateLimited,
    /// The CA could not validate a challenge, or refused the order: back off, report the problem.
    Rejected,
    /// Fix the configuration (or the environment it names) first; not retried until it changes.
    Configuration,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Network(String),
    #[error("the CA answered: {}", describe(.0))]
    Problem(Box<Problem>),
    #[error("rate limited by the CA: {}{}", describe(.problem), retry_note(.retry_at))]
    RateLimited {
        problem: Box<Problem>,
        retry_at: Option<SystemTime>,
    },
    #[error("the CA returned a certificate that fails our checks: {0}")]
    InvalidCertificate(#[from] ValidationError),
    #[error("{0}")]
    Responder(String),
    #[error("gave up waiting after {0:?}")]
    Timeout(std::time::Duration),
}

fn describe(p: &Problem) -> String {
    let mut out = p.detail.clone().unwrap_or_else(|| "no detail".into());
    if let Some(kind) = &p.r#type {
        out.push_str(&format!(" ({})", kind.trim_start_matches(PROBLEM_PREFIX)));
    }
    for sub in &p.subproblems {
        out.push_str(&format!("; {sub}"));
    }
    out
}

fn retry_note(at: &Option<SystemTime>) -> String {
    match at.and_then(|t| t.duration_since(SystemTime::now()).ok()) {
        Some(wait) => format!(", retry after {} s", wait.as_secs()),
        None => String::new(),
    }
}

pub(crate) const PROBLEM_PREFIX: &str = "urn:ietf:params:acme:error:";

/// A failed ACME step: which step, for which identifier, and what the CA or the network said.
#[derive(Debug)]
pub struct AcmeError {
    pub step: Step,
    pub identifier: Option<String>,
    pub kind: ErrorKind,
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACME {}", self.step)?;
        if let Some(id) = &self.identifier {
            write!(f, " for {id}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for AcmeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

impl AcmeError {
    pub(crate) fn new(step: Step, kind: ErrorKind) -> Self {
        Self {
            step,
            identifier: None,
            kind,
        }
    }

    pub(crate) fn config(message: String) -> Self {
        Self::new(Step::Configuration, ErrorKind::Config(message))
    }

    pub(crate) fn for_identifier(mut self, id: impl fmt::Display) -> Self {
        self.identifier = Some(id.to_string());
        self
    }

    /// Turns an instant-acme error of `step` into ours, classifying it on the way.
    pub(crate) fn from_acme(step: Step, e: instant_acme::Error) -> Self {
        let kind = match e {
            instant_acme::Error::Api(problem)
                if problem_type(&problem) == Some("rateLimited") || problem.status == Some(429) =>
            {
                ErrorKind::RateLimited {
                    problem: Box::new(problem),
                    retry_at: None,
                }
            }
            instant_acme::Error::Api(problem) => ErrorKind::Problem(Box::new(problem)),
            instant_acme::Error::Timeout(_) => ErrorKind::Timeout(std::time::Duration::ZERO),
            instant_acme::Error::KeyRejected
            | instant_acme::Error::InvalidUri(_)
            | instant_acme::Error::Unsupported(_) => ErrorKind::Config(e.to_string()),
            // The CA's certificate is not trusted (wrong `ca_roots`, an intercepting proxy):
            // asking again gets the same certificate.
            other if untrusted_certificate(&other) => ErrorKind::Config(format!(
                "the CA's HTTPS certificate is not trusted (see ca_roots): {}",
                chain(&other)
            )),
            other => ErrorKind::Network(chain(&other)),
        };
        Self::new(step, kind)
    }

    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::Config(_) => ErrorClass::Configuration,
            ErrorKind::Network(_) | ErrorKind::Timeout(_) => ErrorClass::Transient,
            ErrorKind::RateLimited { .. } => ErrorClass::RateLimited,
            ErrorKind::Problem(p) => match problem_type(p) {
                Some("badNonce") => ErrorClass::BadNonce,
                Some("serverInternal") => ErrorClass::Transient,
                Some(
                    "accountDoesNotExist"
                    | "externalAccountRequired"
                    | "unsupportedContact"
                    | "invalidContact"
                    | "userActionRequired"
                    | "unsupportedIdentifier"
                    | "badSignatureAlgorithm"
                    | "badPublicKey"
                    | "invalidProfile",
                ) => ErrorClass::Configuration,
                _ if p.status.is_some_and(|s| s >= 500) => ErrorClass::Transient,
                _ => ErrorClass::Rejected,
            },
            ErrorKind::InvalidCertificate(_) | ErrorKind::Responder(_) => ErrorClass::Rejected,
        }
    }

    /// When the CA asked us to come back, if it did.
    pub fn retry_at(&self) -> Option<SystemTime> {
        match &self.kind {
            ErrorKind::RateLimited { retry_at, .. } => *retry_at,
            _ => None,
        }
    }
}

pub(crate) fn problem_type(p: &Problem) -> Option<&str> {
    p.r#type.as_deref()?.strip_prefix(PROBLEM_PREFIX)
}

/// Whether rustls refused the peer's certificate somewhere in `e`'s chain. `source()` of an
/// `io::Error` skips the error it wraps (tokio-rustls nests them), so each one is opened.
fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), wrapped].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(_)) = candidate.downcast_ref() {
                return true;
            }
        }
        next = wrapped.or_else(|| e.source());
    }
    false
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
