//! certvigil-acme: an ACME (RFC 8555) client built on instant-acme.
//!
//! instant-acme speaks the protocol; this crate adds what a renewal daemon needs around it:
//! account persistence, challenge responders that clean up on every path, retries by error
//! class (a stale nonce at once, network and 5xx with jittered backoff, rate limits after
//! Retry-After), fast-then-slower polling, and a check of the issued chain before anyone sees it.

mod client;
mod error;
mod retry;
mod solver;
mod transport;

pub use client::{AcmeClient, AcmeSettings, Eab, OrderRequest, Outcome, RenewalWindow};
pub use error::{AcmeError, ErrorClass, ErrorKind, Step};
pub use retry::RetryPolicy;
pub use solver::{Http01Responder, Solver, TlsAlpnResponder};
