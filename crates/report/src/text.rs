//! The human view: one row per certificate, soonest expiry first, then the findings.

use std::io::{self, Write};

use certvigil_core::Severity;
use certvigil_core::check::human_duration;

use crate::{Report, rfc3339};

#[derive(Clone, Copy, Debug, Default)]
pub struct TextOptions {
    pub color: bool,
    /// Also list trust-store roots that have no findings.
    pub show_anchors: bool,
}

struct Paint {
    on: bool,
}

impl Paint {
    fn severity(&self, severity: Option<Severity>, text: &str) -> String {
        let code = match severity {
            Some(Severity::Critical) => "1;31",
            Some(Severity::Warning) => "33",
            Some(Severity::Info) => "36",
            None => "32",
        };
        self.wrap(code, text)
    }

    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

pub fn write(report: &Report<'_>, options: TextOptions, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    let paint = Paint { on: options.color };
    let severities = report.severity_index();
    let now = report.policy.now;

    let mut rows: Vec<_> = report
        .occurrences()
        .map(|o| {
            let severity = severities
                .get(&(&*o.source.location.name, o.cert.fingerprint))
                .copied();
            (o, severity)
        })
        .filter(|(o, severity)| options.show_anchors || !o.source.anchor || severity.is_some())
        .collect();
    rows.sort_by(|(a, _), (b, _)| {
        a.cert
            .not_after
            .cmp(&b.cert.not_after)
            .then_with(|| a.source.location.name.cmp(&b.source.location.name))
    });

    if !rows.is_empty() {
        writeln!(
            out,
            "{:<8}  {:<20}  {:>10}  {:<40}  SOURCE",
            "STATUS", "NOT AFTER", "LEFT", "CERTIFICATE"
        )?;
    }
    for (o, severity) in &rows {
        let status = match severity {
            Some(s) => s.as_str().to_uppercase(),
            None => "OK".to_owned(),
        };
        let left = o.cert.not_after - now;
        let left = if left < 0 {
            format!("-{}", human_duration(-left))
        } else {
            human_duration(left)
        };
        let mut label = o.cert.label();
        if label.chars().count() > 40 {
            label = label.chars().take(39).collect::<String>() + "…";
        }
        let mut source = o.source.location.to_string();
        if o.source.certs.len() > 1 {
            source.push_str(&format!(" #{}", o.index));
        }
        writeln!(
            out,
            "{}  {:<20}  {:>10}  {:<40}  {}",
            paint.severity(*severity, &format!("{status:<8}")),
            rfc3339(o.cert.not_after),
            left,
            label,
            source
        )?;
    }

    if !report.findings.is_empty() {
        writeln!(out)?;
        writeln!(out, "FINDINGS")?;
    }
    for finding in report.findings {
        writeln!(
            out,
            "{} {:<26} {}: {}",
            paint.severity(
                Some(finding.severity),
                &format!("{:<8}", finding.severity.as_str().to_uppercase())
            ),
            finding.check.as_str(),
            finding.location,
            finding.message
        )?;
    }

    let anchors = report.occurrences().filter(|o| o.source.anchor).count()
        - rows.iter().filter(|(o, _)| o.source.anchor).count();
    let sources = report
        .inventory
        .sources()
        .filter(|(_, s)| s.reported)
        .count();
    writeln!(out)?;
    writeln!(
        out,
        "{} certificates ({} unique) in {} sources{}; {} critical, {} warning, {} info",
        report.occurrences().count(),
        report.inventory.cert_count(),
        sources,
        if anchors > 0 {
            format!(" ({anchors} trust-store roots without findings not listed)")
        } else {
            String::new()
        },
        report.count(Severity::Critical),
        report.count(Severity::Warning),
        report.count(Severity::Info),
    )?;
    out.flush()
}
