//! certvigil-ca: the internal CA for etcd, gRPC and other mTLS services.
//!
//! A CA lives in one directory. [`Ca::init`] creates a root (and optionally an intermediate
//! that does the issuing); [`Ca::open`] loads and checks it; [`Ca::issue`] signs a short-lived
//! leaf for a role [`Profile`] and hands back an [`Issued`] bundle that already passed
//! [`Issued::validate`] against the root, the same gate every other issuer goes through.
//!
//! ```text
//!  DIR/ca.json            metadata, written last: a directory without it is not a CA
//!  DIR/root.pem  0644     root certificate (what clients and servers trust)
//!  DIR/root.key  0600     root key (may be moved offline when an intermediate issues)
//!  DIR/intermediate.pem   issuing CA, when created with `intermediate: true`
//!  DIR/intermediate.key   0600
//! ```
//!
//! ECDSA P-256 is the default key type; SM2 (with SM3, the GM/T 0009 default distinguishing ID
//! `1234567812345678`) is signed with the `sm2` crate, because rcgen cannot, and is verifiable by
//! OpenSSL 3. Leaves are renewed at 2/3 of their lifetime by the renewal planner (not here).
//!
//! ```no_run
//! use certvigil_ca::{Ca, InitOptions, IssueRequest, KeyChoice, Profile};
//! use certvigil_issue::Identifier;
//!
//! let ca = Ca::init("/etc/certvigil/ca".as_ref(), &InitOptions::default())?;
//! let mut req = IssueRequest::new(Profile::EtcdPeer);
//! req.identifiers = vec![Identifier::parse("10.0.0.5"), Identifier::parse("etcd-1.internal")];
//! let issued = ca.issue(&req)?;
//! certvigil_ca::write_bundle("/etc/etcd/pki".as_ref(), &issued, ca.root_pem())?;
//! # Ok::<(), certvigil_ca::CaError>(())
//! ```

mod cert;
mod error;
mod key;
mod profile;
mod store;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certvigil_core::verify::{SignatureVerdict, verify_signature};
use certvigil_core::{Certificate, DecodeOptions, decode};
/// Where a leaf's key comes from (shared with the ACME issuer); SM2 keys are handled here.
pub use certvigil_issue::KeyChoice;
use certvigil_issue::{Identifier, Issued, KeyType, SecretPem};
use der::Decode;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

pub use error::CaError;
pub use profile::{Profile, UnknownProfile};
pub use store::{CERT_MODE, KEY_MODE, write_bundle, write_file};

use cert::{IssuerRef, Kind, Spec};
use key::KeyPair;

const META_FILE: &str = "ca.json";
const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key";
const META_FORMAT: u32 = 1;

/// Leaves start this long before the moment of issuance, for peers whose clocks lag.
pub const LEAF_BACKDATE: Duration = Duration::from_secs(60);
/// CA certificates start this long before `init`.
pub const CA_BACKDATE: Duration = Duration::from_secs(3600);

const YEAR: u64 = 365 * 24 * 3600;

/// How [`Ca::init`] shapes the new CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// The root's CN; the intermediate is "<common_name> Intermediate".
    pub common_name: String,
    /// Key type of the root and the intermediate (ECDSA P-256 by default; SM2 allowed).
    pub key_type: KeyType,
    /// Create an intermediate that does the issuing, so the root key can go offline.
    pub intermediate: bool,
    /// Default 10 years.
    pub root_lifetime: Duration,
    /// Default 5 years; never beyond the root's end.
    pub intermediate_lifetime: Duration,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            common_name: "certvigil internal CA".to_owned(),
            key_type: KeyType::default(),
            intermediate: false,
            root_lifetime: Duration::from_secs(10 * YEAR),
            intermediate_lifetime: Duration::from_secs(5 * YEAR),
        }
    }
}

/// One leaf to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    pub profile: Profile,
    /// The subject CN. Required by `etcd-client` (etcd's user name); otherwise the first
    /// identifier is used.
    pub common_name: Option<String>,
    /// DNS names and IP addresses for the subjectAltName.
    pub identifiers: Vec<Identifier>,
    pub lifetime: Duration,
    pub key: KeyChoice,
}

impl IssueRequest {
    /// A request with the profile's default lifetime and a fresh ECDSA P-256 key.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            common_name: None,
            identifiers: Vec::new(),
            lifetime: profile.default_lifetime(),
            key: KeyChoice::Generate(KeyType::default()),
        }
    }
}

/// What `ca.json` holds. The certificates and keys themselves are the truth; this file says
/// which of them exist and marks the directory complete.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    key_type: KeyType,
    intermediate: bool,
}

/// One CA certificate of this CA, parsed once.
struct CaCert {
    der: Vec<u8>,
    pem: String,
    name: x509_cert::name::Name,
    key_id: Option<Vec<u8>>,
    summary: Certificate,
}

/// An internal CA loaded from its directory. `Debug` shows names and dates, never keys.
pub struct Ca {
    dir: PathBuf,
    root: CaCert,
    intermediate: Option<CaCert>,
    /// The key of the issuing certificate (the intermediate's when there is one).
    key: KeyPair,
    key_path: PathBuf,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("root", &self.root.summary.subject)
            .field(
                "intermediate",
                &self.intermediate.as_ref().map(|c| &c.summary.subject),
            )
            .field("key", &self.key)
            .field(
                "not_after",
                &certvigil_core::timefmt::rfc3339(self.not_after()),
            )
            .finish()
    }
}

impl Ca {
    /// Creates a CA in `dir`, which must not exist or be empty. Everything is written into a
    /// sibling temporary directory that is renamed onto `dir` only when complete, with
    /// `ca.json` written last, so a crash never leaves a directory [`Ca::open`] accepts.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Self, CaError> {
        store::check_vacant(dir)?;
        if opts.common_name.trim().is_empty() {
            return Err(CaError::Request("the CA's common name is empty".into()));
        }
        let tmp = store::staging_dir(dir)?;
        let result = Self::write_new(&tmp, opts).and_then(|()| store::publish(&tmp, dir));
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result?;
        Self::open(dir)
    }

    fn write_new(tmp: &Path, opts: &InitOptions) -> Result<(), CaError> {
        let now = certvigil_core::timefmt::unix_now();
        let not_before = now - CA_BACKDATE.as_secs() as i64;
        let root_not_after = now.saturating_add(opts.root_lifetime.as_secs() as i64);
        let (root_key, root_key_pem) = KeyPair::generate(opts.key_type)?;
        let root_name = cert::common_name(&opts.common_name)?;
        let root_spki = root_key
            .spki_der()
            .map_err(CaError::build("encoding the root public key"))?;
        let root = cert::build(
            &Spec {
                subject: root_name.clone(),
                subject_spki_der: root_spki,
                not_before,
                not_after: root_not_after,
                // RFC 5280 §4.2.1.9: at most one intermediate below the root, none when the
                // root issues leaves itself.
                kind: Kind::Ca {
                    path_len: Some(u8::from(opts.intermediate)),
                },
                sans: &[],
                issuer: None,
            },
            &root_key,
        )?;
        write_file(
            &tmp.join(ROOT_KEY),
            root_key_pem.expose().as_bytes(),
            KEY_MODE,
        )?;
        write_file(&tmp.join(ROOT_CERT), root.pem.as_bytes(), CERT_MODE)?;

        if opts.intermediate {
            let root_parsed = parse_ca_cert(&tmp.join(ROOT_CERT), root.der, root.pem)?;
            let (key, key_pem) = KeyPair::generate(opts.key_type)?;
            let spki = key
                .spki_der()
                .map_err(CaError::build("encoding the intermediate public key"))?;
            let not_after = now
                .saturating_add(opts.intermediate_lifetime.as_secs() as i64)
                .min(root_not_after);
            let intermediate = cert::build(
                &Spec {
                    subject: cert::common_name(&format!("{} Intermediate", opts.common_name))?,
                    subject_spki_der: spki,
                    not_before,
                    not_after,
                    kind: Kind::Ca { path_len: Some(0) },
                    sans: &[],
                    issuer: Some(IssuerRef {
                        name: &root_parsed.name,
                        key_id: root_parsed.key_id.as_deref(),
                        key: &root_key,
                    }),
                },
                &key,
            )?;
            write_file(
                &tmp.join(INTERMEDIATE_KEY),
                key_pem.expose().as_bytes(),
                KEY_MODE,
            )?;
            write_file(
                &tmp.join(INTERMEDIATE_CERT),
                intermediate.pem.as_bytes(),
                CERT_MODE,
            )?;
        }

        let meta = Meta {
            format: META_FORMAT,
            key_type: opts.key_type,
            intermediate: opts.intermediate,
        };
        let json = serde_json::to_string_pretty(&meta).expect("plain struct serializes") + "\n";
        write_file(&tmp.join(META_FILE), json.as_bytes(), CERT_MODE)
    }

    /// Loads the CA in `dir` and checks it: every certificate is a CA certificate, each key
    /// matches its certificate, the intermediate is signed by the root. With an intermediate,
    /// `root.key` may be absent (kept offline); when present it is checked too.
    pub fn open(dir: &Path) -> Result<Self, CaError> {
        let meta_path = dir.join(META_FILE);
        let meta: Meta = serde_json::from_str(&store::read(
            &meta_path,
            "the CA metadata, written last by `ca init`",
        )?)
        .map_err(|e| CaError::Invalid {
            path: meta_path.clone(),
            reason: format!("not certvigil CA metadata: {e}"),
        })?;
        if meta.format != META_FORMAT {
            return Err(CaError::Invalid {
                path: meta_path,
                reason: format!(
                    "format {} is not supported (this certvigil reads format {META_FORMAT})",
                    meta.format
                ),
            });
        }

        let root_path = dir.join(ROOT_CERT);
        let root = load_ca_cert(&root_path, "the root CA certificate")?;
        if verify_signature(&x509(&root.der), &spki_of(&root.der)) != SignatureVerdict::Valid {
            return Err(CaError::Invalid {
                path: root_path,
                reason: "the root certificate's self-signature does not verify".into(),
            });
        }
        let root_key_path = dir.join(ROOT_KEY);
        let root_key = match load_key(&root_key_path, &root, &root_path, "the root CA key") {
            Ok(key) => Some(key),
            Err(CaError::Missing { .. }) if meta.intermediate => None,
            Err(e) => return Err(e),
        };

        let (intermediate, key, key_path) = if meta.intermediate {
            let path = dir.join(INTERMEDIATE_CERT);
            let cert = load_ca_cert(&path, "the intermediate CA certificate")?;
            if verify_signature(&x509(&cert.der), &spki_of(&root.der)) != SignatureVerdict::Valid {
                return Err(CaError::Invalid {
                    path,
                    reason: format!("not signed by the root {}", root_path.display()),
                });
            }
            let key_path = dir.join(INTERMEDIATE_KEY);
            let key = load_key(&key_path, &cert, &path, "the intermediate CA key")?;
            (Some(cert), key, key_path)
        } else {
            let key = root_key.ok_or_else(|| CaError::Missing {
                path: root_key_path.clone(),
                what: "the root CA key",
            })?;
            (None, key, root_key_path)
        };
        Ok(Self {
            dir: dir.to_owned(),
            root,
            intermediate,
            key,
            key_path,
        })
    }

    /// Issues one leaf, validated against the root before it is returned.
    pub fn issue(&self, req: &IssueRequest) -> Result<Issued, CaError> {
        let profile = req.profile;
        if req.lifetime < Duration::from_secs(60) {
            return Err(CaError::Request(format!(
                "lifetime {}s is too short (at least 60 s)",
                req.lifetime.as_secs()
            )));
        }
        for id in &req.identifiers {
            if let Identifier::Dns(name) = id {
                check_dns_name(name)?;
            }
        }
        if profile.requires_identifiers() && req.identifiers.is_empty() {
            return Err(CaError::Request(format!(
                "profile {profile} needs at least one DNS name or IP address"
            )));
        }
        let common_name = match (&req.common_name, req.identifiers.first()) {
            (Some(cn), _) if !cn.trim().is_empty() => cn.clone(),
            _ if profile.requires_common_name() => {
                return Err(CaError::Request(format!(
                    "profile {profile} needs a common name (the etcd user name)"
                )));
            }
            (_, Some(first)) => first.to_string(),
            (_, None) => {
                return Err(CaError::Request(format!(
                    "profile {profile} needs a common name or at least one DNS name or IP address"
                )));
            }
        };

        let (key, key_pem) = match &req.key {
            KeyChoice::Generate(key_type) => KeyPair::generate(*key_type)?,
            KeyChoice::Reuse(pem) => (
                KeyPair::from_pem(pem.expose())
                    .map_err(|reason| CaError::Request(format!("the key to reuse: {reason}")))?,
                pem.clone(),
            ),
        };
        let spki = key
            .spki_der()
            .map_err(CaError::build("encoding the leaf public key"))?;

        let now = certvigil_core::timefmt::unix_now();
        let not_after = now.saturating_add(req.lifetime.as_secs() as i64);
        if not_after > self.not_after() {
            return Err(CaError::Request(format!(
                "a certificate valid until {} would outlive the issuing CA {} (valid until {})",
                certvigil_core::timefmt::rfc3339(not_after),
                self.issuing().summary.subject,
                certvigil_core::timefmt::rfc3339(self.not_after()),
            )));
        }
        let issuing = self.issuing();
        let leaf = cert::build(
            &Spec {
                subject: cert::common_name(&common_name)?,
                subject_spki_der: spki,
                not_before: now - LEAF_BACKDATE.as_secs() as i64,
                not_after,
                kind: Kind::Leaf {
                    server_auth: profile.server_auth(),
                    client_auth: profile.client_auth(),
                    key_encipherment: key.is_rsa(),
                },
                sans: &req.identifiers,
                issuer: Some(IssuerRef {
                    name: &issuing.name,
                    key_id: issuing.key_id.as_deref(),
                    key: &self.key,
                }),
            },
            &key,
        )?;
        let issued = Issued {
            leaf_pem: leaf.pem,
            chain_pem: self
                .intermediate
                .as_ref()
                .map(|c| c.pem.clone())
                .unwrap_or_default(),
            key: key_pem,
        };
        issued.validate(
            &req.identifiers,
            std::slice::from_ref(&self.root.der),
            now,
            0,
        )?;
        Ok(issued)
    }

    fn issuing(&self) -> &CaCert {
        self.intermediate.as_ref().unwrap_or(&self.root)
    }

    /// The directory the CA lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root certificate, DER: the trust anchor to hand to clients and servers.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// The certificate that signs leaves (the intermediate, else the root), to watch its
    /// expiry like any other certificate.
    pub fn issuing_cert(&self) -> &Certificate {
        &self.issuing().summary
    }

    /// The issuing certificate's path on disk.
    pub fn issuing_cert_path(&self) -> PathBuf {
        self.dir.join(if self.intermediate.is_some() {
            INTERMEDIATE_CERT
        } else {
            ROOT_CERT
        })
    }

    /// The issuing key's path on disk.
    pub fn issuing_key_path(&self) -> &Path {
        &self.key_path
    }

    /// The key type of the issuing key.
    pub fn key_type(&self) -> Option<KeyType> {
        self.key.key_type()
    }

    /// Unix seconds at which the CA stops being able to issue: the issuing certificate's end
    /// (or the root's, if that comes first). No leaf is issued beyond it.
    pub fn not_after(&self) -> i64 {
        self.issuing()
            .summary
            .not_after
            .min(self.root.summary.not_after)
    }
}

fn x509(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der)
        .expect("parsed once already in load_ca_cert")
        .1
}

fn spki_of(der: &[u8]) -> Vec<u8> {
    x509(der).public_key().raw.to_vec()
}

fn load_ca_cert(path: &Path, what: &'static str) -> Result<CaCert, CaError> {
    let pem = store::read(path, what)?;
    let decoded = decode(pem.as_bytes(), &DecodeOptions::default());
    let der = match decoded.certs.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(CaError::Invalid {
                path: path.to_owned(),
                reason: "holds no certificate".into(),
            });
        }
        more => {
            return Err(CaError::Invalid {
                path: path.to_owned(),
                reason: format!("holds {} certificates, expected one", more.len()),
            });
        }
    };
    parse_ca_cert(path, der, pem)
}

fn parse_ca_cert(path: &Path, der: Vec<u8>, pem: String) -> Result<CaCert, CaError> {
    let invalid = |reason: String| CaError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let summary =
        Certificate::from_der(&der).map_err(|e| invalid(format!("does not parse: {e}")))?;
    let can_sign = summary
        .profile
        .key_usage
        .is_none_or(|ku| ku & certvigil_core::cert::key_usage::KEY_CERT_SIGN != 0);
    if !summary.profile.is_ca || !can_sign {
        return Err(invalid(format!(
            "not a CA certificate ({}): basicConstraints CA is {}, keyCertSign is {}",
            summary.subject,
            summary.profile.is_ca,
            if can_sign { "allowed" } else { "missing" }
        )));
    }
    let parsed = x509_cert::Certificate::from_der(&der)
        .map_err(|e| invalid(format!("does not parse: {e}")))?;
    let name = parsed.tbs_certificate().subject().clone();
    let key_id = x509(&der)
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                Some(ski.0.to_vec())
            }
            _ => None,
        });
    Ok(CaCert {
        der,
        pem,
        name,
        key_id,
        summary,
    })
}

fn load_key(
    path: &Path,
    cert: &CaCert,
    cert_path: &Path,
    what: &'static str,
) -> Result<KeyPair, CaError> {
    let pem = SecretPem::new(store::read(path, what)?);
    let key = KeyPair::from_pem(pem.expose()).map_err(|reason| CaError::Invalid {
        path: path.to_owned(),
        reason,
    })?;
    if key.public_key_bits()
        != x509(&cert.der)
            .public_key()
            .subject_public_key
            .data
            .as_ref()
    {
        return Err(CaError::KeyMismatch {
            key: path.to_owned(),
            cert: cert_path.to_owned(),
        });
    }
    Ok(key)
}

fn check_dns_name(name: &str) -> Result<(), CaError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (1..=63).contains(&label.len())
                && (label == "*" && i == 0
                    || label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        });
    if ok {
        Ok(())
    } else {
        Err(CaError::Request(format!(
            "{name:?} is not a DNS name (ASCII labels of letters, digits and '-'; use punycode for IDNs)"
        )))
    }
}
