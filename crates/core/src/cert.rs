//! The certificate model: a compact, owned summary of everything the checks and outputs need.
//!
//! A host can hold a hundred thousand certificates, so the summary keeps no DER. The public key
//! is kept only for certificates that can issue others (the issuer side of a signature check).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use crate::error::ParseError;
use crate::oid;

pub type Fingerprint = [u8; 32];

/// Identity of a public key (truncated SHA-256 of its bits): pairs certificates with keys.
pub type KeyId = [u8; 16];

pub(crate) fn key_id(public_key_bits: &[u8]) -> KeyId {
    let mut id = [0; 16];
    id.copy_from_slice(&sha256(public_key_bits)[..16]);
    id
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Curve {
    P192,
    P224,
    P256,
    P384,
    P521,
    Secp256k1,
    BrainpoolP256r1,
    BrainpoolP384r1,
    BrainpoolP512r1,
    Sm2,
    Other(Box<str>),
}

impl Curve {
    pub fn bits(&self) -> u32 {
        match self {
            Self::P192 => 192,
            Self::P224 => 224,
            Self::P256 | Self::Secp256k1 | Self::BrainpoolP256r1 | Self::Sm2 => 256,
            Self::P384 | Self::BrainpoolP384r1 => 384,
            Self::P521 => 521,
            Self::BrainpoolP512r1 => 512,
            Self::Other(_) => 0,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P192 => "P-192",
            Self::P224 => "P-224",
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::Secp256k1 => "secp256k1",
            Self::BrainpoolP256r1 => "brainpoolP256r1",
            Self::BrainpoolP384r1 => "brainpoolP384r1",
            Self::BrainpoolP512r1 => "brainpoolP512r1",
            Self::Sm2 => "SM2",
            Self::Other(oid) => oid,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    Rsa,
    RsaPss,
    Ec(Curve),
    Ed25519,
    Ed448,
    Dsa,
    Unknown(Box<str>),
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa => f.write_str("RSA"),
            Self::RsaPss => f.write_str("RSA-PSS"),
            Self::Ec(Curve::Sm2) => f.write_str("SM2"),
            Self::Ec(curve) => write!(f, "ECDSA {curve}"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Ed448 => f.write_str("Ed448"),
            Self::Dsa => f.write_str("DSA"),
            Self::Unknown(oid) => write!(f, "unknown ({oid})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlgorithm {
    Md2,
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    pub fn is_weak(self) -> bool {
        matches!(self, Self::Md2 | Self::Md5 | Self::Sha1)
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Md2 => "MD2",
            Self::Md5 => "MD5",
            Self::Sha1 => "SHA1",
            Self::Sha224 => "SHA224",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureAlgorithm {
    RsaPkcs1(HashAlgorithm),
    RsaPss(HashAlgorithm),
    Ecdsa(HashAlgorithm),
    Ed25519,
    Ed448,
    Sm2Sm3,
    Dsa(HashAlgorithm),
    Other(Box<str>),
}

impl SignatureAlgorithm {
    pub fn hash(&self) -> Option<HashAlgorithm> {
        match self {
            Self::RsaPkcs1(h) | Self::RsaPss(h) | Self::Ecdsa(h) | Self::Dsa(h) => Some(*h),
            _ => None,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    /// The names `openssl x509 -text` prints, so operators recognise them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HashAlgorithm as H;
        match self {
            Self::RsaPkcs1(H::Md2) => f.write_str("md2WithRSAEncryption"),
            Self::RsaPkcs1(H::Md5) => f.write_str("md5WithRSAEncryption"),
            Self::RsaPkcs1(h) => write!(f, "{}WithRSAEncryption", h.to_string().to_lowercase()),
            Self::RsaPss(h) => write!(f, "rsassaPss-{h}"),
            Self::Ecdsa(h) => write!(f, "ecdsa-with-{h}"),
            Self::Ed25519 => f.write_str("ED25519"),
            Self::Ed448 => f.write_str("ED448"),
            Self::Sm2Sm3 => f.write_str("SM2-with-SM3"),
            Self::Dsa(h) => write!(f, "dsa_with_{h}"),
            Self::Other(oid) => write!(f, "unknown ({oid})"),
        }
    }
}

/// KeyUsage bits, in the order of RFC 5280 §4.2.1.3.
pub mod key_usage {
    pub const DIGITAL_SIGNATURE: u16 = 1 << 0;
    pub const NON_REPUDIATION: u16 = 1 << 1;
    pub const KEY_ENCIPHERMENT: u16 = 1 << 2;
    pub const DATA_ENCIPHERMENT: u16 = 1 << 3;
    pub const KEY_AGREEMENT: u16 = 1 << 4;
    pub const KEY_CERT_SIGN: u16 = 1 << 5;
    pub const CRL_SIGN: u16 = 1 << 6;
    pub const ENCIPHER_ONLY: u16 = 1 << 7;
    pub const DECIPHER_ONLY: u16 = 1 << 8;

    pub const NAMES: [(u16, &str); 9] = [
        (DIGITAL_SIGNATURE, "Digital Signature"),
        (NON_REPUDIATION, "Non Repudiation"),
        (KEY_ENCIPHERMENT, "Key Encipherment"),
        (DATA_ENCIPHERMENT, "Data Encipherment"),
        (KEY_AGREEMENT, "Key Agreement"),
        (KEY_CERT_SIGN, "Certificate Sign"),
        (CRL_SIGN, "CRL Sign"),
        (ENCIPHER_ONLY, "Encipher Only"),
        (DECIPHER_ONLY, "Decipher Only"),
    ];
}

/// The extended key usages the role checks care about; anything else is kept as an OID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExtendedKeyUsage {
    pub any: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Other purposes by OID; boxed because almost no certificate has any.
    pub other: Option<Box<[Box<str>]>>,
}

impl ExtendedKeyUsage {
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.server_auth {
            names.push("serverAuth".to_owned());
        }
        if self.client_auth {
            names.push("clientAuth".to_owned());
        }
        if self.any {
            names.push("anyExtendedKeyUsage".to_owned());
        }
        for oid in self.other.iter().flatten() {
            names.push(oid::eku_name(oid).map_or_else(|| oid.to_string(), str::to_owned));
        }
        names
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    Dns(Box<str>),
    Ip(std::net::IpAddr),
    Email(Box<str>),
    Uri(Box<str>),
    Other(Box<str>),
}

impl SubjectAltName {
    pub fn as_ref(&self) -> SanRef<'_> {
        match self {
            Self::Dns(name) => SanRef::Dns(name),
            Self::Ip(ip) => SanRef::Ip(*ip),
            Self::Email(email) => SanRef::Email(email),
            Self::Uri(uri) => SanRef::Uri(uri),
            Self::Other(other) => SanRef::Other(other),
        }
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// A serial number: its magnitude and sign. RFC 5280 caps serials at 20 octets, so they are
/// kept inline; longer, non-conforming ones go to the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    Inline {
        len: u8,
        negative: bool,
        bytes: [u8; 20],
    },
    Long {
        negative: bool,
        bytes: Box<[u8]>,
    },
}

impl Serial {
    /// `magnitude` is big-endian; negative serials are not allowed by RFC 5280 but exist.
    pub fn new(magnitude: &[u8], negative: bool) -> Self {
        if magnitude.len() <= 20 {
            let mut bytes = [0; 20];
            bytes[..magnitude.len()].copy_from_slice(magnitude);
            Self::Inline {
                len: magnitude.len() as u8,
                negative,
                bytes,
            }
        } else {
            Self::Long {
                negative,
                bytes: magnitude.into(),
            }
        }
    }

    /// The magnitude, big-endian, without leading zero bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes, .. } => &bytes[..usize::from(*len)],
            Self::Long { bytes, .. } => bytes,
        }
    }

    pub fn is_negative(&self) -> bool {
        match self {
            Self::Inline { negative, .. } | Self::Long { negative, .. } => *negative,
        }
    }
}

/// Saved as one byte string, the sign (0 or 1) then the magnitude, and rebuilt through
/// [`Serial::new`], so no saved length can point past the inline array.
impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut saved = Vec::with_capacity(1 + self.as_bytes().len());
        saved.push(u8::from(self.is_negative()));
        saved.extend_from_slice(self.as_bytes());
        serializer.serialize_bytes(&saved)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Serial;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sign byte and serial number bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Serial, E> {
                match v.split_first() {
                    Some((&sign @ (0 | 1), magnitude)) => Ok(Serial::new(magnitude, sign == 1)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// Reading saved summaries back. A hundred thousand leaves name a handful of issuers and
/// profiles; each decoding thread keeps the ones it has met, so a summary points at an existing
/// copy instead of allocating one that the inventory's [`NameTable`] would drop at once. Those
/// short-lived copies were what kept jemalloc slabs a quarter full after a daemon loaded its
/// saved files: 7 MB more resident than the same files read from disk.
///
/// [`NameTable`]: crate::inventory::NameTable
pub mod saved {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer};

    use super::{Profile, fmt};

    /// More distinct values than this on one thread is not a handful: start over.
    const KEPT: usize = 1024;

    /// Lets go of this thread's copies, so the name table can prune what no certificate
    /// uses any more. Called on every decoding thread once a saved cache is read.
    pub fn forget() {
        ISSUERS.with(|kept| kept.borrow_mut().clear());
        PROFILES.with(|kept| kept.borrow_mut().clear());
    }

    thread_local! {
        static ISSUERS: RefCell<HashSet<Arc<str>>> = RefCell::new(HashSet::new());
        static PROFILES: RefCell<HashSet<Arc<Profile>>> = RefCell::new(HashSet::new());
    }

    fn shared<T: ?Sized + Eq + std::hash::Hash>(
        kept: &RefCell<HashSet<Arc<T>>>,
        value: &T,
        make: impl FnOnce() -> Arc<T>,
    ) -> Arc<T> {
        let mut kept = kept.borrow_mut();
        if let Some(known) = kept.get(value) {
            return known.clone();
        }
        if kept.len() >= KEPT {
            kept.clear();
        }
        let made = make();
        kept.insert(made.clone());
        made
    }

    pub(super) fn issuer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Arc<str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an issuer name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Arc<str>, E> {
                Ok(ISSUERS.with(|kept| shared(kept, name, || Arc::from(name))))
            }
        }
        deserializer.deserialize_str(Name)
    }

    pub(super) fn profile<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<Profile>, D::Error> {
        let profile = Profile::deserialize(deserializer)?;
        Ok(PROFILES.with(|kept| shared(kept, &profile, || Arc::new(profile.clone()))))
    }
}

/// The SubjectPublicKeyInfo of a certificate that can issue others, and its SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuerKey {
    pub der: Arc<[u8]>,
    pub id: Fingerprint,
    /// Parsed on the first signature check, for the others.
    #[serde(skip)]
    pub prepared: crate::verify::PreparedKey,
}

/// Subject alternative names packed into one string ("DNS:a\nIP:192.0.2.1"): a hundred
/// thousand certificates with two or three names each would otherwise cost four allocations
/// apiece.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sans(Box<str>);

/// One name out of [`Sans`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanRef<'a> {
    Dns(&'a str),
    Ip(std::net::IpAddr),
    Email(&'a str),
    Uri(&'a str),
    /// Anything else, in its display form.
    Other(&'a str),
}

impl Sans {
    pub fn pack(names: &[SubjectAltName]) -> Self {
        let mut packed = String::new();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                packed.push('\n');
            }
            // Control characters cannot be part of a name a client would match; they would
            // only break the packing.
            let shown = name.to_string();
            packed.extend(shown.chars().map(|c| if c.is_control() { '?' } else { c }));
        }
        Self(packed.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = SanRef<'_>> {
        self.0.split('\n').filter(|s| !s.is_empty()).map(|entry| {
            if let Some(dns) = entry.strip_prefix("DNS:") {
                SanRef::Dns(dns)
            } else if let Some(ip) = entry.strip_prefix("IP:").and_then(|ip| ip.parse().ok()) {
                SanRef::Ip(ip)
            } else if let Some(email) = entry.strip_prefix("email:") {
                SanRef::Email(email)
            } else if let Some(uri) = entry.strip_prefix("URI:") {
                SanRef::Uri(uri)
            } else {
                SanRef::Other(entry)
            }
        })
    }
}

impl fmt::Display for SanRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "DNS:{name}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Email(email) => write!(f, "email:{email}"),
            Self::Uri(uri) => write!(f, "URI:{uri}"),
            Self::Other(other) => f.write_str(other),
        }
    }
}

/// An owned, compact summary of one X.509 certificate.
/// Serializable for the file cache saved between runs ([`Serial`] keeps its own invariant).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Certificate {
    pub fingerprint: Fingerprint,
    pub serial: Serial,
    /// RFC 4514 string, as `openssl x509 -nameopt RFC2253` prints it.
    pub subject: Arc<str>,
    #[serde(deserialize_with = "saved::issuer")]
    pub issuer: Arc<str>,
    /// Hashes of the DER-encoded names, for issuer lookups without string compares.
    pub subject_id: u64,
    pub issuer_id: u64,
    pub not_before: i64,
    pub not_after: i64,
    pub sans: Sans,
    /// SHA-256 over the subjectPublicKey bits; equal for a certificate and its private key.
    pub key_id: KeyId,
    /// Algorithms, constraints and usages, shared with every certificate of the same profile.
    #[serde(deserialize_with = "saved::profile")]
    pub profile: Arc<Profile>,
    /// Hashes of the key identifier extensions: only compared, never shown, and a collision
    /// only costs a signature check (a link is accepted on the signature), so 4 bytes do. They
    /// keep a certificate at 176 bytes, one allocation class below 192 with its `Arc` counts.
    pub subject_key_id: Option<NonZeroU32>,
    pub authority_key_id: Option<NonZeroU32>,
    /// The public key, kept only for certificates that may sign others.
    pub issuer_spki: Option<Box<IssuerKey>>,
}

/// What a certificate has in common with all others its CA issued from the same template:
/// a hundred thousand certificates have a handful of these, so the inventory keeps one copy of
/// each ([`crate::inventory::NameTable`]) and a certificate points at it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    pub key_algorithm: KeyAlgorithm,
    pub key_bits: u32,
    pub signature_algorithm: SignatureAlgorithm,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub key_usage: Option<u16>,
    pub extended_key_usage: Option<ExtendedKeyUsage>,
    pub version: u32,
}

impl Certificate {
    /// Parses one DER certificate. Bytes after the certificate are an error: a DER file with
    /// trailing garbage is corrupt, not "a certificate and some noise".
    pub fn from_der(der: &[u8]) -> Result<Self, ParseError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ParseError::Certificate(e.to_string().into()))?;
        if !rest.is_empty() {
            return Err(ParseError::TrailingData(rest.len()));
        }
        Ok(Self::from_parsed(&cert, &der[..der.len() - rest.len()]))
    }

    /// Builds the summary from an already parsed certificate and its exact DER.
    pub fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Self {
        let fingerprint = sha256(der);
        let (serial, serial_negative) = serial_magnitude(cert.tbs_certificate.raw_serial());
        let subject = cert.subject();
        let issuer = cert.issuer();
        let spki = cert.public_key();
        let (key_algorithm, key_bits) = key_algorithm(spki);
        let pss_hash = pss_hash(cert);
        let signature_algorithm =
            oid::signature_from_oid(&oid::dotted(&cert.signature_algorithm.algorithm), pss_hash);

        let mut profile = Profile {
            key_algorithm,
            key_bits,
            signature_algorithm,
            is_ca: false,
            path_len: None,
            key_usage: None,
            extended_key_usage: None,
            version: cert.version().0 + 1,
        };
        let extensions = read_extensions(cert, &mut profile);
        let mut summary = Self {
            fingerprint,
            serial: Serial::new(&serial, serial_negative),
            subject: rfc4514(subject).into(),
            issuer: rfc4514(issuer).into(),
            subject_id: name_id(subject.as_raw()),
            issuer_id: name_id(issuer.as_raw()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sans: extensions.sans,
            key_id: key_id(&spki.subject_public_key.data),
            profile: Arc::new(profile),
            subject_key_id: extensions.subject_key_id,
            authority_key_id: extensions.authority_key_id,
            issuer_spki: None,
        };
        if summary.profile.is_ca || summary.is_self_issued() {
            summary.issuer_spki = Some(Box::new(IssuerKey {
                der: spki.raw.into(),
                id: sha256(spki.raw),
                prepared: Default::default(),
            }));
        }
        summary
    }

    /// Subject and issuer are the same name (and key identifiers, when present, agree).
    pub fn is_self_issued(&self) -> bool {
        self.subject_id == self.issuer_id
            && match (&self.subject_key_id, &self.authority_key_id) {
                (Some(ski), Some(aki)) => ski == aki,
                _ => true,
            }
    }

    pub fn lifetime_secs(&self) -> i64 {
        self.not_after - self.not_before
    }

    pub fn serial_hex(&self) -> String {
        let hex = hex(self.serial.as_bytes());
        let hex = if hex.is_empty() { "00".to_owned() } else { hex };
        if self.serial.is_negative() {
            format!("-{hex}")
        } else {
            hex
        }
    }

    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }

    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.sans.iter().filter_map(|san| match san {
            SanRef::Dns(name) => Some(name),
            _ => None,
        })
    }

    /// Could `issuer` have signed `self`, judging by names and key identifiers only?
    pub fn may_be_issued_by(&self, issuer: &Self) -> bool {
        self.issuer_id == issuer.subject_id
            && match (&self.authority_key_id, &issuer.subject_key_id) {
                (Some(aki), Some(ski)) => aki == ski,
                _ => true,
            }
    }

    /// The subject's common name (the most specific one), as written in [`Self::subject`].
    pub fn common_name(&self) -> Option<&str> {
        rdn_value(&self.subject, "CN=")
    }

    /// A short human label: the CN, else the first SAN, else the subject.
    pub fn label(&self) -> String {
        if let Some(cn) = self.common_name() {
            return cn.to_owned();
        }
        if let Some(san) = self.sans.iter().next() {
            return san.to_string();
        }
        self.subject.to_string()
    }
}

/// What a certificate's extensions say beyond its [`Profile`].
struct Extensions {
    sans: Sans,
    subject_key_id: Option<NonZeroU32>,
    authority_key_id: Option<NonZeroU32>,
}

/// Reads the extensions: usages and constraints into `profile`, the rest returned.
fn read_extensions(cert: &X509Certificate<'_>, profile: &mut Profile) -> Extensions {
    let mut sans = Vec::new();
    let mut subject_key_id = None;
    let mut authority_key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                profile.is_ca = bc.ca;
                profile.path_len = bc.path_len_constraint;
            }
            ParsedExtension::KeyUsage(ku) => profile.key_usage = Some(ku.flags),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let mut other: Vec<Box<str>> = Vec::new();
                let known = [
                    (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                    (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                    (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                    (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                ];
                other.extend(
                    known
                        .iter()
                        .filter(|(set, _)| *set)
                        .map(|(_, o)| (*o).into()),
                );
                other.extend(eku.other.iter().map(|o| o.to_id_string().into()));
                profile.extended_key_usage = Some(ExtendedKeyUsage {
                    any: eku.any,
                    server_auth: eku.server_auth,
                    client_auth: eku.client_auth,
                    other: (!other.is_empty()).then(|| other.into_boxed_slice()),
                });
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                sans.extend(san.general_names.iter().map(subject_alt_name));
            }
            ParsedExtension::SubjectKeyIdentifier(ski) => {
                subject_key_id = Some(key_identifier_id(ski.0));
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|k| key_identifier_id(k.0));
            }
            _ => {}
        }
    }
    Extensions {
        sans: Sans::pack(&sans),
        subject_key_id,
        authority_key_id,
    }
}

/// The value of the first attribute `prefix` (e.g. `CN=`) in an RFC 4514 string, escapes kept.
pub fn rdn_value<'a>(dn: &'a str, prefix: &str) -> Option<&'a str> {
    let bytes = dn.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        let at_end = i == bytes.len();
        if at_end || bytes[i] == b',' || bytes[i] == b'+' {
            let part = &dn[start..i];
            if let Some(value) = part.strip_prefix(prefix) {
                return Some(value);
            }
            start = i + 1;
        } else if bytes[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    None
}

fn subject_alt_name(name: &GeneralName<'_>) -> SubjectAltName {
    match name {
        GeneralName::DNSName(dns) => SubjectAltName::Dns((*dns).into()),
        GeneralName::RFC822Name(email) => SubjectAltName::Email((*email).into()),
        GeneralName::URI(uri) => SubjectAltName::Uri((*uri).into()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let octets: [u8; 4] = (*bytes).try_into().unwrap_or_default();
                SubjectAltName::Ip(octets.into())
            }
            16 => {
                let octets: [u8; 16] = (*bytes).try_into().unwrap_or_default();
                SubjectAltName::Ip(octets.into())
            }
            _ => SubjectAltName::Other(format!("IP:<invalid {} bytes>", bytes.len()).into()),
        },
        GeneralName::DirectoryName(name) => {
            SubjectAltName::Other(format!("DirName:{}", rfc4514(name)).into())
        }
        GeneralName::OtherName(oid, _) => SubjectAltName::Other(format!("othername:{oid}").into()),
        GeneralName::RegisteredID(oid) => {
            SubjectAltName::Other(format!("Registered ID:{oid}").into())
        }
        other => SubjectAltName::Other(format!("{other:?}").into()),
    }
}

fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> (KeyAlgorithm, u32) {
    let alg_oid = oid::dotted(&spki.algorithm.algorithm);
    if alg_oid == oid::EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map_or(Curve::Other("implicit".into()), |o| {
                oid::curve_from_oid(&oid::dotted(&o))
            });
        let bits = curve.bits();
        return (KeyAlgorithm::Ec(curve), bits);
    }
    let Some(alg) = oid::key_algorithm_from_oid(&alg_oid) else {
        return (KeyAlgorithm::Unknown(alg_oid.into()), 0);
    };
    let bits = match (&alg, spki.parsed()) {
        (KeyAlgorithm::Rsa | KeyAlgorithm::RsaPss, Ok(PublicKey::RSA(rsa))) => {
            significant_bits(rsa.modulus)
        }
        (KeyAlgorithm::Ec(curve), _) => curve.bits(),
        (KeyAlgorithm::Ed25519, _) => 256,
        (KeyAlgorithm::Ed448, _) => 456,
        (KeyAlgorithm::Dsa, Ok(PublicKey::DSA(_))) => dsa_bits(spki),
        _ => 0,
    };
    (alg, bits)
}

fn dsa_bits(spki: &SubjectPublicKeyInfo<'_>) -> u32 {
    // Dss-Parms ::= SEQUENCE { p INTEGER, q INTEGER, g INTEGER }; the size is that of p.
    use x509_parser::der_parser::der::parse_der_sequence;
    let Some(params) = spki.algorithm.parameters.as_ref() else {
        return 0;
    };
    let Ok((_, seq)) = parse_der_sequence(params.as_bytes()) else {
        // Parameters are the content of the SEQUENCE already: re-wrap is not needed, fall back.
        return 0;
    };
    seq.as_sequence()
        .ok()
        .and_then(|items| items.first())
        .and_then(|p| p.as_slice().ok())
        .map_or(0, significant_bits)
}

pub(crate) fn pss_hash(cert: &X509Certificate<'_>) -> Option<HashAlgorithm> {
    use x509_parser::signature_algorithm::SignatureAlgorithm as Parsed;
    if oid::dotted(&cert.signature_algorithm.algorithm) != oid::RSASSA_PSS {
        return None;
    }
    match Parsed::try_from(&cert.signature_algorithm) {
        Ok(Parsed::RSASSA_PSS(params)) => {
            oid::hash_from_oid(&params.hash_algorithm_oid().to_id_string())
        }
        _ => None,
    }
}

fn significant_bits(be: &[u8]) -> u32 {
    let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(first) => &be[first..],
        None => return 0,
    };
    (trimmed.len() as u32 - 1) * 8 + (8 - trimmed[0].leading_zeros())
}

fn serial_magnitude(raw: &[u8]) -> (Box<[u8]>, bool) {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    if negative {
        // Two's complement negation, so the hex shows the magnitude as OpenSSL does.
        let mut magnitude: Vec<u8> = raw.iter().map(|b| !b).collect();
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        let first = magnitude
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(magnitude.len());
        return (magnitude[first..].into(), true);
    }
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    (raw[first..].into(), false)
}

pub fn fingerprint(der: &[u8]) -> Fingerprint {
    sha256(der)
}

pub(crate) fn sha256(bytes: &[u8]) -> Fingerprint {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// A 64-bit identity for a DER name or key identifier, for issuer lookups. Collisions only cost a wasted
/// signature check: a link is accepted on the signature, never on the name alone.
pub(crate) fn name_id(der: &[u8]) -> u64 {
    let hash = sha256(der);
    u64::from_be_bytes(hash[..8].try_into().unwrap_or_default())
}

/// [`name_id`] for a key identifier, never zero so that `Option` costs nothing.
fn key_identifier_id(der: &[u8]) -> NonZeroU32 {
    NonZeroU32::new((name_id(der) >> 32) as u32).unwrap_or(NonZeroU32::MIN)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Renders a name as RFC 4514 (most specific RDN first), matching OpenSSL's RFC2253 output
/// for printable names; values that are not strings are dumped as `#hex` DER.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = oid::dotted(atv.attr_type());
            match oid::attribute_short_name(&oid) {
                Some(short) => out.push_str(short),
                None => out.push_str(&oid),
            }
            out.push('=');
            match atv.as_str() {
                Ok(value) => escape_rfc4514(value, &mut out),
                Err(_) => {
                    out.push('#');
                    out.push_str(&hex(atv.attr_value().data));
                }
            }
        }
    }
    out
}

fn escape_rfc4514(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hundred thousand of these stay in memory, in the daemon for as long as it runs: a
    /// field that grows the summary should be a deliberate choice. With an `Arc`'s two counts,
    /// 176 bytes fill jemalloc's 192-byte class exactly; 8 more would take the 224-byte one.
    #[test]
    fn a_certificate_summary_stays_small() {
        assert_eq!(size_of::<Certificate>(), 176);
    }

    #[test]
    fn negative_serials_show_their_magnitude() {
        assert_eq!(serial_magnitude(&[0xff]), (vec![1].into(), true));
        assert_eq!(serial_magnitude(&[0x00, 0x80]), (vec![0x80].into(), false));
        assert_eq!(serial_magnitude(&[0xff, 0x00]), (vec![1, 0].into(), true));
    }

    #[test]
    fn significant_bits_ignores_leading_zeros() {
        assert_eq!(significant_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(significant_bits(&[0x01]), 1);
        assert_eq!(significant_bits(&[]), 0);
    }

    #[test]
    fn finds_attribute_values_past_escaped_separators() {
        assert_eq!(rdn_value("CN=a\\,b,O=x", "CN="), Some("a\\,b"));
        assert_eq!(rdn_value("O=x+CN=y,C=z", "CN="), Some("y"));
        assert_eq!(rdn_value("O=x", "CN="), None);
        assert_eq!(rdn_value("", "CN="), None);
    }

    #[test]
    fn sans_pack_and_unpack() {
        let names = [
            SubjectAltName::Dns("a.example".into()),
            SubjectAltName::Ip("2001:db8::1".parse().unwrap()),
            SubjectAltName::Ip("192.0.2.1".parse().unwrap()),
            SubjectAltName::Email("x@example".into()),
            SubjectAltName::Uri("spiffe://t/x".into()),
            SubjectAltName::Dns("evil\nDNS:injected".into()),
            SubjectAltName::Other("IP:<invalid 5 bytes>".into()),
        ];
        let sans = Sans::pack(&names);
        let back: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            back,
            [
                "DNS:a.example",
                "IP:2001:db8::1",
                "IP:192.0.2.1",
                "email:x@example",
                "URI:spiffe://t/x",
                "DNS:evil?DNS:injected",
                "IP:<invalid 5 bytes>"
            ]
        );
        assert!(matches!(sans.iter().nth(1), Some(SanRef::Ip(_))));
        assert!(Sans::pack(&[]).is_empty());
        assert_eq!(Sans::pack(&[]).iter().count(), 0);
    }

    #[test]
    fn escapes_like_rfc4514() {
        let mut out = String::new();
        escape_rfc4514(" a,b+c ", &mut out);
        assert_eq!(out, "\\ a\\,b\\+c\\ ");
    }
}
