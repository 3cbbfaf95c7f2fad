#![no_main]
//! Binary input: certificates, CRLs and private keys in DER, and the sniffing between them.

use certvigil_core::crl::Crl;
use certvigil_core::key::{KeyEncoding, PrivateKey};
use certvigil_core::{Certificate, DecodeOptions, SourceContent, decode};
use libfuzzer_sys::fuzz_target;

/// Decoded as a scan decodes: summaries taken from the validating parse.
const AS_A_SCAN: DecodeOptions<'static> = DecodeOptions {
    pkcs12_password: None,
    summarize: true,
};

fuzz_target!(|data: &[u8]| {
    let _ = Certificate::from_der(data);
    let _ = Crl::from_der(data);
    for encoding in [KeyEncoding::Pkcs8, KeyEncoding::Pkcs1, KeyEncoding::Sec1] {
        let _ = PrivateKey::from_der(data, encoding);
    }
    let _ = certvigil_core::describe::extensions(data);
    let _ = SourceContent::from_decoded(decode(data, &AS_A_SCAN));
});
