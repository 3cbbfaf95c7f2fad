//! `certvigil inspect`: one source in full detail, like `openssl x509 -text` but readable.

use std::io::{self, Write};

use certvigil_core::check::human_duration;
use certvigil_core::describe;
use certvigil_core::inventory::{LinkStatus, SourceId};

use crate::{Report, rfc3339};

pub fn write(report: &Report<'_>, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    let inventory = report.inventory;
    let now = report.policy.now;
    for (source_id, source) in inventory.sources().filter(|(_, s)| s.reported) {
        let keys = source.keys.len();
        writeln!(
            out,
            "{}: {} certificate(s){}{}",
            source.location,
            source.certs.len(),
            if keys > 0 {
                format!(", {keys} private key(s)")
            } else {
                String::new()
            },
            if source.crls().is_empty() {
                String::new()
            } else {
                format!(", {} CRL(s)", source.crls().len())
            }
        )?;
        if let Some(info) = source.endpoint() {
            writeln!(
                out,
                "  TLS:         {} {} alpn={} handshake {} ms",
                info.tls_version.as_deref().unwrap_or("?"),
                info.cipher_suite.as_deref().unwrap_or("?"),
                info.alpn.as_deref().unwrap_or("-"),
                info.handshake_ms
            )?;
            match &info.verify_error {
                None => writeln!(
                    out,
                    "  Verdict:     chain accepted for {}",
                    info.sni.as_deref().unwrap_or("the address")
                )?,
                Some(e) => writeln!(out, "  Verdict:     REJECTED: {e}")?,
            }
        }
        let ders = inventory.retained_der(source_id);
        for (index, &id) in source.certs.iter().enumerate() {
            let cert = inventory.cert(id);
            let role = if cert.is_self_issued() {
                if cert.profile.is_ca {
                    "root CA"
                } else {
                    "self-signed"
                }
            } else if cert.profile.is_ca {
                "intermediate CA"
            } else {
                "leaf"
            };
            writeln!(out)?;
            writeln!(out, "Certificate {index} ({role})")?;
            writeln!(out, "  Subject:     {}", cert.subject)?;
            writeln!(out, "  Issuer:      {}", cert.issuer)?;
            writeln!(out, "  Serial:      {}", cert.serial_hex())?;
            let left = cert.not_after - now;
            let state = if left < 0 {
                format!("EXPIRED {} ago", human_duration(-left))
            } else if cert.not_before > now {
                format!(
                    "NOT YET VALID for {}",
                    human_duration(cert.not_before - now)
                )
            } else {
                format!("{} left", human_duration(left))
            };
            writeln!(
                out,
                "  Validity:    {} → {} ({} lifetime; {state})",
                rfc3339(cert.not_before),
                rfc3339(cert.not_after),
                human_duration(cert.lifetime_secs())
            )?;
            if !cert.sans.is_empty() {
                let sans: Vec<String> = cert.sans.iter().map(|s| s.to_string()).collect();
                writeln!(out, "  Names:       {}", sans.join(", "))?;
            }
            writeln!(
                out,
                "  Key:         {} ({} bits)",
                cert.profile.key_algorithm, cert.profile.key_bits
            )?;
            writeln!(out, "  Signature:   {}", cert.profile.signature_algorithm)?;
            writeln!(out, "  SHA-256:     {}", cert.fingerprint_hex())?;
            if let Some(der) = ders.and_then(|d| {
                d.iter()
                    .find(|d| certvigil_core::cert::fingerprint(d) == cert.fingerprint)
            }) {
                let exts = describe::extensions(der);
                if !exts.is_empty() {
                    writeln!(out, "  Extensions:")?;
                }
                for ext in exts {
                    let critical = if ext.critical { " (critical)" } else { "" };
                    writeln!(out, "    {}{critical}: {}", ext.name, ext.value)?;
                }
            }
            if index == 0 && !cert.profile.is_ca {
                let matched = source.keys.iter().any(|k| k.key_id == cert.key_id);
                if keys > 0 {
                    writeln!(
                        out,
                        "  Private key: {}",
                        if matched {
                            "present, matches"
                        } else {
                            "present, DOES NOT MATCH"
                        }
                    )?;
                }
            }
            match inventory.link(id) {
                Some(link) => {
                    let issuer = inventory.cert(link.issuer);
                    let place = match source.certs.iter().position(|c| *c == link.issuer) {
                        Some(i) => format!("certificate {i} in this source"),
                        None => inventory.locations_of(link.issuer).next().map_or_else(
                            || "elsewhere".to_owned(),
                            |(_, s)| s.location.to_string(),
                        ),
                    };
                    let verdict = match link.status {
                        LinkStatus::Verified => "signature verified",
                        LinkStatus::BadSignature => "SIGNATURE INVALID",
                        LinkStatus::Unchecked => "signature algorithm not checkable",
                    };
                    writeln!(
                        out,
                        "  Issued by:   {} ({place}): {verdict}",
                        issuer.label()
                    )?;
                }
                None if !cert.is_self_issued() => writeln!(out, "  Issued by:   issuer not found")?,
                None => {}
            }
        }
        for crl in source.crls() {
            writeln!(out)?;
            writeln!(out, "CRL from {}", crl.issuer)?;
            writeln!(out, "  This update: {}", rfc3339(crl.this_update))?;
            match crl.next_update {
                Some(next) => writeln!(out, "  Next update: {}", rfc3339(next))?,
                None => writeln!(out, "  Next update: none")?,
            }
            writeln!(out, "  Revoked:     {}", crl.revoked)?;
        }
        let findings: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.location == source.location)
            .collect();
        if !findings.is_empty() {
            writeln!(out)?;
            writeln!(out, "Findings:")?;
            for f in findings {
                writeln!(
                    out,
                    "  {:<8} {:<26} {}",
                    f.severity.as_str().to_uppercase(),
                    f.check.as_str(),
                    f.message
                )?;
            }
        }
        writeln!(out)?;
        let _: SourceId = source_id;
    }
    for problem in &inventory.problems {
        writeln!(out, "{}: {}", problem.location, problem.reason)?;
    }
    out.flush()
}
