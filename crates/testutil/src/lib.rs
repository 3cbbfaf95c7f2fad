//! A throw-away PKI for tests: roots, intermediates and leaves with any validity, names, key
//! type and usage, built with rcgen.

pub mod bind;
pub mod etcd;
pub mod pebble;
pub mod servers;

pub use rcgen;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa2048,
    Ed25519,
}

impl KeyKind {
    fn generate(self) -> KeyPair {
        let key = match self {
            Self::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Self::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            Self::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        };
        key.expect("key generation")
    }

    pub fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// A certificate with its private key.
pub struct Issued {
    pub der: Vec<u8>,
    pub pem: String,
    pub key: KeyPair,
}

impl Issued {
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// A CA that can sign certificates.
pub struct Ca {
    pub cert: Issued,
    issuer: Issuer<'static, KeyPair>,
}

/// What a certificate should look like; defaults are a valid 90-day ECDSA server leaf.
#[derive(Clone, Debug)]
pub struct Spec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_names: Vec<std::net::IpAddr>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key: KeyKind,
    pub server_auth: bool,
    pub client_auth: bool,
    pub serial: Option<Vec<u8>>,
    pub organization: Option<String>,
}

impl Spec {
    pub fn leaf(name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: name.to_owned(),
            dns_names: vec![name.to_owned()],
            ip_names: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(89),
            key: KeyKind::P256,
            server_auth: true,
            client_auth: false,
            serial: None,
            organization: None,
        }
    }

    pub fn ca(name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            dns_names: Vec::new(),
            not_before: now - Duration::days(30),
            not_after: now + Duration::days(3650),
            server_auth: false,
            ..Self::leaf(name)
        }
    }

    /// Valid from `from_now_days` to `to_now_days`, relative to now.
    pub fn valid_days(mut self, from_now_days: i64, to_now_days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now + Duration::days(from_now_days);
        self.not_after = now + Duration::days(to_now_days);
        self
    }

    pub fn key(mut self, key: KeyKind) -> Self {
        self.key = key;
        self
    }

    fn params(&self, ca: bool) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(org) = &self.organization {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        params.distinguished_name = dn;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        for name in &self.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into().expect("dns")));
        }
        for ip in &self.ip_names {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        if let Some(serial) = &self.serial {
            params.serial_number = Some(SerialNumber::from_slice(serial));
        }
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        } else {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            if self.server_auth {
                params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth);
            }
            if self.client_auth {
                params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth);
            }
            params.use_authority_key_identifier_extension = true;
        }
        params
    }
}

impl Ca {
    pub fn root(spec: &Spec) -> Self {
        let key = spec.key.generate();
        let params = spec.params(true);
        let cert = params.self_signed(&key).expect("self-signed root");
        Self::from_parts(cert, params, key)
    }

    pub fn intermediate(&self, spec: &Spec) -> Self {
        let key = spec.key.generate();
        let mut params = spec.params(true);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Self::from_parts(cert, params, key)
    }

    fn from_parts(cert: rcgen::Certificate, params: CertificateParams, key: KeyPair) -> Self {
        let key_copy = KeyPair::from_pem(&key.serialize_pem()).expect("key round trip");
        Self {
            cert: Issued {
                der: cert.der().to_vec(),
                pem: cert.pem(),
                key: key_copy,
            },
            issuer: Issuer::new(params, key),
        }
    }

    pub fn issue(&self, spec: &Spec) -> Issued {
        let key = spec.key.generate();
        self.issue_with_key(spec, key)
    }

    /// A CRL signed by this CA, valid between the two offsets (days from now), revoking
    /// `revoked` serials.
    pub fn crl(&self, this_update_days: i64, next_update_days: i64, revoked: &[&[u8]]) -> String {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now + Duration::days(this_update_days),
            next_update: now + Duration::days(next_update_days),
            crl_number: SerialNumber::from_slice(&[7]),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - Duration::days(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("crl")
            .pem()
            .expect("crl pem")
    }

    pub fn issue_with_key(&self, spec: &Spec, key: KeyPair) -> Issued {
        let cert = spec
            .params(false)
            .signed_by(&key, &self.issuer)
            .expect("leaf");
        Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
        }
    }
}

/// A self-signed leaf (not a CA).
pub fn self_signed_leaf(spec: &Spec) -> Issued {
    let key = spec.key.generate();
    let cert = spec
        .params(false)
        .self_signed(&key)
        .expect("self-signed leaf");
    Issued {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key,
    }
}

/// A root, an intermediate under it, and helpers to issue leaves from the intermediate.
pub struct Pki {
    pub root: Ca,
    pub intermediate: Ca,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let root = Ca::root(&Spec::ca(&format!("{name} Root CA")));
        let intermediate = root.intermediate(&Spec::ca(&format!("{name} Intermediate CA")));
        Self { root, intermediate }
    }

    pub fn leaf(&self, spec: &Spec) -> Issued {
        self.intermediate.issue(spec)
    }

    /// leaf + intermediate, as certbot's fullchain.pem.
    pub fn fullchain(&self, leaf: &Issued) -> String {
        format!("{}{}", leaf.pem, self.intermediate.cert.pem)
    }
}
