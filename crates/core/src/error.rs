use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why bytes could not be turned into certificates, keys or CRLs.
///
/// Messages name the reason only; the caller adds the source (path, endpoint, kube object).
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParseError {
    #[error("empty input")]
    Empty,
    #[error(
        "not a certificate, key, CRL, PKCS#7 or PKCS#12 container (binary data of unknown format)"
    )]
    UnknownFormat,
    #[error("no PEM blocks found in text input")]
    NoPemBlocks,
    #[error("PEM block {block} (line {line}): {reason}")]
    Pem {
        block: usize,
        line: usize,
        reason: Box<str>,
    },
    #[error("invalid certificate: {0}")]
    Certificate(Box<str>),
    #[error("{0} bytes of trailing data after the DER structure")]
    TrailingData(usize),
    #[error("invalid private key: {0}")]
    PrivateKey(Box<str>),
    #[error("encrypted private key: the key cannot be matched without its passphrase")]
    EncryptedKey,
    #[error("invalid PKCS#7: {0}")]
    Pkcs7(Box<str>),
    #[error("PKCS#12: wrong password or corrupted file (MAC check failed)")]
    Pkcs12BadPassword,
    #[error("PKCS#12 is password protected: give --password-file or --password-env")]
    Pkcs12NeedsPassword,
    #[error("invalid PKCS#12: {0}")]
    Pkcs12(Box<str>),
    #[error("invalid CRL: {0}")]
    Crl(Box<str>),
}
