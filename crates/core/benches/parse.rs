//! Per-file cost of the scan's hot path: decode bytes, then summarise them into a
//! `SourceContent` (parse every certificate, check signatures between certificates of the
//! same file). `scripts/bench-scan` measures the whole scan; this isolates one file.
//!
//! `cargo bench -p certvigil-core --bench parse -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use certvigil_core::{DecodeOptions, SourceContent, decode};
use certvigil_testutil::{Ca, KeyKind, Pki, Spec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn scan_one(bytes: &[u8]) -> SourceContent {
    SourceContent::from_decoded(decode(bytes, &DecodeOptions::default()))
}

fn parse(c: &mut Criterion) {
    let pki = Pki::new("Bench");
    let leaf = pki.leaf(&Spec::leaf("www.example.test"));
    let fullchain = pki.fullchain(&leaf);
    // An ECDSA leaf under an RSA-2048 intermediate: the other common chain shape.
    let root = Ca::root(&Spec::ca("Bench RSA Root").key(KeyKind::Rsa2048));
    let intermediate = root.intermediate(&Spec::ca("Bench RSA Intermediate").key(KeyKind::Rsa2048));
    let rsa_pki = Pki { root, intermediate };
    let rsa_intermediate_chain = rsa_pki.fullchain(&rsa_pki.leaf(&Spec::leaf("rsa.example.test")));

    let mut group = c.benchmark_group("decode+summarise");
    group.throughput(Throughput::Elements(1));
    for (name, input) in [
        ("leaf.pem", leaf.pem.as_str()),
        ("fullchain.pem", fullchain.as_str()),
        (
            "fullchain-rsa-intermediate.pem",
            rsa_intermediate_chain.as_str(),
        ),
    ] {
        let content = scan_one(input.as_bytes());
        assert!(content.errors.is_empty(), "{name}: {:?}", content.errors);
        group.bench_function(name, |b| b.iter(|| scan_one(black_box(input.as_bytes()))));
    }
    group.bench_function("leaf.der", |b| b.iter(|| scan_one(black_box(&leaf.der))));
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
