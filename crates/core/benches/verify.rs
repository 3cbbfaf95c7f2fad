//! Cost of one leaf signature check, the floor of a scan without the signature cache (a
//! hundred thousand of them): a full parse of the leaf plus `verify_signature` (which parses
//! the issuer's key each time), `verify_prepared` as the scan calls it (the leaf split in its
//! three parts, the CA's key parsed once), and aws-lc alone: the part no caller can avoid.
//!
//! `cargo bench -p certvigil-core --bench verify -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use certvigil_core::verify::{PreparedKey, SignatureVerdict, verify_prepared, verify_signature};
use certvigil_testutil::{Ca, KeyKind, Spec};
use criterion::{Criterion, criterion_group, criterion_main};
use x509_parser::prelude::{FromDer, X509Certificate};

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("leaf signature");
    for (name, kind, alg) in [
        (
            "P-256",
            KeyKind::P256,
            &signature::ECDSA_P256_SHA256_ASN1 as &'static dyn signature::VerificationAlgorithm,
        ),
        (
            "RSA-2048",
            KeyKind::Rsa2048,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
    ] {
        let ca = Ca::root(&Spec::ca(&format!("Bench {name} CA")).key(kind));
        let leaf = ca.issue(&Spec::leaf("www.example.test"));
        let (_, issuer) = X509Certificate::from_der(&ca.cert.der).unwrap();
        let spki = issuer.tbs_certificate.subject_pki.raw.to_vec();
        let key_bits = issuer
            .tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .to_vec();
        let (_, child) = X509Certificate::from_der(&leaf.der).unwrap();
        let tbs = child.tbs_certificate.as_ref().to_vec();
        let sig = child.signature_value.data.to_vec();
        assert_eq!(verify_signature(&child, &spki), SignatureVerdict::Valid);

        group.bench_function(format!("{name}: parse leaf + verify_signature"), |b| {
            b.iter(|| {
                let (_, child) = X509Certificate::from_der(black_box(&leaf.der)).unwrap();
                verify_signature(&child, black_box(&spki))
            })
        });
        group.bench_function(format!("{name}: verify_signature"), |b| {
            b.iter(|| verify_signature(black_box(&child), black_box(&spki)))
        });
        let sig_alg = certvigil_core::Certificate::from_der(&leaf.der)
            .unwrap()
            .profile
            .signature_algorithm
            .clone();
        let prepared = PreparedKey::default();
        let verdict = verify_prepared(&sig_alg, &leaf.der, &spki, Some(&prepared));
        assert_eq!(verdict, SignatureVerdict::Valid);
        group.bench_function(format!("{name}: verify_prepared, shared key"), |b| {
            b.iter(|| verify_prepared(&sig_alg, black_box(&leaf.der), &spki, Some(&prepared)))
        });
        let parsed = ParsedPublicKey::new(alg, &key_bits).unwrap();
        group.bench_function(format!("{name}: aws-lc, key parsed once"), |b| {
            b.iter(|| parsed.verify_sig(black_box(&tbs), black_box(&sig)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
