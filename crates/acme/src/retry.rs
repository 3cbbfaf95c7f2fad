//! Retries by error class: a stale nonce is retried at once with the fresh one, network trouble
//! and 5xx back off exponentially with jitter, a rate limit waits for its Retry-After (or gives
//! up and reports when to come back), everything else goes straight to the caller.

use std::time::{Duration, SystemTime};

use crate::error::{AcmeError, ErrorClass, ErrorKind, Step};
use crate::transport::Transport;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Consecutive badNonce answers tolerated for one request. Only a broken CA reaches it.
    pub max_bad_nonces: u32,
    /// Attempts after a network error or a 5xx.
    pub max_transient: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest Retry-After we sleep through; beyond it the error goes to the scheduler.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_bad_nonces: 1000,
            max_transient: 5,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            max_rate_limit_wait: Duration::from_secs(60),
        }
    }
}

/// The retry state of one request; [`retrying!`] drives it.
pub(crate) struct Retrier<'a> {
    policy: &'a RetryPolicy,
    transport: &'a Transport,
    step: Step,
    identifier: Option<String>,
    bad_nonces: u32,
    transient: u32,
}

impl<'a> Retrier<'a> {
    pub(crate) fn new(policy: &'a RetryPolicy, transport: &'a Transport, step: Step) -> Self {
        Self {
            policy,
            transport,
            step,
            identifier: None,
            bad_nonces: 0,
            transient: 0,
        }
    }

    pub(crate) fn for_identifier(mut self, id: impl ToString) -> Self {
        self.identifier = Some(id.to_string());
        self
    }

    /// Sleeps as the error's class demands and returns `Ok` to try again, or the final error.
    pub(crate) async fn after(&mut self, e: instant_acme::Error) -> Result<(), AcmeError> {
        let mut err = AcmeError::from_acme(self.step, e);
        if let Some(id) = &self.identifier {
            err = err.for_identifier(id);
        }
        match err.class() {
            ErrorClass::BadNonce if self.bad_nonces < self.policy.max_bad_nonces => {
                self.bad_nonces += 1;
                tracing::debug!(step = %self.step, "badNonce, retrying with the fresh nonce");
                Ok(())
            }
            ErrorClass::Transient if self.transient < self.policy.max_transient => {
                let wait = backoff(self.policy, self.transient);
                self.transient += 1;
                tracing::info!(step = %self.step, error = %err, ?wait, "retrying");
                tokio::time::sleep(wait).await;
                Ok(())
            }
            ErrorClass::RateLimited => {
                let retry_at = self.transport.take_retry_after();
                if let ErrorKind::RateLimited { retry_at: slot, .. } = &mut err.kind {
                    *slot = retry_at;
                }
                let wait = retry_at.and_then(|at| at.duration_since(SystemTime::now()).ok());
                match wait {
                    Some(wait)
                        if wait <= self.policy.max_rate_limit_wait && self.transient == 0 =>
                    {
                        // One honoured wait per request: a CA that keeps limiting is reported.
                        self.transient += 1;
                        tracing::info!(step = %self.step, ?wait, "rate limited, waiting for Retry-After");
                        tokio::time::sleep(wait).await;
                        Ok(())
                    }
                    _ => Err(err),
                }
            }
            _ => Err(err),
        }
    }
}

/// Exponential backoff with full jitter: uniformly in [base/2, base] where base doubles.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = policy
        .first_backoff
        .saturating_mul(1 << attempt.min(16))
        .min(policy.max_backoff);
    let half = base / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Runs `$op` (an expression yielding `Result<T, instant_acme::Error>`) until it succeeds or
/// the retrier gives up, returning from the enclosing function with the error then.
macro_rules! retrying {
    ($retrier:expr, $op:expr) => {{
        let mut retrier = $retrier;
        loop {
            match $op {
                Ok(value) => break value,
                Err(e) => retrier.after(e).await?,
            }
        }
    }};
}
pub(crate) use retrying;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_jitter_bounds_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 0..20 {
            let wait = backoff(&policy, attempt);
            let base = (policy.first_backoff * 2u32.pow(attempt.min(16))).min(policy.max_backoff);
            assert!(
                wait >= base / 2 && wait <= base,
                "{attempt}: {wait:?} vs {base:?}"
            );
        }
    }
}
