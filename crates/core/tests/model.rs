//! The core against certificates built with rcgen: fields, links, keys and every check.

use certvigil_core::check::{self, CheckId, Policy, Severity};
use certvigil_core::inventory::{Inventory, LinkStatus, Location, NewSource, Role, SourceKind};
use certvigil_core::{DecodeOptions, SourceContent, decode};
use certvigil_testutil::{KeyKind, Pki, Spec, self_signed_leaf};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn add(inventory: &mut Inventory, name: &str, bytes: &[u8]) {
    let content = SourceContent::from_decoded(decode(bytes, &DecodeOptions::default()));
    add_content(inventory, name, content);
}

fn add_content(inventory: &mut Inventory, name: &str, content: SourceContent) {
    inventory.add_source(
        NewSource::new(Location::new(SourceKind::File, name)),
        content,
    );
}

/// The cross-source issuer pass, as the scanner runs it, over every certificate given.
fn link_all(inventory: &mut Inventory, pems: &[&str]) {
    let ders: Vec<Vec<u8>> = pems
        .iter()
        .flat_map(|p| decode(p.as_bytes(), &DecodeOptions::default()).certs)
        .collect();
    link_all_der(inventory, &ders);
}

fn link_all_der(inventory: &mut Inventory, ders: &[Vec<u8>]) {
    let pending: Vec<_> = inventory
        .issuer_pass_plan()
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    for (child, issuer, status) in inventory.cross_source_links(ders, &pending) {
        inventory.record_link(child, issuer, status);
    }
}

fn checks_for(inventory: &Inventory, policy: &Policy) -> Vec<(CheckId, Severity, String)> {
    check::run(inventory, policy)
        .into_iter()
        .map(|f| (f.check, f.severity, f.location.name.to_string()))
        .collect()
}

#[test]
fn fullchain_links_verify_and_fields_are_read() {
    let pki = Pki::new("Acme");
    let mut spec = Spec::leaf("web.example.com");
    spec.dns_names.push("www.example.com".into());
    spec.ip_names.push("192.0.2.7".parse().unwrap());
    let leaf = pki.leaf(&spec);
    let pem = format!("{}{}", pki.fullchain(&leaf), leaf.key_pem());
    let decoded = decode(pem.as_bytes(), &DecodeOptions::default());
    assert_eq!(decoded.certs.len(), 2);
    assert_eq!(decoded.keys.len(), 1);
    let content = SourceContent::from_decoded(decoded);
    assert_eq!(content.links, vec![(0, 1, LinkStatus::Verified)]);
    let cert = &content.certs[0];
    assert_eq!(&*cert.subject, "CN=web.example.com");
    assert_eq!(&*cert.issuer, "CN=Acme Intermediate CA");
    assert_eq!(cert.profile.key_bits, 256);
    assert_eq!(cert.profile.key_algorithm.to_string(), "ECDSA P-256");
    assert_eq!(
        cert.profile.signature_algorithm.to_string(),
        "ecdsa-with-SHA256"
    );
    assert!(!cert.profile.is_ca && content.certs[1].profile.is_ca);
    let sans: Vec<String> = cert.sans.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        sans,
        ["DNS:web.example.com", "DNS:www.example.com", "IP:192.0.2.7"]
    );
    assert_eq!(content.keys[0].key_id, cert.key_id);
    assert_eq!(cert.not_after, spec.not_after.unix_timestamp());
}

#[test]
fn every_key_type_pairs_with_its_certificate() {
    let pki = Pki::new("Keys");
    for kind in [
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Rsa2048,
        KeyKind::Ed25519,
    ] {
        let leaf = pki.leaf(&Spec::leaf("k.example").key(kind));
        let pem = format!("{}{}", leaf.pem, leaf.key_pem());
        let content =
            SourceContent::from_decoded(decode(pem.as_bytes(), &DecodeOptions::default()));
        assert!(content.errors.is_empty(), "{kind:?}: {:?}", content.errors);
        assert_eq!(content.keys[0].key_id, content.certs[0].key_id, "{kind:?}");
    }
}

#[test]
fn tampered_signature_is_caught() {
    let pki = Pki::new("Tamper");
    let leaf = pki.leaf(&Spec::leaf("t.example"));
    let mut der = leaf.der.clone();
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let mut inventory = Inventory::new();
    add(&mut inventory, "/chain.der", &der);
    add(
        &mut inventory,
        "/inter.pem",
        pki.intermediate.cert.pem.as_bytes(),
    );
    let plan = inventory.issuer_pass_plan();
    assert_eq!(plan.len(), 1);
    let links = inventory.cross_source_links(&[der], &plan[0].1);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].2, LinkStatus::BadSignature);
    for (child, issuer, status) in links {
        inventory.record_link(child, issuer, status);
    }
    let found = checks_for(&inventory, &Policy::new(now()));
    assert!(
        found.contains(&(
            CheckId::SignatureInvalid,
            Severity::Critical,
            "/chain.der".into()
        )),
        "{found:?}"
    );
}

#[test]
fn expiry_windows_follow_days_and_lifetime_fraction() {
    let pki = Pki::new("Expiry");
    let mut inventory = Inventory::new();
    let cases = [
        ("/expired.pem", Spec::leaf("a").valid_days(-90, -1)),
        ("/crit.pem", Spec::leaf("b").valid_days(-85, 5)),
        ("/warn.pem", Spec::leaf("c").valid_days(-70, 20)),
        ("/ok.pem", Spec::leaf("d").valid_days(-10, 80)),
        ("/future.pem", Spec::leaf("e").valid_days(2, 92)),
        // A 2-day certificate with 1 day left: not alarming by days, but by fraction it is
        // still fine (half its lifetime left).
        ("/short.pem", Spec::leaf("f").valid_days(-1, 1)),
    ];
    let mut pems = Vec::new();
    for (name, spec) in &cases {
        let pem = pki.leaf(spec).pem;
        add(&mut inventory, name, pem.as_bytes());
        pems.push(pem);
    }
    add(
        &mut inventory,
        "/inter.pem",
        pki.intermediate.cert.pem.as_bytes(),
    );
    add(&mut inventory, "/root.pem", pki.root.cert.pem.as_bytes());
    pems.push(pki.intermediate.cert.pem.clone());
    link_all(
        &mut inventory,
        &pems.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let found = checks_for(&inventory, &Policy::new(now()));
    let has = |c, s, n: &str| found.contains(&(c, s, n.to_owned()));
    assert!(
        has(CheckId::Expired, Severity::Critical, "/expired.pem"),
        "{found:?}"
    );
    assert!(has(CheckId::Expiring, Severity::Critical, "/crit.pem"));
    assert!(has(CheckId::Expiring, Severity::Warning, "/warn.pem"));
    assert!(has(CheckId::NotYetValid, Severity::Critical, "/future.pem"));
    assert!(
        !found
            .iter()
            .any(|f| f.2 == "/ok.pem" || f.2 == "/short.pem"),
        "{found:?}"
    );
}

#[test]
fn clock_skew_allowance_applies() {
    let pki = Pki::new("Skew");
    let mut spec = Spec::leaf("skew");
    spec.not_before = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let mut inventory = Inventory::new();
    add(&mut inventory, "/skew.pem", pki.leaf(&spec).pem.as_bytes());
    let policy = Policy::new(now());
    assert!(
        !checks_for(&inventory, &policy)
            .iter()
            .any(|f| f.0 == CheckId::NotYetValid)
    );
    let mut strict = policy.clone();
    strict.clock_skew_secs = 0;
    assert!(
        checks_for(&inventory, &strict)
            .iter()
            .any(|f| f.0 == CheckId::NotYetValid)
    );
}

#[test]
fn hostname_role_and_key_checks() {
    let pki = Pki::new("Roles");
    let server = pki.leaf(&Spec::leaf("etcd-0.internal"));
    let other_key = pki.leaf(&Spec::leaf("x")).key_pem();
    let mut inventory = Inventory::new();
    add(
        &mut inventory,
        "/server.pem",
        format!("{}{other_key}", server.pem).as_bytes(),
    );
    let mut policy = Policy::new(now());
    policy.hosts = vec!["etcd-1.internal".into()];
    policy.role = Some(Role::EtcdPeer);
    let found: Vec<CheckId> = checks_for(&inventory, &policy)
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert!(found.contains(&CheckId::HostnameMismatch), "{found:?}");
    assert!(found.contains(&CheckId::KeyUsage), "{found:?}");
    assert!(found.contains(&CheckId::KeyMismatch), "{found:?}");

    let mut peer_spec = Spec::leaf("etcd-1.internal");
    peer_spec.client_auth = true;
    let peer = pki.leaf(&peer_spec);
    let mut inventory = Inventory::new();
    add(
        &mut inventory,
        "/peer.pem",
        format!("{}{}", peer.pem, peer.key_pem()).as_bytes(),
    );
    let found: Vec<CheckId> = checks_for(&inventory, &policy)
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert!(
        !found.iter().any(|c| matches!(
            c,
            CheckId::HostnameMismatch | CheckId::KeyUsage | CheckId::KeyMismatch
        )),
        "{found:?}"
    );
}

#[test]
fn chain_problems_are_named() {
    let pki = Pki::new("Chain");
    let leaf = pki.leaf(&Spec::leaf("lonely.example"));
    let expired_pki = Pki {
        root: Pki::new("unused").root,
        intermediate: pki
            .root
            .intermediate(&Spec::ca("Old Intermediate").valid_days(-400, -5)),
    };
    let old = expired_pki.leaf(&Spec::leaf("old-chain.example"));

    let mut inventory = Inventory::new();
    add(&mut inventory, "/lonely/cert.pem", leaf.pem.as_bytes());
    add(
        &mut inventory,
        "/old/fullchain.pem",
        expired_pki.fullchain(&old).as_bytes(),
    );
    add(&mut inventory, "/root.pem", pki.root.cert.pem.as_bytes());
    let self_signed = self_signed_leaf(&Spec::leaf("self.example"));
    add(&mut inventory, "/self.pem", self_signed.pem.as_bytes());
    link_all(&mut inventory, &[&leaf.pem]);
    let found = checks_for(&inventory, &Policy::new(now()));
    let has = |c, s, n: &str| found.contains(&(c, s, n.to_owned()));
    // The lonely leaf's intermediate is nowhere; its root alone does not help.
    assert!(
        has(CheckId::ChainIncomplete, Severity::Info, "/lonely/cert.pem"),
        "{found:?}"
    );
    assert!(
        has(
            CheckId::ChainExpiredIntermediate,
            Severity::Critical,
            "/old/fullchain.pem"
        ),
        "{found:?}"
    );
    assert!(
        has(CheckId::SelfSignedLeaf, Severity::Info, "/self.pem"),
        "{found:?}"
    );
}

#[test]
fn duplicates_across_directories_are_reported_once() {
    let pki = Pki::new("Dup");
    let leaf = pki.leaf(&Spec::leaf("dup.example"));
    let mut inventory = Inventory::new();
    add(&mut inventory, "/a/cert.pem", leaf.pem.as_bytes());
    add(
        &mut inventory,
        "/a/fullchain.pem",
        pki.fullchain(&leaf).as_bytes(),
    );
    let found = checks_for(&inventory, &Policy::new(now()));
    assert!(
        !found.iter().any(|f| f.0 == CheckId::Duplicate),
        "same directory is by design"
    );
    add(&mut inventory, "/b/copy.pem", leaf.pem.as_bytes());
    let found = checks_for(&inventory, &Policy::new(now()));
    assert_eq!(
        found.iter().filter(|f| f.0 == CheckId::Duplicate).count(),
        1,
        "{found:?}"
    );
}

/// Every fullchain repeats its intermediate: a table shares that certificate whole (one
/// copy for every file), shares a leaf's issuer name but not the leaf, and forgets what
/// nothing else uses any more.
#[test]
fn name_table_shares_authorities_whole_and_prunes_them() {
    use std::sync::Arc;

    use certvigil_core::inventory::NameTable;

    let pki = Pki::new("Shared");
    let leaf = pki.leaf(&Spec::leaf("a.example"));
    let summary = |der: &[u8]| Arc::new(certvigil_core::Certificate::from_der(der).unwrap());
    let mut table = NameTable::default();

    let mut first = summary(&pki.intermediate.cert.der);
    let mut second = summary(&pki.intermediate.cert.der);
    assert!(!Arc::ptr_eq(&first, &second));
    table.share(&mut first);
    table.share(&mut second);
    assert!(Arc::ptr_eq(&first, &second), "one copy of the intermediate");

    let mut leaf_a = summary(&leaf.der);
    let mut leaf_b = summary(&leaf.der);
    table.share(&mut leaf_a);
    table.share(&mut leaf_b);
    assert!(!Arc::ptr_eq(&leaf_a, &leaf_b), "leaves are not interned");
    assert!(Arc::ptr_eq(&leaf_a.issuer, &first.subject));

    drop((leaf_a, leaf_b));
    let weak = Arc::downgrade(&first);
    drop((first, second));
    assert!(weak.upgrade().is_some(), "held by the table until pruned");
    table.prune();
    assert!(weak.upgrade().is_none(), "pruned once nothing else used it");
}

/// A leaf read after its issuer (in another file) is checked against it while its DER is at
/// hand, so the issuer pass has nothing left to read again. A bad signature and an
/// intermediate are left to the issuer pass, which tries every issuer of the inventory.
#[test]
fn leaves_are_checked_against_issuers_read_earlier() {
    use certvigil_core::linkcache::LinkCache;

    let pki = Pki::new("Early");
    let leaf = pki.leaf(&Spec::leaf("e.example"));
    let mut tampered = pki.leaf(&Spec::leaf("t.example")).der;
    let last = tampered.len() - 3;
    tampered[last] ^= 0x55;

    let mut inventory = Inventory::new();
    add(
        &mut inventory,
        "/inter.pem",
        pki.intermediate.cert.pem.as_bytes(),
    );
    let against = |inventory: &Inventory, der: &[u8]| {
        let decoded = decode(der, &DecodeOptions::default());
        SourceContent::from_decoded_against(decoded, &LinkCache::default(), Some(inventory))
    };
    let intermediate = certvigil_core::Certificate::from_der(&pki.intermediate.cert.der)
        .unwrap()
        .fingerprint;

    let good = against(&inventory, &leaf.der);
    assert_eq!(
        good.external_links,
        vec![(0, intermediate, LinkStatus::Verified)]
    );
    assert_eq!(good.newly_verified.len(), 1, "remembered for the next scan");
    let bad = against(&inventory, &tampered);
    assert!(bad.external_links.is_empty(), "{:?}", bad.external_links);
    assert!(bad.newly_verified.is_empty());
    let signer = against(&inventory, &pki.intermediate.cert.der);
    assert!(
        signer.external_links.is_empty(),
        "certificates that sign are left to the pass"
    );

    add_content(&mut inventory, "/good.der", good);
    add_content(&mut inventory, "/bad.der", bad);
    let left: Vec<&str> = inventory
        .issuer_pass_plan()
        .iter()
        .map(|(source, _)| &*inventory.source(*source).location.name)
        .collect();
    assert_eq!(left, ["/bad.der"], "only the bad signature is read again");
    link_all_der(&mut inventory, &[tampered]);
    let leaf_id = inventory
        .find(
            &certvigil_core::Certificate::from_der(&leaf.der)
                .unwrap()
                .fingerprint,
        )
        .unwrap();
    let link = inventory.link(leaf_id).expect("linked while read");
    assert_eq!(inventory.cert(link.issuer).fingerprint, intermediate);
    assert_eq!(link.status, LinkStatus::Verified);
    let found = checks_for(&inventory, &Policy::new(now()));
    assert!(
        found.contains(&(
            CheckId::SignatureInvalid,
            Severity::Critical,
            "/bad.der".into()
        )),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(c, _, n)| *c == CheckId::SignatureInvalid && n == "/good.der"),
        "{found:?}"
    );
}
