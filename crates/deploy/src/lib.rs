//! certvigil-deploy: from a staged generation to a live, reloaded service.
//!
//! - [`activate`]: a live directory whose `current` symlink flips between complete generation
//!   directories with one rename(2), so a reader sees the old set or the new set, never a mix;
//!   copy-out targets for daemons that do not follow symlinks; rollback to the previous one.
//! - [`reload`]: signal, systemd and command adapters with timeouts and a documented
//!   environment.
//! - [`audit`]: an append-only, hash-chained JSON-lines log of every step.
//! - [`fault`]: named crash points for the crash-consistency tests.

pub mod activate;
pub mod audit;
pub mod fault;
pub mod reload;
