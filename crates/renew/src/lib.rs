//! certvigil-renew: from configuration to a staged certificate.
//!
//! [`Issuers`] turns the `[[issuer]]` entries into live issuers (an ACME account with its
//! challenge responder, or an internal CA loaded from disk), sharing one responder per listen
//! address; [`Issuers::issue`] issues one `[[certificate]]` and stages the validated result.
//! The deploy stage (activation, reload, verification) builds on the staging area.

mod ari;
mod issuers;
mod pipeline;
pub mod state;
pub mod verify;

pub use ari::AriSchedule;
pub use issuers::{IssueError, Issuers, PlanReport, Staged};
pub use pipeline::{RENEW_POINTS, RenewOptions, RenewOutcome, exit_code};
