//! Certificate revocation lists, summarised for listing and freshness checks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{CertificateRevocationList, FromDer, ParsedExtension};

use crate::cert::{Fingerprint, hex, name_id, rfc4514, sha256};
use crate::error::ParseError;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Crl {
    pub fingerprint: Fingerprint,
    pub issuer: Arc<str>,
    pub issuer_id: u64,
    pub this_update: i64,
    pub next_update: Option<i64>,
    pub revoked: usize,
    /// The cRLNumber extension, hex.
    pub number: Option<String>,
}

impl Crl {
    pub fn from_der(der: &[u8]) -> Result<Self, ParseError> {
        let (rest, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| ParseError::Crl(e.to_string().into()))?;
        if !rest.is_empty() {
            return Err(ParseError::TrailingData(rest.len()));
        }
        let number = crl
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::CRLNumber(n) => Some(hex(&n.to_bytes_be())),
                _ => None,
            });
        Ok(Self {
            fingerprint: sha256(der),
            issuer: rfc4514(crl.issuer()).into(),
            issuer_id: name_id(crl.issuer().as_raw()),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked: crl.iter_revoked_certificates().count(),
            number,
        })
    }
}
