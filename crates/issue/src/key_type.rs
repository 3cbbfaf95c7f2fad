use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SecretPem;

/// The key algorithms certvigil issues for. ECDSA P-256 is the default everywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyType {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
    /// GM/T SM2 with SM3; only the internal CA issues these.
    Sm2,
}

impl KeyType {
    pub const ALL: [Self; 7] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::Ed25519,
        Self::Sm2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
            Self::Ed25519 => "ed25519",
            Self::Sm2 => "sm2",
        }
    }

    /// Does a certificate with this public key satisfy a request for `self`?
    pub fn matches(self, algorithm: &certvigil_core::cert::KeyAlgorithm, bits: u32) -> bool {
        use certvigil_core::cert::{Curve, KeyAlgorithm as A};
        match self {
            Self::EcdsaP256 => *algorithm == A::Ec(Curve::P256),
            Self::EcdsaP384 => *algorithm == A::Ec(Curve::P384),
            Self::Sm2 => *algorithm == A::Ec(Curve::Sm2),
            Self::Ed25519 => *algorithm == A::Ed25519,
            Self::Rsa2048 => *algorithm == A::Rsa && bits == 2048,
            Self::Rsa3072 => *algorithm == A::Rsa && bits == 3072,
            Self::Rsa4096 => *algorithm == A::Rsa && bits == 4096,
        }
    }

    /// The rcgen algorithm, or `None` for SM2 (rcgen cannot sign with it).
    pub fn rcgen_algorithm(self) -> Option<&'static rcgen::SignatureAlgorithm> {
        Some(match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Sm2 => return None,
        })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == wanted)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown key type {s:?} (known: {})", known.join(", "))
            })
    }
}

impl TryFrom<String> for KeyType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyType> for String {
    fn from(k: KeyType) -> Self {
        k.as_str().to_owned()
    }
}

/// A fresh key pair of `key_type` with its PKCS#8 PEM. SM2 keys come from the internal CA crate.
pub fn generate_key(key_type: KeyType) -> Result<(rcgen::KeyPair, SecretPem), rcgen::Error> {
    let pair = match key_type {
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
        }
        KeyType::Rsa3072 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)?
        }
        KeyType::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)?
        }
        other => match other.rcgen_algorithm() {
            Some(alg) => rcgen::KeyPair::generate_for(alg)?,
            None => return Err(rcgen::Error::UnsupportedSignatureAlgorithm),
        },
    };
    let pem = SecretPem::new(pair.serialize_pem());
    Ok((pair, pem))
}

/// Where the certificate's key comes from: a fresh one per issuance (the default) or the key
/// of the previous generation, for services that pin it.
#[derive(Clone, Debug)]
pub enum KeyChoice {
    Generate(KeyType),
    Reuse(SecretPem),
}

impl KeyChoice {
    pub fn key_pair(&self) -> Result<(rcgen::KeyPair, SecretPem), rcgen::Error> {
        match self {
            Self::Generate(key_type) => generate_key(*key_type),
            Self::Reuse(pem) => Ok((rcgen::KeyPair::from_pem(pem.expose())?, pem.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for k in KeyType::ALL {
            assert_eq!(k.as_str().parse::<KeyType>(), Ok(k));
        }
        assert_eq!("ECDSA_P384".parse::<KeyType>(), Ok(KeyType::EcdsaP384));
        let err = "dsa1024".parse::<KeyType>().unwrap_err();
        assert!(
            err.contains("ecdsa-p256") && err.contains("dsa1024"),
            "{err}"
        );
    }

    #[test]
    fn generated_keys_have_the_requested_algorithm() {
        let (pair, pem) = generate_key(KeyType::EcdsaP384).unwrap();
        assert_eq!(pair.algorithm(), &rcgen::PKCS_ECDSA_P384_SHA384);
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(generate_key(KeyType::Sm2).is_err());
    }
}
