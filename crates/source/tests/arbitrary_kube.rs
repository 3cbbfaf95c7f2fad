//! Kube document parsing never panics, whatever the text.

use certvigil_source::kube::{self, DocumentKind, Extracted};
use proptest::prelude::*;

fn every_kube_parser(text: &str) {
    let _ = kube::looks_like_kube(text.as_bytes());
    for doc in kube::parse_documents(text).into_iter().flatten() {
        match kube::classify(&doc) {
            Some(DocumentKind::Kubeconfig) => {
                let _ = kube::extract_kubeconfig(&doc, "/tmp/config");
            }
            Some(DocumentKind::Objects) => {
                kube::extract_objects(&doc, "stdin", &mut Extracted::default())
            }
            None => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in ".{0,400}") {
        every_kube_parser(&text);
    }

    #[test]
    fn kube_shaped_json(
        kind in prop::sample::select(vec!["Secret", "ConfigMap", "List", "Config", "x"]),
        key in "[a-z.]{0,8}",
        value in ".{0,64}",
        nested in any::<bool>(),
    ) {
        let object = serde_json::json!({
            "kind": kind,
            "metadata": {"name": value, "namespace": 7},
            "data": {key.clone(): value, "tls.crt": 5, "tls.key": null},
            "binaryData": {key: "!!notbase64"},
            "clusters": [{"name": 1, "cluster": {"certificate-authority-data": value}}],
            "users": [{"user": {"client-certificate-data": "AAAA", "client-key-data": 3}}],
        });
        let doc = if nested { serde_json::json!({"kind": "List", "items": [object, 5, null]}) } else { object };
        every_kube_parser(&doc.to_string());
    }
}
