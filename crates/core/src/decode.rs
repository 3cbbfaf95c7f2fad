//! Turns the bytes of one file, secret key or handshake into certificates, keys and CRLs.
//!
//! The format is sniffed, never trusted from a file name: PEM (any number of blocks), DER
//! certificate, PKCS#7 bundle, PKCS#12 archive, DER CRL or DER private key. Each part that
//! fails reports its own error and the rest is still returned.

use p12_keystore::Pkcs12Archive;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::asn1::tlv;
use crate::cert::Certificate;
use crate::crl::Crl;
use crate::error::ParseError;
use crate::key::{KeyEncoding, PrivateKey};
use crate::oid;
use crate::pem::{self, PemBlock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Pem,
    Der,
    Pkcs7,
    Pkcs12,
    Crl,
    Key,
    Unknown,
}

#[derive(Debug, Default)]
pub struct DecodeOptions<'a> {
    /// Password for PKCS#12 archives. Without one, the empty password is tried.
    pub pkcs12_password: Option<&'a str>,
    /// Also build each certificate's [`Certificate`] summary from the parse that validates
    /// it (see [`Decoded::summaries`]), so a scan parses every certificate once.
    pub summarize: bool,
}

#[derive(Debug)]
pub struct Decoded {
    pub container: Container,
    /// DER of each certificate, in the order the input lists them.
    pub certs: Vec<Vec<u8>>,
    pub keys: Vec<PrivateKey>,
    /// Private keys present but encrypted: they exist, but cannot be paired.
    pub encrypted_keys: usize,
    pub crls: Vec<Crl>,
    pub errors: Vec<ParseError>,
    /// With [`DecodeOptions::summarize`]: the summary of `certs[i]` at index `i` where the
    /// decoder parsed it anyway (`None` where it did not, e.g. PKCS#12 bags).
    pub summaries: Vec<Option<Certificate>>,
}

impl Decoded {
    fn new(container: Container) -> Self {
        Self {
            container,
            summaries: Vec::new(),
            certs: Vec::new(),
            keys: Vec::new(),
            encrypted_keys: 0,
            crls: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn failed(container: Container, error: ParseError) -> Self {
        let mut out = Self::new(container);
        out.errors.push(error);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.keys.is_empty() && self.crls.is_empty()
    }
}

pub fn decode(data: &[u8], options: &DecodeOptions<'_>) -> Decoded {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Decoded::failed(Container::Unknown, ParseError::Empty);
    }
    if pem::looks_like_pem(data) {
        return decode_pem(data, options);
    }
    if data[0] == 0x30 {
        return decode_der(data, options);
    }
    let printable = data
        .iter()
        .take(4096)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    let error = if printable {
        ParseError::NoPemBlocks
    } else {
        ParseError::UnknownFormat
    };
    Decoded::failed(Container::Unknown, error)
}

fn decode_pem(data: &[u8], options: &DecodeOptions<'_>) -> Decoded {
    let mut out = Decoded::new(Container::Pem);
    let blocks = pem::parse_blocks(data);
    if blocks.is_empty() {
        // A BEGIN marker that is not at the start of a line: PEM quoted inside something else.
        return Decoded::failed(Container::Unknown, ParseError::NoPemBlocks);
    }
    for block in blocks {
        match block {
            Ok(block) => decode_pem_block(block, options, &mut out),
            Err(e) => out.errors.push(e),
        }
    }
    out
}

fn decode_pem_block(block: PemBlock, options: &DecodeOptions<'_>, out: &mut Decoded) {
    let at = |e: ParseError| ParseError::Pem {
        block: block.index,
        line: block.line,
        reason: format!("{}: {e}", block.label).into(),
    };
    match block.label.as_str() {
        "CERTIFICATE" | "X509 CERTIFICATE" => {
            match check_certificate(&block.der, options.summarize) {
                Ok(summary) => out.push_cert(block.der, summary, options),
                Err(e) => out.errors.push(at(e)),
            }
        }
        // OpenSSL's trusted form: the certificate followed by trust settings.
        "TRUSTED CERTIFICATE" => match X509Certificate::from_der(&block.der) {
            Ok((rest, _)) => {
                let len = block.der.len() - rest.len();
                out.push_cert(block.der[..len].to_vec(), None, options);
            }
            Err(e) => out
                .errors
                .push(at(ParseError::Certificate(e.to_string().into()))),
        },
        "PKCS7" | "CERTIFICATE CHAIN" => match pkcs7_certificates(&block.der) {
            Ok(certs) => certs
                .into_iter()
                .for_each(|der| out.push_cert(der, None, options)),
            Err(e) => out.errors.push(at(e)),
        },
        "X509 CRL" => match Crl::from_der(&block.der) {
            Ok(crl) => out.crls.push(crl),
            Err(e) => out.errors.push(at(e)),
        },
        "PRIVATE KEY" => push_key(out, &block.der, KeyEncoding::Pkcs8, at),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" if block.encrypted_headers => out.encrypted_keys += 1,
        "RSA PRIVATE KEY" => push_key(out, &block.der, KeyEncoding::Pkcs1, at),
        "EC PRIVATE KEY" => push_key(out, &block.der, KeyEncoding::Sec1, at),
        "ENCRYPTED PRIVATE KEY" => out.encrypted_keys += 1,
        "PKCS12" => {
            let inner = decode_pkcs12(&block.der, options);
            merge(out, inner);
        }
        // CSRs, public keys, parameters: legitimate neighbours of certificates, not ours.
        _ => {}
    }
}

fn push_key(
    out: &mut Decoded,
    der: &[u8],
    encoding: KeyEncoding,
    at: impl Fn(ParseError) -> ParseError,
) {
    match PrivateKey::from_der(der, encoding) {
        Ok(key) => out.keys.push(key),
        Err(e) => out.errors.push(at(e)),
    }
}

fn merge(out: &mut Decoded, inner: Decoded) {
    // Summaries stay aligned with `certs`: pad before appending the inner ones.
    if !inner.summaries.is_empty() || !out.summaries.is_empty() {
        out.summaries.resize_with(out.certs.len(), || None);
        let mut inner_summaries = inner.summaries;
        inner_summaries.resize_with(inner.certs.len(), || None);
        out.summaries.extend(inner_summaries);
    }
    out.certs.extend(inner.certs);
    out.keys.extend(inner.keys);
    out.crls.extend(inner.crls);
    out.errors.extend(inner.errors);
    out.encrypted_keys += inner.encrypted_keys;
}

/// Parses `der` to prove it is one whole certificate; with `summarize`, keeps what the parse
/// found.
fn check_certificate(der: &[u8], summarize: bool) -> Result<Option<Certificate>, ParseError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| ParseError::Certificate(e.to_string().into()))?;
    if !rest.is_empty() {
        return Err(ParseError::TrailingData(rest.len()));
    }
    Ok(summarize.then(|| Certificate::from_parsed(&cert, der)))
}

impl Decoded {
    fn push_cert(
        &mut self,
        der: Vec<u8>,
        summary: Option<Certificate>,
        options: &DecodeOptions<'_>,
    ) {
        if options.summarize {
            self.summaries.resize_with(self.certs.len(), || None);
            self.summaries.push(summary);
        }
        self.certs.push(der);
    }
}

fn decode_der(data: &[u8], options: &DecodeOptions<'_>) -> Decoded {
    // A certificate parse that fails only because of what follows it is a corrupt certificate,
    // not some other format.
    match X509Certificate::from_der(data) {
        Ok(([], cert)) => {
            let mut out = Decoded::new(Container::Der);
            let summary = options
                .summarize
                .then(|| Certificate::from_parsed(&cert, data));
            out.push_cert(data.to_vec(), summary, options);
            return out;
        }
        Ok((rest, _)) => {
            return Decoded::failed(Container::Der, ParseError::TrailingData(rest.len()));
        }
        Err(_) => {}
    }
    let outer = top_level_shape(data);
    match outer {
        Shape::ContentInfo(content_type) if content_type == oid::PKCS7_SIGNED_DATA => {
            let mut out = Decoded::new(Container::Pkcs7);
            match pkcs7_certificates(data) {
                Ok(certs) => out.certs = certs,
                Err(e) => out.errors.push(e),
            }
            out
        }
        Shape::Pfx => decode_pkcs12(data, options),
        _ => {
            if let Ok(crl) = Crl::from_der(data) {
                let mut out = Decoded::new(Container::Crl);
                out.crls.push(crl);
                return out;
            }
            for encoding in [KeyEncoding::Pkcs8, KeyEncoding::Pkcs1, KeyEncoding::Sec1] {
                if let Ok(key) = PrivateKey::from_der(data, encoding) {
                    let mut out = Decoded::new(Container::Key);
                    out.keys.push(key);
                    return out;
                }
            }
            // It looked like DER; say what a certificate parse made of it.
            let reason = match X509Certificate::from_der(data) {
                Err(e) => ParseError::Certificate(e.to_string().into()),
                Ok(_) => ParseError::UnknownFormat,
            };
            Decoded::failed(Container::Unknown, reason)
        }
    }
}

fn decode_pkcs12(data: &[u8], options: &DecodeOptions<'_>) -> Decoded {
    let mut out = Decoded::new(Container::Pkcs12);
    let archive = match options.pkcs12_password {
        Some(password) => Pkcs12Archive::from_pkcs12(data, password),
        None => Pkcs12Archive::from_pkcs12(data, ""),
    };
    let archive = match archive {
        Ok(archive) => archive,
        Err(p12_keystore::error::Error::MacError(_)) => {
            let error = match options.pkcs12_password {
                Some(_) => ParseError::Pkcs12BadPassword,
                None => ParseError::Pkcs12NeedsPassword,
            };
            out.errors.push(error);
            return out;
        }
        Err(e) => {
            out.errors.push(ParseError::Pkcs12(e.to_string().into()));
            return out;
        }
    };
    for bag in &archive.certs {
        out.certs.push(bag.cert.as_der().to_vec());
    }
    for bag in &archive.keys {
        match PrivateKey::from_der(bag.key.as_der(), KeyEncoding::Pkcs8) {
            Ok(key) => out.keys.push(key),
            Err(e) => out.errors.push(e),
        }
    }
    out
}

enum Shape {
    /// SEQUENCE { OID, [0] ... }: a CMS ContentInfo, with its content type.
    ContentInfo(String),
    /// SEQUENCE { INTEGER 3, SEQUENCE { OID data ... } ... }: a PKCS#12 PFX.
    Pfx,
    Other,
}

fn top_level_shape(data: &[u8]) -> Shape {
    let Some((0x30, body, _)) = tlv(data) else {
        return Shape::Other;
    };
    match tlv(body) {
        Some((0x06, oid_bytes, _)) => match der_oid_to_string(oid_bytes) {
            Some(oid) => Shape::ContentInfo(oid),
            None => Shape::Other,
        },
        Some((0x02, [3], rest)) if matches!(tlv(rest), Some((0x30, _, _))) => Shape::Pfx,
        _ => Shape::Other,
    }
}

/// Extracts the certificates of a PKCS#7 SignedData (a `.p7b` bundle), byte for byte.
///
/// The generic CMS decoders insist on DER ordering inside the certificate SET, which
/// `openssl crl2pkcs7` and Windows exports do not follow, so the structure is walked here.
pub fn pkcs7_certificates(data: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let err = |what: &str| ParseError::Pkcs7(what.into());
    let (tag, content_info, _) = tlv(data).ok_or_else(|| err("not a DER SEQUENCE"))?;
    if tag != 0x30 {
        return Err(err("not a DER SEQUENCE"));
    }
    let (tag, oid_bytes, rest) = tlv(content_info).ok_or_else(|| err("missing content type"))?;
    if tag != 0x06 || der_oid_to_string(oid_bytes).as_deref() != Some(oid::PKCS7_SIGNED_DATA) {
        return Err(err("content type is not signedData"));
    }
    let (tag, explicit, _) = tlv(rest).ok_or_else(|| err("missing content"))?;
    if tag != 0xa0 {
        return Err(err("missing [0] content"));
    }
    let (tag, signed_data, _) = tlv(explicit).ok_or_else(|| err("truncated SignedData"))?;
    if tag != 0x30 {
        return Err(err("SignedData is not a SEQUENCE"));
    }
    // version, digestAlgorithms, encapContentInfo, then the optional [0] certificates.
    let mut rest = signed_data;
    for _ in 0..3 {
        rest = tlv(rest).ok_or_else(|| err("truncated SignedData"))?.2;
    }
    let mut certs = Vec::new();
    if let Some((0xa0, mut set, _)) = tlv(rest) {
        while !set.is_empty() {
            let (tag, _, next) = tlv(set).ok_or_else(|| err("truncated certificate set"))?;
            let whole = &set[..set.len() - next.len()];
            if tag == 0x30 {
                check_certificate(whole, false)?;
                certs.push(whole.to_vec());
            }
            set = next;
        }
    }
    Ok(certs)
}

fn der_oid_to_string(bytes: &[u8]) -> Option<String> {
    let (&first, rest) = bytes.split_first()?;
    let mut parts = vec![u64::from(first / 40), u64::from(first % 40)];
    let mut value: u64 = 0;
    for &b in rest {
        value = value.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(value);
            value = 0;
        }
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_and_empty_are_named() {
        assert_eq!(
            decode(b"", &DecodeOptions::default()).errors,
            vec![ParseError::Empty]
        );
        assert_eq!(
            decode(b"  \n", &DecodeOptions::default()).errors,
            vec![ParseError::Empty]
        );
        assert_eq!(
            decode(&[0xde, 0xad, 0xbe, 0xef], &DecodeOptions::default()).errors,
            vec![ParseError::UnknownFormat]
        );
        assert_eq!(
            decode(b"hello world", &DecodeOptions::default()).errors,
            vec![ParseError::NoPemBlocks]
        );
        let der_junk = decode(&[0x30, 0x03, 0x02, 0x01, 0x01], &DecodeOptions::default());
        assert_eq!(der_junk.errors.len(), 1);
        assert!(der_junk.certs.is_empty());
    }

    #[test]
    fn oids_decode() {
        assert_eq!(
            der_oid_to_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]).unwrap(),
            "1.2.840.113549.1.7.2"
        );
    }
}
