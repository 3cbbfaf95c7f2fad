//! `[renewal]`, `[[issuer]]` and `[[certificate]]`: where certificates come from and which ones
//! certvigil keeps renewed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use certvigil_ca::Profile;
use certvigil_core::renewal::{RenewBefore, RenewalPolicy};
use certvigil_deploy::activate::CopyOut;
use certvigil_dns01::ProviderConfig;
use certvigil_issue::{Identifier, KeyType};
use certvigil_source::EndpointSpec;
use toml::{Table, Value};

use crate::Validator;

/// Where renewal keeps its state when `[renewal] state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/certvigil";

#[derive(Clone, Debug, PartialEq)]
pub struct RenewalConfig {
    /// ACME accounts, the staging area, the live sets, the renewal state and the audit log.
    pub state_dir: PathBuf,
    /// How often the daemon runs a renewal pass.
    pub check_interval: Duration,
}

impl RenewalConfig {
    pub fn accounts_dir(&self) -> PathBuf {
        self.state_dir.join("accounts")
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.state_dir.join("staging")
    }

    /// The live directory of certificate `name` when its deploy section names none.
    pub fn default_live_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join("live").join(name)
    }
}

impl CertificateConfig {
    /// Where the live set of this certificate is, when it is deployed.
    pub fn live_dir(&self, renewal: &RenewalConfig) -> Option<PathBuf> {
        let deploy = self.deploy.as_ref()?;
        Some(
            deploy
                .dir
                .clone()
                .unwrap_or_else(|| renewal.default_live_dir(&self.name)),
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct IssuerConfig {
    pub name: String,
    pub kind: IssuerKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IssuerKind {
    Acme(Box<AcmeIssuerConfig>),
    /// A CA created with `certvigil ca init`.
    InternalCa {
        dir: PathBuf,
    },
}

/// A secret named by where it lives, never written in the configuration itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct AcmeIssuerConfig {
    pub directory: String,
    pub contact: Vec<String>,
    /// Roots trusted for the directory's HTTPS, besides the system store.
    pub ca_roots: Vec<PathBuf>,
    /// Roots the issued chain must lead to (optional).
    pub trusted_roots: Vec<PathBuf>,
    pub eab_kid: Option<String>,
    /// The base64url HMAC key of the external account binding.
    pub eab_hmac: Option<SecretRef>,
    pub profile: Option<String>,
    pub challenge: ChallengeConfig,
    pub request_timeout: Duration,
    pub order_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChallengeConfig {
    Http01 { listen: SocketAddr },
    Webroot { root: PathBuf },
    TlsAlpn01 { listen: SocketAddr },
    Dns01(Box<ProviderConfig>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CertificateConfig {
    pub name: String,
    /// Name of the `[[issuer]]`.
    pub issuer: String,
    pub identifiers: Vec<Identifier>,
    pub key_type: KeyType,
    /// Keep the key of the previous generation (default: a new key per issuance).
    pub reuse_key: bool,
    pub renewal: RenewalPolicy,
    /// Internal CA only: the role profile.
    pub profile: Option<Profile>,
    /// Internal CA only: the subject CN (etcd-client's user name).
    pub common_name: Option<String>,
    /// Internal CA only: the lifetime (default: the profile's).
    pub lifetime: Option<Duration>,
    /// Where and how the certificate goes live (`[certificate.deploy]`); `None` stops at the
    /// staging area.
    pub deploy: Option<DeployConfig>,
}

/// `[certificate.deploy]`: activation, reloads and the proof that the new certificate is served.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployConfig {
    /// The live directory: `current/` always holds one complete set (default
    /// `<state_dir>/live/<name>`).
    pub dir: Option<PathBuf>,
    /// Generations kept for rollback (at least 2).
    pub keep: usize,
    /// Copies of the live set for daemons that do not follow symlinks.
    pub copy: Vec<CopyOut>,
    pub reload: Vec<ReloadConfig>,
    pub verify: Vec<EndpointSpec>,
    /// How long the endpoints may take to serve the new certificate after the reload.
    pub verify_grace: Duration,
    /// Re-activate (and reload) the previous generation when verification fails.
    pub rollback: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadConfig {
    pub action: ReloadAction,
    /// Run first; a failure skips the reload (e.g. `["nginx", "-t"]`).
    pub pre_check: Option<Vec<String>>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadAction {
    Signal {
        signal: String,
        pid_file: PathBuf,
        /// The process name the pid must belong to.
        process: Option<String>,
    },
    Systemd {
        unit: String,
        /// reload, restart or reload-or-restart.
        action: String,
    },
    Command {
        argv: Vec<String>,
        shell: bool,
    },
}

const ISSUER_KEYS: [&str; 16] = [
    "name",
    "type",
    "dir",
    "directory",
    "contact",
    "ca_roots",
    "trusted_roots",
    "eab_kid",
    "eab_hmac_file",
    "eab_hmac_env",
    "profile",
    "challenge",
    "listen",
    "webroot",
    "dns01",
    "request_timeout",
];
const ISSUER_KEYS_MORE: [&str; 1] = ["order_timeout"];

const DEPLOY_KEYS: [&str; 7] = [
    "dir",
    "keep",
    "copy",
    "reload",
    "verify",
    "verify_grace",
    "rollback",
];

const CERTIFICATE_KEYS: [&str; 11] = [
    "deploy",
    "name",
    "issuer",
    "names",
    "key_type",
    "reuse_key",
    "renew_before",
    "jitter",
    "profile",
    "common_name",
    "lifetime",
];

impl Validator {
    pub(crate) fn renewal(&mut self, value: Option<&Value>) -> RenewalConfig {
        let empty = Table::new();
        let table = self.section("renewal", value).unwrap_or(&empty);
        self.known_keys("renewal", table, &["state_dir", "check_interval"]);
        let check_interval =
            self.duration(table, "renewal", "check_interval", Duration::from_secs(60));
        if check_interval < Duration::from_secs(1) {
            self.error("renewal.check_interval", "must be at least 1s");
        }
        RenewalConfig {
            state_dir: self
                .string(table, "renewal", "state_dir")
                .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from),
            check_interval,
        }
    }

    fn tables<'a>(&mut self, key: &str, value: Option<&'a Value>) -> Vec<(String, &'a Table)> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error(key, format!("must be an array of tables: write [[{key}]]"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("{key}[{i}]");
            match item {
                Value::Table(t) => out.push((prefix, t)),
                _ => self.error(prefix, "must be a table"),
            }
        }
        out
    }

    fn strings(&mut self, table: &Table, prefix: &str, key: &str) -> Vec<String> {
        match table.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_str) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                self.error(format!("{prefix}.{key}"), "must be a list of strings");
                Vec::new()
            }
        }
    }

    fn required(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        if !table.contains_key(key) {
            self.error(format!("{prefix}.{key}"), "is required");
            return None;
        }
        self.string(table, prefix, key)
    }

    fn address(&mut self, table: &Table, prefix: &str, default: &str) -> SocketAddr {
        let text = self
            .string(table, prefix, "listen")
            .unwrap_or_else(|| default.to_owned());
        text.parse().unwrap_or_else(|_| {
            self.error(
                format!("{prefix}.listen"),
                format!("{text:?} is not an address like \"0.0.0.0:80\""),
            );
            default.parse().unwrap_or_else(|_| unreachable!())
        })
    }

    pub(crate) fn issuers(&mut self, value: Option<&Value>) -> Vec<IssuerConfig> {
        let mut out: Vec<IssuerConfig> = Vec::new();
        for (prefix, table) in self.tables("issuer", value) {
            let known: Vec<&str> = ISSUER_KEYS.into_iter().chain(ISSUER_KEYS_MORE).collect();
            self.known_keys(&prefix, table, &known);
            let name = self.required(table, &prefix, "name");
            let kind = match self.required(table, &prefix, "type").as_deref() {
                Some("acme") => self.acme(table, &prefix),
                Some("internal-ca") => self
                    .required(table, &prefix, "dir")
                    .map(|dir| IssuerKind::InternalCa { dir: dir.into() }),
                Some(other) => {
                    self.error(
                        format!("{prefix}.type"),
                        format!("{other:?} is not \"acme\" or \"internal-ca\""),
                    );
                    None
                }
                None => None,
            };
            if let Some(name) = &name
                && out.iter().any(|i| &i.name == name)
            {
                self.error(
                    format!("{prefix}.name"),
                    format!("{name:?} is used by another [[issuer]]"),
                );
            }
            if let (Some(name), Some(kind)) = (name, kind) {
                out.push(IssuerConfig { name, kind });
            }
        }
        out
    }

    fn acme(&mut self, table: &Table, prefix: &str) -> Option<IssuerKind> {
        let directory = self.required(table, prefix, "directory");
        if let Some(d) = &directory
            && !d.starts_with("https://")
        {
            self.error(
                format!("{prefix}.directory"),
                "must be an https:// URL (ACME requires TLS)",
            );
        }
        let eab_kid = self.string(table, prefix, "eab_kid");
        let eab_hmac = match (
            self.string(table, prefix, "eab_hmac_file"),
            self.string(table, prefix, "eab_hmac_env"),
        ) {
            (Some(file), None) => Some(SecretRef::File(file.into())),
            (None, Some(env)) => Some(SecretRef::Env(env)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.error(prefix, "set eab_hmac_file or eab_hmac_env, not both");
                None
            }
        };
        if eab_kid.is_some() != eab_hmac.is_some() {
            self.error(
                prefix,
                "eab_kid and eab_hmac_file (or eab_hmac_env) go together",
            );
        }
        let challenge_name = self
            .string(table, prefix, "challenge")
            .unwrap_or_else(|| "http-01".to_owned());
        let challenge = match challenge_name.as_str() {
            "http-01" => match self.string(table, prefix, "webroot") {
                Some(root) => {
                    if table.contains_key("listen") {
                        self.error(
                            format!("{prefix}.listen"),
                            "webroot mode writes files for another web server: no listener",
                        );
                    }
                    Some(ChallengeConfig::Webroot { root: root.into() })
                }
                None => Some(ChallengeConfig::Http01 {
                    listen: self.address(table, prefix, "0.0.0.0:80"),
                }),
            },
            "tls-alpn-01" => Some(ChallengeConfig::TlsAlpn01 {
                listen: self.address(table, prefix, "0.0.0.0:443"),
            }),
            "dns-01" => match table.get("dns01") {
                Some(value) => match value.clone().try_into::<ProviderConfig>() {
                    Ok(provider) => Some(ChallengeConfig::Dns01(Box::new(provider))),
                    Err(e) => {
                        self.error(format!("{prefix}.dns01"), e.to_string().trim().to_owned());
                        None
                    }
                },
                None => {
                    self.error(
                        format!("{prefix}.dns01"),
                        "challenge = \"dns-01\" needs a [issuer.dns01] table (provider = \"rfc2136\" or \"exec\")",
                    );
                    None
                }
            },
            other => {
                self.error(
                    format!("{prefix}.challenge"),
                    format!("{other:?} is not http-01, tls-alpn-01 or dns-01"),
                );
                None
            }
        };
        if challenge_name != "dns-01" && table.contains_key("dns01") {
            self.error(
                format!("{prefix}.dns01"),
                "applies to challenge = \"dns-01\" only",
            );
        }
        let config = AcmeIssuerConfig {
            directory: directory?,
            contact: self.strings(table, prefix, "contact"),
            ca_roots: self
                .strings(table, prefix, "ca_roots")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            trusted_roots: self
                .strings(table, prefix, "trusted_roots")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            eab_kid,
            eab_hmac,
            profile: self.string(table, prefix, "profile"),
            challenge: challenge?,
            request_timeout: self.duration(
                table,
                prefix,
                "request_timeout",
                Duration::from_secs(30),
            ),
            order_timeout: self.duration(table, prefix, "order_timeout", Duration::from_secs(300)),
        };
        Some(IssuerKind::Acme(Box::new(config)))
    }

    pub(crate) fn certificates(
        &mut self,
        value: Option<&Value>,
        issuers: &[IssuerConfig],
    ) -> Vec<CertificateConfig> {
        let mut out: Vec<CertificateConfig> = Vec::new();
        for (prefix, table) in self.tables("certificate", value) {
            self.known_keys(&prefix, table, &CERTIFICATE_KEYS);
            let name = self.required(table, &prefix, "name");
            if let Some(name) = &name {
                let safe = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && !name.starts_with('.');
                if !safe {
                    self.error(
                        format!("{prefix}.name"),
                        "use letters, digits, '-', '_' and '.' (it names directories)",
                    );
                }
                if out.iter().any(|c| &c.name == name) {
                    self.error(
                        format!("{prefix}.name"),
                        format!("{name:?} is used by another [[certificate]]"),
                    );
                }
            }
            let issuer_name = self.required(table, &prefix, "issuer");
            let issuer = issuer_name
                .as_ref()
                .and_then(|n| issuers.iter().find(|i| &i.name == n));
            if let (Some(n), None) = (&issuer_name, issuer) {
                let known: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
                self.error(
                    format!("{prefix}.issuer"),
                    format!("no [[issuer]] named {n:?} (known: {})", known.join(", ")),
                );
            }
            let internal = matches!(issuer.map(|i| &i.kind), Some(IssuerKind::InternalCa { .. }));

            let identifiers: Vec<Identifier> = self
                .strings(table, &prefix, "names")
                .iter()
                .map(|n| Identifier::parse(n))
                .collect();
            let key_type = match self.string(table, &prefix, "key_type") {
                None => KeyType::default(),
                Some(text) => text.parse().unwrap_or_else(|e: String| {
                    self.error(format!("{prefix}.key_type"), e);
                    KeyType::default()
                }),
            };
            if key_type == KeyType::Sm2 && issuer.is_some() && !internal {
                self.error(
                    format!("{prefix}.key_type"),
                    "sm2 certificates come from the internal CA only",
                );
            }
            let profile = match self.string(table, &prefix, "profile") {
                None => None,
                Some(text) if internal => match text.parse::<Profile>() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.error(format!("{prefix}.profile"), e.to_string());
                        None
                    }
                },
                Some(_) => {
                    self.error(
                        format!("{prefix}.profile"),
                        "role profiles apply to internal-ca issuers (ACME profiles go on the [[issuer]])",
                    );
                    None
                }
            };
            if internal && profile.is_none() && !table.contains_key("profile") {
                self.error(
                    format!("{prefix}.profile"),
                    "is required for an internal-ca issuer (etcd-server, etcd-peer, etcd-client, grpc-server, grpc-client, tls-server)",
                );
            }
            let needs_names = profile.is_none_or(Profile::requires_identifiers);
            if identifiers.is_empty() && needs_names {
                self.error(
                    format!("{prefix}.names"),
                    "needs at least one DNS name or IP address",
                );
            }
            for key in ["common_name", "lifetime"] {
                if !internal && issuer.is_some() && table.contains_key(key) {
                    self.error(
                        format!("{prefix}.{key}"),
                        "applies to internal-ca issuers only (the ACME CA decides)",
                    );
                }
            }
            let lifetime = table
                .contains_key("lifetime")
                .then(|| self.duration(table, &prefix, "lifetime", Duration::ZERO));
            let renewal = RenewalPolicy {
                before: self.renew_before(table, &prefix),
                jitter: self.number(table, &prefix, "jitter", 0.1, (0.0, 1.0)),
            };
            let certificate = CertificateConfig {
                name: name.unwrap_or_default(),
                issuer: issuer_name.unwrap_or_default(),
                identifiers,
                key_type,
                reuse_key: self.boolean(table, &prefix, "reuse_key", false),
                renewal,
                profile,
                common_name: self.string(table, &prefix, "common_name"),
                lifetime,
                deploy: table
                    .get("deploy")
                    .and_then(|value| self.deploy(value, &format!("{prefix}.deploy"))),
            };
            if !certificate.name.is_empty() && issuer.is_some() {
                out.push(certificate);
            }
        }
        out
    }

    fn deploy(&mut self, value: &Value, prefix: &str) -> Option<DeployConfig> {
        let Value::Table(table) = value else {
            self.error(prefix, "must be a table: write [certificate.deploy]");
            return None;
        };
        self.known_keys(prefix, table, &DEPLOY_KEYS);
        let keep = self.number(table, prefix, "keep", 5.0, (2.0, 1000.0)) as usize;
        let copy = self
            .tables(&format!("{prefix}.copy"), table.get("copy"))
            .into_iter()
            .map(|(p, t)| self.copy(&p, t))
            .collect();
        let reload = self
            .tables(&format!("{prefix}.reload"), table.get("reload"))
            .into_iter()
            .filter_map(|(p, t)| self.reload(&p, t))
            .collect();
        let mut verify = Vec::new();
        for (p, t) in self.tables(&format!("{prefix}.verify"), table.get("verify")) {
            self.known_keys(&p, t, &crate::with_endpoint_options(&["endpoint"]));
            if let Some(endpoint) = self.required(t, &p, "endpoint")
                && let Some(spec) = self.endpoint(t, &p, &endpoint)
            {
                verify.push(spec);
            }
        }
        Some(DeployConfig {
            dir: self.string(table, prefix, "dir").map(PathBuf::from),
            keep,
            copy,
            reload,
            verify,
            verify_grace: self.duration(table, prefix, "verify_grace", Duration::from_secs(30)),
            rollback: self.boolean(table, prefix, "rollback", true),
        })
    }

    fn mode(&mut self, table: &Table, prefix: &str, key: &str) -> Option<u32> {
        let text = self.string(table, prefix, key)?;
        match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => Some(mode),
            _ => {
                self.error(
                    format!("{prefix}.{key}"),
                    format!("{text:?} is not an octal file mode like \"0640\""),
                );
                None
            }
        }
    }

    fn copy(&mut self, prefix: &str, table: &Table) -> CopyOut {
        self.known_keys(
            prefix,
            table,
            &[
                "cert",
                "chain",
                "fullchain",
                "key",
                "owner",
                "group",
                "mode",
                "key_mode",
            ],
        );
        let path = |v: &mut Self, key| v.string(table, prefix, key).map(PathBuf::from);
        let copy = CopyOut {
            cert: path(self, "cert"),
            chain: path(self, "chain"),
            fullchain: path(self, "fullchain"),
            key: path(self, "key"),
            owner: self.string(table, prefix, "owner"),
            group: self.string(table, prefix, "group"),
            mode: self.mode(table, prefix, "mode"),
            key_mode: self.mode(table, prefix, "key_mode"),
        };
        if copy.cert.is_none()
            && copy.chain.is_none()
            && copy.fullchain.is_none()
            && copy.key.is_none()
        {
            self.error(
                prefix,
                "names no file: set cert, chain, fullchain and/or key",
            );
        }
        copy
    }

    fn reload(&mut self, prefix: &str, table: &Table) -> Option<ReloadConfig> {
        self.known_keys(
            prefix,
            table,
            &[
                "signal",
                "pid_file",
                "process",
                "systemd",
                "action",
                "command",
                "shell",
                "pre_check",
                "timeout",
            ],
        );
        let kinds = ["signal", "systemd", "command"]
            .iter()
            .filter(|k| table.contains_key(**k))
            .count();
        if kinds != 1 {
            self.error(
                prefix,
                "needs exactly one of signal (with pid_file), systemd (a unit) or command (argv)",
            );
            return None;
        }
        let action = if let Some(signal) = self.string(table, prefix, "signal") {
            let pid_file = self.required(table, prefix, "pid_file")?;
            ReloadAction::Signal {
                signal: signal.trim_start_matches("SIG").to_ascii_uppercase(),
                pid_file: pid_file.into(),
                process: self.string(table, prefix, "process"),
            }
        } else if let Some(unit) = self.string(table, prefix, "systemd") {
            let action = self
                .string(table, prefix, "action")
                .unwrap_or_else(|| "reload".to_owned());
            if !["reload", "restart", "reload-or-restart"].contains(&action.as_str()) {
                self.error(
                    format!("{prefix}.action"),
                    format!("{action:?} is not reload, restart or reload-or-restart"),
                );
            }
            ReloadAction::Systemd { unit, action }
        } else {
            let argv = self.strings(table, prefix, "command");
            if argv.is_empty() {
                self.error(
                    format!("{prefix}.command"),
                    "needs a program: [\"prog\", \"arg\"]",
                );
                return None;
            }
            ReloadAction::Command {
                argv,
                shell: self.boolean(table, prefix, "shell", false),
            }
        };
        let pre_check = table
            .contains_key("pre_check")
            .then(|| self.strings(table, prefix, "pre_check"))
            .filter(|argv| !argv.is_empty());
        Some(ReloadConfig {
            action,
            pre_check,
            timeout: self.duration(table, prefix, "timeout", Duration::from_secs(60)),
        })
    }

    /// `renew_before = "1/3"` (of the lifetime), `0.25`, or a duration such as `"30d"`.
    fn renew_before(&mut self, table: &Table, prefix: &str) -> RenewBefore {
        let key = format!("{prefix}.renew_before");
        match table.get("renew_before") {
            None => RenewBefore::default(),
            Some(Value::Float(f)) if (0.0..1.0).contains(f) && *f > 0.0 => {
                RenewBefore::Fraction(*f)
            }
            Some(Value::String(text)) => {
                if let Some((num, den)) = text.split_once('/') {
                    match (num.trim().parse::<f64>(), den.trim().parse::<f64>()) {
                        (Ok(n), Ok(d)) if d > 0.0 && n > 0.0 && n < d => {
                            return RenewBefore::Fraction(n / d);
                        }
                        _ => {}
                    }
                } else if let Ok(d) = humantime::parse_duration(text) {
                    return RenewBefore::Seconds(d.as_secs() as i64);
                }
                self.error(
                    key,
                    format!("{text:?} is neither a fraction of the lifetime like \"1/3\" nor a duration like \"30d\""),
                );
                RenewBefore::default()
            }
            Some(_) => {
                self.error(
                    key,
                    "must be a fraction of the lifetime (\"1/3\" or 0.33) or a duration (\"30d\")",
                );
                RenewBefore::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    use super::*;

    const GOOD: &str = r#"
        [renewal]
        state_dir = "/tmp/certvigil-state"

        [[issuer]]
        name = "le"
        type = "acme"
        directory = "https://acme.example/dir"
        contact = ["mailto:ops@example.test"]
        ca_roots = ["/etc/certvigil/acme-ca.pem"]
        eab_kid = "kid-1"
        eab_hmac_env = "EAB_HMAC"

        [[issuer]]
        name = "dns"
        type = "acme"
        directory = "https://acme.example/dir"
        challenge = "dns-01"
        [issuer.dns01]
        provider = "rfc2136"
        server = "127.0.0.1:53"
        tsig_key_name = "certvigil-key"
        tsig_secret_file = "/etc/certvigil/tsig.key"

        [[issuer]]
        name = "internal"
        type = "internal-ca"
        dir = "/etc/certvigil/ca"

        [[certificate]]
        name = "web"
        issuer = "le"
        names = ["example.test", "www.example.test"]
        renew_before = "30d"

        [[certificate]]
        name = "etcd-peer-1"
        issuer = "internal"
        profile = "etcd-peer"
        names = ["10.0.0.5", "etcd-1.internal"]
        lifetime = "2d"
        renew_before = "1/3"
        key_type = "ecdsa-p384"
        [certificate.deploy]
        keep = 3
        verify_grace = "10s"
        [[certificate.deploy.copy]]
        cert = "/etc/etcd/pki/peer.crt"
        key = "/etc/etcd/pki/peer.key"
        group = "etcd"
        key_mode = "0640"
        [[certificate.deploy.reload]]
        signal = "SIGHUP"
        pid_file = "/run/etcd.pid"
        process = "etcd"
        [[certificate.deploy.reload]]
        systemd = "nginx.service"
        pre_check = ["nginx", "-t"]
        [[certificate.deploy.verify]]
        endpoint = "127.0.0.1:2380"
        client_cert = "/etc/etcd/pki/client.crt"
        client_key = "/etc/etcd/pki/client.key"
    "#;

    #[test]
    fn issuers_and_certificates_parse() {
        let config = Config::parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.renewal.staging_dir(),
            PathBuf::from("/tmp/certvigil-state/staging")
        );
        assert_eq!(config.issuers.len(), 3);
        let IssuerKind::Acme(acme) = &config.issuers[0].kind else {
            panic!()
        };
        assert_eq!(
            acme.challenge,
            ChallengeConfig::Http01 {
                listen: "0.0.0.0:80".parse().unwrap()
            }
        );
        assert_eq!(acme.eab_hmac, Some(SecretRef::Env("EAB_HMAC".into())));
        let IssuerKind::Acme(dns) = &config.issuers[1].kind else {
            panic!()
        };
        assert!(matches!(dns.challenge, ChallengeConfig::Dns01(_)));

        let web = &config.certificates[0];
        assert_eq!(web.renewal.before, RenewBefore::Seconds(30 * 86_400));
        assert_eq!(web.key_type, KeyType::EcdsaP256);
        assert!(!web.reuse_key);
        let peer = &config.certificates[1];
        assert_eq!(peer.profile, Some(Profile::EtcdPeer));
        assert_eq!(peer.lifetime, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(peer.renewal.before, RenewBefore::Fraction(1.0 / 3.0));
        assert_eq!(
            peer.identifiers[0],
            Identifier::Ip("10.0.0.5".parse().unwrap())
        );
    }

    #[test]
    fn every_issuance_mistake_is_reported_at_once() {
        let text = r#"
            [[issuer]]
            name = "le"
            type = "acme"
            directory = "http://insecure/dir"
            challenge = "dns-01"
            eab_kid = "x"

            [[issuer]]
            name = "ca"
            type = "internal-ca"

            [[issuer]]
            name = "ok"
            type = "acme"
            directory = "https://acme.example/dir"

            [[certificate]]
            name = "../escape"
            issuer = "nobody"
            names = []

            [[certificate]]
            name = "x"
            issuer = "ok"
            names = ["a.test"]
            key_type = "sm2"
            lifetime = "1d"
            renew_before = "soon"
            [certificate.deploy]
            keep = 1
            [[certificate.deploy.copy]]
            mode = "rw"
            [[certificate.deploy.reload]]
            signal = "HUP"
            systemd = "x"
        "#;
        let errors = Config::parse(text).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for expected in [
            "issuer[0].directory",
            "issuer[0].dns01",
            "issuer[0]",
            "issuer[1].dir",
            "certificate[0].name",
            "certificate[0].issuer",
            "certificate[1].key_type",
            "certificate[1].lifetime",
            "certificate[1].renew_before",
            "certificate[1].deploy.keep",
            "certificate[1].deploy.copy[0]",
            "certificate[1].deploy.copy[0].mode",
            "certificate[1].deploy.reload[0]",
        ] {
            assert!(
                keys.contains(&expected),
                "{expected} missing from {errors:#?}"
            );
        }
    }
}
