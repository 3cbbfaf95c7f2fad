//! The Nagios/Icinga plugin contract: one status line with perfdata, exit 0/1/2/3.

use std::io::{self, Write};

use certvigil_core::Severity;
use certvigil_core::check::human_duration;

use crate::Report;

pub const OK: i32 = 0;
pub const WARNING: i32 = 1;
pub const CRITICAL: i32 = 2;
pub const UNKNOWN: i32 = 3;

/// Writes the status line and returns the plugin exit code.
pub fn write(report: &Report<'_>, mut out: impl Write) -> io::Result<i32> {
    let relevant: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Info)
        .collect();
    let certs = report.occurrences().filter(|o| !o.source.anchor).count();
    let soonest = report
        .occurrences()
        .filter(|o| !o.source.anchor)
        .min_by_key(|o| o.cert.not_after);
    let (code, word) = match report.worst() {
        Some(Severity::Critical) => (CRITICAL, "CRITICAL"),
        Some(Severity::Warning) => (WARNING, "WARNING"),
        _ if certs == 0 && report.inventory.problems.is_empty() => (UNKNOWN, "UNKNOWN"),
        _ => (OK, "OK"),
    };
    let summary = if code == UNKNOWN {
        "no certificates found".to_owned()
    } else if relevant.is_empty() {
        match soonest {
            Some(o) => format!(
                "{certs} certificates, soonest expiry {} in {}",
                o.cert.label(),
                human_duration(o.cert.not_after - report.policy.now)
            ),
            None => format!("{certs} certificates"),
        }
    } else {
        let first = relevant[0];
        let more = relevant.len() - 1;
        let more = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        format!("{}: {}{more}", first.location, first.message)
    };
    let days_left = soonest.map_or(0.0, |o| {
        (o.cert.not_after - report.policy.now) as f64 / 86_400.0
    });
    writeln!(
        out,
        "CERTVIGIL {word} - {summary} | certificates={certs};;;0 critical={};;;0 warning={};;;0 days_left={days_left:.2};{:.0};{:.0}",
        report.count(Severity::Critical),
        report.count(Severity::Warning),
        report.policy.warn_days,
        report.policy.crit_days,
    )?;
    Ok(code)
}
