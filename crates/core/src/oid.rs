//! Object identifiers certvigil names itself.
//!
//! `oid-registry` (behind x509-parser) knows none of the Chinese SM OIDs and names others in ways
//! that differ from what operators see in `openssl x509 -text`, so the tables that matter for
//! output and checks live here.

use crate::cert::{Curve, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm};

pub(crate) const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
pub(crate) const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
pub(crate) const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
pub(crate) const ED25519: &str = "1.3.101.112";
pub(crate) const ED448: &str = "1.3.101.113";
pub(crate) const DSA: &str = "1.2.840.10040.4.1";
/// GM/T 0006: the SM2 curve (also used as a public key algorithm by some issuers).
pub const SM2_CURVE: &str = "1.2.156.10197.1.301";
/// GM/T 0006: SM2 signature with SM3 digest.
pub const SM2_WITH_SM3: &str = "1.2.156.10197.1.501";

pub(crate) const PKCS7_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";

pub(crate) fn curve_from_oid(oid: &str) -> Curve {
    match oid {
        "1.2.840.10045.3.1.1" => Curve::P192,
        "1.3.132.0.33" => Curve::P224,
        "1.2.840.10045.3.1.7" => Curve::P256,
        "1.3.132.0.34" => Curve::P384,
        "1.3.132.0.35" => Curve::P521,
        "1.3.132.0.10" => Curve::Secp256k1,
        "1.3.36.3.3.2.8.1.1.7" => Curve::BrainpoolP256r1,
        "1.3.36.3.3.2.8.1.1.11" => Curve::BrainpoolP384r1,
        "1.3.36.3.3.2.8.1.1.13" => Curve::BrainpoolP512r1,
        SM2_CURVE => Curve::Sm2,
        other => Curve::Other(other.into()),
    }
}

pub(crate) fn key_algorithm_from_oid(oid: &str) -> Option<KeyAlgorithm> {
    Some(match oid {
        RSA_ENCRYPTION => KeyAlgorithm::Rsa,
        RSASSA_PSS => KeyAlgorithm::RsaPss,
        ED25519 => KeyAlgorithm::Ed25519,
        ED448 => KeyAlgorithm::Ed448,
        DSA => KeyAlgorithm::Dsa,
        SM2_CURVE => KeyAlgorithm::Ec(Curve::Sm2),
        _ => return None,
    })
}

pub(crate) fn hash_from_oid(oid: &str) -> Option<HashAlgorithm> {
    Some(match oid {
        "1.3.14.3.2.26" => HashAlgorithm::Sha1,
        "2.16.840.1.101.3.4.2.4" => HashAlgorithm::Sha224,
        "2.16.840.1.101.3.4.2.1" => HashAlgorithm::Sha256,
        "2.16.840.1.101.3.4.2.2" => HashAlgorithm::Sha384,
        "2.16.840.1.101.3.4.2.3" => HashAlgorithm::Sha512,
        _ => return None,
    })
}

/// Maps a signature algorithm OID; RSASSA-PSS needs its parameters, so the caller passes the
/// hash it decoded from them.
pub(crate) fn signature_from_oid(oid: &str, pss_hash: Option<HashAlgorithm>) -> SignatureAlgorithm {
    use HashAlgorithm::*;
    use SignatureAlgorithm as S;
    match oid {
        "1.2.840.113549.1.1.2" => S::RsaPkcs1(Md2),
        "1.2.840.113549.1.1.4" => S::RsaPkcs1(Md5),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => S::RsaPkcs1(Sha1),
        "1.2.840.113549.1.1.14" => S::RsaPkcs1(Sha224),
        "1.2.840.113549.1.1.11" => S::RsaPkcs1(Sha256),
        "1.2.840.113549.1.1.12" => S::RsaPkcs1(Sha384),
        "1.2.840.113549.1.1.13" => S::RsaPkcs1(Sha512),
        RSASSA_PSS => S::RsaPss(pss_hash.unwrap_or(Sha1)),
        "1.2.840.10045.4.1" => S::Ecdsa(Sha1),
        "1.2.840.10045.4.3.1" => S::Ecdsa(Sha224),
        "1.2.840.10045.4.3.2" => S::Ecdsa(Sha256),
        "1.2.840.10045.4.3.3" => S::Ecdsa(Sha384),
        "1.2.840.10045.4.3.4" => S::Ecdsa(Sha512),
        ED25519 => S::Ed25519,
        ED448 => S::Ed448,
        SM2_WITH_SM3 => S::Sm2Sm3,
        "1.2.840.10040.4.3" => S::Dsa(Sha1),
        "2.16.840.1.101.3.4.3.1" => S::Dsa(Sha224),
        "2.16.840.1.101.3.4.3.2" => S::Dsa(Sha256),
        other => S::Other(other.into()),
    }
}

/// Short attribute names as OpenSSL prints them with `-nameopt RFC2253`.
pub(crate) fn attribute_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.97" => "organizationIdentifier",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        _ => return None,
    })
}

/// Extended key usage purposes by OID, with the names `openssl x509 -text` uses.
pub(crate) fn eku_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.3.6.1.5.5.7.3.1" => "TLS Web Server Authentication",
        "1.3.6.1.5.5.7.3.2" => "TLS Web Client Authentication",
        "1.3.6.1.5.5.7.3.3" => "Code Signing",
        "1.3.6.1.5.5.7.3.4" => "E-mail Protection",
        "1.3.6.1.5.5.7.3.8" => "Time Stamping",
        "1.3.6.1.5.5.7.3.9" => "OCSP Signing",
        "2.5.29.37.0" => "Any Extended Key Usage",
        _ => return None,
    })
}

/// Extension names for `inspect`.
pub fn extension_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.29.14" => "Subject Key Identifier",
        "2.5.29.15" => "Key Usage",
        "2.5.29.17" => "Subject Alternative Name",
        "2.5.29.18" => "Issuer Alternative Name",
        "2.5.29.19" => "Basic Constraints",
        "2.5.29.30" => "Name Constraints",
        "2.5.29.31" => "CRL Distribution Points",
        "2.5.29.32" => "Certificate Policies",
        "2.5.29.35" => "Authority Key Identifier",
        "2.5.29.36" => "Policy Constraints",
        "2.5.29.37" => "Extended Key Usage",
        "2.5.29.54" => "Inhibit anyPolicy",
        "1.3.6.1.5.5.7.1.1" => "Authority Information Access",
        "1.3.6.1.5.5.7.1.24" => "TLS Feature (OCSP Must-Staple)",
        "1.3.6.1.4.1.11129.2.4.2" => "CT Precertificate SCTs",
        "1.3.6.1.4.1.11129.2.4.3" => "CT Precertificate Poison",
        "1.3.6.1.5.5.7.48.1.5" => "OCSP No Check",
        _ => return None,
    })
}

/// Every OID named in this module, so hot paths can turn an OID's DER bytes into its dotted
/// form without formatting (a scan meets millions of OIDs, all from this short list).
const KNOWN: &[&str] = &[
    "0.9.2342.19200300.100.1.1",
    "0.9.2342.19200300.100.1.25",
    "1.2.156.10197.1.301",
    "1.2.156.10197.1.501",
    "1.2.840.10040.4.1",
    "1.2.840.10040.4.3",
    "1.2.840.10045.2.1",
    "1.2.840.10045.3.1.1",
    "1.2.840.10045.3.1.7",
    "1.2.840.10045.4.1",
    "1.2.840.10045.4.3.1",
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
    "1.2.840.10045.4.3.4",
    "1.2.840.113549.1.1.1",
    "1.2.840.113549.1.1.10",
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    "1.2.840.113549.1.1.14",
    "1.2.840.113549.1.1.2",
    "1.2.840.113549.1.1.4",
    "1.2.840.113549.1.1.5",
    "1.2.840.113549.1.7.2",
    "1.2.840.113549.1.9.1",
    "1.3.101.112",
    "1.3.101.113",
    "1.3.132.0.10",
    "1.3.132.0.33",
    "1.3.132.0.34",
    "1.3.132.0.35",
    "1.3.14.3.2.26",
    "1.3.14.3.2.29",
    "1.3.36.3.3.2.8.1.1.11",
    "1.3.36.3.3.2.8.1.1.13",
    "1.3.36.3.3.2.8.1.1.7",
    "1.3.6.1.4.1.11129.2.4.2",
    "1.3.6.1.4.1.11129.2.4.3",
    "1.3.6.1.4.1.311.60.2.1.2",
    "1.3.6.1.4.1.311.60.2.1.3",
    "1.3.6.1.5.5.7.1.1",
    "1.3.6.1.5.5.7.1.24",
    "1.3.6.1.5.5.7.3.1",
    "1.3.6.1.5.5.7.3.2",
    "1.3.6.1.5.5.7.3.3",
    "1.3.6.1.5.5.7.3.4",
    "1.3.6.1.5.5.7.3.8",
    "1.3.6.1.5.5.7.3.9",
    "1.3.6.1.5.5.7.48.1.5",
    "2.16.840.1.101.3.4.2.1",
    "2.16.840.1.101.3.4.2.2",
    "2.16.840.1.101.3.4.2.3",
    "2.16.840.1.101.3.4.2.4",
    "2.16.840.1.101.3.4.3.1",
    "2.16.840.1.101.3.4.3.2",
    "2.5.29.14",
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.18",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.32",
    "2.5.29.35",
    "2.5.29.36",
    "2.5.29.37",
    "2.5.29.37.0",
    "2.5.29.54",
    "2.5.4.10",
    "2.5.4.11",
    "2.5.4.12",
    "2.5.4.15",
    "2.5.4.17",
    "2.5.4.3",
    "2.5.4.4",
    "2.5.4.42",
    "2.5.4.46",
    "2.5.4.5",
    "2.5.4.6",
    "2.5.4.7",
    "2.5.4.8",
    "2.5.4.9",
    "2.5.4.97",
];

static KNOWN_BY_DER: std::sync::LazyLock<std::collections::HashMap<Vec<u8>, &'static str>> =
    std::sync::LazyLock::new(|| {
        KNOWN
            .iter()
            .filter_map(|dotted| Some((encode_dotted(dotted)?, *dotted)))
            .collect()
    });

/// The dotted form of an OID, borrowed when it is one this module knows.
pub(crate) fn dotted(oid: &x509_parser::der_parser::Oid<'_>) -> std::borrow::Cow<'static, str> {
    match KNOWN_BY_DER.get(oid.as_bytes()) {
        Some(known) => std::borrow::Cow::Borrowed(known),
        None => std::borrow::Cow::Owned(oid.to_id_string()),
    }
}

/// DER content bytes of a dotted OID.
fn encode_dotted(dotted: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().ok())
        .collect::<Option<_>>()?;
    let (first, second) = (*arcs.first()?, *arcs.get(1)?);
    let mut out = Vec::new();
    for arc in std::iter::once(first * 40 + second).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_oids_round_trip_through_der() {
        for oid in KNOWN {
            let der = encode_dotted(oid).unwrap();
            let parsed = x509_parser::der_parser::Oid::new(der.into());
            assert_eq!(parsed.to_id_string(), *oid);
            assert_eq!(dotted(&parsed), *oid);
        }
    }
}
