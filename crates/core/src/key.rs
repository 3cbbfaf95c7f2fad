//! Private keys, reduced to what pairing needs: the algorithm and a hash of the public key.
//!
//! The secret itself is dropped as soon as the public half is derived, so no model type can
//! ever print or log key material.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
    EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use pkcs8::der::Decode;
use serde::{Deserialize, Serialize};

use crate::cert::{Curve, KeyAlgorithm, KeyId, key_id};
use crate::error::ParseError;
use crate::oid;

/// What is known about a private key without keeping it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateKey {
    pub algorithm: KeyAlgorithm,
    /// SHA-256 of the public key bits: equal to [`crate::Certificate::key_id`] of its certificate.
    pub key_id: KeyId,
}

/// The DER encodings a PEM label or a sniffed blob can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEncoding {
    Pkcs8,
    /// `RSA PRIVATE KEY`
    Pkcs1,
    /// `EC PRIVATE KEY`
    Sec1,
}

impl PrivateKey {
    pub fn from_der(der: &[u8], encoding: KeyEncoding) -> Result<Self, ParseError> {
        match encoding {
            KeyEncoding::Pkcs8 => from_pkcs8(der),
            KeyEncoding::Pkcs1 => rsa_from_pkcs1(der, KeyAlgorithm::Rsa),
            KeyEncoding::Sec1 => from_sec1(der, None),
        }
    }
}

fn rsa_from_pkcs1(der: &[u8], algorithm: KeyAlgorithm) -> Result<PrivateKey, ParseError> {
    let public = crate::asn1::rsa_public_from_private(der)
        .ok_or_else(|| ParseError::PrivateKey("not a PKCS#1 RSAPrivateKey".into()))?;
    Ok(PrivateKey {
        algorithm,
        key_id: key_id(&public),
    })
}

fn reject(e: impl std::fmt::Display) -> ParseError {
    ParseError::PrivateKey(e.to_string().into())
}

fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, ParseError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(reject)?;
    let alg = info.algorithm.oid.to_string();
    match alg.as_str() {
        oid::RSA_ENCRYPTION | oid::RSASSA_PSS => {
            let algorithm = if alg == oid::RSASSA_PSS {
                KeyAlgorithm::RsaPss
            } else {
                KeyAlgorithm::Rsa
            };
            rsa_from_pkcs1(info.private_key.as_bytes(), algorithm)
        }
        oid::ED25519 => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(reject)?;
            Ok(PrivateKey {
                algorithm: KeyAlgorithm::Ed25519,
                key_id: key_id(pair.public_key().as_ref()),
            })
        }
        oid::EC_PUBLIC_KEY | oid::SM2_CURVE => {
            let curve_oid = info
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            let curve = match (&curve_oid, alg.as_str()) {
                (Some(o), _) => oid::curve_from_oid(o),
                (None, oid::SM2_CURVE) => Curve::Sm2,
                (None, _) => Curve::Other("implicit".into()),
            };
            let sec1 = from_sec1(info.private_key.as_bytes(), Some(curve.clone()));
            match sec1 {
                Ok(key) => Ok(key),
                // Some encoders leave the public key out of the inner SEC1 structure.
                Err(_) => ec_from_pkcs8_without_public_key(der, curve),
            }
        }
        other => Err(ParseError::PrivateKey(
            format!("unsupported key algorithm {other}").into(),
        )),
    }
}

fn from_sec1(der: &[u8], curve: Option<Curve>) -> Result<PrivateKey, ParseError> {
    let key = sec1::EcPrivateKey::try_from(der).map_err(reject)?;
    let curve = curve
        .or_else(|| {
            key.parameters
                .and_then(|p| p.named_curve())
                .map(|o| oid::curve_from_oid(&o.to_string()))
        })
        .unwrap_or(Curve::Other("implicit".into()));
    match key.public_key {
        Some(public) => Ok(PrivateKey {
            algorithm: KeyAlgorithm::Ec(curve),
            key_id: key_id(public),
        }),
        None if curve == Curve::Sm2 => {
            let secret = sm2::SecretKey::from_slice(key.private_key).map_err(reject)?;
            let public = secret.public_key().to_sec1_bytes();
            Ok(PrivateKey {
                algorithm: KeyAlgorithm::Ec(curve),
                key_id: key_id(&public),
            })
        }
        None => Err(ParseError::PrivateKey(
            "EC key without its public key".into(),
        )),
    }
}

fn ec_from_pkcs8_without_public_key(der: &[u8], curve: Curve) -> Result<PrivateKey, ParseError> {
    let alg = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
        Curve::P521 => &ECDSA_P521_SHA512_ASN1_SIGNING,
        other => {
            return Err(ParseError::PrivateKey(
                format!("EC key on {other} without its public key").into(),
            ));
        }
    };
    let pair = EcdsaKeyPair::from_pkcs8(alg, der).map_err(reject)?;
    Ok(PrivateKey {
        algorithm: KeyAlgorithm::Ec(curve),
        key_id: key_id(pair.public_key().as_ref()),
    })
}
