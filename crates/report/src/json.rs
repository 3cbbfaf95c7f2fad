//! The JSON wire format, version 1 (docs/json-format.md). Streamed: a scan of 100k
//! certificates never holds its JSON in memory.

use std::io::{self, Write};

use certvigil_core::cert::{KeyAlgorithm, Sans, SignatureAlgorithm, hex, key_usage};
use certvigil_core::inventory::LinkStatus;
use serde::Serialize;
use serde::ser::Serializer;

use crate::{Occurrence, Report, rfc3339, write_occurrences};

pub const FORMAT_VERSION: u32 = 1;

pub fn write(report: &Report<'_>, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    let generator = concat!("certvigil ", env!("CARGO_PKG_VERSION"));
    out.write_all(b"{")?;
    field(&mut out, "format_version", &FORMAT_VERSION, true)?;
    field(&mut out, "generator", &generator, false)?;
    field(&mut out, "generated_at", &rfc3339(report.policy.now), false)?;
    field(&mut out, "summary", &Summary::of(report), false)?;
    out.write_all(b",\"certificates\":")?;
    write_certificates(report, &mut out)?;
    field(&mut out, "crls", &Crls(report), false)?;
    field(&mut out, "endpoints", &Endpoints(report), false)?;
    field(&mut out, "findings", &Findings(report), false)?;
    out.write_all(b"}\n")?;
    out.flush()
}

fn field(out: &mut impl Write, key: &str, value: &impl Serialize, first: bool) -> io::Result<()> {
    if !first {
        out.write_all(b",")?;
    }
    serde_json::to_writer(&mut *out, key)?;
    out.write_all(b":")?;
    serde_json::to_writer(&mut *out, value)?;
    Ok(())
}

/// The certificate array, the bulk of the output (about 1 KB per certificate).
fn write_certificates(report: &Report<'_>, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"[")?;
    write_occurrences(report, out, b",", |buf, o| {
        serde_json::to_writer(buf, &CertEntry::new(report, *o)).map_err(io::Error::from)
    })?;
    out.write_all(b"]")
}

#[derive(Serialize)]
struct Summary {
    sources: usize,
    certificates: usize,
    unique_certificates: usize,
    critical: usize,
    warning: usize,
    info: usize,
}

impl Summary {
    fn of(report: &Report<'_>) -> Self {
        use certvigil_core::Severity::*;
        Self {
            sources: report
                .inventory
                .sources()
                .filter(|(_, s)| s.reported)
                .count(),
            certificates: report.occurrences().count(),
            unique_certificates: report.inventory.cert_count(),
            critical: report.count(Critical),
            warning: report.count(Warning),
            info: report.count(Info),
        }
    }
}

#[derive(Serialize)]
struct CertEntry<'a> {
    source: &'a str,
    source_kind: &'static str,
    source_detail: Option<&'a str>,
    index: usize,
    subject: &'a str,
    issuer: &'a str,
    common_name: Option<&'a str>,
    serial: String,
    not_before: String,
    not_after: String,
    seconds_left: i64,
    fingerprint_sha256: String,
    sans: SansJson<'a>,
    key_algorithm: DisplayStr<'a, KeyAlgorithm>,
    key_bits: u32,
    signature_algorithm: DisplayStr<'a, SignatureAlgorithm>,
    is_ca: bool,
    self_signed: bool,
    trust_anchor: bool,
    key_usage: Option<Vec<&'static str>>,
    extended_key_usage: Option<Vec<String>>,
    issuer_fingerprint_sha256: Option<String>,
    issuer_link: Option<&'static str>,
}

impl<'a> CertEntry<'a> {
    fn new(report: &Report<'a>, o: Occurrence<'a>) -> Self {
        let cert = o.cert;
        let link = report.inventory.link(o.id);
        Self {
            source: &o.source.location.name,
            source_kind: o.source.kind().as_str(),
            source_detail: o.source.location.detail.as_deref(),
            index: o.index,
            subject: &cert.subject,
            issuer: &cert.issuer,
            common_name: cert.common_name(),
            serial: cert.serial_hex(),
            not_before: rfc3339(cert.not_before),
            not_after: rfc3339(cert.not_after),
            seconds_left: cert.not_after - report.policy.now,
            fingerprint_sha256: cert.fingerprint_hex(),
            sans: SansJson(&cert.sans),
            key_algorithm: DisplayStr(&cert.profile.key_algorithm),
            key_bits: cert.profile.key_bits,
            signature_algorithm: DisplayStr(&cert.profile.signature_algorithm),
            is_ca: cert.profile.is_ca,
            self_signed: cert.is_self_issued(),
            trust_anchor: report.inventory.is_anchor(o.id),
            key_usage: cert.profile.key_usage.map(key_usage_names),
            extended_key_usage: cert.profile.extended_key_usage.as_ref().map(|e| e.names()),
            issuer_fingerprint_sha256: link
                .map(|l| report.inventory.cert(l.issuer).fingerprint_hex()),
            issuer_link: link.map(|l| match l.status {
                LinkStatus::Verified => "verified",
                LinkStatus::BadSignature => "bad_signature",
                LinkStatus::Unchecked => "unchecked",
            }),
        }
    }
}

/// Serializes through `Display` straight into the output, without an intermediate `String`.
struct DisplayStr<'a, T>(&'a T);

impl<T: std::fmt::Display> Serialize for DisplayStr<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

struct SansJson<'a>(&'a Sans);

impl Serialize for SansJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(certvigil_core::cert::SanRef<'a>);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }
        s.collect_seq(self.0.iter().map(One))
    }
}

pub fn key_usage_names(bits: u16) -> Vec<&'static str> {
    const WIRE: [&str; 9] = [
        "digital_signature",
        "non_repudiation",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ];
    key_usage::NAMES
        .iter()
        .zip(WIRE)
        .filter(|((bit, _), _)| bits & bit != 0)
        .map(|(_, wire)| wire)
        .collect()
}

struct Crls<'a, 'r>(&'r Report<'a>);

#[derive(Serialize)]
struct CrlEntry<'a> {
    source: &'a str,
    issuer: &'a str,
    this_update: String,
    next_update: Option<String>,
    revoked: usize,
    number: Option<&'a str>,
    fingerprint_sha256: String,
}

impl Serialize for Crls<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sources = self.0.inventory.sources().filter(|(_, s)| s.reported);
        s.collect_seq(sources.flat_map(|(_, source)| {
            source.crls().iter().map(move |crl| CrlEntry {
                source: &source.location.name,
                issuer: &crl.issuer,
                this_update: rfc3339(crl.this_update),
                next_update: crl.next_update.map(rfc3339),
                revoked: crl.revoked,
                number: crl.number.as_deref(),
                fingerprint_sha256: hex(&crl.fingerprint),
            })
        }))
    }
}

struct Endpoints<'a, 'r>(&'r Report<'a>);

#[derive(Serialize)]
struct EndpointEntry<'a> {
    source: &'a str,
    sni: Option<&'a str>,
    tls_version: Option<&'a str>,
    cipher_suite: Option<&'a str>,
    alpn: Option<&'a str>,
    verified: bool,
    verify_error: Option<&'a str>,
    handshake_ms: u64,
    presented_certificates: usize,
}

impl Serialize for Endpoints<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sources = self.0.inventory.sources();
        s.collect_seq(sources.filter_map(|(_, source)| {
            let info = source.endpoint()?;
            Some(EndpointEntry {
                source: &source.location.name,
                sni: info.sni.as_deref(),
                tls_version: info.tls_version.as_deref(),
                cipher_suite: info.cipher_suite.as_deref(),
                alpn: info.alpn.as_deref(),
                verified: info.verify_error.is_none(),
                verify_error: info.verify_error.as_deref(),
                handshake_ms: info.handshake_ms,
                presented_certificates: source.certs.len(),
            })
        }))
    }
}

struct Findings<'a, 'r>(&'r Report<'a>);

#[derive(Serialize)]
struct FindingEntry<'a> {
    check: &'static str,
    severity: &'static str,
    source: &'a str,
    source_kind: &'static str,
    source_detail: Option<&'a str>,
    fingerprint_sha256: Option<String>,
    message: &'a str,
}

impl Serialize for Findings<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.findings.iter().map(|f| FindingEntry {
            check: f.check.as_str(),
            severity: f.severity.as_str(),
            source: &f.location.name,
            source_kind: f.location.kind.as_str(),
            source_detail: f.location.detail.as_deref(),
            fingerprint_sha256: f.fingerprint.as_ref().map(|fp| hex(fp)),
            message: &f.message,
        }))
    }
}
