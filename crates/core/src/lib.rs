//! certvigil-core: parse certificates, keys and CRLs from bytes, keep them in an inventory,
//! and run every check. No I/O and no clock: sources feed bytes in, [`check::Policy`] brings
//! the time.

mod asn1;
pub mod cert;
pub mod check;
pub mod crl;
pub mod decode;
pub mod describe;
pub mod error;
pub mod hostname;
pub mod inventory;
pub mod key;
pub mod linkcache;
pub mod oid;
pub mod pem;
pub mod renewal;
pub mod timefmt;
pub mod verify;

pub use cert::{Certificate, Fingerprint};
pub use check::{CheckId, Finding, Policy, Severity};
pub use decode::{DecodeOptions, Decoded, decode};
pub use error::ParseError;
pub use inventory::{Inventory, Location, SourceContent, SourceKind};
