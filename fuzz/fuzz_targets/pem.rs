#![no_main]
//! Text input: the PEM splitter and everything a PEM block can hold.

use certvigil_core::{DecodeOptions, SourceContent, decode, pem};
use libfuzzer_sys::fuzz_target;

/// Decoded as a scan decodes: summaries taken from the validating parse.
const AS_A_SCAN: DecodeOptions<'static> = DecodeOptions {
    pkcs12_password: None,
    summarize: true,
};

fuzz_target!(|data: &[u8]| {
    let _ = pem::parse_blocks(data);
    let mut text = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    text.extend_from_slice(data);
    let _ = SourceContent::from_decoded(decode(&text, &AS_A_SCAN));
    let _ = SourceContent::from_decoded(decode(data, &AS_A_SCAN));
});
