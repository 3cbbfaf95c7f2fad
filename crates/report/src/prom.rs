//! Prometheus text exposition for the node_exporter textfile collector.
//!
//! Timestamps are in seconds (not "days left"), so alerts compute time left with `- time()`.
//! Series identity is source + position + fingerprint; labels are bounded in number and length.

use std::io::{self, Write};

use certvigil_core::check::{CheckId, Severity};
use certvigil_core::inventory::ProblemKind;

use crate::{Report, write_occurrences};

pub const CERT_NOT_AFTER: &str = "certvigil_cert_not_after_timestamp_seconds";
pub const CERT_NOT_BEFORE: &str = "certvigil_cert_not_before_timestamp_seconds";
pub const CERT_INFO: &str = "certvigil_cert_info";
pub const FINDINGS: &str = "certvigil_findings";
pub const SOURCE_ERRORS: &str = "certvigil_source_errors";
pub const CRL_NEXT_UPDATE: &str = "certvigil_crl_next_update_timestamp_seconds";
pub const ENDPOINT_VERIFIED: &str = "certvigil_endpoint_verified";
pub const ENDPOINT_PROBE_SUCCESS: &str = "certvigil_endpoint_probe_success";
pub const ENDPOINT_TLS_INFO: &str = "certvigil_endpoint_tls_info";
pub const SCAN_TIMESTAMP: &str = "certvigil_scan_timestamp_seconds";
pub const SCAN_DURATION: &str = "certvigil_scan_duration_seconds";
pub const BUILD_INFO: &str = "certvigil_build_info";
pub const TARGET_SERVED_MATCHES_DISK: &str = "certvigil_target_served_matches_disk";
pub const WATCH_POLLING: &str = "certvigil_watch_polling";
pub const SCAN_CERTIFICATES: &str = "certvigil_scan_certificates";
pub const ENDPOINT_VERIFY_RESULT: &str = "certvigil_endpoint_verify_result";
pub const ENDPOINT_PROBE_ERROR: &str = "certvigil_endpoint_probe_error";
pub const ENDPOINT_CHAIN_EXPIRY: &str = "certvigil_endpoint_chain_expiry_timestamp_seconds";
pub const SCAN_SECONDS: &str = "certvigil_scan_seconds";
pub const SOURCE_UP: &str = "certvigil_source_up";
pub const SOURCE_ITEMS: &str = "certvigil_source_items";
pub const SOURCE_PROBLEMS: &str = "certvigil_source_problems";
pub const RENEWAL_NEXT: &str = "certvigil_renewal_next_timestamp_seconds";
pub const RENEWAL_LAST_ATTEMPT: &str = "certvigil_renewal_last_attempt_timestamp_seconds";
pub const RENEWAL_LAST_SUCCESS: &str = "certvigil_renewal_last_success_timestamp_seconds";
pub const RENEWAL_FAILURES: &str = "certvigil_renewal_consecutive_failures";
pub const RENEWAL_STAGE: &str = "certvigil_renewal_stage";
pub const RENEWAL_RELOAD_FAILURES: &str = "certvigil_renewal_reload_failures";

/// Every metric family this renderer can emit, with its type and help (docs/metrics.md).
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        CERT_NOT_AFTER,
        "gauge",
        "Certificate notAfter as a Unix timestamp in seconds.",
    ),
    (
        CERT_NOT_BEFORE,
        "gauge",
        "Certificate notBefore as a Unix timestamp in seconds.",
    ),
    (CERT_INFO, "gauge", "Certificate metadata; always 1."),
    (
        FINDINGS,
        "gauge",
        "Number of findings by check and severity in the last scan.",
    ),
    (
        SOURCE_ERRORS,
        "gauge",
        "Sources that could not be read, parsed or reached, by reason.",
    ),
    (
        CRL_NEXT_UPDATE,
        "gauge",
        "CRL nextUpdate as a Unix timestamp in seconds.",
    ),
    (
        ENDPOINT_VERIFIED,
        "gauge",
        "1 when the TLS endpoint's chain verified, else 0.",
    ),
    (
        ENDPOINT_PROBE_SUCCESS,
        "gauge",
        "1 when the TLS endpoint completed a handshake and sent certificates, else 0.",
    ),
    (
        ENDPOINT_TLS_INFO,
        "gauge",
        "Negotiated TLS version and cipher suite of an endpoint; always 1.",
    ),
    (
        SCAN_TIMESTAMP,
        "gauge",
        "When the scan ran, as a Unix timestamp in seconds.",
    ),
    (
        SCAN_DURATION,
        "gauge",
        "How long the last scan took, in seconds (daemon only).",
    ),
    (BUILD_INFO, "gauge", "certvigil version; always 1."),
    (
        WATCH_POLLING,
        "gauge",
        "1 for a path the daemon cannot watch (inotify limit) and only rescans on its interval.",
    ),
    (
        TARGET_SERVED_MATCHES_DISK,
        "gauge",
        "1 when the endpoint serves the certificate on disk, 0 when it serves another one.",
    ),
    (
        SCAN_CERTIFICATES,
        "gauge",
        "Certificates found in the last scan (all locations).",
    ),
    (
        ENDPOINT_VERIFY_RESULT,
        "gauge",
        "1 for the outcome of verifying an endpoint's chain: ok or the reason it failed.",
    ),
    (
        ENDPOINT_PROBE_ERROR,
        "gauge",
        "1 for an endpoint whose probe failed, with why: resolve, connect, timeout, starttls, handshake, client_cert_rejected or setup.",
    ),
    (
        ENDPOINT_CHAIN_EXPIRY,
        "gauge",
        "Earliest notAfter in an endpoint's chain as presented, and along the chain certvigil builds to a root.",
    ),
    (
        SCAN_SECONDS,
        "histogram",
        "Durations of the daemon's scans since it started, in seconds.",
    ),
    (
        SOURCE_UP,
        "gauge",
        "1 when a configured file or directory source could be read, 0 when it could not.",
    ),
    (
        SOURCE_ITEMS,
        "gauge",
        "Certificates found under a configured file or directory source.",
    ),
    (
        SOURCE_PROBLEMS,
        "gauge",
        "Files under a configured source that could not be read or parsed, by reason.",
    ),
    (
        RENEWAL_NEXT,
        "gauge",
        "When a managed certificate is due for renewal, as a Unix timestamp in seconds.",
    ),
    (
        RENEWAL_LAST_ATTEMPT,
        "gauge",
        "When renewal of a managed certificate was last attempted, as a Unix timestamp.",
    ),
    (
        RENEWAL_LAST_SUCCESS,
        "gauge",
        "When a managed certificate was last renewed and verified, as a Unix timestamp.",
    ),
    (
        RENEWAL_FAILURES,
        "gauge",
        "Consecutive failed renewal attempts of a managed certificate (0 after a success).",
    ),
    (
        RENEWAL_STAGE,
        "gauge",
        "1 for the stage a managed certificate's renewal is in, 0 for the others.",
    ),
    (
        RENEWAL_RELOAD_FAILURES,
        "gauge",
        "Failed reload hooks of a managed certificate, counted in its persisted state.",
    ),
];

const MAX_LABEL_LEN: usize = 256;

pub fn write(report: &Report<'_>, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    let header = |out: &mut dyn Write, name: &str| -> io::Result<()> {
        let (_, kind, help) = FAMILIES
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("known family");
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")
    };

    for (name, pick) in [(CERT_NOT_AFTER, true), (CERT_NOT_BEFORE, false)] {
        header(&mut out, name)?;
        write_occurrences(report, &mut out, b"", |buf, o| {
            let value = if pick {
                o.cert.not_after
            } else {
                o.cert.not_before
            };
            buf.extend_from_slice(name.as_bytes());
            buf.push(b'{');
            write_identity(buf, report, o)?;
            writeln!(buf, "}} {value}")
        })?;
    }

    header(&mut out, CERT_INFO)?;
    write_occurrences(report, &mut out, b"", |buf, o| {
        let issuer_cn = report
            .inventory
            .link(o.id)
            .and_then(|l| {
                report
                    .inventory
                    .cert(l.issuer)
                    .common_name()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| cn_of(&o.cert.issuer));
        buf.extend_from_slice(CERT_INFO.as_bytes());
        buf.push(b'{');
        write_identity(buf, report, o)?;
        writeln!(
            buf,
            ",serial=\"{}\",subject_cn=\"{}\",issuer_cn=\"{}\",key_algorithm=\"{}\",key_bits=\"{}\",signature_algorithm=\"{}\",is_ca=\"{}\"}} 1",
            label(&o.cert.serial_hex()),
            label(o.cert.common_name().unwrap_or("")),
            label(&issuer_cn),
            label(&o.cert.profile.key_algorithm.to_string()),
            o.cert.profile.key_bits,
            label(&o.cert.profile.signature_algorithm.to_string()),
            o.cert.profile.is_ca,
        )
    })?;

    header(&mut out, FINDINGS)?;
    for check in CheckId::ALL {
        for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
            let n = report
                .findings
                .iter()
                .filter(|f| f.check == *check && f.severity == severity)
                .count();
            if n > 0 || severity != Severity::Info {
                writeln!(
                    out,
                    "{FINDINGS}{{check=\"{}\",severity=\"{}\"}} {n}",
                    check.as_str(),
                    severity.as_str()
                )?;
            }
        }
    }

    header(&mut out, SOURCE_ERRORS)?;
    for (kind, reason) in [
        (ProblemKind::Read, "read"),
        (ProblemKind::Parse, "parse"),
        (ProblemKind::Endpoint, "endpoint"),
    ] {
        let n = report
            .inventory
            .problems
            .iter()
            .filter(|p| p.kind == kind)
            .count();
        writeln!(out, "{SOURCE_ERRORS}{{reason=\"{reason}\"}} {n}")?;
    }

    header(&mut out, CRL_NEXT_UPDATE)?;
    for (_, source) in report.inventory.sources().filter(|(_, s)| s.reported) {
        for crl in source.crls() {
            if let Some(next) = crl.next_update {
                writeln!(
                    out,
                    "{CRL_NEXT_UPDATE}{{source=\"{}\",issuer_cn=\"{}\"}} {next}",
                    label(&source.location.name),
                    label(&cn_of(&crl.issuer))
                )?;
            }
        }
    }

    header(&mut out, ENDPOINT_VERIFIED)?;
    for (_, source) in report.inventory.sources() {
        if let Some(info) = source.endpoint() {
            writeln!(
                out,
                "{ENDPOINT_VERIFIED}{{source=\"{}\",sni=\"{}\"}} {}",
                label(&source.location.name),
                label(info.sni.as_deref().unwrap_or("")),
                u8::from(info.verify_error.is_none())
            )?;
        }
    }

    header(&mut out, ENDPOINT_VERIFY_RESULT)?;
    for (_, source) in report.inventory.sources() {
        if let Some(info) = source.endpoint() {
            writeln!(
                out,
                "{ENDPOINT_VERIFY_RESULT}{{source=\"{}\",sni=\"{}\",reason=\"{}\"}} 1",
                label(&source.location.name),
                label(info.sni.as_deref().unwrap_or("")),
                verify_reason(info.verify_error.as_deref())
            )?;
        }
    }

    header(&mut out, ENDPOINT_PROBE_ERROR)?;
    for problem in &report.inventory.problems {
        if problem.kind == ProblemKind::Endpoint {
            writeln!(
                out,
                "{ENDPOINT_PROBE_ERROR}{{source=\"{}\",reason=\"{}\"}} 1",
                label(&problem.location.name),
                probe_error_reason(&problem.reason)
            )?;
        }
    }

    header(&mut out, ENDPOINT_CHAIN_EXPIRY)?;
    for (_, source) in report.inventory.sources() {
        let (Some(info), Some(&leaf)) = (source.endpoint(), source.certs.first()) else {
            continue;
        };
        let presented = source
            .certs
            .iter()
            .map(|&id| report.inventory.cert(id).not_after)
            .min();
        // Along the issuer links certvigil verified, up to the root (trust store included).
        let mut best = report.inventory.cert(leaf).not_after;
        let mut seen = vec![leaf];
        let mut at = leaf;
        while let Some(link) = report.inventory.link(at) {
            if seen.contains(&link.issuer) {
                break;
            }
            best = best.min(report.inventory.cert(link.issuer).not_after);
            seen.push(link.issuer);
            at = link.issuer;
        }
        for (chain, value) in [("presented", presented), ("best", Some(best))] {
            if let Some(value) = value {
                writeln!(
                    out,
                    "{ENDPOINT_CHAIN_EXPIRY}{{source=\"{}\",sni=\"{}\",chain=\"{chain}\"}} {value}",
                    label(&source.location.name),
                    label(info.sni.as_deref().unwrap_or(""))
                )?;
            }
        }
    }

    header(&mut out, ENDPOINT_PROBE_SUCCESS)?;
    for (_, source) in report.inventory.sources() {
        if let Some(info) = source.endpoint() {
            let failed = report.inventory.problems.iter().any(|p| {
                p.kind == ProblemKind::Endpoint && p.location.name == source.location.name
            });
            writeln!(
                out,
                "{ENDPOINT_PROBE_SUCCESS}{{source=\"{}\",sni=\"{}\"}} {}",
                label(&source.location.name),
                label(info.sni.as_deref().unwrap_or("")),
                u8::from(!failed)
            )?;
        }
    }
    // Endpoints that never sent a certificate exist only as problems.
    for problem in &report.inventory.problems {
        let has_source = report
            .inventory
            .sources()
            .any(|(_, s)| s.endpoint().is_some() && s.location.name == problem.location.name);
        if problem.kind == ProblemKind::Endpoint && !has_source {
            writeln!(
                out,
                "{ENDPOINT_PROBE_SUCCESS}{{source=\"{}\",sni=\"\"}} 0",
                label(&problem.location.name)
            )?;
        }
    }

    header(&mut out, ENDPOINT_TLS_INFO)?;
    for (_, source) in report.inventory.sources() {
        if let Some(info) = source.endpoint() {
            writeln!(
                out,
                "{ENDPOINT_TLS_INFO}{{source=\"{}\",version=\"{}\",cipher_suite=\"{}\",alpn=\"{}\"}} 1",
                label(&source.location.name),
                label(info.tls_version.as_deref().unwrap_or("")),
                label(info.cipher_suite.as_deref().unwrap_or("")),
                label(info.alpn.as_deref().unwrap_or(""))
            )?;
        }
    }

    header(&mut out, TARGET_SERVED_MATCHES_DISK)?;
    for deployment in &report.inventory.deployments {
        if let Some(matches) = deployment.served_matches_disk() {
            writeln!(
                out,
                "{TARGET_SERVED_MATCHES_DISK}{{target=\"{}\",cert=\"{}\",endpoint=\"{}\"}} {}",
                label(&deployment.name),
                label(&deployment.cert_path),
                label(&deployment.endpoint),
                u8::from(matches)
            )?;
        }
    }

    if !report.watch_polling.is_empty() {
        header(&mut out, WATCH_POLLING)?;
        for path in report.watch_polling {
            writeln!(out, "{WATCH_POLLING}{{path=\"{}\"}} 1", label(path))?;
        }
    }

    header(&mut out, BUILD_INFO)?;
    writeln!(
        out,
        "{BUILD_INFO}{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )?;
    if let Some(histogram) = report.scan_histogram {
        header(&mut out, SCAN_SECONDS)?;
        for (bound, count) in &histogram.buckets {
            writeln!(out, "{SCAN_SECONDS}_bucket{{le=\"{bound}\"}} {count}")?;
        }
        writeln!(
            out,
            "{SCAN_SECONDS}_bucket{{le=\"+Inf\"}} {}",
            histogram.count
        )?;
        writeln!(out, "{SCAN_SECONDS}_sum {:.6}", histogram.sum)?;
        writeln!(out, "{SCAN_SECONDS}_count {}", histogram.count)?;
    }
    if let Some(seconds) = report.scan_seconds {
        header(&mut out, SCAN_DURATION)?;
        writeln!(out, "{SCAN_DURATION} {seconds:.6}")?;
    }

    write_per_source(report, &mut out, &header)?;
    write_renewals(report, &mut out, &header)?;

    header(&mut out, SCAN_TIMESTAMP)?;
    writeln!(out, "{SCAN_TIMESTAMP} {}", report.policy.now)?;
    header(&mut out, SCAN_CERTIFICATES)?;
    writeln!(out, "{SCAN_CERTIFICATES} {}", report.occurrences().count())?;
    out.flush()
}

/// Up, items and problems per configured source: the files under it are attributed by path.
fn write_per_source(
    report: &Report<'_>,
    out: &mut dyn Write,
    header: &dyn Fn(&mut dyn Write, &str) -> io::Result<()>,
) -> io::Result<()> {
    if report.configured_sources.is_empty() {
        return Ok(());
    }
    let under = |root: &str, name: &str| {
        name == root
            || name
                .strip_prefix(root.trim_end_matches('/'))
                .is_some_and(|rest| rest.starts_with('/'))
    };
    header(out, SOURCE_UP)?;
    for root in report.configured_sources {
        let down = report
            .inventory
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Read && p.location.name.as_ref() == root.as_str());
        writeln!(
            out,
            "{SOURCE_UP}{{source=\"{}\"}} {}",
            label(root),
            u8::from(!down)
        )?;
    }
    header(out, SOURCE_ITEMS)?;
    for root in report.configured_sources {
        let n = report
            .occurrences()
            .filter(|o| under(root, &o.source.location.name))
            .count();
        writeln!(out, "{SOURCE_ITEMS}{{source=\"{}\"}} {n}", label(root))?;
    }
    header(out, SOURCE_PROBLEMS)?;
    for root in report.configured_sources {
        for (kind, reason) in [(ProblemKind::Read, "read"), (ProblemKind::Parse, "parse")] {
            let n = report
                .inventory
                .problems
                .iter()
                .filter(|p| p.kind == kind && under(root, &p.location.name))
                .count();
            writeln!(
                out,
                "{SOURCE_PROBLEMS}{{source=\"{}\",reason=\"{reason}\"}} {n}",
                label(root)
            )?;
        }
    }
    Ok(())
}

fn write_renewals(
    report: &Report<'_>,
    out: &mut dyn Write,
    header: &dyn Fn(&mut dyn Write, &str) -> io::Result<()>,
) -> io::Result<()> {
    if report.renewals.is_empty() {
        return Ok(());
    }
    type Pick = fn(&crate::RenewalStatus) -> Option<i64>;
    let stamps: [(&str, Pick); 3] = [
        (RENEWAL_NEXT, |r| r.next_renewal),
        (RENEWAL_LAST_ATTEMPT, |r| r.last_attempt),
        (RENEWAL_LAST_SUCCESS, |r| r.last_success),
    ];
    for (name, pick) in stamps {
        header(out, name)?;
        for r in report.renewals {
            if let Some(value) = pick(r) {
                writeln!(
                    out,
                    "{name}{{certificate=\"{}\"}} {value}",
                    label(&r.certificate)
                )?;
            }
        }
    }
    header(out, RENEWAL_FAILURES)?;
    for r in report.renewals {
        writeln!(
            out,
            "{RENEWAL_FAILURES}{{certificate=\"{}\"}} {}",
            label(&r.certificate),
            r.consecutive_failures
        )?;
    }
    header(out, RENEWAL_STAGE)?;
    for r in report.renewals {
        for stage in crate::RENEWAL_STAGES {
            writeln!(
                out,
                "{RENEWAL_STAGE}{{certificate=\"{}\",stage=\"{stage}\"}} {}",
                label(&r.certificate),
                u8::from(stage == r.stage)
            )?;
        }
    }
    header(out, RENEWAL_RELOAD_FAILURES)?;
    for r in report.renewals {
        writeln!(
            out,
            "{RENEWAL_RELOAD_FAILURES}{{certificate=\"{}\"}} {}",
            label(&r.certificate),
            r.reload_failures
        )?;
    }
    Ok(())
}

/// Writes the labels that identify one certificate occurrence (location + fingerprint), and the
/// labels its configured source adds. Three lines per certificate carry them, so they are
/// written straight into the line rather than built as strings.
fn write_identity(
    buf: &mut Vec<u8>,
    report: &Report<'_>,
    o: &crate::Occurrence<'_>,
) -> io::Result<()> {
    let location = &o.source.location;
    buf.extend_from_slice(b"source=\"");
    match &location.detail {
        Some(detail) => push_label(buf, &format!("{} [{detail}]", location.name)),
        None => push_label(buf, &location.name),
    }
    write!(
        buf,
        "\",source_kind=\"{}\",index=\"{}\",fingerprint=\"",
        o.source.kind().as_str(),
        o.index
    )?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in o.cert.fingerprint {
        buf.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
    }
    buf.push(b'"');
    // The first configured source that contains this location gives its labels.
    if let Some(extra) = report
        .source_labels
        .iter()
        .find(|s| s.covers(&location.name))
    {
        for (name, value) in &extra.labels {
            write!(buf, ",{name}=\"")?;
            push_label(buf, value);
            buf.push(b'"');
        }
    }
    Ok(())
}

/// [`label`] into a buffer; a short value with nothing to escape (nearly every path) is copied.
fn push_label(buf: &mut Vec<u8>, value: &str) {
    let plain = value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"');
    if plain {
        buf.extend_from_slice(value.as_bytes());
    } else {
        buf.extend_from_slice(label(value).as_bytes());
    }
}

/// A fixed, low-cardinality reason for a verification verdict (the library's message carries
/// timestamps and names that would make a new series on every scan).
fn verify_reason(error: Option<&str>) -> &'static str {
    let Some(error) = error else {
        return "ok";
    };
    let e = error.to_ascii_lowercase().replace([' ', '_'], "");
    [
        ("unknownissuer", "unknown_issuer"),
        ("notvalidyet", "not_yet_valid"),
        ("notyetvalid", "not_yet_valid"),
        ("expired", "expired"),
        ("notvalidafter", "expired"),
        ("notvalidforname", "name_mismatch"),
        ("revoked", "revoked"),
        ("badsignature", "bad_signature"),
        ("unsupportedsignature", "unsupported_signature"),
        ("notrustanchors", "no_trust_anchors"),
        ("extendedkeyusage", "key_usage"),
        ("requiredekunotfound", "key_usage"),
    ]
    .iter()
    .find(|(needle, _)| e.contains(needle))
    .map_or("other", |(_, reason)| reason)
}

/// A fixed reason for a failed probe, from the step the probe's error names.
fn probe_error_reason(message: &str) -> &'static str {
    if message.starts_with("resolve") {
        "resolve"
    } else if message.starts_with("connect to") {
        "connect"
    } else if message.starts_with("timed out") {
        "timeout"
    } else if message.contains("STARTTLS") {
        "starttls"
    } else if message.contains("client certificate") {
        "client_cert_rejected"
    } else if message.starts_with("TLS handshake") {
        "handshake"
    } else {
        "setup"
    }
}

/// The CN out of an RFC 4514 string, for labels.
fn cn_of(dn: &str) -> String {
    dn.split(',')
        .find_map(|rdn| rdn.strip_prefix("CN="))
        .unwrap_or("")
        .to_owned()
}

/// Escapes a label value and bounds its length.
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_LABEL_LEN) + 8);
    for (i, c) in value.chars().enumerate() {
        if i == MAX_LABEL_LEN {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_errors_map_to_their_step() {
        assert_eq!(
            probe_error_reason("connect to 127.0.0.1:1: connection refused"),
            "connect"
        );
        assert_eq!(
            probe_error_reason("timed out after 5s during TLS handshake"),
            "timeout"
        );
        assert_eq!(
            probe_error_reason("resolve nowhere.invalid: no addresses"),
            "resolve"
        );
        assert_eq!(probe_error_reason("smtp STARTTLS: refused"), "starttls");
        assert_eq!(
            probe_error_reason(
                "TLS handshake: server rejected the connection after asking for a client certificate: x"
            ),
            "client_cert_rejected"
        );
        assert_eq!(probe_error_reason("TLS handshake: garbage"), "handshake");
        assert_eq!(probe_error_reason("bad client key"), "setup");
    }

    #[test]
    fn verify_reasons_are_a_fixed_set() {
        assert_eq!(verify_reason(None), "ok");
        assert_eq!(
            verify_reason(Some("invalid peer certificate: UnknownIssuer")),
            "unknown_issuer"
        );
        assert_eq!(
            verify_reason(Some(
                "invalid peer certificate: certificate expired: verification time 1764000000 (UNIX), but certificate is not valid after 1763000000 (1000000 seconds ago)"
            )),
            "expired"
        );
        assert_eq!(
            verify_reason(Some(
                "invalid peer certificate: certificate not valid for name \"x\""
            )),
            "name_mismatch"
        );
        assert_eq!(verify_reason(Some("something new")), "other");
    }

    #[test]
    fn labels_are_escaped_and_bounded() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label(&"x".repeat(1000)).chars().count(), MAX_LABEL_LEN + 1);
    }

    #[test]
    fn the_copying_fast_path_writes_what_label_writes() {
        let long = "p/".repeat(200);
        let cases = [
            "/etc/ssl/certs/a.pem",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "snow\u{2603}man",
            "c1\u{85}control",
            &long,
            &long[..MAX_LABEL_LEN],
            &long[..MAX_LABEL_LEN + 1],
        ];
        for value in cases {
            let mut buf = Vec::new();
            push_label(&mut buf, value);
            assert_eq!(String::from_utf8(buf).unwrap(), label(value), "{value:?}");
        }
    }
}
