//! One certificate builder for every key type: x509-cert assembles the TBS certificate and
//! [`KeyPair::sign`] signs it (rcgen cannot sign SM2, so rcgen is not used to build).

use std::time::{Duration, UNIX_EPOCH};

use certvigil_issue::Identifier;
use der::asn1::{Any, Ia5String, ObjectIdentifier, OctetString};
use der::oid::AssociatedOid;
use der::{Decode, Encode, EncodePem, Tag};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile as BuilderProfile};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};

use crate::CaError;
use crate::key::{BuilderSigner, KeyPair};

const ID_AT_COMMON_NAME: &str = "2.5.4.3";
const ID_KP_SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
const ID_KP_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";

/// What to put into one certificate.
pub(crate) struct Spec<'a> {
    pub(crate) subject: Name,
    pub(crate) subject_spki_der: Vec<u8>,
    /// Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) kind: Kind,
    pub(crate) sans: &'a [Identifier],
    /// The signer; `None` for a self-signed root (then the subject key signs).
    pub(crate) issuer: Option<IssuerRef<'a>>,
}

pub(crate) enum Kind {
    /// A CA certificate; `path_len` as in basicConstraints (RFC 5280 §4.2.1.9).
    Ca { path_len: Option<u8> },
    Leaf {
        server_auth: bool,
        client_auth: bool,
        /// RSA keys also do TLS 1.2 RSA key transport: keyEncipherment (RFC 5280 §4.2.1.3).
        key_encipherment: bool,
    },
}

pub(crate) struct IssuerRef<'a> {
    pub(crate) name: &'a Name,
    /// The issuer certificate's subjectKeyIdentifier, copied into the authorityKeyIdentifier.
    pub(crate) key_id: Option<&'a [u8]>,
    pub(crate) key: &'a KeyPair,
}

/// A signed certificate in both encodings.
pub(crate) struct Built {
    pub(crate) der: Vec<u8>,
    pub(crate) pem: String,
}

/// `CN=<common_name>` as a UTF8String: the form every TLS stack and etcd's user mapping read.
pub(crate) fn common_name(cn: &str) -> Result<Name, CaError> {
    let fail = |e: der::Error| CaError::Request(format!("common name {cn:?}: {e}"));
    let value = Any::new(Tag::Utf8String, cn.as_bytes()).map_err(fail)?;
    let mut rdn = RelativeDistinguishedName::default();
    rdn.insert(AttributeTypeAndValue {
        oid: ObjectIdentifier::new_unwrap(ID_AT_COMMON_NAME),
        value,
    })
    .map_err(fail)?;
    let mut seq = RdnSequence::default();
    seq.push(rdn);
    let der = seq.to_der().map_err(fail)?;
    Name::from_der(&der).map_err(fail)
}

/// A random, positive 16-byte serial (RFC 5280 §4.1.2.2 allows up to 20 octets; CA/B Forum
/// asks for at least 64 random bits). The top bit is cleared so the INTEGER stays positive and
/// the next one set so it always encodes in exactly 16 octets.
pub(crate) fn random_serial() -> Result<[u8; 16], CaError> {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| CaError::build("drawing a random serial")("no randomness".into()))?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

pub(crate) fn build(
    spec: &Spec<'_>,
    subject_key_if_self_signed: &KeyPair,
) -> Result<Built, CaError> {
    let step = |s: &'static str| CaError::build(s);
    let signer_key = spec
        .issuer
        .as_ref()
        .map_or(subject_key_if_self_signed, |i| i.key);
    let signer = BuilderSigner(signer_key);
    signer.check().map_err(step("reading the signing key"))?;

    let spki = SubjectPublicKeyInfoOwned::from_der(&spec.subject_spki_der)
        .map_err(|e| step("reading the subject public key")(e.to_string()))?;
    let validity = Validity::new(unix_time(spec.not_before)?, unix_time(spec.not_after)?);
    let serial = SerialNumber::new(&random_serial()?)
        .map_err(|e| step("encoding the serial")(e.to_string()))?;
    let profile = Plan { spec };
    let mut builder = CertificateBuilder::new(profile, serial, validity, spki)
        .map_err(|e| step("preparing the certificate")(e.to_string()))?;
    let tbs = builder
        .finalize(&signer)
        .map_err(|e| step("encoding the certificate")(e.to_string()))?;
    let signature = signer_key
        .sign(&tbs)
        .map_err(step("signing the certificate"))?;
    let signature = der::asn1::BitString::from_bytes(&signature)
        .map_err(|e| step("encoding the signature")(e.to_string()))?;
    let cert: Certificate = builder
        .assemble(signature, &signer)
        .map_err(|e| step("assembling the certificate")(e.to_string()))?;
    let der = cert
        .to_der()
        .map_err(|e| step("encoding the certificate")(e.to_string()))?;
    let pem = cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| step("encoding the certificate as PEM")(e.to_string()))?;
    Ok(Built { der, pem })
}

fn unix_time(secs: i64) -> Result<Time, CaError> {
    let at = u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or(UNIX_EPOCH);
    Time::try_from(at).map_err(|e| CaError::Request(format!("date {secs} out of range: {e}")))
}

/// Subject, issuer and the extensions, as x509-cert's builder asks for them.
struct Plan<'a> {
    spec: &'a Spec<'a>,
}

impl BuilderProfile for Plan<'_> {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.spec
            .issuer
            .as_ref()
            .map_or_else(|| subject.clone(), |i| i.name.clone())
    }

    fn get_subject(&self) -> Name {
        self.spec.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let spec = self.spec;
        let mut out = Vec::new();
        // RFC 5280 §4.2.1.9: basicConstraints critical in CA certificates; we mark it critical
        // in leaves too, as rcgen and OpenSSL do, so no one can take a leaf for a CA.
        let (ca, path_len, usage) = match spec.kind {
            Kind::Ca { path_len } => (
                true,
                path_len,
                KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature,
            ),
            Kind::Leaf {
                key_encipherment, ..
            } => (
                false,
                None,
                if key_encipherment {
                    KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment
                } else {
                    KeyUsages::DigitalSignature.into()
                },
            ),
        };
        out.push(extension(
            BasicConstraints::OID,
            true,
            &BasicConstraints {
                ca,
                path_len_constraint: path_len,
            },
        )?);
        // RFC 5280 §4.2.1.3: "conforming CAs SHOULD mark this extension as critical".
        out.push(extension(KeyUsage::OID, true, &KeyUsage(usage))?);
        if let Kind::Leaf {
            server_auth,
            client_auth,
            ..
        } = spec.kind
        {
            let mut ekus = Vec::new();
            if server_auth {
                ekus.push(ObjectIdentifier::new_unwrap(ID_KP_SERVER_AUTH));
            }
            if client_auth {
                ekus.push(ObjectIdentifier::new_unwrap(ID_KP_CLIENT_AUTH));
            }
            out.push(extension(
                ExtendedKeyUsage::OID,
                false,
                &ExtendedKeyUsage(ekus),
            )?);
        }
        if !spec.sans.is_empty() {
            let names = spec
                .sans
                .iter()
                .map(|id| match id {
                    Identifier::Dns(name) => Ia5String::new(name).map(GeneralName::DnsName),
                    Identifier::Ip(ip) => Ok(GeneralName::from(*ip)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(extension(
                SubjectAltName::OID,
                false,
                &SubjectAltName(names),
            )?);
        }
        // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        out.push(extension(SubjectKeyIdentifier::OID, false, &ski)?);
        if let Some(key_id) = spec.issuer.as_ref().and_then(|i| i.key_id) {
            let aki = AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(key_id)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            };
            out.push(extension(AuthorityKeyIdentifier::OID, false, &aki)?);
        }
        Ok(out)
    }
}

fn extension(id: ObjectIdentifier, critical: bool, value: &impl Encode) -> der::Result<Extension> {
    Ok(Extension {
        extn_id: id,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}
