#![no_main]
//! PKCS#7 SignedData certificate bundles (.p7b).

use certvigil_core::decode::pkcs7_certificates;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pkcs7_certificates(data);
});
