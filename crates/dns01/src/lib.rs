//! DNS-01 record providers for certvigil's ACME client: they publish and remove the
//! `_acme-challenge` TXT records and tell when the zone's authoritative servers answer them.
//!
//! ```text
//!   ACME order ──> TxtRecord { domain, value }
//!                      │
//!        Provider::present ──> RFC 2136 UPDATE + TSIG ──> primary server
//!                      │       (or the exec hook's argv)
//!   Provider::wait_propagated ──> TXT query, no recursion ──> every authoritative server
//!                      │
//!        Provider::cleanup ──> delete exactly that TXT rdata
//! ```
//!
//! Two providers:
//! - [`Rfc2136`]: dynamic updates (RFC 2136) signed with TSIG (RFC 8945, HMAC-SHA256/384/512)
//!   through hickory-net. `present` appends a value to the RRset, `cleanup` deletes exactly that
//!   value, so `example.test` and `*.example.test` can be validated in one order.
//! - [`ExecHook`]: runs an operator's program (argv, no shell) with the record in environment
//!   variables; see the [`exec`] module for the contract.
//!
//! Errors are [`Dns01Error`]: the step, the record name and a typed [`ErrorKind`] that names
//! the server and the DNS response code. Secrets never reach `Debug`, `Display` or logs.
//!
//! See docs/dns01.md for the configuration keys and a BIND example.
//!
//! ```no_run
//! # async fn example() -> Result<(), certvigil_dns01::Dns01Error> {
//! use certvigil_dns01::{Provider, ProviderConfig, TxtRecord};
//! let config: ProviderConfig = toml::from_str(r#"
//!     provider = "rfc2136"
//!     server = "192.0.2.53:53"
//!     tsig_key_name = "certvigil-key"
//!     tsig_secret_file = "/etc/certvigil/tsig.secret"
//! "#).unwrap();
//! let provider = Provider::from_config(&config)?;
//! let record = TxtRecord::new("*.example.test", "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
//! provider.present(&record).await?;
//! let validated = provider.wait_propagated(&record).await;
//! // ... let the CA validate, then always:
//! provider.cleanup(&record).await?;
//! # validated
//! # }
//! ```

mod config;
mod dns;
mod error;
pub mod exec;
mod propagation;
mod rfc2136;

pub use config::{ExecHookConfig, ProviderConfig, Rfc2136Config};
pub use error::{Dns01Error, ErrorKind, Step};
pub use exec::ExecHook;
pub use rfc2136::Rfc2136;

/// A DNS-01 provider, built from its configuration.
#[derive(Debug)]
pub enum Provider {
    Rfc2136(Rfc2136),
    Exec(ExecHook),
}

impl Provider {
    /// Checks the configuration and, for RFC 2136, reads the TSIG secret (base64) from its
    /// file or environment variable.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, Dns01Error> {
        Ok(match config {
            ProviderConfig::Rfc2136(c) => Self::Rfc2136(Rfc2136::from_config(c)?),
            ProviderConfig::Exec(c) => Self::Exec(ExecHook::from_config(c)?),
        })
    }

    /// Publishes the TXT record, next to any other values the name already has.
    pub async fn present(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        match self {
            Self::Rfc2136(p) => p.present(record).await,
            Self::Exec(p) => p.present(record).await,
        }
    }

    /// Removes exactly this TXT value; call it on every path, success or failure.
    pub async fn cleanup(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        match self {
            Self::Rfc2136(p) => p.cleanup(record).await,
            Self::Exec(p) => p.cleanup(record).await,
        }
    }

    /// Waits until every authoritative server answers the TXT value, or the timeout.
    ///
    /// RFC 2136: the configured `propagation_servers`, else the update server plus the zone's
    /// NS hosts. Exec hook: its `propagation_servers`, or nothing (returns at once).
    pub async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        match self {
            Self::Rfc2136(p) => p.wait_propagated(record).await,
            Self::Exec(p) => p.wait_propagated(record).await,
        }
    }
}

/// One challenge record: the identifier being validated and the TXT value the CA expects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    /// The identifier, e.g. `www.example.test` or `*.example.test`.
    pub domain: String,
    /// The key authorization digest (base64url SHA-256, 43 characters).
    pub value: String,
}

impl TxtRecord {
    pub fn new(domain: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            value: value.into(),
        }
    }

    /// The absolute record name: `_acme-challenge.` plus the identifier without its wildcard
    /// label and with one trailing dot (`*.example.test` → `_acme-challenge.example.test.`).
    /// Internationalized names are left as written; they are converted to punycode only on
    /// the wire.
    pub fn fqdn(&self) -> String {
        let domain = self.domain.trim();
        let domain = domain.strip_prefix("*.").unwrap_or(domain);
        let domain = domain.trim_end_matches('.');
        format!("_acme-challenge.{domain}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_adds_the_label_and_one_trailing_dot() {
        let fqdn = |d: &str| TxtRecord::new(d, "v").fqdn();
        assert_eq!(
            fqdn("www.example.test"),
            "_acme-challenge.www.example.test."
        );
        assert_eq!(
            fqdn("www.example.test."),
            "_acme-challenge.www.example.test."
        );
        assert_eq!(fqdn("example.test"), "_acme-challenge.example.test.");
    }

    #[test]
    fn fqdn_strips_the_wildcard_so_both_identifiers_share_a_name() {
        let wildcard = TxtRecord::new("*.example.test", "a").fqdn();
        let apex = TxtRecord::new("example.test", "b").fqdn();
        assert_eq!(wildcard, "_acme-challenge.example.test.");
        assert_eq!(wildcard, apex);
        assert_eq!(
            TxtRecord::new("*.sub.example.test.", "a").fqdn(),
            "_acme-challenge.sub.example.test."
        );
    }

    #[test]
    fn fqdn_leaves_internationalized_names_as_written() {
        assert_eq!(
            TxtRecord::new("bücher.example.test", "v").fqdn(),
            "_acme-challenge.bücher.example.test."
        );
        assert_eq!(
            TxtRecord::new("*.xn--bcher-kva.example.test", "v").fqdn(),
            "_acme-challenge.xn--bcher-kva.example.test."
        );
    }
}
