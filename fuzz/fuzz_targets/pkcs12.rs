#![no_main]
//! PKCS#12 archives, with and without a password.

use certvigil_core::{DecodeOptions, SourceContent, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for password in [None, Some("password")] {
        let decoded = decode(
            data,
            &DecodeOptions {
                pkcs12_password: password,
                summarize: true,
            },
        );
        let _ = SourceContent::from_decoded(decoded);
    }
});
