//! One error type for every provider: the step, the record name and a typed reason.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong, where: `DNS-01 present of _acme-challenge.www.example.test.: ...`.
#[derive(Debug, thiserror::Error)]
#[error("DNS-01 {step} of {name}: {kind}")]
pub struct Dns01Error {
    pub step: Step,
    /// The record name (`_acme-challenge.….`), or for [`Step::Config`] the provider setting.
    pub name: String,
    pub kind: ErrorKind,
}

impl Dns01Error {
    pub(crate) fn new(step: Step, name: impl Into<String>, kind: ErrorKind) -> Self {
        Self {
            step,
            name: name.into(),
            kind,
        }
    }

    pub(crate) fn config(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(Step::Config, name, ErrorKind::Config(reason.into()))
    }

    /// Whether trying the same thing again later can succeed: network trouble, server failures,
    /// slow propagation and hooks that failed or hung. Configuration mistakes and rejected
    /// credentials (wrong TSIG key, a key not allowed to update the name) are not retryable
    /// until the configuration changes.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ErrorKind::Config(_)
            | ErrorKind::NotAuthorized { .. }
            | ErrorKind::HookSpawn { .. } => false,
            ErrorKind::Rejected { code, .. } => !matches!(code.as_str(), "FORMERR" | "NOTIMP"),
            ErrorKind::ServerFailure { .. }
            | ErrorKind::Timeout { .. }
            | ErrorKind::Network { .. }
            | ErrorKind::BadResponse { .. }
            | ErrorKind::ZoneNotFound { .. }
            | ErrorKind::NotPropagated { .. }
            | ErrorKind::HookFailed { .. }
            | ErrorKind::HookTimeout { .. } => true,
        }
    }
}

/// The provider operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Building a provider from its configuration (secret file, algorithm, argv, ...).
    Config,
    /// Publishing the TXT record.
    Present,
    /// Removing the TXT record.
    Cleanup,
    /// Waiting until the authoritative servers answer the TXT record.
    Propagation,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "configuration",
            Self::Present => "present",
            Self::Cleanup => "cleanup",
            Self::Propagation => "propagation check",
        })
    }
}

/// Why it failed. DNS response codes are given by their mnemonic (`NOTAUTH`, `SERVFAIL`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration cannot work: no secret, bad base64, unsupported algorithm, a record
    /// outside the configured zone, an empty argv.
    #[error("{0}")]
    Config(String),
    /// NOTAUTH or REFUSED, or a TSIG error (BADSIG, BADKEY, BADTIME): the key is wrong, unknown
    /// to the server, or not allowed to update this name.
    #[error(
        "server {server} rejected the update with {code}{}: {}",
        tsig_error.as_deref().map(|e| format!(" (TSIG error {e})")).unwrap_or_default(),
        not_authorized_hint(tsig_error.as_deref())
    )]
    NotAuthorized {
        server: SocketAddr,
        code: String,
        tsig_error: Option<String>,
    },
    /// SERVFAIL: the server could not process the request (zone not loaded, journal error, ...).
    #[error("server {server} answered {code} (the zone may not be loaded there; see its log)")]
    ServerFailure { server: SocketAddr, code: String },
    /// Any other error response code.
    #[error("server {server} answered {code}")]
    Rejected { server: SocketAddr, code: String },
    /// No answer at all within the request timeout.
    #[error("no answer from {server} within {}", humantime::format_duration(*after))]
    Timeout { server: SocketAddr, after: Duration },
    /// A socket error talking to the server.
    #[error("talking to {server}: {reason}")]
    Network { server: SocketAddr, reason: String },
    /// An answer that cannot be trusted or used (unsigned, bad TSIG MAC, malformed).
    #[error("unusable answer from {server}: {reason}")]
    BadResponse { server: SocketAddr, reason: String },
    /// The zone holding the name could not be found through its SOA.
    #[error("cannot find the zone of the name through {server}: {reason}")]
    ZoneNotFound { server: SocketAddr, reason: String },
    /// Some authoritative servers still lacked the value when the timeout passed.
    #[error(
        "not visible on every authoritative server after {}; missing on: {}",
        humantime::format_duration(*timeout),
        missing.iter().map(|(s, why)| format!("{s} ({why})")).collect::<Vec<_>>().join(", ")
    )]
    NotPropagated {
        timeout: Duration,
        /// Each server that did not answer the value, with what it answered last.
        missing: Vec<(SocketAddr, String)>,
    },
    /// The exec hook could not be started.
    #[error("cannot run hook {program}: {reason}")]
    HookSpawn { program: String, reason: String },
    /// The exec hook exited unsuccessfully.
    #[error("hook {program} {status}{}", stderr_suffix(stderr))]
    HookFailed {
        program: String,
        /// `exited with status 1` or `killed by signal 9`.
        status: String,
        /// The last lines of its standard error.
        stderr: String,
    },
    /// The exec hook ran longer than its timeout; its whole process group was killed.
    #[error(
        "hook {program} did not finish within {}; killed it and its process group{}",
        humantime::format_duration(*after),
        stderr_suffix(stderr)
    )]
    HookTimeout {
        program: String,
        after: Duration,
        stderr: String,
    },
}

fn not_authorized_hint(tsig_error: Option<&str>) -> &'static str {
    match tsig_error {
        Some("BADSIG") => "the TSIG secret (or algorithm) does not match the server's key",
        Some("BADKEY") => "the server does not know a TSIG key of this name and algorithm",
        Some("BADTIME") => "our clock and the server's differ by more than 300 s",
        Some(_) => "the server did not accept our TSIG signature",
        None => {
            "the TSIG key is not allowed to update this name (check update-policy or allow-update \
             on the server), or the server is not the primary for the zone"
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        "; no stderr".to_owned()
    } else {
        format!("; stderr:\n{}", stderr.trim_end())
    }
}
