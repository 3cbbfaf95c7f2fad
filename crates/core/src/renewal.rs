//! When to renew a managed certificate: a pure function of the certificate in place, the
//! policy and the time, so the daemon, `certvigil renew` and the tests agree.

/// How long before expiry renewal starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RenewBefore {
    /// This fraction of the whole lifetime is left (1/3 by default: 30 days of a 90-day
    /// certificate, 16 hours of a 2-day one).
    Fraction(f64),
    /// A fixed number of seconds before notAfter, capped at the lifetime.
    Seconds(i64),
}

impl Default for RenewBefore {
    fn default() -> Self {
        Self::Fraction(1.0 / 3.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenewalPolicy {
    pub before: RenewBefore,
    /// Spread renewals of many certificates: each starts up to this fraction of its window
    /// earlier, at a point fixed by its name (so restarts do not move it).
    pub jitter: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            before: RenewBefore::default(),
            jitter: 0.1,
        }
    }
}

/// Whatever ARI says, renew once only this fraction of the lifetime is left.
pub const EMERGENCY_FRACTION: f64 = 1.0 / 20.0;

/// The certificate currently in place for a managed name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    pub not_before: i64,
    pub not_after: i64,
    /// It covers every requested identifier with the requested key type.
    pub matches_request: bool,
    /// The renewal time picked inside the CA's ARI window (RFC 9773), when the CA offers one.
    pub ari_renew_at: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do before `at` (unix seconds).
    NotYet {
        at: i64,
    },
    Due(DueReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// No certificate in place yet.
    Missing,
    /// The names or key type asked for changed.
    RequestChanged,
    Expired,
    /// The renewal window opened at `since`.
    Window {
        since: i64,
    },
    /// The CA's ARI window asked for renewal at `since`.
    Ari {
        since: i64,
    },
    /// Less than [`EMERGENCY_FRACTION`] of the lifetime is left, ARI notwithstanding.
    Emergency {
        since: i64,
    },
    /// An operator asked for it (`renew --force`); never returned by [`plan`].
    Forced,
}

impl DueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::RequestChanged => "request_changed",
            Self::Expired => "expired",
            Self::Window { .. } => "window",
            Self::Ari { .. } => "ari",
            Self::Emergency { .. } => "emergency",
            Self::Forced => "forced",
        }
    }
}

/// Decides whether certificate `name` is due at `now`.
pub fn plan(name: &str, current: Option<&Current>, policy: &RenewalPolicy, now: i64) -> Plan {
    let Some(cur) = current else {
        return Plan::Due(DueReason::Missing);
    };
    if !cur.matches_request {
        return Plan::Due(DueReason::RequestChanged);
    }
    if now >= cur.not_after {
        return Plan::Due(DueReason::Expired);
    }
    let lifetime = (cur.not_after - cur.not_before).max(1);
    let emergency_at = cur.not_after - (lifetime as f64 * EMERGENCY_FRACTION) as i64;

    let (at, due) = match cur.ari_renew_at {
        Some(ari_at) if ari_at < emergency_at => (ari_at, DueReason::Ari { since: ari_at }),
        Some(_) => (
            emergency_at,
            DueReason::Emergency {
                since: emergency_at,
            },
        ),
        None => {
            let window = match policy.before {
                RenewBefore::Fraction(f) => (lifetime as f64 * f.clamp(0.0, 1.0)) as i64,
                RenewBefore::Seconds(s) => s.clamp(0, lifetime),
            };
            let spread = (window as f64 * policy.jitter.clamp(0.0, 1.0) * unit_hash(name)) as i64;
            let at = (cur.not_after - window - spread).max(cur.not_before);
            if at >= emergency_at {
                // A window narrower than the floor: the floor wins.
                (
                    emergency_at,
                    DueReason::Emergency {
                        since: emergency_at,
                    },
                )
            } else {
                (at, DueReason::Window { since: at })
            }
        }
    };
    if now >= at {
        Plan::Due(due)
    } else {
        Plan::NotYet { at }
    }
}

/// A stable value in [0, 1) from a name (FNV-1a), so each certificate keeps its jitter.
fn unit_hash(name: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniformly random point of an ARI suggested window, to be persisted by the caller so that
/// it does not move on every poll. `random` is a value in [0, 1).
pub fn ari_point(window_start: i64, window_end: i64, random: f64) -> i64 {
    let span = (window_end - window_start).max(0);
    window_start + (span as f64 * random.clamp(0.0, 1.0)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn current(not_before: i64, not_after: i64) -> Current {
        Current {
            not_before,
            not_after,
            matches_request: true,
            ari_renew_at: None,
        }
    }

    #[test]
    fn ninety_day_certificate_renews_with_a_third_left_minus_its_jitter() {
        let cur = current(0, 90 * DAY);
        let policy = RenewalPolicy::default();
        let Plan::NotYet { at } = plan("web", Some(&cur), &policy, 0) else {
            panic!("a fresh certificate is not due");
        };
        assert!((57 * DAY..=60 * DAY).contains(&at), "{at}");
        // Deterministic: the same name gives the same point, another name another point.
        assert_eq!(plan("web", Some(&cur), &policy, 0), Plan::NotYet { at });
        assert_ne!(plan("api", Some(&cur), &policy, 0), Plan::NotYet { at });
        assert_eq!(
            plan("web", Some(&cur), &policy, at),
            Plan::Due(DueReason::Window { since: at })
        );
        assert_eq!(
            plan("web", Some(&cur), &policy, at - 1),
            Plan::NotYet { at }
        );
    }

    #[test]
    fn missing_changed_and_expired_are_due_at_once() {
        let policy = RenewalPolicy::default();
        assert_eq!(plan("x", None, &policy, 0), Plan::Due(DueReason::Missing));
        let mut cur = current(0, 100);
        assert_eq!(
            plan("x", Some(&cur), &policy, 100),
            Plan::Due(DueReason::Expired)
        );
        cur.matches_request = false;
        assert_eq!(
            plan("x", Some(&cur), &policy, 1),
            Plan::Due(DueReason::RequestChanged)
        );
    }

    #[test]
    fn fixed_days_are_capped_at_the_lifetime_and_the_emergency_floor_wins() {
        let no_jitter = |before| RenewalPolicy {
            before,
            jitter: 0.0,
        };
        let cur = current(0, 90 * DAY);
        assert_eq!(
            plan(
                "x",
                Some(&cur),
                &no_jitter(RenewBefore::Seconds(30 * DAY)),
                0
            ),
            Plan::NotYet { at: 60 * DAY }
        );
        // A window of one second is narrower than the floor of 1/20 of the lifetime.
        let floor = 90 * DAY - 90 * DAY / 20;
        assert_eq!(
            plan("x", Some(&cur), &no_jitter(RenewBefore::Seconds(1)), floor),
            Plan::Due(DueReason::Emergency { since: floor })
        );
        assert_eq!(
            plan(
                "x",
                Some(&cur),
                &no_jitter(RenewBefore::Seconds(400 * DAY)),
                0
            ),
            Plan::Due(DueReason::Window { since: 0 })
        );
    }

    #[test]
    fn ari_replaces_the_local_window_but_not_the_emergency_floor() {
        let policy = RenewalPolicy::default();
        let mut cur = current(0, 90 * DAY);
        cur.ari_renew_at = Some(10 * DAY);
        assert_eq!(
            plan("x", Some(&cur), &policy, 0),
            Plan::NotYet { at: 10 * DAY }
        );
        assert_eq!(
            plan("x", Some(&cur), &policy, 10 * DAY),
            Plan::Due(DueReason::Ari { since: 10 * DAY })
        );
        // An ARI point later than the floor (e.g. a CA that never wants renewal) is ignored.
        cur.ari_renew_at = Some(89 * DAY);
        let floor = 90 * DAY - 90 * DAY / 20;
        assert_eq!(
            plan("x", Some(&cur), &policy, 0),
            Plan::NotYet { at: floor }
        );
    }

    #[test]
    fn a_120_second_certificate_is_due_within_its_last_40_seconds() {
        let cur = current(1_000, 1_120);
        let policy = RenewalPolicy::default();
        let Plan::NotYet { at } = plan("pebble", Some(&cur), &policy, 1_000) else {
            panic!("not due at issuance");
        };
        assert!((1_076..=1_080).contains(&at), "{at}");
    }

    #[test]
    fn ari_points_fall_inside_the_window() {
        assert_eq!(ari_point(100, 200, 0.0), 100);
        assert_eq!(ari_point(100, 200, 0.5), 150);
        assert!(ari_point(100, 200, 0.999_999) < 200);
        assert_eq!(ari_point(200, 100, 0.5), 200);
    }
}
