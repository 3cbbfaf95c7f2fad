//! Readable renderings of every extension, for `certvigil inspect`.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::cert::{hex, rfc4514};
use crate::oid;

#[derive(Clone, Debug)]
pub struct ExtensionView {
    pub oid: String,
    pub name: String,
    pub critical: bool,
    pub value: String,
}

pub fn extensions(der: &[u8]) -> Vec<ExtensionView> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    cert.extensions()
        .iter()
        .map(|ext| {
            let oid = ext.oid.to_id_string();
            ExtensionView {
                name: oid::extension_name(&oid)
                    .unwrap_or("Unknown extension")
                    .to_owned(),
                critical: ext.critical,
                value: render(ext.parsed_extension(), ext.value),
                oid,
            }
        })
        .collect()
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        GeneralName::DirectoryName(dn) => format!("DirName:{}", rfc4514(dn)),
        GeneralName::IPAddress(ip) => match ip.len() {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default()).to_string(),
            16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default()).to_string(),
            _ => format!("IP:{}", hex(ip)),
        },
        other => format!("{other:?}"),
    }
}

fn render(parsed: &ParsedExtension<'_>, raw: &[u8]) -> String {
    match parsed {
        ParsedExtension::BasicConstraints(bc) => match (bc.ca, bc.path_len_constraint) {
            (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
            (true, None) => "CA:TRUE".to_owned(),
            (false, _) => "CA:FALSE".to_owned(),
        },
        ParsedExtension::KeyUsage(ku) => crate::cert::key_usage::NAMES
            .iter()
            .filter(|(bit, _)| ku.flags & bit != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(", "),
        ParsedExtension::ExtendedKeyUsage(eku) => {
            let mut names = Vec::new();
            let known = [
                (eku.server_auth, "TLS Web Server Authentication"),
                (eku.client_auth, "TLS Web Client Authentication"),
                (eku.code_signing, "Code Signing"),
                (eku.email_protection, "E-mail Protection"),
                (eku.time_stamping, "Time Stamping"),
                (eku.ocsp_signing, "OCSP Signing"),
                (eku.any, "Any Extended Key Usage"),
            ];
            names.extend(
                known
                    .iter()
                    .filter(|(set, _)| *set)
                    .map(|(_, n)| (*n).to_owned()),
            );
            names.extend(eku.other.iter().map(|o| {
                let id = o.to_id_string();
                oid::eku_name(&id).map_or(id, str::to_owned)
            }));
            names.join(", ")
        }
        ParsedExtension::SubjectAlternativeName(san) => san
            .general_names
            .iter()
            .map(general_name)
            .collect::<Vec<_>>()
            .join(", "),
        ParsedExtension::SubjectKeyIdentifier(ski) => colon_hex(ski.0),
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki
            .key_identifier
            .as_ref()
            .map_or_else(String::new, |k| colon_hex(k.0)),
        ParsedExtension::AuthorityInfoAccess(aia) => aia
            .accessdescs
            .iter()
            .map(|d| {
                let method = match d.access_method.to_id_string().as_str() {
                    "1.3.6.1.5.5.7.48.1" => "OCSP".to_owned(),
                    "1.3.6.1.5.5.7.48.2" => "CA Issuers".to_owned(),
                    other => other.to_owned(),
                };
                format!("{method} - {}", general_name(&d.access_location))
            })
            .collect::<Vec<_>>()
            .join(", "),
        ParsedExtension::CRLDistributionPoints(points) => points
            .iter()
            .filter_map(|p| match &p.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(
                    names
                        .iter()
                        .map(general_name)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", "),
        ParsedExtension::CertificatePolicies(policies) => policies
            .iter()
            .map(|p| p.policy_id.to_id_string())
            .collect::<Vec<_>>()
            .join(", "),
        ParsedExtension::SCT(scts) => format!("{} signed certificate timestamps", scts.len()),
        _ => format!("{} bytes: {}", raw.len(), hex(&raw[..raw.len().min(32)])),
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
