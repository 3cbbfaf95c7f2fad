//! certvigil's TOML configuration.
//!
//! The text is parsed into a TOML table first and then validated field by field, so one run of
//! `certvigil config check` reports every mistake (unknown keys, wrong types, bad durations,
//! sources that are neither a path nor an endpoint) instead of stopping at the first.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use certvigil_core::check::Policy;
use certvigil_source::{DeploymentSpec, EndpointSpec, StartTls};
use toml::{Table, Value};

mod issuance;
pub use issuance::{
    AcmeIssuerConfig, CertificateConfig, ChallengeConfig, DEFAULT_STATE_DIR, DeployConfig,
    IssuerConfig, IssuerKind, ReloadAction, ReloadConfig, RenewalConfig, SecretRef,
};

/// The port the daemon listens on by default: chosen to clear the exporters operators already
/// run (x509-certificate-exporter 9793, node_exporter textfile 9100, blackbox 9115, ssl_exporter
/// 9219, 9117, cert-manager 9402) and 8080.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9910";

/// The configuration used when none is given: the same sources as a bare `certvigil scan`.
pub const EMBEDDED_DEFAULT: &str = r#"
[daemon]
listen = "127.0.0.1:9910"
scan_interval = "5m"
"#;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub policy: PolicyConfig,
    /// Empty means: the trust store and the standard PKI locations of the host.
    pub sources: Vec<SourceConfig>,
    /// Certificate files tied to the endpoint serving them (drift detection).
    pub targets: Vec<DeploymentSpec>,
    pub renewal: RenewalConfig,
    pub issuers: Vec<IssuerConfig>,
    /// Managed certificates: issued and renewed by certvigil.
    pub certificates: Vec<CertificateConfig>,
    /// Labels added to the certificate series of some sources.
    pub source_labels: Vec<SourceLabels>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    pub listen: SocketAddr,
    pub scan_interval: Duration,
    /// Load the system trust store to judge chains (and report it when no sources are set).
    pub system_trust: bool,
    /// Remember verified signatures between scans (in memory for the daemon's lifetime).
    pub signature_cache: bool,
    /// Save decoded files in the cache directory, so a restart reads only what changed.
    pub file_cache: bool,
    /// Also emit x509-certificate-exporter's metric names and labels, for existing alerts and
    /// dashboards.
    pub x509_exporter_compat: bool,
    /// Serve HTTPS with this certificate and key (re-read when the files change).
    pub tls: Option<ListenerTls>,
    /// Require HTTP basic authentication on /metrics and /status.
    pub basic_auth: Option<BasicAuth>,
    /// Endpoints probed at the same time during a scan.
    pub endpoint_concurrency: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The password lives in a file (read at start and on SIGHUP), never in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    pub user: String,
    pub password_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    pub warn_days: f64,
    pub crit_days: f64,
    pub warn_fraction: f64,
    pub crit_fraction: f64,
    pub clock_skew: Duration,
}

impl PolicyConfig {
    /// The core policy at time `now` (Unix seconds).
    pub fn to_policy(&self, now: i64) -> Policy {
        let mut policy = Policy::new(now);
        policy.warn_days = self.warn_days;
        policy.crit_days = self.crit_days;
        policy.warn_fraction = self.warn_fraction;
        policy.crit_fraction = self.crit_fraction;
        policy.clock_skew_secs = self.clock_skew.as_secs() as i64;
        policy
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// A file or directory.
    Path {
        path: PathBuf,
    },
    Endpoint(Box<EndpointSpec>),
}

/// Extra labels for the certificate series of one `[[source]]` (`labels = { team = "web" }`):
/// the source's path (everything under it) or endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLabels {
    pub source: String,
    pub labels: Vec<(String, String)>,
}

/// Label names certvigil's own series use; a source label may not shadow them.
const RESERVED_LABELS: [&str; 14] = [
    "source",
    "source_kind",
    "index",
    "fingerprint",
    "serial",
    "subject_cn",
    "issuer_cn",
    "key_algorithm",
    "key_bits",
    "signature_algorithm",
    "is_ca",
    "job",
    "instance",
    "le",
];

/// One problem, located by its TOML key path (`source[2].timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// All the problems of one configuration text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Files and directories to scan: the `[[source]]` paths, then the directory of every
    /// internal CA, whose own certificates expire like any other.
    pub fn path_sources(&self) -> Vec<PathBuf> {
        let explicit = self.sources.iter().filter_map(|s| match s {
            SourceConfig::Path { path } => Some(path.clone()),
            SourceConfig::Endpoint(_) => None,
        });
        let internal_cas = self.issuers.iter().filter_map(|i| match &i.kind {
            IssuerKind::InternalCa { dir } => Some(dir.clone()),
            IssuerKind::Acme(_) => None,
        });
        // The live set of each deployed certificate (not its older generations).
        let live = self
            .certificates
            .iter()
            .filter_map(|c| Some(c.live_dir(&self.renewal)?.join("current")));
        let mut paths: Vec<PathBuf> = explicit.chain(internal_cas).chain(live).collect();
        paths.dedup();
        paths
    }

    /// Certificate files tied to the endpoints serving them: the `[[target]]` entries, plus
    /// each deployed certificate's live set and its verify endpoints.
    pub fn deployments(&self) -> Vec<DeploymentSpec> {
        let mut out = self.targets.clone();
        for cert in &self.certificates {
            let (Some(deploy), Some(live)) = (&cert.deploy, cert.live_dir(&self.renewal)) else {
                continue;
            };
            for endpoint in &deploy.verify {
                out.push(DeploymentSpec {
                    name: cert.name.clone(),
                    cert: live.join("current").join("cert.pem"),
                    key: Some(live.join("current").join("privkey.pem")),
                    endpoint: endpoint.clone(),
                });
            }
        }
        out
    }

    pub fn embedded_default() -> Self {
        Self::parse(EMBEDDED_DEFAULT)
            .unwrap_or_else(|_| unreachable!("the embedded default parses"))
    }

    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors(vec![ConfigError {
                key: String::new(),
                message: e.to_string().trim().to_owned(),
            }])
        })?;
        let mut v = Validator::default();
        v.known_keys(
            "",
            &table,
            &[
                "daemon",
                "policy",
                "source",
                "target",
                "renewal",
                "issuer",
                "certificate",
            ],
        );
        let daemon = v.daemon(table.get("daemon"));
        let policy = v.policy(table.get("policy"));
        let sources = v.sources(table.get("source"));
        let targets = v.targets(table.get("target"));
        let renewal = v.renewal(table.get("renewal"));
        let issuers = v.issuers(table.get("issuer"));
        let certificates = v.certificates(table.get("certificate"), &issuers);
        if v.errors.is_empty() {
            Ok(Self {
                daemon,
                policy,
                sources,
                targets,
                renewal,
                issuers,
                certificates,
                source_labels: v.source_labels,
            })
        } else {
            Err(ConfigErrors(v.errors))
        }
    }
}

/// Keys that configure how an endpoint is probed, in `[[source]]` and `[[target]]`.
const ENDPOINT_OPTIONS: [&str; 6] = [
    "sni",
    "alpn",
    "timeout",
    "starttls",
    "client_cert",
    "client_key",
];

fn with_endpoint_options<'a>(keys: &[&'a str]) -> Vec<&'a str> {
    keys.iter().copied().chain(ENDPOINT_OPTIONS).collect()
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
    source_labels: Vec<SourceLabels>,
}

impl Validator {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn known_keys(&mut self, prefix: &str, table: &Table, known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                self.error(
                    path,
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn section<'a>(&mut self, name: &str, value: Option<&'a Value>) -> Option<&'a Table> {
        match value {
            None => None,
            Some(Value::Table(table)) => Some(table),
            Some(other) => {
                self.error(name, format!("must be a table, found {}", other.type_str()));
                None
            }
        }
    }

    fn string(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        match table.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error(
                    format!("{prefix}.{key}"),
                    format!("must be a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, table: &Table, prefix: &str, key: &str, default: bool) -> bool {
        match table.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                self.error(
                    format!("{prefix}.{key}"),
                    format!("must be true or false, found {}", other.type_str()),
                );
                default
            }
        }
    }

    fn number(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
        default: f64,
        range: (f64, f64),
    ) -> f64 {
        let value = match table.get(key) {
            None => return default,
            Some(Value::Float(f)) => *f,
            Some(Value::Integer(i)) => *i as f64,
            Some(other) => {
                self.error(
                    format!("{prefix}.{key}"),
                    format!("must be a number, found {}", other.type_str()),
                );
                return default;
            }
        };
        if !(range.0..=range.1).contains(&value) {
            self.error(
                format!("{prefix}.{key}"),
                format!("must be between {} and {}, got {value}", range.0, range.1),
            );
        }
        value
    }

    /// Durations are written like "90s", "5m", "12h", "30d" (or a number of seconds).
    fn duration(&mut self, table: &Table, prefix: &str, key: &str, default: Duration) -> Duration {
        let parsed = match table.get(key) {
            None => return default,
            Some(Value::Integer(secs)) if *secs >= 0 => Ok(Duration::from_secs(*secs as u64)),
            Some(Value::String(text)) => humantime::parse_duration(text).map_err(|e| e.to_string()),
            Some(other) => Err(format!(
                "must be a duration like \"5m\", found {}",
                other.type_str()
            )),
        };
        parsed.unwrap_or_else(|message| {
            self.error(format!("{prefix}.{key}"), message);
            default
        })
    }

    fn daemon(&mut self, value: Option<&Value>) -> DaemonConfig {
        let empty = Table::new();
        let table = self.section("daemon", value).unwrap_or(&empty);
        self.known_keys(
            "daemon",
            table,
            &[
                "listen",
                "scan_interval",
                "system_trust",
                "signature_cache",
                "file_cache",
                "x509_exporter_compat",
                "tls_cert",
                "tls_key",
                "basic_auth_user",
                "basic_auth_password_file",
                "endpoint_concurrency",
            ],
        );
        let tls = match (
            self.string(table, "daemon", "tls_cert"),
            self.string(table, "daemon", "tls_key"),
        ) {
            (Some(cert), Some(key)) => Some(ListenerTls {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            _ => {
                self.error("daemon", "tls_cert and tls_key go together");
                None
            }
        };
        let basic_auth = match (
            self.string(table, "daemon", "basic_auth_user"),
            self.string(table, "daemon", "basic_auth_password_file"),
        ) {
            (Some(user), Some(file)) => Some(BasicAuth {
                user,
                password_file: file.into(),
            }),
            (None, None) => None,
            _ => {
                self.error(
                    "daemon",
                    "basic_auth_user and basic_auth_password_file go together",
                );
                None
            }
        };
        let listen = self
            .string(table, "daemon", "listen")
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen.parse().unwrap_or_else(|_| {
            self.error(
                "daemon.listen",
                format!("{listen:?} is not an address like \"127.0.0.1:9910\""),
            );
            DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!())
        });
        let scan_interval =
            self.duration(table, "daemon", "scan_interval", Duration::from_secs(300));
        if scan_interval < Duration::from_secs(1) {
            self.error("daemon.scan_interval", "must be at least 1s");
        }
        DaemonConfig {
            listen,
            scan_interval,
            system_trust: self.boolean(table, "daemon", "system_trust", true),
            signature_cache: self.boolean(table, "daemon", "signature_cache", true),
            file_cache: self.boolean(table, "daemon", "file_cache", true),
            x509_exporter_compat: self.boolean(table, "daemon", "x509_exporter_compat", false),
            tls,
            basic_auth,
            endpoint_concurrency: self.number(
                table,
                "daemon",
                "endpoint_concurrency",
                32.0,
                (1.0, 1024.0),
            ) as usize,
        }
    }

    fn policy(&mut self, value: Option<&Value>) -> PolicyConfig {
        let empty = Table::new();
        let table = self.section("policy", value).unwrap_or(&empty);
        self.known_keys(
            "policy",
            table,
            &[
                "warn_days",
                "crit_days",
                "warn_fraction",
                "crit_fraction",
                "clock_skew",
            ],
        );
        let defaults = Policy::new(0);
        PolicyConfig {
            warn_days: self.number(
                table,
                "policy",
                "warn_days",
                defaults.warn_days,
                (0.0, 3650.0),
            ),
            crit_days: self.number(
                table,
                "policy",
                "crit_days",
                defaults.crit_days,
                (0.0, 3650.0),
            ),
            warn_fraction: self.number(
                table,
                "policy",
                "warn_fraction",
                defaults.warn_fraction,
                (0.0, 1.0),
            ),
            crit_fraction: self.number(
                table,
                "policy",
                "crit_fraction",
                defaults.crit_fraction,
                (0.0, 1.0),
            ),
            clock_skew: self.duration(
                table,
                "policy",
                "clock_skew",
                Duration::from_secs(defaults.clock_skew_secs as u64),
            ),
        }
    }

    fn sources(&mut self, value: Option<&Value>) -> Vec<SourceConfig> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error("source", "must be an array of tables: write [[source]]");
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.source(i, item))
            .collect()
    }

    /// An endpoint and its options (`sni`, `timeout`, `starttls`, `alpn`, client certificate).
    fn endpoint(&mut self, table: &Table, prefix: &str, endpoint: &str) -> Option<EndpointSpec> {
        let Some(mut spec) = EndpointSpec::parse(endpoint) else {
            self.error(
                format!("{prefix}.endpoint"),
                format!("{endpoint:?} is not host:port or a URL"),
            );
            return None;
        };
        if let Some(sni) = self.string(table, prefix, "sni") {
            spec.sni = Some(sni);
        }
        spec.timeout = self.duration(table, prefix, "timeout", spec.timeout);
        if let Some(starttls) = self.string(table, prefix, "starttls") {
            spec.starttls = match starttls.as_str() {
                "smtp" => Some(StartTls::Smtp),
                "imap" => Some(StartTls::Imap),
                "pop3" => Some(StartTls::Pop3),
                "postgres" => Some(StartTls::Postgres),
                "ldap" => Some(StartTls::Ldap),
                other => {
                    self.error(
                        format!("{prefix}.starttls"),
                        format!("{other:?} is not smtp, imap, pop3, postgres or ldap"),
                    );
                    None
                }
            };
        }
        match table.get("alpn") {
            None => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_str) => {
                spec.alpn = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
            }
            Some(_) => self.error(
                format!("{prefix}.alpn"),
                "must be a list of strings, e.g. [\"h2\"]",
            ),
        }
        let cert = self.string(table, prefix, "client_cert").map(PathBuf::from);
        let key = self.string(table, prefix, "client_key").map(PathBuf::from);
        if cert.is_some() != key.is_some() {
            self.error(prefix, "client_cert and client_key go together");
        }
        spec.client_cert = cert;
        spec.client_key = key;
        Some(spec)
    }

    fn targets(&mut self, value: Option<&Value>) -> Vec<DeploymentSpec> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error("target", "must be an array of tables: write [[target]]");
            return Vec::new();
        };
        let mut names = Vec::new();
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let prefix = format!("target[{index}]");
            let Value::Table(table) = item else {
                self.error(prefix, "must be a table");
                continue;
            };
            self.known_keys(
                &prefix,
                table,
                &with_endpoint_options(&["name", "cert", "key", "endpoint"]),
            );
            let name = self.string(table, &prefix, "name");
            let cert = self.string(table, &prefix, "cert");
            let endpoint = self.string(table, &prefix, "endpoint");
            let key = self.string(table, &prefix, "key").map(PathBuf::from);
            for field in ["name", "cert", "endpoint"] {
                if !table.contains_key(field) {
                    self.error(format!("{prefix}.{field}"), "is required");
                }
            }
            if let Some(name) = &name {
                if names.contains(name) {
                    self.error(
                        format!("{prefix}.name"),
                        format!("{name:?} is used by another [[target]]"),
                    );
                }
                names.push(name.clone());
            }
            let spec = endpoint.and_then(|e| self.endpoint(table, &prefix, &e));
            if let (Some(name), Some(cert), Some(endpoint)) = (name, cert, spec) {
                out.push(DeploymentSpec {
                    name,
                    cert: PathBuf::from(cert),
                    key,
                    endpoint,
                });
            }
        }
        out
    }

    fn source(&mut self, index: usize, item: &Value) -> Option<SourceConfig> {
        let prefix = format!("source[{index}]");
        let Value::Table(table) = item else {
            self.error(prefix, "must be a table");
            return None;
        };
        self.known_keys(
            &prefix,
            table,
            &with_endpoint_options(&["path", "endpoint", "labels", "interval"]),
        );
        let path = self.string(table, &prefix, "path");
        let endpoint = self.string(table, &prefix, "endpoint");
        let labels = self.labels(table, &prefix);
        let parsed = self.source_kind(table, &prefix, path, endpoint);
        if let (Some(source), false) = (&parsed, labels.is_empty()) {
            let key = match source {
                SourceConfig::Path { path } => path.display().to_string(),
                SourceConfig::Endpoint(spec) => spec.display.clone(),
            };
            self.source_labels.push(SourceLabels {
                source: key,
                labels,
            });
        }
        parsed
    }

    fn labels(&mut self, table: &Table, prefix: &str) -> Vec<(String, String)> {
        let Some(value) = table.get("labels") else {
            return Vec::new();
        };
        let key = format!("{prefix}.labels");
        let Value::Table(labels) = value else {
            self.error(
                key,
                "must be a table of strings: labels = { team = \"web\" }",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, value) in labels {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with("__");
            if !valid {
                self.error(format!("{key}.{name}"), "is not a Prometheus label name");
            } else if RESERVED_LABELS.contains(&name.as_str()) {
                self.error(format!("{key}.{name}"), "is one of certvigil's own labels");
            } else if let Some(text) = value.as_str() {
                out.push((name.clone(), text.to_owned()));
            } else {
                self.error(format!("{key}.{name}"), "must be a string");
            }
        }
        out
    }

    fn source_kind(
        &mut self,
        table: &Table,
        prefix: &str,
        path: Option<String>,
        endpoint: Option<String>,
    ) -> Option<SourceConfig> {
        let prefix = prefix.to_owned();
        match (path, endpoint) {
            (Some(path), None) => {
                for key in ENDPOINT_OPTIONS.into_iter().chain(["interval"]) {
                    if table.contains_key(key) {
                        self.error(format!("{prefix}.{key}"), "applies to endpoints only");
                    }
                }
                Some(SourceConfig::Path {
                    path: PathBuf::from(path),
                })
            }
            (None, Some(endpoint)) => {
                let mut spec = self.endpoint(table, &prefix, &endpoint)?;
                if table.contains_key("interval") {
                    let interval = self.duration(table, &prefix, "interval", Duration::MAX);
                    if interval < Duration::from_secs(1) {
                        self.error(format!("{prefix}.interval"), "must be at least 1s");
                    }
                    spec.interval = Some(interval);
                }
                Some(SourceConfig::Endpoint(Box::new(spec)))
            }
            (Some(_), Some(_)) => {
                self.error(
                    prefix,
                    "has both path and endpoint: use one [[source]] for each",
                );
                None
            }
            (None, None) => {
                self.error(
                    prefix,
                    "needs a path (file or directory) or an endpoint (host:port or URL)",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid() {
        let config = Config::embedded_default();
        assert_eq!(config.daemon.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.daemon.scan_interval, Duration::from_secs(300));
        assert!(config.sources.is_empty());
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let text = r#"
            [daemon]
            listen = "nowhere"
            scan_interval = "soon"
            colour = "blue"

            [policy]
            warn_fraction = 3

            [[source]]
            path = "/etc/ssl"
            sni = "x"

            [[source]]
            endpoint = "example.com:443"
            starttls = "gopher"
            client_cert = "/c.pem"

            [[source]]
            colour = "blue"
        "#;
        let errors = Config::parse(text).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for expected in [
            "daemon.colour",
            "daemon.listen",
            "daemon.scan_interval",
            "policy.warn_fraction",
            "source[0].sni",
            "source[1].starttls",
            "source[1]",
            "source[2].colour",
            "source[2]",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
    }

    #[test]
    fn sources_and_durations_parse() {
        let text = r#"
            [daemon]
            scan_interval = 90
            [policy]
            clock_skew = "2m"
            [[source]]
            path = "/etc/etcd/pki"
            [[source]]
            endpoint = "smtp://mail.example:587"
            timeout = "3s"
            alpn = ["h2"]
            interval = "2m"
        "#;
        let config = Config::parse(text).unwrap();
        assert_eq!(config.daemon.scan_interval, Duration::from_secs(90));
        assert_eq!(config.policy.clock_skew, Duration::from_secs(120));
        assert!(matches!(&config.sources[0], SourceConfig::Path { path } if path.ends_with("pki")));
        let SourceConfig::Endpoint(spec) = &config.sources[1] else {
            panic!()
        };
        assert_eq!(spec.timeout, Duration::from_secs(3));
        assert_eq!(spec.alpn, ["h2"]);
        assert!(spec.starttls.is_some());
        assert_eq!(spec.interval, Some(Duration::from_secs(120)));
    }

    #[test]
    fn probe_intervals_are_for_endpoints_and_at_least_a_second() {
        let text = r#"
            [[source]]
            path = "/etc/ssl"
            interval = "1m"
            [[source]]
            endpoint = "a.example:443"
            interval = "100ms"
            [[source]]
            endpoint = "b.example:443"
            interval = "often"
            [[source]]
            endpoint = "c.example:443"
        "#;
        let errors = Config::parse(text).unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source[0].interval",
                "source[1].interval",
                "source[2].interval"
            ],
            "{errors}"
        );
    }

    #[test]
    fn targets_need_name_cert_and_endpoint() {
        let text = r#"
            [[target]]
            name = "web"
            cert = "/etc/nginx/tls/fullchain.pem"
            key = "/etc/nginx/tls/privkey.pem"
            endpoint = "127.0.0.1:443"
            sni = "web.example"
            [[target]]
            name = "web"
            endpoint = "nowhere"
        "#;
        let errors = Config::parse(text).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"target[1].cert"), "{keys:?}");
        assert!(keys.contains(&"target[1].name"), "{keys:?}");
        assert!(keys.contains(&"target[1].endpoint"), "{keys:?}");
        let good = Config::parse(
            &text[..text
                .find("[[target]]\n            name = \"web\"\n            endpoint")
                .unwrap()],
        )
        .unwrap();
        assert_eq!(good.targets[0].endpoint.sni.as_deref(), Some("web.example"));
        assert!(good.targets[0].key.is_some());
    }

    #[test]
    fn sources_carry_labels_and_bad_ones_are_named() {
        let text = r#"
            [[source]]
            path = "/etc/nginx/tls"
            labels = { team = "web", env = "prod" }
            [[source]]
            endpoint = "db.internal:5432"
            starttls = "postgres"
            labels = { team = "data" }
        "#;
        let config = Config::parse(text).unwrap();
        assert_eq!(config.source_labels.len(), 2);
        assert_eq!(config.source_labels[0].source, "/etc/nginx/tls");
        assert!(
            config.source_labels[0]
                .labels
                .contains(&("env".to_owned(), "prod".to_owned()))
        );
        assert_eq!(config.source_labels[1].source, "db.internal:5432");
        let errors = Config::parse(
            "[[source]]\npath = \"/x\"\nlabels = { fingerprint = \"a\", \"bad-name\" = \"b\", n = 1 }\n",
        )
        .unwrap_err()
        .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for expected in [
            "source[0].labels.fingerprint",
            "source[0].labels.bad-name",
            "source[0].labels.n",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
    }

    #[test]
    fn internal_ca_directories_are_scanned_like_sources() {
        let text = r#"
            [[source]]
            path = "/etc/ssl/private"
            [[source]]
            endpoint = "example.com:443"
            [[issuer]]
            name = "ca"
            type = "internal-ca"
            dir = "/etc/certvigil/ca"
        "#;
        let config = Config::parse(text).unwrap();
        assert_eq!(
            config.path_sources(),
            [
                PathBuf::from("/etc/ssl/private"),
                PathBuf::from("/etc/certvigil/ca")
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = Config::parse("[daemon\nlisten = 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1"), "{error}");
    }
}

#[cfg(test)]
mod example {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../deploy/examples/certvigil.toml");
        let config = Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.sources.len(), 5);
        assert_eq!(config.daemon.listen.to_string(), DEFAULT_LISTEN);
    }
}
