//! Signature checks of one certificate against a candidate issuer's public key.
//!
//! x509-parser's own verifier covers few algorithm pairs; real hosts hold SHA-1 era roots,
//! RSA-PSS, P-521 and SM2 certificates, so the routing to aws-lc-rs and the `sm2` crate is here.

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::cert::{Curve, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm, pss_hash};
use crate::oid;

/// The GM/T 0009 default distinguishing identifier, used by OpenSSL and every CA in practice.
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureVerdict {
    Valid,
    Invalid,
    /// The algorithm pair cannot be checked here (MD5, DSA, unknown curves ...).
    Unsupported(Box<str>),
}

/// Verifies `child`'s signature with the public key in `issuer_spki` (DER SubjectPublicKeyInfo).
pub fn verify_signature(child: &X509Certificate<'_>, issuer_spki: &[u8]) -> SignatureVerdict {
    let sig_alg = oid::signature_from_oid(
        &oid::dotted(&child.signature_algorithm.algorithm),
        pss_hash(child),
    );
    verify_parts(
        &sig_alg,
        child.tbs_certificate.as_ref(),
        &child.signature_value.data,
        issuer_spki,
    )
}

/// An issuer's public key parsed by aws-lc once, for the signature algorithm of the first
/// certificate checked against it that aws-lc can check. With the leaf split instead of parsed
/// again, a P-256 check takes 51 instead of 54 µs and an RSA-2048 one 17 instead of 23
/// (`benches/verify.rs`). Boxed: every fullchain's copy of its CA carries one, and only the
/// copy the inventory keeps fills it.
#[derive(Clone, Default)]
pub struct PreparedKey(OnceLock<Box<(SignatureAlgorithm, ParsedPublicKey)>>);

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedKey")
    }
}

/// Verifies the signature of the certificate `child_der`, whose summary says it is signed
/// with `sig_alg`, with `issuer_spki`. Same verdicts as [`verify_signature`], without parsing
/// the whole certificate again; `prepared`, when the key is shared by many checks, keeps the
/// parsed key for the next one.
pub fn verify_prepared(
    sig_alg: &SignatureAlgorithm,
    child_der: &[u8],
    issuer_spki: &[u8],
    prepared: Option<&PreparedKey>,
) -> SignatureVerdict {
    let Some((tbs, sig)) = signed_parts(child_der) else {
        return SignatureVerdict::Unsupported("certificate does not parse".into());
    };
    if let Some((alg, key)) = prepared.and_then(|p| p.0.get()).map(|key| &**key)
        && alg == sig_alg
    {
        return verdict(key.verify_sig(tbs, sig));
    }
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(issuer_spki) else {
        return SignatureVerdict::Unsupported("issuer public key does not parse".into());
    };
    // Nothing is kept for SM2 or what aws-lc cannot check: the next one may be checkable.
    if let Some(prepared) = prepared.filter(|p| p.0.get().is_none())
        && let Some(key) = prepare(sig_alg, &spki)
    {
        // Another thread may have kept its own first; the algorithm decides whether it serves.
        let (alg, key) = &**prepared.0.get_or_init(|| key);
        if alg == sig_alg {
            return verdict(key.verify_sig(tbs, sig));
        }
    }
    // A second algorithm under the same key, or no key kept.
    verify_with(sig_alg, tbs, sig, &spki)
}

fn prepare(
    sig_alg: &SignatureAlgorithm,
    spki: &SubjectPublicKeyInfo<'_>,
) -> Option<Box<(SignatureAlgorithm, ParsedPublicKey)>> {
    let alg = aws_lc_algorithm(sig_alg, &key_algorithm(spki))?;
    let key = ParsedPublicKey::new(alg, &spki.subject_public_key.data).ok()?;
    Some(Box::new((sig_alg.clone(), key)))
}

/// The signed bytes (the whole TBSCertificate) and the signature of a DER certificate:
/// `SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }`.
fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, certificate) = Any::from_der(der).ok()?;
    let fields = certificate.data;
    let (rest, _) = Any::from_der(fields).ok()?;
    let tbs = &fields[..fields.len() - rest.len()];
    let (rest, _) = Any::from_der(rest).ok()?;
    let (_, signature) = Any::from_der(rest).ok()?;
    if signature.tag() != Tag::BitString {
        return None;
    }
    // The first content byte counts the unused bits: zero in any real signature, and skipped
    // whatever it says, as x509-parser does for `verify_signature`.
    let (_, bits) = signature.data.split_first()?;
    Some((tbs, bits))
}

fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> KeyAlgorithm {
    let key_alg_oid = oid::dotted(&spki.algorithm.algorithm);
    let curve = if key_alg_oid == oid::EC_PUBLIC_KEY {
        spki.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| oid::curve_from_oid(&oid::dotted(&o)))
    } else if key_alg_oid == oid::SM2_CURVE {
        Some(Curve::Sm2)
    } else {
        None
    };
    match curve {
        Some(curve) => KeyAlgorithm::Ec(curve),
        None => oid::key_algorithm_from_oid(&key_alg_oid)
            .unwrap_or_else(|| KeyAlgorithm::Unknown(key_alg_oid.into())),
    }
}

fn verify_parts(
    sig_alg: &SignatureAlgorithm,
    tbs: &[u8],
    sig: &[u8],
    issuer_spki: &[u8],
) -> SignatureVerdict {
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(issuer_spki) else {
        return SignatureVerdict::Unsupported("issuer public key does not parse".into());
    };
    verify_with(sig_alg, tbs, sig, &spki)
}

fn verify_with(
    sig_alg: &SignatureAlgorithm,
    tbs: &[u8],
    sig: &[u8],
    spki: &SubjectPublicKeyInfo<'_>,
) -> SignatureVerdict {
    let key_alg = key_algorithm(spki);
    let key = &spki.subject_public_key.data;

    if *sig_alg == SignatureAlgorithm::Sm2Sm3 {
        return verify_sm2(tbs, sig, key);
    }
    let Some(alg) = aws_lc_algorithm(sig_alg, &key_alg) else {
        return SignatureVerdict::Unsupported(
            format!("{sig_alg} with a {key_alg} key is not supported").into(),
        );
    };
    verdict(UnparsedPublicKey::new(alg, key).verify(tbs, sig))
}

fn verdict<E>(checked: Result<(), E>) -> SignatureVerdict {
    match checked {
        Ok(()) => SignatureVerdict::Valid,
        Err(_) => SignatureVerdict::Invalid,
    }
}

fn verify_sm2(tbs: &[u8], sig: &[u8], key: &[u8]) -> SignatureVerdict {
    use sm2::dsa::signature::Verifier;
    let Ok(verifying_key) = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_ID, key) else {
        return SignatureVerdict::Invalid;
    };
    let Ok(signature) = sm2::dsa::Signature::from_der(sig) else {
        return SignatureVerdict::Invalid;
    };
    verdict(verifying_key.verify(tbs, &signature))
}

fn aws_lc_algorithm(
    sig: &SignatureAlgorithm,
    key: &KeyAlgorithm,
) -> Option<&'static dyn VerificationAlgorithm> {
    use HashAlgorithm as H;
    use SignatureAlgorithm as S;
    Some(match (sig, key) {
        (S::RsaPkcs1(h), KeyAlgorithm::Rsa) => match h {
            H::Sha1 => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            H::Sha256 => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            H::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            H::Sha512 => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            _ => return None,
        },
        (S::RsaPss(h), KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss) => match h {
            H::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
            H::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
            H::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        },
        (S::Ecdsa(h), KeyAlgorithm::Ec(curve)) => match (curve, h) {
            (Curve::P256, H::Sha1) => &signature::ECDSA_P256_SHA1_ASN1,
            (Curve::P256, H::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Curve::P256, H::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (Curve::P256, H::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
            (Curve::P384, H::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (Curve::P384, H::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
            (Curve::P384, H::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
            (Curve::P521, H::Sha1) => &signature::ECDSA_P521_SHA1_ASN1,
            (Curve::P521, H::Sha224) => &signature::ECDSA_P521_SHA224_ASN1,
            (Curve::P521, H::Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
            (Curve::P521, H::Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
            (Curve::P521, H::Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
            (Curve::Secp256k1, H::Sha256) => &signature::ECDSA_P256K1_SHA256_ASN1,
            _ => return None,
        },
        (S::Ed25519, KeyAlgorithm::Ed25519) => &signature::ED25519,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use certvigil_testutil::{Ca, KeyKind, Spec};

    use super::*;

    fn parts(der: &[u8]) -> (X509Certificate<'_>, SignatureAlgorithm) {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let alg = crate::Certificate::from_der(der)
            .unwrap()
            .profile
            .signature_algorithm
            .clone();
        (cert, alg)
    }

    /// A CA's SubjectPublicKeyInfo and one leaf it issued, with the leaf's algorithm.
    fn ca_and_leaf(kind: KeyKind) -> (Vec<u8>, Vec<u8>, SignatureAlgorithm) {
        let ca = Ca::root(&Spec::ca(&format!("{kind:?} CA")).key(kind));
        let spki = parts(&ca.cert.der).0.public_key().raw.to_vec();
        let leaf = ca.issue(&Spec::leaf("leaf.example")).der;
        let alg = parts(&leaf).1;
        (spki, leaf, alg)
    }

    #[test]
    fn prepared_keys_give_the_verdicts_of_a_full_parse() {
        for kind in [
            KeyKind::P256,
            KeyKind::P384,
            KeyKind::Rsa2048,
            KeyKind::Ed25519,
        ] {
            let ca = Ca::root(&Spec::ca(&format!("{kind:?} CA")).key(kind));
            let other = Ca::root(&Spec::ca(&format!("{kind:?} CA")).key(kind));
            let spki = parts(&ca.cert.der).0.public_key().raw.to_vec();
            let good = ca.issue(&Spec::leaf("good.example")).der;
            let forged = other.issue(&Spec::leaf("forged.example")).der;
            let mut tampered = good.clone();
            let last = tampered.len() - 3;
            tampered[last] ^= 0x55;

            let prepared = PreparedKey::default();
            for (der, want) in [
                (&good, SignatureVerdict::Valid),
                (&forged, SignatureVerdict::Invalid),
                (&tampered, SignatureVerdict::Invalid),
                (&good, SignatureVerdict::Valid),
            ] {
                let (cert, alg) = parts(der);
                assert_eq!(verify_signature(&cert, &spki), want, "{kind:?}");
                assert_eq!(verify_prepared(&alg, der, &spki, None), want, "{kind:?}");
                assert_eq!(
                    verify_prepared(&alg, der, &spki, Some(&prepared)),
                    want,
                    "{kind:?}"
                );
            }
            assert!(prepared.0.get().is_some(), "{kind:?}: key not kept");
        }
    }

    #[test]
    fn a_key_prepared_for_one_algorithm_is_not_used_for_another() {
        let (spki, leaf, alg) = ca_and_leaf(KeyKind::P256);
        assert_eq!(alg, SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256));
        let prepared = PreparedKey::default();
        let valid = verify_prepared(&alg, &leaf, &spki, Some(&prepared));
        assert_eq!(valid, SignatureVerdict::Valid);
        // Claimed as SHA-384, the same bytes do not verify: the SHA-256 key is not reused.
        let sha384 = SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384);
        let claimed = verify_prepared(&sha384, &leaf, &spki, Some(&prepared));
        assert_eq!(claimed, SignatureVerdict::Invalid);
    }

    #[test]
    fn an_algorithm_aws_lc_cannot_check_leaves_the_key_to_the_next_check() {
        let (spki, leaf, alg) = ca_and_leaf(KeyKind::P256);
        let prepared = PreparedKey::default();
        let unknown = SignatureAlgorithm::Other("1.2.3.4".into());
        let verdict = verify_prepared(&unknown, &leaf, &spki, Some(&prepared));
        assert!(
            matches!(verdict, SignatureVerdict::Unsupported(_)),
            "{verdict:?}"
        );
        assert!(prepared.0.get().is_none());
        let verdict = verify_prepared(&alg, &leaf, &spki, Some(&prepared));
        assert_eq!(verdict, SignatureVerdict::Valid);
        assert!(prepared.0.get().is_some());
    }

    #[test]
    fn signed_parts_are_the_ones_x509_parser_finds() {
        let (spki, leaf, _) = ca_and_leaf(KeyKind::Rsa2048);
        let (cert, _) = parts(&leaf);
        let (tbs, sig) = signed_parts(&leaf).unwrap();
        assert_eq!(tbs, cert.tbs_certificate.as_ref());
        assert_eq!(sig, &cert.signature_value.data[..]);
        for cut in [0, 1, 10, leaf.len() / 2, leaf.len() - 1] {
            assert!(signed_parts(&leaf[..cut]).is_none(), "cut at {cut}");
        }
        assert!(signed_parts(b"\x30\x03\x02\x01\x00").is_none());
        // Unused bits declared in the signature: the bytes and verdict x509-parser gives. DER
        // wants the unused bits zero, or x509-parser rejects the certificate.
        let mut odd = leaf.clone();
        let unused_bits = leaf.len() - cert.signature_value.data.len() - 1;
        odd[unused_bits] = 3;
        *odd.last_mut().unwrap() &= !0b111;
        let (odd_cert, alg) = parts(&odd);
        let (_, sig) = signed_parts(&odd).unwrap();
        assert_eq!(sig, &odd_cert.signature_value.data[..]);
        let verdict = verify_prepared(&alg, &odd, &spki, Some(&PreparedKey::default()));
        assert_eq!(verdict, verify_signature(&odd_cert, &spki));
    }
}
