use std::io;
use std::path::PathBuf;

use certvigil_issue::{KeyType, ValidationError};

/// Everything that can go wrong in the internal CA. Each variant names the step or the file;
/// none ever carries key material (errors from key parsers are reduced to their message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// `init` found something at the CA directory already.
    #[error("{dir}: a CA (or other files) already exists there; refusing to overwrite it")]
    AlreadyExists { dir: PathBuf },
    /// A file of the CA directory is not there.
    #[error("{path}: missing ({what}); is this a directory made by `certvigil ca init`?")]
    Missing { path: PathBuf, what: &'static str },
    /// Reading, writing, renaming or syncing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A CA file is there but its content is wrong.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// A CA private key belongs to another certificate (a swapped or tampered file).
    #[error("{key}: this private key does not match the certificate {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// A key pair could not be generated.
    #[error("generating a {key_type} key: {reason}")]
    KeyGeneration { key_type: KeyType, reason: String },
    /// The request cannot be issued as asked (missing names, bad lifetime, unusable key...).
    #[error("invalid issue request: {0}")]
    Request(String),
    /// Building or signing a certificate failed.
    #[error("{step}: {reason}")]
    Build { step: &'static str, reason: String },
    /// The freshly issued bundle did not pass `Issued::validate`; nothing is returned.
    #[error("the issued certificate failed validation against the CA root: {0}")]
    Validation(#[from] ValidationError),
}

impl CaError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn build(step: &'static str) -> impl FnOnce(String) -> Self {
        move |reason| Self::Build { step, reason }
    }
}
