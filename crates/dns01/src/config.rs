//! The provider settings as the TOML configuration spells them. Nothing here holds a secret:
//! the TSIG secret is named by a file or an environment variable and read by
//! [`Provider::from_config`](crate::Provider::from_config).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// One DNS-01 provider, chosen by `provider = "rfc2136"` or `provider = "exec"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ProviderConfig {
    Rfc2136(Rfc2136Config),
    Exec(ExecHookConfig),
}

/// RFC 2136 dynamic updates signed with TSIG, sent to one primary server.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The primary server accepting updates, e.g. `192.0.2.53:53`.
    pub server: SocketAddr,
    /// The zone to update, e.g. `example.test`; found with an SOA query to `server` when absent.
    #[serde(default)]
    pub zone: Option<String>,
    /// The TSIG key name as the server knows it.
    pub tsig_key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_algorithm")]
    pub tsig_algorithm: String,
    /// A file holding the base64 secret (alone, or a `tsig-keygen` key block).
    #[serde(default)]
    pub tsig_secret_file: Option<PathBuf>,
    /// An environment variable holding the base64 secret.
    #[serde(default)]
    pub tsig_secret_env: Option<String>,
    /// TTL of the TXT records, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// How long one update or query may wait for an answer (retransmitted within it).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// How long to wait for every authoritative server to answer the value.
    #[serde(default = "default_propagation_timeout", with = "duration")]
    pub propagation_timeout: Duration,
    /// The servers the propagation check asks. Empty (default): `server` plus the addresses of
    /// the zone's NS hosts, resolved through `server`, on port 53.
    #[serde(default)]
    pub propagation_servers: Vec<SocketAddr>,
}

/// A program run for `present` and `cleanup`, for DNS APIs certvigil does not speak.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecHookConfig {
    /// The argv run to publish the record (no shell); the record comes in the environment.
    pub present: Vec<String>,
    /// The argv run to remove it.
    pub cleanup: Vec<String>,
    /// How long a hook may run before its whole process group is killed.
    #[serde(default = "default_hook_timeout", with = "duration")]
    pub timeout: Duration,
    /// Authoritative servers to check after `present`. Empty (default): no check, the hook is
    /// expected to return once the record is served.
    #[serde(default)]
    pub propagation_servers: Vec<SocketAddr>,
    #[serde(default = "default_propagation_timeout", with = "duration")]
    pub propagation_timeout: Duration,
}

fn default_algorithm() -> String {
    "hmac-sha256".to_owned()
}

fn default_ttl() -> u32 {
    60
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_propagation_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(120)
}

/// Durations as the rest of certvigil's configuration writes them: `"90s"`, `"5m"`, `"250ms"`,
/// or a number of seconds.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration like \"60s\" or a number of seconds")
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|e| E::custom(format!("{text:?}: {e}")))
        }
    }
}
