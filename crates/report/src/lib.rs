//! Renderers over a finished scan: the text table, the versioned JSON wire format, Prometheus
//! textfile exposition, the Nagios plugin line and the detailed `inspect` view.

pub mod compat;
pub mod inspect;
pub mod json;
pub mod nagios;
pub mod prom;
pub mod text;

use std::collections::HashMap;
use std::io::{self, Write};

use rayon::prelude::*;

use certvigil_core::check::{Finding, Policy, Severity};
use certvigil_core::inventory::{CertId, Inventory, Source};
use certvigil_core::{Certificate, Fingerprint};

/// A scan's result as every renderer sees it.
pub struct Report<'a> {
    pub inventory: &'a Inventory,
    pub findings: &'a [Finding],
    pub policy: &'a Policy,
    /// How long the scan took, when the caller measured it (the daemon does).
    pub scan_seconds: Option<f64>,
    /// Paths the daemon could not watch and only rescans on its interval.
    pub watch_polling: &'a [String],
    /// Where each managed certificate's renewal stands (daemon only).
    pub renewals: &'a [RenewalStatus],
    /// The configured file and directory sources, for per-source up/items/problems (daemon).
    pub configured_sources: &'a [String],
    /// Durations of every scan since the daemon started, this one included.
    pub scan_histogram: Option<&'a DurationHistogram>,
    /// Extra labels for the certificate series under a source path or of an endpoint.
    pub source_labels: &'a [SourceLabels],
}

/// Labels the configuration gives one source's certificate series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLabels {
    /// A path (applies to everything under it) or an endpoint as displayed (`host:port`).
    pub source: String,
    pub labels: Vec<(String, String)>,
}

impl SourceLabels {
    /// Does a certificate found at `location` belong to this source?
    pub fn covers(&self, location: &str) -> bool {
        location == self.source
            || location
                .strip_prefix(self.source.trim_end_matches('/'))
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// A Prometheus histogram of durations in seconds, with fixed upper bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationHistogram {
    /// Cumulative counts per upper bound, as Prometheus exposes them.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl DurationHistogram {
    /// Bounds from 10 ms (a small host) to 5 min (a very large one).
    pub const BOUNDS: [f64; 12] = [
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 300.0,
    ];

    pub fn new() -> Self {
        Self {
            buckets: Self::BOUNDS.iter().map(|&b| (b, 0)).collect(),
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, seconds: f64) {
        for (bound, count) in &mut self.buckets {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The renewal state of one managed certificate, as the daemon's scheduler last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenewalStatus {
    pub certificate: String,
    /// idle, issued, activated, reloaded or verified.
    pub stage: &'static str,
    /// When it is due (unix seconds); now or earlier when it is due already.
    pub next_renewal: Option<i64>,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub consecutive_failures: u32,
    pub reload_failures: u64,
}

/// Every stage a renewal can be in, for one-hot stage series.
pub const RENEWAL_STAGES: [&str; 5] = ["idle", "issued", "activated", "reloaded", "verified"];

impl<'a> Report<'a> {
    pub fn new(inventory: &'a Inventory, findings: &'a [Finding], policy: &'a Policy) -> Self {
        Self {
            inventory,
            findings,
            policy,
            scan_seconds: None,
            watch_polling: &[],
            renewals: &[],
            configured_sources: &[],
            scan_histogram: None,
            source_labels: &[],
        }
    }

    /// Every certificate occurrence of reported sources: (source, position, id, certificate).
    pub fn occurrences(&self) -> impl Iterator<Item = Occurrence<'a>> + 'a {
        let inventory = self.inventory;
        inventory
            .sources()
            .filter(|(_, s)| s.reported)
            .flat_map(move |(_, source)| {
                source
                    .certs
                    .iter()
                    .enumerate()
                    .map(move |(index, &id)| Occurrence {
                        source,
                        index,
                        id,
                        cert: inventory.cert(id),
                    })
            })
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Worst severity per (source name, fingerprint), for status columns.
    pub fn severity_index(&self) -> HashMap<(&'a str, Fingerprint), Severity> {
        let mut index: HashMap<(&str, Fingerprint), Severity> = HashMap::new();
        for finding in self.findings {
            if let Some(fp) = finding.fingerprint {
                let entry = index
                    .entry((&finding.location.name, fp))
                    .or_insert(finding.severity);
                *entry = (*entry).max(finding.severity);
            }
        }
        index
    }
}

#[derive(Clone, Copy)]
pub struct Occurrence<'a> {
    pub source: &'a Source,
    pub index: usize,
    pub id: CertId,
    pub cert: &'a Certificate,
}

pub use certvigil_core::timefmt::rfc3339;

/// Writes every certificate occurrence through `render`, in report order, `separator` between
/// entries. A hundred thousand certificates make about 100 MB of output, so entries are
/// rendered in parallel, a bounded group at a time, and written in order.
pub(crate) fn write_occurrences<'a>(
    report: &Report<'a>,
    out: &mut impl Write,
    separator: &[u8],
    render: impl Fn(&mut Vec<u8>, &Occurrence<'a>) -> io::Result<()> + Sync,
) -> io::Result<()> {
    const GROUP: usize = 1024;
    const PIECE: usize = 128;
    // The same buffers serve every group: fresh ones would be 100 MB of page faults.
    let mut buffers: Vec<Vec<u8>> = (0..GROUP / PIECE)
        .map(|_| Vec::with_capacity(PIECE * 1024))
        .collect();
    let mut occurrences = report.occurrences().peekable();
    let mut first = true;
    while occurrences.peek().is_some() {
        let group: Vec<Occurrence<'a>> = occurrences.by_ref().take(GROUP).collect();
        let pieces = group.chunks(PIECE).len();
        let rendered: Vec<io::Result<()>> = group
            .par_chunks(PIECE)
            .zip(buffers.par_iter_mut())
            .map(|(piece, buf)| {
                buf.clear();
                for (i, o) in piece.iter().enumerate() {
                    if i > 0 {
                        buf.extend_from_slice(separator);
                    }
                    render(buf, o)?;
                }
                Ok(())
            })
            .collect();
        for (result, buf) in rendered.into_iter().zip(&buffers[..pieces]) {
            result?;
            if !first {
                out.write_all(separator)?;
            }
            first = false;
            out.write_all(buf)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use certvigil_core::inventory::{Inventory, Location, NewSource, SourceKind};
    use certvigil_core::{DecodeOptions, Policy, SourceContent, decode};
    use certvigil_testutil::{Pki, Spec};

    use super::*;

    /// More occurrences than one rendering group: the buffers reused from group to group
    /// must still give each occurrence once, in report order.
    #[test]
    fn occurrences_past_one_group_are_written_once_each_in_order() {
        let pki = Pki::new("Groups");
        let leaf = pki.leaf(&Spec::leaf("many.example.com"));
        let mut inventory = Inventory::new();
        for i in 0..2_600 {
            let location = Location::new(SourceKind::File, format!("/etc/ssl/{i:05}.pem"));
            let decoded = decode(leaf.pem.as_bytes(), &DecodeOptions::default());
            inventory.add_source(
                NewSource::new(location),
                SourceContent::from_decoded(decoded),
            );
        }
        let policy = Policy::new(1_750_000_000);
        let report = Report::new(&inventory, &[], &policy);
        let mut out = Vec::new();
        json::write(&report, &mut out).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let written: Vec<&str> = written["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["source"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = report
            .occurrences()
            .map(|o| &*o.source.location.name)
            .collect();
        assert_eq!(written.len(), 2_600);
        assert_eq!(written, expected);
    }
}
