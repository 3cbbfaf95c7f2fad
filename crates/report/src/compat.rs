//! The metric names and labels of enix/x509-certificate-exporter, so alerts and the Grafana
//! dashboard written for that exporter keep working on certvigil's scan (docs/metrics.md,
//! "x509-certificate-exporter compatibility").
//!
//! # Families
//!
//! Per certificate: `x509_cert_not_before`, `x509_cert_not_after` (Unix seconds),
//! `x509_cert_expired` (1 when `now > notAfter`, else 0), `x509_cert_expires_in_seconds`
//! (`notAfter - now`, negative once expired), `x509_cert_valid_since_seconds`
//! (`now - notBefore`, negative before validity). The exporter makes some of these optional
//! (`exposeNotBefore`, `exposeRelative`); certvigil always writes all of them: drop the ones you
//! do not want with `metric_relabel_configs`. Per location: `x509_cert_error` (1 when the file
//! or secret key could not be read or parsed, else 0). Global: `x509_read_errors` (the v3
//! gauge; v4 replaced it by the counter `x509_source_errors_total`, keyed by the exporter's own
//! configured source names, which has no counterpart here) and `x509_exporter_build_info`.
//!
//! `now` is the scan's reference time ([`certvigil_core::Policy::now`]), so the relative
//! gauges agree with certvigil's own findings; the exporter computes them at scrape time.
//! [`write_x509_exporter_at`] takes another `now` for callers that render per scrape.
//!
//! # Labels reproduced
//!
//! - files: `filename` (last path component) and `filepath` (the path as certvigil walked it;
//!   the exporter's `trimPathComponents` has no counterpart),
//! - kubeconfigs: `filename`, `filepath`, `embedded_kind` (`cluster` or `user`) and
//!   `embedded_key` (the cluster or user name) for embedded `*-data` certificates,
//! - Secrets: `secret_namespace`, `secret_name`, `secret_key`; ConfigMaps:
//!   `configmap_namespace`, `configmap_name`, `configmap_key` (certvigil's kube location is
//!   `secret/<namespace>/<name>` with detail `<origin>: <key>`),
//! - `serial_number` in **decimal** with a leading `-` for (non-conforming) negative serials,
//!   as Go's `big.Int.String()` prints it (certvigil's own labels use hex),
//! - `subject_C`, `subject_ST`, `subject_L`, `subject_O`, `subject_OU`, `subject_CN` and the
//!   same six `issuer_*`: as Go's `pkix.Name` fills them, CN is the last CN attribute of the
//!   DER name and the other five the first of theirs (ST is stateOrProvinceName). certvigil's
//!   RFC 4514 strings list the most specific RDN first, so CN is the first match there and the
//!   others the last; escapes are undone, non-string (`#hex`) values are skipped as Go does.
//!
//! Labels with no value are left out (as the v3 exporter does); v4 writes them as `""`, which
//! Prometheus treats exactly as an absent label, so selectors match either way. Values are
//! escaped and capped at 256 characters like certvigil's own labels ([`crate::prom::label`]).
//!
//! # Not reproduced
//!
//! - `cabundle_*` (certvigil does not read webhook/APIService/CRD caBundles), `crl_number` and
//!   the `x509_crl_*` families (see `certvigil_crl_next_update_timestamp_seconds`),
//!   `secret_label_*`/`configmap_label_*` (kubectl dumps are read, object labels are not kept),
//! - certificates a kubeconfig references by path (`client-certificate:`): certvigil reads the
//!   file as a file source, so they carry that file's `filepath`, not the kubeconfig's
//!   `embedded_*`,
//! - the exporter's per-source and health families (`x509_source_*`, `x509_scrape_*`, ...):
//!   they describe the exporter's process and configuration,
//! - secrets come from `kubectl get -o yaml|json` dumps; the dump's path is not a label, so the
//!   same secret in two dumps is one label set (handled as a collision below).
//!
//! # Sources included
//!
//! Every certificate occurrence of reported file, kubeconfig and kube sources. Trust anchors
//! (the system trust store, `--ca-file`) are left out: the exporter watches only the files it is
//! given, and a trust store would add hundreds of roots to expiry alerts; list a bundle as an
//! ordinary path to have it exported. TLS endpoints and stdin are left out too: the exporter
//! has no labels for them (certvigil's own families cover endpoints).
//!
//! # Collisions
//!
//! Two samples with the same name and labels make the exporter's Go registry fail the whole
//! scrape (HTTP 500, enix/x509-certificate-exporter#18, #21, #244). Here label sets are checked
//! before writing: the same certificate again under the same labels (a bundle listing a CA
//! twice) is skipped, since its values are identical; a different certificate under the same
//! labels gets a `discriminator` label, as the v4 exporter does, holding the first 16 hex digits
//! of its SHA-256 fingerprint. Both are counted in `certvigil_x509_compat_collisions{resolution}`
//! (`discriminator`, `duplicate_skipped`), so no two samples of a family ever share a label set.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use certvigil_core::Fingerprint;
use certvigil_core::inventory::{Location, SourceKind};

use crate::Report;
use crate::prom::label;

pub const CERT_NOT_BEFORE: &str = "x509_cert_not_before";
pub const CERT_NOT_AFTER: &str = "x509_cert_not_after";
pub const CERT_EXPIRED: &str = "x509_cert_expired";
pub const CERT_EXPIRES_IN: &str = "x509_cert_expires_in_seconds";
pub const CERT_VALID_SINCE: &str = "x509_cert_valid_since_seconds";
pub const CERT_ERROR: &str = "x509_cert_error";
pub const READ_ERRORS: &str = "x509_read_errors";
pub const BUILD_INFO: &str = "x509_exporter_build_info";
/// certvigil's own: label sets that collided and how they were resolved.
pub const COLLISIONS: &str = "certvigil_x509_compat_collisions";

/// Every family [`write_x509_exporter`] emits: name, type, help.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        CERT_NOT_BEFORE,
        "gauge",
        "Certificate notBefore as a Unix timestamp in seconds.",
    ),
    (
        CERT_NOT_AFTER,
        "gauge",
        "Certificate notAfter as a Unix timestamp in seconds.",
    ),
    (
        CERT_EXPIRED,
        "gauge",
        "1 when the certificate's notAfter has passed, else 0.",
    ),
    (
        CERT_EXPIRES_IN,
        "gauge",
        "Seconds from the scan until notAfter; negative once expired.",
    ),
    (
        CERT_VALID_SINCE,
        "gauge",
        "Seconds from notBefore until the scan; negative before validity starts.",
    ),
    (
        CERT_ERROR,
        "gauge",
        "1 when the file or secret key could not be read or parsed, else 0.",
    ),
    (
        READ_ERRORS,
        "gauge",
        "Files and secret keys that could not be read or parsed in the last scan.",
    ),
    (
        BUILD_INFO,
        "gauge",
        "Version of the program writing these metrics (certvigil); always 1.",
    ),
    (
        COLLISIONS,
        "gauge",
        "Certificates whose x509-certificate-exporter labels collided, by resolution.",
    ),
];

/// Writes the x509-certificate-exporter families for `report`, relative values at the scan's
/// reference time.
pub fn write_x509_exporter(report: &Report<'_>, out: impl Write) -> io::Result<()> {
    write_x509_exporter_at(report, report.policy.now, out)
}

/// As [`write_x509_exporter`], with relative values (`expired`, `expires_in_seconds`,
/// `valid_since_seconds`) computed at `now` (Unix seconds).
pub fn write_x509_exporter_at(report: &Report<'_>, now: i64, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    let plan = Plan::build(report);

    let families: [(&str, Value); 5] = [
        (CERT_NOT_BEFORE, |s, _| s.not_before),
        (CERT_NOT_AFTER, |s, _| s.not_after),
        (CERT_EXPIRED, |s, now| i64::from(now > s.not_after)),
        (CERT_EXPIRES_IN, |s, now| s.not_after - now),
        (CERT_VALID_SINCE, |s, now| now - s.not_before),
    ];
    for (name, value) in families {
        header(&mut out, name)?;
        for series in &plan.series {
            writeln!(out, "{name}{{{}}} {}", series.labels, value(series, now))?;
        }
    }

    header(&mut out, CERT_ERROR)?;
    for (labels, failed) in &plan.errors {
        writeln!(out, "{CERT_ERROR}{{{labels}}} {}", u8::from(*failed))?;
    }
    header(&mut out, READ_ERRORS)?;
    writeln!(out, "{READ_ERRORS} {}", plan.read_errors)?;
    header(&mut out, BUILD_INFO)?;
    writeln!(
        out,
        "{BUILD_INFO}{{implementation=\"certvigil\",version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )?;
    header(&mut out, COLLISIONS)?;
    writeln!(
        out,
        "{COLLISIONS}{{resolution=\"discriminator\"}} {}",
        plan.discriminated
    )?;
    writeln!(
        out,
        "{COLLISIONS}{{resolution=\"duplicate_skipped\"}} {}",
        plan.skipped
    )?;
    out.flush()
}

fn header(out: &mut impl Write, name: &str) -> io::Result<()> {
    let (_, kind, help) = FAMILIES
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("known family");
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// How a per-certificate family's value follows from a series and `now`.
type Value = fn(&Series, i64) -> i64;

/// One certificate series: its rendered label set and the times every family derives from.
struct Series {
    labels: String,
    not_before: i64,
    not_after: i64,
}

/// Everything to write, with label sets already made unique.
#[derive(Default)]
struct Plan {
    series: Vec<Series>,
    /// `x509_cert_error`: rendered location labels, and whether that location had a problem.
    errors: Vec<(String, bool)>,
    read_errors: usize,
    discriminated: usize,
    skipped: usize,
}

impl Plan {
    fn build(report: &Report<'_>) -> Self {
        let mut plan = Self::default();
        // Label set without discriminator -> fingerprint of the certificate first given it.
        let mut first: HashMap<String, Fingerprint> = HashMap::new();
        // Every label set written, discriminated or not.
        let mut written: HashSet<String> = HashSet::new();
        let mut error_index: HashMap<String, usize> = HashMap::new();

        for o in report.occurrences() {
            if o.source.anchor {
                continue;
            }
            let Some(place) = location_labels(&o.source.location) else {
                continue;
            };
            let place_text = render(place.clone());
            if !error_index.contains_key(&place_text) {
                error_index.insert(place_text.clone(), plan.errors.len());
                plan.errors.push((place_text, false));
            }

            let mut labels = place;
            labels.push(("serial_number", serial_decimal(o.cert)));
            name_labels(&o.cert.subject, "subject", &mut labels);
            name_labels(&o.cert.issuer, "issuer", &mut labels);
            let base = render(labels.clone());
            let text = match first.get(&base) {
                None => {
                    first.insert(base.clone(), o.cert.fingerprint);
                    base
                }
                // The same certificate again under the same labels: identical samples.
                Some(fp) if *fp == o.cert.fingerprint => {
                    plan.skipped += 1;
                    continue;
                }
                Some(_) => {
                    labels.push(("discriminator", o.cert.fingerprint_hex()[..16].to_owned()));
                    let text = render(labels);
                    if written.contains(&text) {
                        plan.skipped += 1;
                        continue;
                    }
                    plan.discriminated += 1;
                    text
                }
            };
            written.insert(text.clone());
            plan.series.push(Series {
                labels: text,
                not_before: o.cert.not_before,
                not_after: o.cert.not_after,
            });
        }

        for problem in &report.inventory.problems {
            let Some(place) = location_labels(&problem.location) else {
                continue;
            };
            plan.read_errors += 1;
            let text = render(place);
            match error_index.get(&text) {
                Some(&i) => plan.errors[i].1 = true,
                None => {
                    error_index.insert(text.clone(), plan.errors.len());
                    plan.errors.push((text, true));
                }
            }
        }
        plan
    }
}

type Labels = Vec<(&'static str, String)>;

/// Renders labels sorted by name (as the Go client writes them), empty values left out.
fn render(mut labels: Labels) -> String {
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&label(value));
        out.push('"');
    }
    out
}

/// The exporter's location labels for a certvigil location; `None` for locations the exporter
/// has no labels for (trust stores, endpoints, stdin).
fn location_labels(location: &Location) -> Option<Labels> {
    let path = &*location.name;
    let file = |labels: &mut Labels| {
        let name = path.rsplit('/').next().unwrap_or(path);
        labels.push(("filename", name.to_owned()));
        labels.push(("filepath", path.to_owned()));
    };
    let mut labels = Labels::new();
    match location.kind {
        SourceKind::File => file(&mut labels),
        SourceKind::Kubeconfig => {
            file(&mut labels);
            // `clusters[<name>].certificate-authority-data`, `users[<name>].client-...`
            if let Some(detail) = &location.detail
                && let Some((block, rest)) = detail.split_once('[')
                && let Some((name, _)) = rest.rsplit_once("].")
            {
                let kind = match block {
                    "clusters" => "cluster",
                    "users" => "user",
                    other => other,
                };
                labels.push(("embedded_kind", kind.to_owned()));
                labels.push(("embedded_key", name.to_owned()));
            }
        }
        SourceKind::Kube => {
            // `secret/<namespace>/<name>`, detail `<origin>: <key>`. Data keys cannot hold
            // `: ` (Kubernetes allows only `[-._a-zA-Z0-9]`), origins (paths) can.
            let mut parts = path.splitn(3, '/');
            let (kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
            let prefix = match kind {
                "secret" => ("secret_namespace", "secret_name", "secret_key"),
                "configmap" => ("configmap_namespace", "configmap_name", "configmap_key"),
                _ => return None,
            };
            let key = location
                .detail
                .as_deref()
                .map(|d| d.rsplit_once(": ").map_or(d, |(_, key)| key))
                .unwrap_or("");
            labels.push((prefix.0, namespace.to_owned()));
            labels.push((prefix.1, name.to_owned()));
            labels.push((prefix.2, key.to_owned()));
        }
        SourceKind::TrustStore | SourceKind::Endpoint | SourceKind::Stdin => return None,
    }
    Some(labels)
}

/// The serial as Go's `big.Int.String()`: decimal, `-` for negative ones.
fn serial_decimal(cert: &certvigil_core::Certificate) -> String {
    let digits = decimal(cert.serial.as_bytes());
    if cert.serial.is_negative() && digits != "0" {
        format!("-{digits}")
    } else {
        digits
    }
}

/// A big-endian unsigned integer of any length in decimal.
fn decimal(magnitude: &[u8]) -> String {
    const CHUNK: u128 = 10_000_000_000_000_000_000; // 10^19, the largest power of 10 in a u64
    let mut number: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    // Little-endian chunks of 19 decimal digits.
    let mut chunks: Vec<u64> = Vec::new();
    while !number.is_empty() {
        let mut rem: u128 = 0;
        let mut quotient = Vec::with_capacity(number.len());
        for &byte in &number {
            let acc = (rem << 8) | u128::from(byte);
            let q = acc / CHUNK;
            rem = acc % CHUNK;
            if !(quotient.is_empty() && q == 0) {
                quotient.push(q as u8);
            }
        }
        chunks.push(rem as u64);
        number = quotient;
    }
    let Some((most, rest)) = chunks.split_last() else {
        return "0".to_owned();
    };
    let mut out = most.to_string();
    for chunk in rest.iter().rev() {
        out.push_str(&format!("{chunk:019}"));
    }
    out
}

/// Adds `<prefix>_C`, `_ST`, `_L`, `_O`, `_OU` and `_CN` from an RFC 4514 name.
fn name_labels(dn: &str, prefix: &'static str, labels: &mut Labels) {
    let attributes = dn_attributes(dn);
    // Go keeps the last CN of the DER sequence, which RFC 4514 order lists first ...
    let cn = attributes.iter().find(|(t, _)| *t == "CN");
    // ... and the first C, ST, L, O and OU of the DER sequence, listed last here.
    let last = |ty: &str| attributes.iter().rev().find(|(t, _)| *t == ty);
    let names: [(&'static str, &'static str); 6] = match prefix {
        "subject" => [
            ("subject_C", "C"),
            ("subject_ST", "ST"),
            ("subject_L", "L"),
            ("subject_O", "O"),
            ("subject_OU", "OU"),
            ("subject_CN", "CN"),
        ],
        _ => [
            ("issuer_C", "C"),
            ("issuer_ST", "ST"),
            ("issuer_L", "L"),
            ("issuer_O", "O"),
            ("issuer_OU", "OU"),
            ("issuer_CN", "CN"),
        ],
    };
    for (label_name, ty) in names {
        let found = if ty == "CN" { cn } else { last(ty) };
        if let Some((_, value)) = found {
            labels.push((label_name, value.clone()));
        }
    }
}

/// (attribute type, unescaped value) of every string attribute of an RFC 4514 name, in the
/// string's order. `#hex` values (not strings) are left out, as Go's `pkix.Name` leaves them.
fn dn_attributes(dn: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let bytes = dn.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        if i == bytes.len() || bytes[i] == b',' || bytes[i] == b'+' {
            if let Some((ty, value)) = dn[start..i].split_once('=')
                && !value.starts_with('#')
            {
                out.push((ty, unescape(value)));
            }
            start = i + 1;
        } else if bytes[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    out
}

/// Undoes RFC 4514 escaping: `\,` and the like, and `\XX` hex bytes.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            // Two hex digits, checked as such: `from_str_radix` would also take `+C`.
            let hex = match bytes.get(i + 1..i + 3) {
                Some(&[hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                    Some(hex_value(hi) << 4 | hex_value(lo))
                }
                _ => None,
            };
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    out.push(bytes[i + 1]);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use certvigil_core::inventory::{Inventory, Location, NewSource, ProblemKind, SourceKind};
    use certvigil_core::{DecodeOptions, Policy, SourceContent, decode};
    use certvigil_testutil::rcgen::{self, DnType};
    use certvigil_testutil::{Pki, Spec, self_signed_leaf};

    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn add(inventory: &mut Inventory, location: Location, pem: &str) {
        add_with(inventory, NewSource::new(location), pem);
    }

    fn add_with(inventory: &mut Inventory, new: NewSource, pem: &str) {
        let content =
            SourceContent::from_decoded(decode(pem.as_bytes(), &DecodeOptions::default()));
        inventory.add_source(new, content);
    }

    fn render_report(inventory: &Inventory) -> String {
        let policy = Policy::new(NOW);
        let report = Report::new(inventory, &[], &policy);
        let mut out = Vec::new();
        write_x509_exporter(&report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Sample lines of `family` (exact name), as (labels, value).
    fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, i64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                (name == family).then(|| (labels, value.parse().unwrap()))
            })
            .collect()
    }

    fn one<'a>(text: &'a str, family: &str, needle: &str) -> (&'a str, i64) {
        let found: Vec<_> = samples(text, family)
            .into_iter()
            .filter(|(l, _)| l.contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "{family} {needle}: {found:?}\n{text}");
        found[0]
    }

    fn sample_inventory() -> (Inventory, Pki) {
        let pki = Pki::new("Compat");
        let mut inventory = Inventory::new();

        let mut spec = Spec::leaf("web.example.com");
        spec.organization = Some("Acme, Inc.".into());
        spec.serial = Some(vec![0x01, 0x00]);
        let web = pki.leaf(&spec);
        add(
            &mut inventory,
            Location::new(SourceKind::File, "/etc/ssl/site/fullchain.pem"),
            &pki.fullchain(&web),
        );

        let expired = pki.leaf(&Spec::leaf("old.example.com").valid_days(-90, -1));
        add(
            &mut inventory,
            Location::new(SourceKind::Kube, "secret/prod/old-tls")
                .with_detail("/dumps/prod: cluster.yaml: tls.crt"),
            &expired.pem,
        );
        let bundle = pki.leaf(&Spec::leaf("bundle.example.com"));
        add(
            &mut inventory,
            Location::new(SourceKind::Kube, "configmap/kube-system/ca")
                .with_detail("cm.yaml: ca.crt"),
            &bundle.pem,
        );
        let admin = pki.leaf(&Spec::leaf("admin"));
        add(
            &mut inventory,
            Location::new(SourceKind::Kubeconfig, "/root/.kube/config")
                .with_detail("users[kubernetes-admin].client-certificate-data"),
            &admin.pem,
        );
        let cluster_ca = &pki.root.cert.pem;
        add(
            &mut inventory,
            Location::new(SourceKind::Kubeconfig, "/root/.kube/config")
                .with_detail("clusters[prod].certificate-authority-data"),
            cluster_ca,
        );

        // Left out: trust anchors, endpoints, stdin.
        let mut anchor = NewSource::new(Location::new(
            SourceKind::TrustStore,
            "/etc/ssl/certs/ca-certificates.crt",
        ));
        anchor.anchor = true;
        let store_root = self_signed_leaf(&Spec::ca("Store Root"));
        add_with(&mut inventory, anchor, &store_root.pem);
        let mut ca_file = NewSource::new(Location::new(SourceKind::File, "/etc/ca.pem"));
        ca_file.anchor = true;
        add_with(
            &mut inventory,
            ca_file,
            &self_signed_leaf(&Spec::ca("Extra")).pem,
        );
        let served = pki.leaf(&Spec::leaf("remote.example.com"));
        add(
            &mut inventory,
            Location::new(SourceKind::Endpoint, "remote.example.com:443"),
            &served.pem,
        );
        add(
            &mut inventory,
            Location::new(SourceKind::Stdin, "stdin"),
            &served.pem,
        );

        inventory.add_problem(
            Location::new(SourceKind::File, "/etc/ssl/broken.pem"),
            ProblemKind::Parse,
            "bad base64",
        );
        inventory.add_problem(
            Location::new(SourceKind::Endpoint, "down.example.com:443"),
            ProblemKind::Endpoint,
            "connection refused",
        );
        (inventory, pki)
    }

    #[test]
    fn families_labels_and_values_follow_the_exporter() {
        let (inventory, _pki) = sample_inventory();
        let text = render_report(&inventory);

        // leaf + intermediate of the fullchain, kube secret, configmap, two kubeconfig entries.
        assert_eq!(samples(&text, CERT_NOT_AFTER).len(), 6, "{text}");
        for (name, _, _) in &FAMILIES[..5] {
            assert_eq!(samples(&text, name).len(), 6, "{name}");
        }
        assert!(!text.contains("Store Root") && !text.contains("CN=Extra"));
        assert!(!text.contains("remote.example.com") && !text.contains("stdin"));

        let (labels, not_after) = one(&text, CERT_NOT_AFTER, "subject_CN=\"web.example.com\"");
        assert_eq!(
            labels,
            "filename=\"fullchain.pem\",filepath=\"/etc/ssl/site/fullchain.pem\",\
             issuer_CN=\"Compat Intermediate CA\",serial_number=\"256\",\
             subject_CN=\"web.example.com\",subject_O=\"Acme, Inc.\""
        );
        let web = inventory
            .certs()
            .map(|(_, c)| c)
            .find(|c| c.common_name() == Some("web.example.com"))
            .unwrap();
        assert_eq!(not_after, web.not_after);
        let (_, not_before) = one(&text, CERT_NOT_BEFORE, "subject_CN=\"web.example.com\"");
        assert_eq!(not_before, web.not_before);
        let (_, expires_in) = one(&text, CERT_EXPIRES_IN, "subject_CN=\"web.example.com\"");
        assert_eq!(expires_in, web.not_after - NOW);
        let (_, valid_since) = one(&text, CERT_VALID_SINCE, "subject_CN=\"web.example.com\"");
        assert_eq!(valid_since, NOW - web.not_before);

        let (labels, _) = one(&text, CERT_EXPIRED, "subject_CN=\"old.example.com\"");
        assert!(
            labels.starts_with(
                "issuer_CN=\"Compat Intermediate CA\",secret_key=\"tls.crt\",\
                 secret_name=\"old-tls\",secret_namespace=\"prod\",serial_number=\""
            ),
            "{labels}"
        );
        let (labels, _) = one(&text, CERT_EXPIRED, "subject_CN=\"bundle.example.com\"");
        assert!(
            labels.starts_with(
                "configmap_key=\"ca.crt\",configmap_name=\"ca\",configmap_namespace=\"kube-system\","
            ),
            "{labels}"
        );
        let (labels, _) = one(&text, CERT_EXPIRED, "subject_CN=\"admin\"");
        assert!(
            labels.starts_with(
                "embedded_key=\"kubernetes-admin\",embedded_kind=\"user\",filename=\"config\",\
                 filepath=\"/root/.kube/config\","
            ),
            "{labels}"
        );
        one(
            &text,
            CERT_EXPIRED,
            "embedded_key=\"prod\",embedded_kind=\"cluster\"",
        );

        // The policy's now is the reference: at the real now, only the old one has expired.
        let policy = Policy::new(time::OffsetDateTime::now_utc().unix_timestamp());
        let mut out = Vec::new();
        write_x509_exporter(&Report::new(&inventory, &[], &policy), &mut out).unwrap();
        let live = String::from_utf8(out).unwrap();
        let expired: Vec<_> = samples(&live, CERT_EXPIRED)
            .into_iter()
            .filter(|(_, v)| *v == 1)
            .collect();
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert!(expired[0].0.contains("old.example.com"));
        let (_, left) = one(&live, CERT_EXPIRES_IN, "old.example.com");
        assert!(left < 0);

        // Errors: the broken file is 1, every exported location 0; endpoints are not counted.
        assert_eq!(samples(&text, READ_ERRORS), vec![("", 1)]);
        assert_eq!(
            one(&text, CERT_ERROR, "broken.pem"),
            (
                "filename=\"broken.pem\",filepath=\"/etc/ssl/broken.pem\"",
                1
            )
        );
        assert_eq!(
            one(&text, CERT_ERROR, "secret_name=\"old-tls\""),
            (
                "secret_key=\"tls.crt\",secret_name=\"old-tls\",secret_namespace=\"prod\"",
                0
            )
        );
        assert_eq!(samples(&text, CERT_ERROR).len(), 6, "{text}");
        assert_eq!(samples(&text, BUILD_INFO).len(), 1);
        assert_eq!(
            samples(&text, COLLISIONS),
            vec![
                ("resolution=\"discriminator\"", 0),
                ("resolution=\"duplicate_skipped\"", 0)
            ]
        );
    }

    #[test]
    fn colliding_label_sets_are_disambiguated_or_skipped() {
        let mut inventory = Inventory::new();
        // Two different certificates with the same names and serial, and the first one twice.
        let mut spec = Spec::leaf("twin.example.com");
        spec.serial = Some(vec![0x2a]);
        let a = self_signed_leaf(&spec);
        let b = self_signed_leaf(&spec);
        add(
            &mut inventory,
            Location::new(SourceKind::File, "/srv/twins.pem"),
            &format!("{}{}{}{}", a.pem, b.pem, a.pem, b.pem),
        );
        // The same secret in two kubectl dumps: same labels, same certificate.
        for origin in ["a.yaml", "b.yaml"] {
            add(
                &mut inventory,
                Location::new(SourceKind::Kube, "secret/ns/web")
                    .with_detail(format!("{origin}: tls.crt")),
                &a.pem,
            );
        }
        let text = render_report(&inventory);
        for (name, _, _) in &FAMILIES[..5] {
            let found = samples(&text, name);
            assert_eq!(found.len(), 3, "{name}: {found:?}");
            let unique: HashSet<&str> = found.iter().map(|(l, _)| *l).collect();
            assert_eq!(unique.len(), found.len(), "{name}: {found:?}");
        }
        let file: Vec<_> = samples(&text, CERT_NOT_AFTER)
            .into_iter()
            .filter(|(l, _)| l.contains("twins.pem"))
            .collect();
        assert_eq!(file.len(), 2);
        assert!(!file[0].0.contains("discriminator"));
        let fp_b = certvigil_core::cert::fingerprint(&b.der);
        let expected = format!(
            "discriminator=\"{}\"",
            &certvigil_core::cert::hex(&fp_b)[..16]
        );
        assert!(file[1].0.starts_with(&expected), "{}", file[1].0);
        assert!(file[0].0.contains("serial_number=\"42\""));
        assert_eq!(
            samples(&text, COLLISIONS),
            vec![
                ("resolution=\"discriminator\"", 1),
                // a and b again in the file, a again in the second dump
                ("resolution=\"duplicate_skipped\"", 3)
            ]
        );
        assert_eq!(samples(&text, CERT_ERROR).len(), 2);
        promtool(&text);
    }

    #[test]
    fn names_are_read_as_go_fills_pkix_name() {
        let mut labels = Labels::new();
        // RFC 4514 order: most specific first. Go: CommonName = last CN of the DER sequence
        // (first here), Organization[0] = first O of the DER sequence (last here).
        name_labels(
            "CN=leaf\\, really,CN=outer,OU=Ops+O=Second,O=First,L=Paris,ST=IDF,C=FR,2.5.4.99=#0403616263",
            "subject",
            &mut labels,
        );
        assert_eq!(
            render(labels),
            "subject_C=\"FR\",subject_CN=\"leaf, really\",subject_L=\"Paris\",\
             subject_O=\"First\",subject_OU=\"Ops\",subject_ST=\"IDF\""
        );
        assert_eq!(unescape("a\\0Ab\\\"c\\\\d\\#"), "a\nb\"c\\d#");
        assert_eq!(unescape("caf\\C3\\A9"), "café");
        assert_eq!(unescape("Org\\+Co\\+c"), "Org+Co+c");
        let mut labels = Labels::new();
        name_labels("", "issuer", &mut labels);
        assert!(labels.is_empty());
    }

    #[test]
    fn serials_are_decimal_like_go_big_int() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0, 0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&[0xff; 8]), "18446744073709551615");
        assert_eq!(
            decimal(&[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            "18446744073709551616"
        );
        assert_eq!(
            decimal(&[0x8a, 0xc7, 0x23, 0x04, 0x89, 0xe8, 0x00, 0x00]),
            "10000000000000000000"
        );
        assert_eq!(decimal(&[0xff; 10]), "1208925819614629174706175");
        // 2^159: the top of RFC 5280's 20 octets.
        let mut top = [0u8; 20];
        top[0] = 0x80;
        assert_eq!(
            decimal(&top),
            "730750818665451459101842416358141509827966271488"
        );
        let cert = certvigil_core::Certificate::from_der(
            &self_signed_leaf(&Spec {
                serial: Some(vec![0x00, 0xde, 0xad, 0xbe, 0xef]),
                ..Spec::leaf("s")
            })
            .der,
        )
        .unwrap();
        assert_eq!(serial_decimal(&cert), "3735928559");
    }

    #[test]
    fn rcgen_names_with_every_field_reach_the_labels() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["full.example".to_owned()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CountryName, "DE");
        dn.push(DnType::StateOrProvinceName, "Berlin");
        dn.push(DnType::LocalityName, "Berlin \"Mitte\"");
        dn.push(DnType::OrganizationName, "Org+Co");
        dn.push(DnType::OrganizationalUnitName, "Unit");
        dn.push(DnType::CommonName, "full.example");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let mut inventory = Inventory::new();
        add(
            &mut inventory,
            Location::new(SourceKind::File, "relative/full.pem"),
            &cert.pem(),
        );
        let text = render_report(&inventory);
        let (labels, _) = one(&text, CERT_NOT_AFTER, "full.pem");
        for expected in [
            "filename=\"full.pem\",filepath=\"relative/full.pem\"",
            "issuer_C=\"DE\",issuer_CN=\"full.example\",issuer_L=\"Berlin \\\"Mitte\\\"\",\
             issuer_O=\"Org+Co\",issuer_OU=\"Unit\",issuer_ST=\"Berlin\"",
            "subject_C=\"DE\",subject_CN=\"full.example\",subject_L=\"Berlin \\\"Mitte\\\"\",\
             subject_O=\"Org+Co\",subject_OU=\"Unit\",subject_ST=\"Berlin\"",
        ] {
            assert!(labels.contains(expected), "{expected}\n{labels}");
        }
        promtool(&text);
    }

    #[test]
    fn output_passes_promtool() {
        let (inventory, _pki) = sample_inventory();
        let text = render_report(&inventory);
        promtool(&text);
    }

    fn promtool(text: &str) {
        let mut child = match Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!(
                "promtool not runnable ({e}): install the Debian package prometheus, \
                 e.g. with scripts/install-deps"
            ),
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool rejected the exposition:\n{}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
