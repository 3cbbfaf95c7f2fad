//! Key pairs the CA signs with or certifies: rcgen/aws-lc-rs for ECDSA, RSA and Ed25519, the
//! `sm2` crate for SM2. Both sit behind one type so a single certificate builder serves all.

use std::fmt;

use certvigil_core::verify::SM2_DEFAULT_ID;
use certvigil_issue::{KeyType, SecretPem, generate_key};
use der::asn1::{AnyRef, ObjectIdentifier};
use rcgen::{PublicKeyData, SigningKey as _};
use sm2::dsa::signature::{Keypair, Signer};
use sm2::elliptic_curve::Generate;
use sm2::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use x509_cert::spki::{self, AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};

use crate::CaError;

/// ecdsa-with-SHA256, RFC 5758 §3.2.
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
/// ecdsa-with-SHA384, RFC 5758 §3.2.
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// sha256WithRSAEncryption, RFC 4055 §5 (parameters NULL).
const RSA_SHA256: &str = "1.2.840.113549.1.1.11";
/// id-Ed25519, RFC 8410 §3 (parameters absent).
const ED25519: &str = "1.3.101.112";

/// A private key with what signing and certifying need. `Debug` never shows the secret.
pub(crate) enum KeyPair {
    Rcgen(rcgen::KeyPair),
    /// Signs with the GM/T 0009 default distinguishing ID, as OpenSSL and every SM2 CA do.
    Sm2(sm2::dsa::SigningKey),
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({}, <redacted>)", self.describe())
    }
}

impl KeyPair {
    /// A fresh key and its PKCS#8 PEM (SM2 keys too: `openssl pkey` reads them).
    pub(crate) fn generate(key_type: KeyType) -> Result<(Self, SecretPem), CaError> {
        let failed = |reason: String| CaError::KeyGeneration { key_type, reason };
        if key_type == KeyType::Sm2 {
            let secret = sm2::SecretKey::try_generate()
                .map_err(|e| failed(format!("no randomness: {e}")))?;
            let pem = secret
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| failed(e.to_string()))?;
            let signing = sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret)
                .map_err(|e| failed(e.to_string()))?;
            return Ok((Self::Sm2(signing), SecretPem::new(pem.to_string())));
        }
        let (pair, pem) = generate_key(key_type).map_err(|e| failed(e.to_string()))?;
        Ok((Self::Rcgen(pair), pem))
    }

    /// Reads a PEM private key: PKCS#8 of any supported type, or SEC1/PKCS#1. The error is a
    /// description only; it never echoes the input.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        // SM2 first: the sm2 decoder checks the curve OID, so it refuses P-256 keys cleanly,
        // while aws-lc-rs would report an SM2 key as merely "invalid".
        if let Ok(secret) =
            sm2::SecretKey::from_pkcs8_pem(pem).or_else(|_| sm2::SecretKey::from_sec1_pem(pem))
        {
            return sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret)
                .map(Self::Sm2)
                .map_err(|e| format!("unusable SM2 key: {e}"));
        }
        rcgen::KeyPair::from_pem(pem)
            .map(Self::Rcgen)
            .map_err(|e| match e {
                rcgen::Error::PemError(_) => "not a PEM private key".to_owned(),
                other => format!("unsupported or corrupt private key ({other})"),
            })
    }

    /// The key type, as far as the CA's vocabulary names it.
    pub(crate) fn key_type(&self) -> Option<KeyType> {
        match self {
            Self::Sm2(_) => Some(KeyType::Sm2),
            Self::Rcgen(pair) => {
                let alg = pair.algorithm();
                if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
                    Some(KeyType::EcdsaP256)
                } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
                    Some(KeyType::EcdsaP384)
                } else if alg == &rcgen::PKCS_ED25519 {
                    Some(KeyType::Ed25519)
                } else if self.is_rsa() {
                    Some(match pair.public_key_raw().len() {
                        n if n > 400 => KeyType::Rsa4096,
                        n if n > 270 => KeyType::Rsa3072,
                        _ => KeyType::Rsa2048,
                    })
                } else {
                    None
                }
            }
        }
    }

    fn describe(&self) -> String {
        self.key_type()
            .map_or_else(|| "unsupported".to_owned(), |k| k.to_string())
    }

    pub(crate) fn is_rsa(&self) -> bool {
        match self {
            Self::Rcgen(pair) => {
                let alg = pair.algorithm();
                alg == &rcgen::PKCS_RSA_SHA256
                    || alg == &rcgen::PKCS_RSA_SHA384
                    || alg == &rcgen::PKCS_RSA_SHA512
            }
            Self::Sm2(_) => false,
        }
    }

    /// The subjectPublicKey bits, as they appear in a certificate.
    pub(crate) fn public_key_bits(&self) -> Vec<u8> {
        match self {
            Self::Rcgen(pair) => pair.public_key_raw().to_vec(),
            Self::Sm2(key) => key.verifying_key().to_sec1_bytes().to_vec(),
        }
    }

    /// The DER SubjectPublicKeyInfo.
    pub(crate) fn spki_der(&self) -> Result<Vec<u8>, String> {
        match self {
            Self::Rcgen(pair) => Ok(pair.subject_public_key_info()),
            Self::Sm2(key) => key
                .verifying_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|e| e.to_string()),
        }
    }

    /// A signature in the encoding X.509 wants: ECDSA and SM2 as a DER SEQUENCE of r and s.
    ///
    /// The `sm2` crate's `Signature` is the raw 64-byte r‖s; certificates carrying that are
    /// rejected by OpenSSL ("certificate signature failure"), hence `to_der()` here.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Rcgen(pair) => pair.sign(message).map_err(|e| e.to_string()),
            Self::Sm2(key) => key
                .try_sign(message)
                .map(|sig| sig.to_der().to_vec())
                .map_err(|e| e.to_string()),
        }
    }

    fn algorithm_identifier(&self) -> Result<AlgorithmIdentifierOwned, String> {
        let (oid, null_params) = match self {
            Self::Sm2(_) => (certvigil_core::oid::SM2_WITH_SM3, false),
            Self::Rcgen(pair) => {
                let alg = pair.algorithm();
                if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
                    (ECDSA_SHA256, false)
                } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
                    (ECDSA_SHA384, false)
                } else if alg == &rcgen::PKCS_RSA_SHA256 {
                    (RSA_SHA256, true)
                } else if alg == &rcgen::PKCS_ED25519 {
                    (ED25519, false)
                } else {
                    return Err(format!("cannot sign with a {alg:?} key"));
                }
            }
        };
        let oid = ObjectIdentifier::new(oid).map_err(|e| e.to_string())?;
        let parameters = null_params.then(|| AnyRef::NULL.into());
        Ok(AlgorithmIdentifierOwned { oid, parameters })
    }
}

/// The issuer side handed to x509-cert's builder: it asks for the signature algorithm and the
/// issuer's public key; the signature itself is made by [`KeyPair::sign`].
pub(crate) struct BuilderSigner<'a>(pub(crate) &'a KeyPair);

/// The issuer's SubjectPublicKeyInfo, DER.
#[derive(Clone)]
pub(crate) struct SpkiDer(Vec<u8>);

impl EncodePublicKey for SpkiDer {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.as_slice())?)
    }
}

impl Keypair for BuilderSigner<'_> {
    type VerifyingKey = SpkiDer;

    fn verifying_key(&self) -> SpkiDer {
        // Only called after `spki_der` succeeded once in `BuilderSigner::check`.
        SpkiDer(self.0.spki_der().unwrap_or_default())
    }
}

impl DynSignatureAlgorithmIdentifier for BuilderSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        self.0
            .algorithm_identifier()
            .map_err(|_| spki::Error::KeyMalformed)
    }
}

impl BuilderSigner<'_> {
    /// Fails early, with a readable reason, where the trait methods above could only fail
    /// with an opaque error.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.0.spki_der()?;
        self.0.algorithm_identifier()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_generates_reloads_and_keeps_its_type() {
        for kt in KeyType::ALL {
            if matches!(kt, KeyType::Rsa3072 | KeyType::Rsa4096) {
                continue; // slow, and the same code as rsa2048
            }
            let (pair, pem) = KeyPair::generate(kt).unwrap();
            assert_eq!(pair.key_type(), Some(kt));
            let again = KeyPair::from_pem(pem.expose()).unwrap();
            assert_eq!(again.public_key_bits(), pair.public_key_bits(), "{kt}");
            assert!(pair.sign(b"tbs").is_ok());
            assert!(!format!("{pair:?}").contains(&pem.expose()[30..60]));
        }
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let err =
            KeyPair::from_pem("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
                .unwrap_err();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}
