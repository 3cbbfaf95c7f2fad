//! Every check, run over a finished inventory. Pure: the clock comes in through [`Policy`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::cert::{Certificate, Fingerprint, HashAlgorithm, KeyAlgorithm, key_usage};
use crate::hostname;
use crate::inventory::{
    CertId, Inventory, LinkStatus, Location, ProblemKind, Role, Source, SourceId, SourceKind,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Self::Info,
            "warning" | "warn" => Self::Warning,
            "critical" | "crit" => Self::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! checks {
    ($($variant:ident => $id:literal,)*) => {
        /// Stable check identifiers: part of the JSON wire format and metric labels.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CheckId { $($variant,)* }

        impl CheckId {
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $id,)* }
            }
        }
    };
}

checks! {
    Expired => "expired",
    Expiring => "expiring",
    NotYetValid => "not_yet_valid",
    ChainIncomplete => "chain_incomplete",
    ChainUntrusted => "chain_untrusted",
    ChainExpiredIntermediate => "chain_expired_intermediate",
    SignatureInvalid => "signature_invalid",
    HostnameMismatch => "hostname_mismatch",
    KeyUsage => "key_usage",
    KeyMismatch => "key_mismatch",
    WeakKey => "weak_key",
    WeakSignature => "weak_signature",
    SelfSignedLeaf => "self_signed_leaf",
    Duplicate => "duplicate",
    CrlExpired => "crl_expired",
    ParseError => "parse_error",
    ReadError => "read_error",
    EndpointError => "endpoint_error",
    ServedStale => "served_stale",
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub check: CheckId,
    pub severity: Severity,
    pub location: Location,
    pub fingerprint: Option<Fingerprint>,
    pub message: String,
}

/// Thresholds and context for the checks. `now` is an input so every check is reproducible.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Unix seconds.
    pub now: i64,
    pub warn_days: f64,
    pub crit_days: f64,
    /// Warn when at most this fraction of the lifetime is left (whichever of days and fraction
    /// comes later wins, so a 24-hour certificate does not warn for its whole life).
    pub warn_fraction: f64,
    pub crit_fraction: f64,
    /// Allowance for clocks running behind the issuer's when judging notBefore.
    pub clock_skew_secs: i64,
    pub min_rsa_bits: u32,
    pub min_ec_bits: u32,
    /// Host names every leaf must cover (`--host`), on top of each source's own.
    pub hosts: Vec<String>,
    /// Role every leaf must be fit for (`--role`), unless the source declares its own.
    pub role: Option<Role>,
}

impl Policy {
    pub fn new(now: i64) -> Self {
        Self {
            now,
            warn_days: 30.0,
            crit_days: 7.0,
            warn_fraction: 1.0 / 3.0,
            crit_fraction: 1.0 / 10.0,
            clock_skew_secs: 300,
            min_rsa_bits: 2048,
            min_ec_bits: 256,
            hosts: Vec::new(),
            role: None,
        }
    }

    /// Seconds left at which a certificate with this lifetime becomes (warning, critical).
    pub fn expiry_thresholds(&self, lifetime_secs: i64) -> (i64, i64) {
        let lifetime = lifetime_secs.max(0) as f64;
        let warn = (self.warn_days * DAY as f64).min(lifetime * self.warn_fraction);
        let crit = (self.crit_days * DAY as f64).min(lifetime * self.crit_fraction);
        (warn as i64, crit as i64)
    }
}

const DAY: i64 = 86_400;

/// "3d 4h", "5h 12m", "40s": for messages and the text table.
pub fn human_duration(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d >= 100 {
        format!("{d}d")
    } else if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

pub fn run(inventory: &Inventory, policy: &Policy) -> Vec<Finding> {
    let mut findings = Findings { out: Vec::new() };
    for (id, source) in inventory.sources() {
        if source.reported {
            check_source(inventory, policy, id, source, &mut findings);
        }
    }
    for problem in &inventory.problems {
        let (check, severity) = match problem.kind {
            ProblemKind::Read => (CheckId::ReadError, Severity::Warning),
            ProblemKind::Parse => (CheckId::ParseError, Severity::Warning),
            ProblemKind::Endpoint => (CheckId::EndpointError, Severity::Critical),
        };
        findings.push(
            check,
            severity,
            &problem.location,
            None,
            problem.reason.clone(),
        );
    }
    check_pairings(inventory, &mut findings);
    check_deployments(inventory, &mut findings);
    check_duplicates(inventory, &mut findings);
    let mut out = findings.out;
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.location.name.cmp(&b.location.name))
            .then_with(|| a.check.cmp(&b.check))
    });
    out
}

struct Findings {
    out: Vec<Finding>,
}

impl Findings {
    fn push(
        &mut self,
        check: CheckId,
        severity: Severity,
        location: &Location,
        cert: Option<&Certificate>,
        message: String,
    ) {
        self.out.push(Finding {
            check,
            severity,
            location: location.clone(),
            fingerprint: cert.map(|c| c.fingerprint),
            message,
        });
    }
}

fn check_source(
    inventory: &Inventory,
    policy: &Policy,
    source_id: SourceId,
    source: &Source,
    findings: &mut Findings,
) {
    let loc = &source.location;
    let is_endpoint = source.kind() == SourceKind::Endpoint;
    for (position, &id) in source.certs.iter().enumerate() {
        let cert = inventory.cert(id);
        check_validity(policy, source, cert, findings);
        if source.anchor {
            continue;
        }
        check_strength(policy, loc, cert, findings);
        let is_leaf = position == 0 && (is_endpoint || !cert.profile.is_ca);
        if is_leaf && cert.is_self_issued() && !inventory.is_anchor(id) {
            let severity = if is_endpoint {
                Severity::Warning
            } else {
                Severity::Info
            };
            findings.push(
                CheckId::SelfSignedLeaf,
                severity,
                loc,
                Some(cert),
                format!(
                    "{} is self-signed: clients must pin it; issue it from a CA so it can be \
                     rotated without touching every client",
                    cert.label()
                ),
            );
        }
    }

    let Some(&first) = source.certs.first() else {
        check_crls(policy, source, findings);
        return;
    };
    check_crls(policy, source, findings);
    if source.anchor {
        return;
    }
    let leaf = inventory.cert(first);
    let is_leaf = is_endpoint || !leaf.profile.is_ca;
    let before = findings.out.len();
    check_chain(inventory, policy, source, first, findings);
    if is_leaf {
        check_hosts(policy, source, leaf, findings);
        check_role(policy, source, leaf, findings);
        check_own_keys(source, leaf, findings);
    }
    if let Some(endpoint) = source.endpoint()
        && let Some(error) = &endpoint.verify_error
    {
        let explained = findings.out[before..]
            .iter()
            .any(|f| f.severity == Severity::Critical)
            || findings.out.iter().any(|f| {
                f.location == *loc && matches!(f.check, CheckId::Expired | CheckId::NotYetValid)
            });
        if !explained {
            findings.push(
                CheckId::ChainUntrusted,
                Severity::Critical,
                loc,
                Some(leaf),
                format!("TLS clients reject this chain: {error}"),
            );
        }
    }
    let _ = source_id;
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        self.location.kind
    }
}

fn check_validity(policy: &Policy, source: &Source, cert: &Certificate, findings: &mut Findings) {
    let loc = &source.location;
    let left = cert.not_after - policy.now;
    let what = if source.anchor {
        "trusted root"
    } else {
        "certificate"
    };
    if left < 0 {
        let severity = if source.anchor {
            Severity::Warning
        } else {
            Severity::Critical
        };
        let action = if source.anchor {
            "remove it from the trust store (an expired root can break chain building)"
        } else {
            "renew and redeploy it now"
        };
        findings.push(
            CheckId::Expired,
            severity,
            loc,
            Some(cert),
            format!(
                "{what} {} expired {} ago: {action}",
                cert.label(),
                human_duration(-left)
            ),
        );
    } else if !source.anchor {
        let (warn, crit) = policy.expiry_thresholds(cert.lifetime_secs());
        let severity = if left <= crit {
            Some(Severity::Critical)
        } else if left <= warn {
            Some(Severity::Warning)
        } else {
            None
        };
        if let Some(severity) = severity {
            let lifetime = cert.lifetime_secs().max(1) as f64;
            findings.push(
                CheckId::Expiring,
                severity,
                loc,
                Some(cert),
                format!(
                    "{} expires in {} ({:.0}% of its lifetime left): renew it",
                    cert.label(),
                    human_duration(left),
                    100.0 * left as f64 / lifetime
                ),
            );
        }
    }
    let early = cert.not_before - policy.now;
    if early > policy.clock_skew_secs {
        findings.push(
            CheckId::NotYetValid,
            Severity::Critical,
            loc,
            Some(cert),
            format!(
                "{} is not valid for another {} (more than the {}s clock-skew allowance): \
                 check this host's clock and the issuer's",
                cert.label(),
                human_duration(early),
                policy.clock_skew_secs
            ),
        );
    }
}

fn check_strength(policy: &Policy, loc: &Location, cert: &Certificate, findings: &mut Findings) {
    let weak_key = match &cert.profile.key_algorithm {
        KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss => cert.profile.key_bits < policy.min_rsa_bits,
        KeyAlgorithm::Ec(curve) => curve.bits() != 0 && curve.bits() < policy.min_ec_bits,
        KeyAlgorithm::Dsa => true,
        _ => false,
    };
    if weak_key {
        findings.push(
            CheckId::WeakKey,
            Severity::Warning,
            loc,
            Some(cert),
            format!(
                "{} has a weak {} {}-bit key: reissue with ECDSA P-256 or RSA 2048+",
                cert.label(),
                cert.profile.key_algorithm,
                cert.profile.key_bits
            ),
        );
    }
    // A root's self-signature is never checked by clients, so its hash does not matter.
    if !cert.is_self_issued()
        && let Some(hash) = cert.profile.signature_algorithm.hash()
        && hash.is_weak()
    {
        let severity = if hash == HashAlgorithm::Sha1 {
            Severity::Warning
        } else {
            Severity::Critical
        };
        findings.push(
            CheckId::WeakSignature,
            severity,
            loc,
            Some(cert),
            format!(
                "{} is signed with {}: modern clients reject it; reissue with SHA-256",
                cert.label(),
                cert.profile.signature_algorithm
            ),
        );
    }
}

fn check_chain(
    inventory: &Inventory,
    policy: &Policy,
    source: &Source,
    start: CertId,
    findings: &mut Findings,
) {
    let loc = &source.location;
    let is_endpoint = source.kind() == SourceKind::Endpoint;
    let leaf = inventory.cert(start);
    let mut current = start;
    let mut seen = vec![start];
    for _ in 0..10 {
        let cert = inventory.cert(current);
        if cert.is_self_issued() {
            if is_endpoint && !inventory.is_anchor(current) {
                let what = if current == start {
                    "the certificate is self-signed".to_owned()
                } else {
                    format!("the chain ends at root {}", cert.subject)
                };
                findings.push(
                    CheckId::ChainUntrusted,
                    Severity::Critical,
                    loc,
                    Some(leaf),
                    format!(
                        "{what}, which is not in the system trust store or --ca-file: \
                         clients will refuse it"
                    ),
                );
            }
            return;
        }
        let Some(link) = inventory.link(current) else {
            report_missing_issuer(
                source,
                start,
                inventory.cert(start),
                cert,
                current,
                findings,
            );
            return;
        };
        let issuer = inventory.cert(link.issuer);
        if link.status == LinkStatus::BadSignature {
            findings.push(
                CheckId::SignatureInvalid,
                Severity::Critical,
                loc,
                Some(cert),
                format!(
                    "signature of {} does not verify with the key of {}: the certificate is \
                     corrupt or forged",
                    cert.label(),
                    issuer.subject
                ),
            );
            return;
        }
        if is_endpoint && !source.certs.contains(&link.issuer) && !inventory.is_anchor(link.issuer)
        {
            let found_at = inventory
                .locations_of(link.issuer)
                .map(|(_, s)| s.location.to_string())
                .next()
                .unwrap_or_default();
            findings.push(
                CheckId::ChainIncomplete,
                Severity::Critical,
                loc,
                Some(cert),
                format!(
                    "server does not send intermediate {} (found on this host at {found_at}): \
                     serve the full chain",
                    issuer.subject
                ),
            );
        }
        if issuer.not_after < policy.now {
            let kind = if issuer.is_self_issued() {
                "root"
            } else {
                "intermediate"
            };
            findings.push(
                CheckId::ChainExpiredIntermediate,
                Severity::Critical,
                loc,
                Some(issuer),
                format!(
                    "{kind} {} in the chain of {} expired {} ago: deploy a chain with a current \
                     {kind}",
                    issuer.label(),
                    leaf.label(),
                    human_duration(policy.now - issuer.not_after)
                ),
            );
        }
        if seen.contains(&link.issuer) {
            return;
        }
        seen.push(link.issuer);
        current = link.issuer;
    }
}

/// The chain stops at `cert` because its issuer is nowhere to be found. When the source did
/// send a CA certificate, what is missing is (almost always) the root: the chain is complete but
/// untrusted. When it stops at the leaf, an intermediate is missing.
fn report_missing_issuer(
    source: &Source,
    start: CertId,
    leaf: &Certificate,
    cert: &Certificate,
    current: CertId,
    findings: &mut Findings,
) {
    let loc = &source.location;
    let is_endpoint = source.kind() == SourceKind::Endpoint;
    let reached_ca = current != start && cert.profile.is_ca;
    if reached_ca {
        let (check, severity) = if is_endpoint {
            (CheckId::ChainUntrusted, Severity::Critical)
        } else {
            // A fullchain file without its root is normal; clients hold the root.
            (CheckId::ChainIncomplete, Severity::Info)
        };
        findings.push(
            check,
            severity,
            loc,
            Some(leaf),
            format!(
                "the chain ends at {}, issued by {}, which is not in the system trust store,                  --ca-file or on this host: {}",
                cert.label(),
                cert.issuer,
                if is_endpoint {
                    "clients that do not have this root will refuse the connection"
                } else {
                    "the chain cannot be checked up to a root here"
                }
            ),
        );
        return;
    }
    let severity = if is_endpoint {
        Severity::Critical
    } else if source.certs.len() > 1 {
        Severity::Warning
    } else {
        Severity::Info
    };
    let advice = if is_endpoint {
        "configure the server to send the full chain (fullchain), or add the root with --ca-file"
    } else {
        "add the intermediate to the bundle, or the issuing CA to the trust store"
    };
    findings.push(
        CheckId::ChainIncomplete,
        severity,
        loc,
        Some(cert),
        format!(
            "issuer of {} ({}) was not found in this source, on this host or in the trust \
             store: {advice}",
            cert.label(),
            cert.issuer
        ),
    );
}

fn check_hosts(policy: &Policy, source: &Source, leaf: &Certificate, findings: &mut Findings) {
    let mut hosts: Vec<&str> = source.expect.hosts.iter().map(String::as_str).collect();
    hosts.extend(policy.hosts.iter().map(String::as_str));
    hosts.sort_unstable();
    hosts.dedup();
    for host in hosts {
        if hostname::covers(leaf, host) {
            continue;
        }
        let names: Vec<String> = leaf.sans.iter().map(|s| s.to_string()).collect();
        let names = if names.is_empty() {
            "no subjectAltName at all (the CN is ignored by modern clients)".to_owned()
        } else {
            names.join(", ")
        };
        findings.push(
            CheckId::HostnameMismatch,
            Severity::Critical,
            &source.location,
            Some(leaf),
            format!(
                "{} does not cover {host}: it names {names}; reissue with {host}",
                leaf.label()
            ),
        );
    }
}

fn check_role(policy: &Policy, source: &Source, leaf: &Certificate, findings: &mut Findings) {
    let Some(role) = source.expect.role.or(policy.role) else {
        return;
    };
    let mut problems = Vec::new();
    if let Some(eku) = &leaf.profile.extended_key_usage
        && !eku.any
    {
        let (server, client) = match role {
            Role::TlsServer => (true, false),
            Role::TlsClient => (false, true),
            Role::EtcdPeer => (true, true),
        };
        if server && !eku.server_auth {
            problems.push("extendedKeyUsage lacks serverAuth".to_owned());
        }
        if client && !eku.client_auth {
            problems.push("extendedKeyUsage lacks clientAuth".to_owned());
        }
    }
    if let Some(ku) = leaf.profile.key_usage {
        let needed = match leaf.profile.key_algorithm {
            KeyAlgorithm::Rsa => key_usage::DIGITAL_SIGNATURE | key_usage::KEY_ENCIPHERMENT,
            _ => key_usage::DIGITAL_SIGNATURE | key_usage::KEY_AGREEMENT,
        };
        if ku & needed == 0 {
            problems.push("keyUsage lacks digitalSignature".to_owned());
        }
    }
    if !problems.is_empty() {
        findings.push(
            CheckId::KeyUsage,
            Severity::Critical,
            &source.location,
            Some(leaf),
            format!(
                "{} cannot be used as {}: {}; reissue with the {} profile",
                leaf.label(),
                role.as_str(),
                problems.join(", "),
                role.as_str()
            ),
        );
    }
}

fn check_own_keys(source: &Source, leaf: &Certificate, findings: &mut Findings) {
    if source.keys.is_empty() || source.keys.iter().any(|k| k.key_id == leaf.key_id) {
        return;
    }
    findings.push(
        CheckId::KeyMismatch,
        Severity::Critical,
        &source.location,
        Some(leaf),
        format!(
            "the private key in this file does not belong to {}: the service cannot complete \
             a handshake; deploy the key and certificate together",
            leaf.label()
        ),
    );
}

fn check_pairings(inventory: &Inventory, findings: &mut Findings) {
    for pairing in &inventory.pairings {
        let cert_source = inventory.source(pairing.cert_source);
        let key_source = inventory.source(pairing.key_source);
        let Some(&first) = cert_source.certs.first() else {
            continue;
        };
        let leaf = inventory.cert(first);
        if key_source.keys.is_empty() || key_source.keys.iter().any(|k| k.key_id == leaf.key_id) {
            continue;
        }
        findings.push(
            CheckId::KeyMismatch,
            Severity::Critical,
            &cert_source.location,
            Some(leaf),
            format!(
                "private key {} does not belong to {}: the service cannot complete a handshake; \
                 deploy the key and certificate together",
                key_source.location,
                leaf.label()
            ),
        );
    }
}

fn check_deployments(inventory: &Inventory, findings: &mut Findings) {
    for deployment in &inventory.deployments {
        let endpoint = Location::new(SourceKind::Endpoint, deployment.endpoint.as_str());
        if let Some(problem) = &deployment.key_mismatch {
            let file = Location::new(SourceKind::File, deployment.cert_path.as_str());
            findings.push(
                CheckId::KeyMismatch,
                Severity::Critical,
                &file,
                None,
                problem.clone(),
            );
        }
        if deployment.served_matches_disk() != Some(false) {
            continue;
        }
        let (Ok(disk), Some(served)) = (&deployment.on_disk, &deployment.served) else {
            continue;
        };
        let newer = if disk.not_after > served.not_after {
            "newer "
        } else {
            ""
        };
        findings.out.push(Finding {
            check: CheckId::ServedStale,
            severity: Severity::Critical,
            location: endpoint,
            fingerprint: Some(served.fingerprint),
            message: format!(
                "{}: {} serves certificate {} (serial {}, expires {}) but {} holds a {newer}one \
                 (serial {}, expires {}): the certificate was renewed and the service never \
                 loaded it; reload the service",
                deployment.name,
                deployment.endpoint,
                &crate::cert::hex(&served.fingerprint)[..16],
                served.serial,
                crate::timefmt::rfc3339(served.not_after),
                deployment.cert_path,
                disk.serial,
                crate::timefmt::rfc3339(disk.not_after),
            ),
        });
    }
}

fn check_duplicates(inventory: &Inventory, findings: &mut Findings) {
    // Intermediates repeat in every fullchain by design; a leaf in two directories usually
    // means a copy that will not be renewed with its original.
    let mut places: HashMap<CertId, Vec<&Location>> = HashMap::new();
    for (_, source) in inventory.sources() {
        if !source.reported || source.anchor {
            continue;
        }
        if let Some(&first) = source.certs.first()
            && !inventory.cert(first).profile.is_ca
        {
            places.entry(first).or_default().push(&source.location);
        }
    }
    let mut dups: Vec<_> = places
        .into_iter()
        .filter(|(_, locs)| locs.len() > 1)
        .collect();
    dups.sort_by_key(|(id, _)| *id);
    for (id, mut locations) in dups {
        let dirs = distinct_dirs(&locations);
        if dirs < 2 {
            continue;
        }
        locations.sort_by(|a, b| a.name.cmp(&b.name));
        let cert = inventory.cert(id);
        let others: Vec<String> = locations[1..]
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect();
        let more = locations.len().saturating_sub(6);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        findings.push(
            CheckId::Duplicate,
            Severity::Info,
            locations[0],
            Some(cert),
            format!(
                "{} is also at {}{more}: make sure every copy is renewed together",
                cert.label(),
                others.join(", ")
            ),
        );
    }
}

fn distinct_dirs(locations: &[&Location]) -> usize {
    let mut dirs: Vec<&str> = locations
        .iter()
        .map(|l| match l.kind {
            SourceKind::File => Path::new(&*l.name)
                .parent()
                .and_then(Path::to_str)
                .unwrap_or(""),
            _ => &l.name,
        })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs.len()
}

fn check_crls(policy: &Policy, source: &Source, findings: &mut Findings) {
    for crl in source.crls() {
        if let Some(next) = crl.next_update
            && next < policy.now
        {
            findings.push(
                CheckId::CrlExpired,
                Severity::Warning,
                &source.location,
                None,
                format!(
                    "CRL of {} is stale: nextUpdate passed {} ago; clients that check \
                     revocation will fail. Publish a fresh CRL",
                    crl.issuer,
                    human_duration(policy.now - next)
                ),
            );
        }
    }
}
