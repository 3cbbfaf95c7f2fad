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
        CertEntry::new(report, *o).write(buf)
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

/// One certificate occurrence. The derived `Serialize` is the reference that the hand-written
/// [`CertEntry::write`] is tested against.
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

impl CertEntry<'_> {
    /// The same bytes as serde_json makes of the derived `Serialize` (a test holds them
    /// equal), several times faster: serde_json looks at every byte of every key and value
    /// for escaping, and a hundred thousand certificates are 100 MB of JSON with almost
    /// nothing to escape.
    fn write(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut o = Object::begin(buf);
        o.str("source", self.source)?;
        o.str("source_kind", self.source_kind)?;
        o.opt_str("source_detail", self.source_detail)?;
        o.int("index", self.index);
        o.str("subject", self.subject)?;
        o.str("issuer", self.issuer)?;
        o.opt_str("common_name", self.common_name)?;
        o.str("serial", &self.serial)?;
        o.str("not_before", &self.not_before)?;
        o.str("not_after", &self.not_after)?;
        o.int("seconds_left", self.seconds_left);
        o.str("fingerprint_sha256", &self.fingerprint_sha256)?;
        o.key("sans");
        o.array(self.sans.0.iter(), |buf, san| display(buf, &san))?;
        o.key("key_algorithm");
        display(o.buf, self.key_algorithm.0)?;
        o.int("key_bits", self.key_bits);
        o.key("signature_algorithm");
        display(o.buf, self.signature_algorithm.0)?;
        o.bool("is_ca", self.is_ca);
        o.bool("self_signed", self.self_signed);
        o.bool("trust_anchor", self.trust_anchor);
        o.opt_strs("key_usage", self.key_usage.as_deref())?;
        o.opt_strs("extended_key_usage", self.extended_key_usage.as_deref())?;
        o.opt_str(
            "issuer_fingerprint_sha256",
            self.issuer_fingerprint_sha256.as_deref(),
        )?;
        o.opt_str("issuer_link", self.issuer_link)?;
        o.end();
        Ok(())
    }
}

/// A JSON object written field by field into a buffer; keys are literals that need no
/// escaping.
struct Object<'b> {
    buf: &'b mut Vec<u8>,
    empty: bool,
}

impl<'b> Object<'b> {
    fn begin(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, empty: true }
    }

    fn key(&mut self, key: &'static str) {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &'static str, value: &str) -> io::Result<()> {
        self.key(key);
        string(self.buf, value)
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) -> io::Result<()> {
        self.key(key);
        match value {
            Some(value) => string(self.buf, value),
            None => {
                self.buf.extend_from_slice(b"null");
                Ok(())
            }
        }
    }

    /// An array of strings, or null.
    fn opt_strs<T: AsRef<str>>(
        &mut self,
        key: &'static str,
        values: Option<&[T]>,
    ) -> io::Result<()> {
        self.key(key);
        match values {
            Some(values) => self.array(values.iter(), |buf, v| string(buf, v.as_ref())),
            None => {
                self.buf.extend_from_slice(b"null");
                Ok(())
            }
        }
    }

    fn int(&mut self, key: &'static str, value: impl itoa::Integer) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn array<T>(
        &mut self,
        items: impl Iterator<Item = T>,
        mut write: impl FnMut(&mut Vec<u8>, T) -> io::Result<()>,
    ) -> io::Result<()> {
        self.buf.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            write(self.buf, item)?;
        }
        self.buf.push(b']');
        Ok(())
    }

    fn end(self) {
        self.buf.push(b'}');
    }
}

/// What serde_json escapes: control characters, the quote and the backslash.
fn needs_escape(bytes: &[u8]) -> bool {
    // No early exit: the loop over a short string vectorises.
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn string(buf: &mut Vec<u8>, value: &str) -> io::Result<()> {
    if needs_escape(value.as_bytes()) {
        return serde_json::to_writer(&mut *buf, value).map_err(io::Error::from);
    }
    buf.push(b'"');
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'"');
    Ok(())
}

/// A `Display` value as a JSON string, formatted straight into the buffer.
fn display(buf: &mut Vec<u8>, value: &impl std::fmt::Display) -> io::Result<()> {
    let start = buf.len();
    buf.push(b'"');
    write!(buf, "{value}")?;
    if needs_escape(&buf[start + 1..]) {
        let text = String::from_utf8_lossy(&buf[start + 1..]).into_owned();
        buf.truncate(start);
        return string(buf, &text);
    }
    buf.push(b'"');
    Ok(())
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

#[cfg(test)]
mod tests {
    use certvigil_core::inventory::{Inventory, Location, NewSource, SourceKind};
    use certvigil_core::{DecodeOptions, Policy, SourceContent, decode};
    use certvigil_testutil::{Pki, Spec, self_signed_leaf};

    use super::*;

    fn add(inventory: &mut Inventory, location: Location, pem: &str) {
        let decoded = decode(pem.as_bytes(), &DecodeOptions::default());
        inventory.add_source(
            NewSource::new(location),
            SourceContent::from_decoded(decoded),
        );
    }

    /// The hand-written certificate entries are byte for byte what serde_json makes of the
    /// derived `Serialize`, escapes included.
    #[test]
    fn certificate_entries_are_written_exactly_as_serde_json_writes_them() {
        let pki = Pki::new("Escapes \"R\" \\ Root");
        let mut inventory = Inventory::new();
        add(
            &mut inventory,
            Location::new(SourceKind::File, "/etc/ssl/root.pem"),
            &pki.root.cert.pem,
        );
        let mut spec = Spec::leaf("cafe.example.com");
        spec.common_name = "caf\u{e9} \"front\" server".into();
        spec.organization = Some("Acme \"Quoted\" \\ Inc.\u{1}\t\u{65e5}\u{672c}".into());
        spec.ip_names = vec!["192.0.2.7".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        spec.client_auth = true;
        spec.serial = Some(vec![0x00, 0xff, 0x10]);
        let leaf = pki.leaf(&spec);
        add(
            &mut inventory,
            Location::new(SourceKind::Kube, "secret/prod/\"odd\"\\name")
                .with_detail("dump.yaml: tls.crt\nline two"),
            &pki.fullchain(&leaf),
        );
        let lone = self_signed_leaf(&Spec::leaf("lone.example.com"));
        add(
            &mut inventory,
            Location::new(SourceKind::File, "/srv/tab\there/lone.pem"),
            &lone.pem,
        );
        let policy = Policy::new(1_750_000_000);
        let report = Report::new(&inventory, &[], &policy);
        let mut checked = 0;
        let mut linked = 0;
        for o in report.occurrences() {
            let entry = CertEntry::new(&report, o);
            let mut fast = Vec::new();
            entry.write(&mut fast).unwrap();
            let serde = serde_json::to_vec(&entry).unwrap();
            linked += usize::from(entry.issuer_link.is_some());
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(serde).unwrap()
            );
            checked += 1;
        }
        assert_eq!(checked, 4, "root, leaf, chain copy of the root, lone leaf");
        assert!(linked > 0, "an issuer link is written too");
    }
}
