#![no_main]
//! kubectl JSON/YAML output and kubeconfigs.

use certvigil_source::kube::{self, DocumentKind, Extracted};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kube::looks_like_kube(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for doc in kube::parse_documents(text).into_iter().flatten() {
        match kube::classify(&doc) {
            Some(DocumentKind::Kubeconfig) => {
                let _ = kube::extract_kubeconfig(&doc, "/fuzz/config");
            }
            Some(DocumentKind::Objects) => {
                kube::extract_objects(&doc, "fuzz", &mut Extracted::default());
            }
            None => {}
        }
    }
});
