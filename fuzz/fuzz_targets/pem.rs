#![no_main]
//! Text input: the PEM splitter and everything a PEM block can hold.

use certvigil_core::{DecodeOptions, SourceContent, decode, pem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pem::parse_blocks(data);
    let mut text = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    text.extend_from_slice(data);
    let _ = SourceContent::from_decoded(decode(&text, &DecodeOptions::default()));
    let _ = SourceContent::from_decoded(decode(data, &DecodeOptions::default()));
});
