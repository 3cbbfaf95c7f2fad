//! The gate between an issuer and the deploy stage, built on the same parsing and signature
//! code as `scan`.

use std::fmt;
use std::net::IpAddr;

use certvigil_core::verify::{SignatureVerdict, verify_signature};
use certvigil_core::{Certificate, DecodeOptions, decode, hostname};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Issued;

/// A name a certificate is requested for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    Dns(String),
    Ip(IpAddr),
}

impl Identifier {
    /// An IP address if `s` parses as one, else a DNS name (lower-cased, no trailing dot).
    pub fn parse(s: &str) -> Self {
        match s.parse::<IpAddr>() {
            Ok(ip) => Self::Ip(ip),
            Err(_) => Self::Dns(s.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("the leaf certificate does not parse: {0}")]
    Leaf(String),
    #[error("expected exactly one certificate in the leaf PEM, found {0}")]
    LeafCount(usize),
    #[error("chain certificate {index} does not parse: {reason}")]
    Chain { index: usize, reason: String },
    #[error("the private key does not parse: {0}")]
    Key(String),
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    #[error("the certificate does not cover {0}")]
    NameNotCovered(Identifier),
    #[error("certificate {child} is not signed by the next certificate in the chain ({verdict})")]
    BrokenLink { child: usize, verdict: String },
    #[error("the chain does not end at one of the trusted roots")]
    Untrusted,
    #[error("not valid before {not_before}, more than {skew} s in the future")]
    NotYetValid { not_before: i64, skew: i64 },
    #[error("already expired at {not_after}")]
    Expired { not_after: i64 },
}

impl Issued {
    /// Checks the bundle before anything is written: the key matches, each certificate is signed
    /// by the next, the last one by a trusted root (when roots are given), every identifier is
    /// covered, and `now` lies inside the validity period (allowing `skew` seconds early).
    pub fn validate(
        &self,
        identifiers: &[Identifier],
        trusted_roots_der: &[Vec<u8>],
        now: i64,
        skew: i64,
    ) -> Result<Certificate, ValidationError> {
        let leaf_der = pem_certs(&self.leaf_pem);
        let [leaf_der] = leaf_der.as_slice() else {
            return Err(ValidationError::LeafCount(leaf_der.len()));
        };
        let leaf =
            Certificate::from_der(leaf_der).map_err(|e| ValidationError::Leaf(e.to_string()))?;

        let key = decode(self.key.expose().as_bytes(), &DecodeOptions::default());
        let key = match (key.keys.first(), key.errors.first()) {
            (Some(k), _) => k.clone(),
            (None, Some(e)) => return Err(ValidationError::Key(e.to_string())),
            (None, None) => return Err(ValidationError::Key("no private key found".into())),
        };
        if key.key_id != leaf.key_id {
            return Err(ValidationError::KeyMismatch);
        }

        for id in identifiers {
            if !hostname::covers(&leaf, &id.to_string()) {
                return Err(ValidationError::NameNotCovered(id.clone()));
            }
        }

        if leaf.not_before > now + skew {
            return Err(ValidationError::NotYetValid {
                not_before: leaf.not_before,
                skew,
            });
        }
        if leaf.not_after <= now {
            return Err(ValidationError::Expired {
                not_after: leaf.not_after,
            });
        }

        let mut path = vec![leaf_der.clone()];
        path.extend(pem_certs(&self.chain_pem));
        let parsed = path
            .iter()
            .enumerate()
            .map(|(index, der)| {
                X509Certificate::from_der(der)
                    .map(|(_, c)| c)
                    .map_err(|e| ValidationError::Chain {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (child, pair) in parsed.windows(2).enumerate() {
            let verdict = verify_signature(&pair[0], pair[1].public_key().raw);
            if verdict != SignatureVerdict::Valid {
                return Err(ValidationError::BrokenLink {
                    child,
                    verdict: format!("{verdict:?}"),
                });
            }
        }
        if !trusted_roots_der.is_empty() {
            let top = parsed.last().expect("the path holds the leaf");
            let trusted = trusted_roots_der.iter().any(|root_der| {
                root_der.as_slice() == path.last().map(Vec::as_slice).unwrap_or_default()
                    || X509Certificate::from_der(root_der).is_ok_and(|(_, root)| {
                        root.subject().as_raw() == top.issuer().as_raw()
                            && verify_signature(top, root.public_key().raw)
                                == SignatureVerdict::Valid
                    })
            });
            if !trusted {
                return Err(ValidationError::Untrusted);
            }
        }
        Ok(leaf)
    }
}

fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    decode(pem.as_bytes(), &DecodeOptions::default()).certs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyType, SecretPem, generate_key};

    struct Fixture {
        root_der: Vec<u8>,
        issued: Issued,
        now: i64,
    }

    fn fixture(names: &[&str]) -> Fixture {
        let (root_key, _) = generate_key(KeyType::EcdsaP256).unwrap();
        let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let now = time::OffsetDateTime::now_utc();
        root_params.not_before = now - time::Duration::hours(1);
        root_params.not_after = now + time::Duration::days(30);
        let root = root_params.self_signed(&root_key).unwrap();
        let issuer = rcgen::Issuer::new(root_params, &root_key);

        let (leaf_key, leaf_pem_key) = generate_key(KeyType::EcdsaP256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + time::Duration::days(1);
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        Fixture {
            root_der: root.der().to_vec(),
            issued: Issued {
                leaf_pem: leaf.pem(),
                chain_pem: String::new(),
                key: leaf_pem_key,
            },
            now: now.unix_timestamp(),
        }
    }

    #[test]
    fn a_good_bundle_passes_and_each_fault_is_named() {
        let f = fixture(&["a.test", "127.0.0.1"]);
        let ids = [Identifier::parse("A.test."), Identifier::parse("127.0.0.1")];
        let roots = [f.root_der.clone()];
        f.issued.validate(&ids, &roots, f.now, 60).unwrap();

        assert_eq!(
            f.issued
                .validate(&[Identifier::parse("b.test")], &roots, f.now, 60)
                .unwrap_err(),
            ValidationError::NameNotCovered(Identifier::Dns("b.test".into()))
        );
        let other_root = fixture(&["x.test"]).root_der;
        assert_eq!(
            f.issued
                .validate(&ids, &[other_root], f.now, 60)
                .unwrap_err(),
            ValidationError::Untrusted
        );
        assert!(matches!(
            f.issued.validate(&ids, &roots, f.now + 2 * 86400, 60),
            Err(ValidationError::Expired { .. })
        ));
        assert!(matches!(
            f.issued.validate(&ids, &roots, f.now - 3600, 60),
            Err(ValidationError::NotYetValid { .. })
        ));

        let (_, other_key) = generate_key(KeyType::EcdsaP256).unwrap();
        let mismatched = Issued {
            leaf_pem: f.issued.leaf_pem.clone(),
            chain_pem: String::new(),
            key: other_key,
        };
        assert_eq!(
            mismatched.validate(&ids, &roots, f.now, 60).unwrap_err(),
            ValidationError::KeyMismatch
        );
        let garbage = Issued {
            leaf_pem: "not a certificate".into(),
            chain_pem: String::new(),
            key: SecretPem::new(String::new()),
        };
        assert_eq!(
            garbage.validate(&ids, &roots, f.now, 60).unwrap_err(),
            ValidationError::LeafCount(0)
        );
    }
}
