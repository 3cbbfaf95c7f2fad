//! When a long-running process probes each endpoint: every `interval` of its own, spread by
//! jitter, whatever triggers the scans in between (a file change must not re-probe every
//! endpoint). Between probes a scan reports the last outcome.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Instant;

use crate::endpoint::{EndpointSpec, ProbeOutcome};

/// Up to this fraction of an interval is taken off each wait, the same share for an endpoint
/// every time, so endpoints configured alike do not all connect in the same second.
const JITTER: f64 = 0.1;

#[derive(Default)]
pub struct ProbeSchedule {
    endpoints: Mutex<HashMap<String, Probed>>,
}

struct Probed {
    outcome: ProbeOutcome,
    due: Instant,
    seen: bool,
}

impl ProbeSchedule {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last outcome, while the endpoint is not due again. Endpoints without an interval
    /// are always due.
    pub(crate) fn remembered(&self, spec: &EndpointSpec, now: Instant) -> Option<ProbeOutcome> {
        spec.interval?;
        let mut endpoints = self.lock();
        let probed = endpoints.get_mut(&key(spec))?;
        probed.seen = true;
        (now < probed.due).then(|| probed.outcome.clone())
    }

    pub(crate) fn record(&self, spec: &EndpointSpec, outcome: &ProbeOutcome, now: Instant) {
        let Some(interval) = spec.interval else {
            return;
        };
        let key = key(spec);
        let share = (hash(&key) % 1000) as f64 / 1000.0;
        let due = now + interval.mul_f64(1.0 - JITTER * share);
        let probed = Probed {
            outcome: outcome.clone(),
            due,
            seen: true,
        };
        self.lock().insert(key, probed);
    }

    /// When the next remembered endpoint is due, for a scheduler to wake up then.
    pub fn next_due(&self) -> Option<Instant> {
        self.lock().values().map(|p| p.due).min()
    }

    /// Forgets endpoints the last scan did not ask about (removed from the configuration).
    pub(crate) fn finish_scan(&self) {
        self.lock()
            .retain(|_, probed| std::mem::take(&mut probed.seen));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Probed>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for ProbeSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSchedule")
            .field("endpoints", &self.lock().len())
            .finish()
    }
}

/// Every setting of a probe: a changed SNI, timeout or client certificate is another endpoint.
fn key(spec: &EndpointSpec) -> String {
    format!("{spec:?}")
}

fn hash(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(port: u16, interval: Option<Duration>) -> EndpointSpec {
        let mut spec = EndpointSpec::new("127.0.0.1", port);
        spec.interval = interval;
        spec
    }

    #[test]
    fn an_outcome_is_reported_until_the_jittered_interval_is_over() {
        let schedule = ProbeSchedule::new();
        let hour = Duration::from_secs(3600);
        let start = Instant::now();
        let mut due = Vec::new();
        for port in 1..=50 {
            let spec = spec(port, Some(hour));
            assert!(schedule.remembered(&spec, start).is_none(), "never probed");
            schedule.record(&spec, &ProbeOutcome::default(), start);
            assert!(schedule.remembered(&spec, start + hour / 2).is_some());
            assert!(
                schedule.remembered(&spec, start + hour).is_none(),
                "due by then"
            );
            let next = schedule.lock()[&key(&spec)].due;
            assert!(next >= start + hour.mul_f64(1.0 - JITTER) && next <= start + hour);
            due.push(next);
        }
        due.sort();
        due.dedup();
        assert!(
            due.len() > 40,
            "endpoints alike are spread out: {}",
            due.len()
        );
        assert_eq!(schedule.next_due(), due.first().copied());
    }

    #[test]
    fn endpoints_without_an_interval_are_probed_every_time() {
        let schedule = ProbeSchedule::new();
        let spec = spec(1, None);
        schedule.record(&spec, &ProbeOutcome::default(), Instant::now());
        assert!(schedule.remembered(&spec, Instant::now()).is_none());
        assert!(schedule.next_due().is_none());
    }

    #[test]
    fn endpoints_no_scan_asks_about_are_forgotten() {
        let schedule = ProbeSchedule::new();
        let (kept, dropped) = (
            spec(1, Some(Duration::from_secs(60))),
            spec(2, Some(Duration::from_secs(60))),
        );
        let now = Instant::now();
        schedule.record(&kept, &ProbeOutcome::default(), now);
        schedule.record(&dropped, &ProbeOutcome::default(), now);
        schedule.finish_scan();
        assert!(schedule.remembered(&kept, now).is_some());
        schedule.finish_scan();
        assert!(schedule.remembered(&kept, now).is_some());
        assert!(schedule.remembered(&dropped, now).is_none());
    }
}
