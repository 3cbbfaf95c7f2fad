//! No input makes a parser panic: arbitrary bytes, and valid inputs with random damage.

use certvigil_core::crl::Crl;
use certvigil_core::decode::{DecodeOptions, pkcs7_certificates};
use certvigil_core::key::{KeyEncoding, PrivateKey};
use certvigil_core::{Certificate, SourceContent, decode, pem};
use certvigil_testutil::{Pki, Spec};
use proptest::prelude::*;
use std::sync::LazyLock;

fn every_parser(bytes: &[u8]) {
    for password in [None, Some("pw")] {
        let content = |summarize| {
            let options = DecodeOptions {
                pkcs12_password: password,
                summarize,
            };
            SourceContent::from_decoded(decode(bytes, &options))
        };
        // Summaries taken from the decoder's own parse describe exactly what a second parse would.
        let (plain, summarized) = (content(false), content(true));
        let fingerprints =
            |c: &SourceContent| c.certs.iter().map(|c| c.fingerprint).collect::<Vec<_>>();
        assert_eq!(fingerprints(&plain), fingerprints(&summarized));
        assert_eq!(plain.links, summarized.links);
        let errors =
            |c: &SourceContent| c.errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(errors(&plain), errors(&summarized));
    }
    let _ = pem::parse_blocks(bytes);
    let _ = pkcs7_certificates(bytes);
    let _ = Certificate::from_der(bytes);
    let _ = Crl::from_der(bytes);
    for encoding in [KeyEncoding::Pkcs8, KeyEncoding::Pkcs1, KeyEncoding::Sec1] {
        let _ = PrivateKey::from_der(bytes, encoding);
    }
    let _ = certvigil_core::describe::extensions(bytes);
}

/// Valid inputs of every kind to damage.
static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let pki = Pki::new("Fuzz");
    let leaf = pki.leaf(&Spec::leaf("fuzz.example"));
    let p12 = pkcs12_of(&leaf.pem, &leaf.key_pem());
    vec![
        p12,
        leaf.der.clone(),
        pki.fullchain(&leaf).into_bytes(),
        format!("{}{}", leaf.pem, leaf.key_pem()).into_bytes(),
        leaf.key.serialize_der(),
        pki.intermediate.crl(-1, 1, &[&[1]]).into_bytes(),
    ]
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        every_parser(&bytes);
    }

    #[test]
    fn der_shaped_bytes(tail in proptest::collection::vec(any::<u8>(), 0..512), len in 0u8..=255) {
        // Start like a DER SEQUENCE so the deeper decoders are reached.
        let mut bytes = vec![0x30, 0x82, 0x01, len];
        bytes.extend(tail);
        every_parser(&bytes);
    }

    #[test]
    fn damaged_valid_inputs(
        seed in 0usize..6,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = SEEDS[seed].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        every_parser(&bytes);
        let end = cut.index(bytes.len() + 1);
        every_parser(&bytes[..end]);
    }
}

/// A real PKCS#12 archive (password "pw") made by OpenSSL, so damage reaches its decoder.
fn pkcs12_of(cert_pem: &str, key_pem: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    let out = dir.path().join("a.p12");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:pw", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .status()
        .expect("openssl must be installed (scripts/install-deps)");
    assert!(status.success());
    std::fs::read(out).unwrap()
}
