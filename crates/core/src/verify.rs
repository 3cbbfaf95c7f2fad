//! Signature checks of one certificate against a candidate issuer's public key.
//!
//! x509-parser's own verifier covers few algorithm pairs; real hosts hold SHA-1 era roots,
//! RSA-PSS, P-521 and SM2 certificates, so the routing to aws-lc-rs and the `sm2` crate is here.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
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
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(issuer_spki) else {
        return SignatureVerdict::Unsupported("issuer public key does not parse".into());
    };
    let sig_alg = oid::signature_from_oid(
        &oid::dotted(&child.signature_algorithm.algorithm),
        pss_hash(child),
    );
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
    let key_alg = match curve {
        Some(curve) => KeyAlgorithm::Ec(curve),
        None => oid::key_algorithm_from_oid(&key_alg_oid)
            .unwrap_or_else(|| KeyAlgorithm::Unknown(key_alg_oid.into())),
    };
    let tbs = child.tbs_certificate.as_ref();
    let sig = &child.signature_value.data;
    let key = &spki.subject_public_key.data;

    if sig_alg == SignatureAlgorithm::Sm2Sm3 {
        return verify_sm2(tbs, sig, key);
    }
    let Some(alg) = aws_lc_algorithm(&sig_alg, &key_alg) else {
        return SignatureVerdict::Unsupported(
            format!("{sig_alg} with a {key_alg} key is not supported").into(),
        );
    };
    match UnparsedPublicKey::new(alg, key).verify(tbs, sig) {
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
    match verifying_key.verify(tbs, &signature) {
        Ok(()) => SignatureVerdict::Valid,
        Err(_) => SignatureVerdict::Invalid,
    }
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
