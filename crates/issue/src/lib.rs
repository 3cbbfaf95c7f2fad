//! certvigil-issue: what every issuer (ACME, the internal CA) hands to the deploy stage.
//!
//! An issuer produces an [`Issued`] bundle; [`Issued::validate`] checks it with the same code as
//! `scan` (the key matches, the chain is signed link by link, the requested names are covered,
//! the dates make sense); only then does [`Staging::stage`] write it, marking the generation
//! complete last, so nothing half-issued is ever consumed.

mod key_type;
mod secret;
mod staging;
mod validate;

pub use key_type::{KeyChoice, KeyType, generate_key};
pub use secret::SecretPem;
pub use staging::{Generation, Staging, StagingError, write_file_atomic};
pub use validate::{Identifier, ValidationError};

/// A certificate an issuer has just produced, with its private key.
#[derive(Debug)]
pub struct Issued {
    /// The end-entity certificate, PEM.
    pub leaf_pem: String,
    /// The intermediates, leaf's issuer first, PEM; empty when the root signed the leaf.
    pub chain_pem: String,
    pub key: SecretPem,
}

impl Issued {
    /// Leaf followed by the chain: what servers such as nginx want in one file.
    pub fn fullchain_pem(&self) -> String {
        let mut out = self.leaf_pem.clone();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&self.chain_pem);
        out
    }
}
