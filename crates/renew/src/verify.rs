//! Proof that a reload took: handshake with each endpoint of the target and compare the leaf it
//! serves with the one just deployed, retrying within a grace period. One good handshake is not
//! enough: while a server rolls its workers over (nginx after a reload), fresh connections can
//! still land on an old worker until it notices it should stop accepting, which under load can
//! take a while. So the new leaf must be seen on several handshakes in a row, spread over half
//! a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certvigil_core::Certificate;
use certvigil_source::EndpointSpec;
use certvigil_source::endpoint::{probe, root_store};

#[derive(Debug, thiserror::Error)]
#[error(
    "{endpoint} does not serve the new certificate (serial {expected}) after {waited:?}: {seen}"
)]
pub struct VerifyError {
    pub endpoint: String,
    pub expected: String,
    pub waited: Duration,
    /// What was served instead, or why nothing was.
    pub seen: String,
}

/// Consecutive handshakes that must present the new leaf.
pub const CONFIRMATIONS: u32 = 3;

/// Time between those handshakes. 20 ms let an nginx worker that was slow to take its
/// reload signal (a loaded machine) serve the old leaf right after the check had passed.
pub const CONFIRMATION_INTERVAL: Duration = Duration::from_millis(250);

/// Waits until `endpoint` serves `expected_leaf_der` as its leaf on [`CONFIRMATIONS`]
/// handshakes in a row, for at most `grace`.
pub async fn served(
    endpoint: &EndpointSpec,
    expected_leaf_der: &[u8],
    grace: Duration,
) -> Result<(), VerifyError> {
    let started = Instant::now();
    // The chain is recorded whatever the trust verdict: no anchors are needed to compare.
    let anchors = Arc::new(root_store(&[]));
    let mut delay = Duration::from_millis(50);
    let mut confirmed = 0;
    loop {
        let outcome = probe(endpoint, anchors.clone()).await;
        let seen = match outcome.chain.first() {
            Some(leaf) if leaf.as_slice() == expected_leaf_der => {
                confirmed += 1;
                if confirmed == CONFIRMATIONS {
                    return Ok(());
                }
                tokio::time::sleep(CONFIRMATION_INTERVAL).await;
                continue;
            }
            Some(leaf) => match Certificate::from_der(leaf) {
                Ok(cert) => format!("it serves serial {}", cert.serial_hex()),
                Err(_) => "it serves a certificate that does not parse".to_owned(),
            },
            None => outcome
                .error
                .unwrap_or_else(|| "no certificate was presented".to_owned()),
        };
        confirmed = 0;
        if started.elapsed() + delay > grace {
            let expected = Certificate::from_der(expected_leaf_der)
                .map_or_else(|_| "?".to_owned(), |c| c.serial_hex());
            return Err(VerifyError {
                endpoint: endpoint.display.clone(),
                expected,
                waited: started.elapsed(),
                seen,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
