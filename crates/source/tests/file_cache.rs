//! Rescans through the file cache: unchanged files come from memory, and a changed,
//! replaced, added or deleted file gives exactly what a scan from scratch gives.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certvigil_core::inventory::Inventory;
use certvigil_source::{CacheDir, FileCache, ScanOptions, Target, scan};
use certvigil_testutil::{Issued, Pki, Spec};

fn options(dir: &Path, cache: Option<Arc<FileCache>>) -> ScanOptions {
    ScanOptions {
        targets: vec![Target::Path(dir.to_path_buf())],
        system_trust: false,
        file_cache: cache,
        ..ScanOptions::default()
    }
}

/// Every (source, fingerprint) of an inventory, plus its problems and key pairings: what a
/// report is made of.
fn contents(inventory: &Inventory) -> Vec<String> {
    let mut out: Vec<String> = inventory
        .sources()
        .flat_map(|(_, source)| {
            source.certs.iter().map(move |id| {
                format!(
                    "{} {}",
                    source.location.name,
                    inventory.cert(*id).fingerprint_hex()
                )
            })
        })
        .collect();
    out.extend(
        inventory
            .problems
            .iter()
            .map(|p| format!("problem {} {}", p.location.name, p.reason)),
    );
    out.extend(inventory.pairings.iter().map(|p| {
        format!(
            "pair {} {}",
            inventory.source(p.cert_source).location.name,
            inventory.source(p.key_source).location.name
        )
    }));
    out.sort();
    out
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Four files in `d`: a.crt (a fullchain) with its a.key, b.pem, and a broken half of b.pem,
/// all settled. Returns the leaves a and b.
fn settled_files(d: &Path, pki: &Pki) -> (Issued, Issued) {
    let a = pki.leaf(&Spec::leaf("a.example"));
    let b = pki.leaf(&Spec::leaf("b.example"));
    std::fs::write(d.join("a.crt"), pki.fullchain(&a)).unwrap();
    std::fs::write(d.join("a.key"), a.key_pem()).unwrap();
    std::fs::write(d.join("b.pem"), &b.pem).unwrap();
    std::fs::write(d.join("broken.pem"), &b.pem[..b.pem.len() / 2]).unwrap();
    // Files changed in the last two seconds are not remembered (a second write in the same
    // timestamp tick would go unseen); let these settle.
    std::thread::sleep(Duration::from_millis(2100));
    (a, b)
}

#[test]
fn rescans_from_memory_match_scans_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("Cache");
    let (a, b) = settled_files(d, &pki);

    let cache = Arc::new(FileCache::new());
    let first = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 0);
    assert_eq!(cache.len(), 4, "every settled file is remembered");
    assert_eq!(contents(&first), contents(&scan(&options(d, None))));

    let again = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 4, "nothing changed: nothing read");
    assert_eq!(contents(&again), contents(&first));

    // Renewal by rename, a file added, a file deleted, a file rewritten in place.
    let renewed = pki.leaf(&Spec::leaf("a.example"));
    write_atomically(&d.join("a.crt"), pki.fullchain(&renewed).as_bytes());
    write_atomically(&d.join("a.key"), renewed.key_pem().as_bytes());
    let c = pki.leaf(&Spec::leaf("c.example"));
    std::fs::write(d.join("c.pem"), &c.pem).unwrap();
    std::fs::remove_file(d.join("b.pem")).unwrap();
    std::fs::write(d.join("broken.pem"), &b.pem).unwrap();

    let after = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 0, "every remaining file changed");
    assert_eq!(contents(&after), contents(&scan(&options(d, None))));
    let listed = contents(&after).join("\n");
    assert!(listed.contains(&renewed_fingerprint(&renewed.der)));
    assert!(!listed.contains(&renewed_fingerprint(&a.der)));
    assert!(!listed.contains("b.pem"), "{listed}");
    assert!(!listed.contains("problem"), "{listed}");
    // Freshly written files are read again next time; the deleted one is forgotten.
    assert_eq!(cache.len(), 0, "{:?}", cache);
    scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 0);
}

fn renewed_fingerprint(der: &[u8]) -> String {
    certvigil_core::Certificate::from_der(der)
        .unwrap()
        .fingerprint_hex()
}

/// What the cache remembers is what the inventory holds, not a copy: a daemon watching a
/// hundred thousand certificates keeps each one once.
#[test]
fn remembered_certificates_are_shared_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("Shared");
    for name in ["a", "b"] {
        let leaf = pki.leaf(&Spec::leaf(&format!("{name}.example")));
        std::fs::write(d.join(format!("{name}.pem")), &leaf.pem).unwrap();
    }
    std::thread::sleep(Duration::from_millis(2100));

    let cache = Arc::new(FileCache::new());
    let first = scan(&options(d, Some(cache.clone())));
    let again = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 2);
    let leaves = |inventory: &Inventory| -> Vec<*const certvigil_core::Certificate> {
        let mut certs: Vec<_> = inventory.certs().map(|(_, c)| c).collect();
        certs.sort_by_key(|c| c.fingerprint);
        certs.into_iter().map(std::ptr::from_ref).collect()
    };
    assert_eq!(leaves(&first).len(), 2);
    assert_eq!(
        leaves(&first),
        leaves(&again),
        "the same certificates, not copies"
    );
    let issuers: Vec<_> = again.certs().map(|(_, c)| c.issuer.clone()).collect();
    assert_eq!(issuers[0], issuers[1]);
    assert!(
        Arc::ptr_eq(&issuers[0], &issuers[1]),
        "one issuer name for both leaves"
    );
}

/// Deleted files are forgotten and every other file is still served from memory, by the
/// very name string the previous inventory used.
#[test]
fn after_a_deletion_the_other_files_are_still_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("Deleted");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for name in names {
        let leaf = pki.leaf(&Spec::leaf(&format!("{name}.example")));
        std::fs::write(d.join(format!("{name}.pem")), pki.fullchain(&leaf)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(2100));

    let cache = Arc::new(FileCache::new());
    let first = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.len(), 8);
    // Files are remembered in the order the reading threads finish: deleting three leaves
    // some of the others at new positions whatever that order was.
    let deleted = ["b.pem", "e.pem", "g.pem"];
    for name in deleted {
        std::fs::remove_file(d.join(name)).unwrap();
    }
    let second = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 5);
    assert_eq!(cache.len(), 5, "the deleted files are forgotten");
    let third = scan(&options(d, Some(cache.clone())));
    assert_eq!(cache.hits(), 5, "the others are still found");
    assert_eq!(contents(&third), contents(&scan(&options(d, None))));
    assert_eq!(contents(&second), contents(&third));

    let names = |inventory: &Inventory| -> Vec<Arc<str>> {
        let mut names: Vec<_> = inventory
            .sources()
            .map(|(_, s)| s.location.name.clone())
            .collect();
        names.sort();
        names
    };
    let (before, after) = (names(&first), names(&third));
    assert_eq!(before.len(), 8);
    let kept: Vec<_> = before
        .iter()
        .filter(|n| !deleted.iter().any(|d| n.ends_with(d)))
        .collect();
    assert_eq!(kept.len(), after.len());
    for (old, new) in kept.into_iter().zip(&after) {
        assert!(
            Arc::ptr_eq(old, new),
            "{new} is named by the cache's string"
        );
    }
}

/// A cache saved by one process and loaded by the next (a restarted daemon, the next `scan`
/// from cron) gives what a scan from scratch gives: unchanged files from the saved form,
/// changed ones read again.
#[test]
fn a_saved_cache_serves_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let saved = tempfile::tempdir().unwrap();
    let saved = saved.path().join("cache/files");
    let pki = Pki::new("Saved");
    settled_files(d, &pki);
    let max = ScanOptions::default().walk.max_file_size;

    let cache = Arc::new(FileCache::new());
    let first = scan(&options(d, Some(cache.clone())));
    assert!(cache.save(&saved, max).unwrap(), "a new cache is written");
    assert!(!cache.save(&saved, max).unwrap(), "an unchanged one is not");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let loaded = Arc::new(FileCache::load(&saved, max).unwrap());
    assert_eq!(loaded.len(), 4);
    let again = scan(&options(d, Some(loaded.clone())));
    assert_eq!(loaded.hits(), 4, "nothing changed: nothing read");
    assert_eq!(contents(&again), contents(&first));
    assert!(!loaded.save(&saved, max).unwrap(), "nothing to write back");

    let renewed = pki.leaf(&Spec::leaf("b.example"));
    write_atomically(&d.join("b.pem"), renewed.pem.as_bytes());
    let loaded = Arc::new(FileCache::load(&saved, max).unwrap());
    let after = scan(&options(d, Some(loaded.clone())));
    assert_eq!(loaded.hits(), 3, "only the renewed file is read");
    assert_eq!(contents(&after), contents(&scan(&options(d, None))));
    assert!(
        contents(&after)
            .join("\n")
            .contains(&renewed_fingerprint(&renewed.der))
    );

    assert!(
        FileCache::load(&saved, max + 1).is_err(),
        "a cache for another size limit is not used"
    );
    let missing = FileCache::load(&d.join("nothing-here"), max).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Whatever the cache file holds, loading it is an error or a cache, never a panic.
    #[test]
    fn any_saved_bytes_load_or_fail_cleanly(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("files");
        let mut bytes = b"CVFILES\n".to_vec();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let _ = FileCache::load(&path, 1 << 20);
        std::fs::write(&path, &tail).unwrap();
        let _ = FileCache::load(&path, 1 << 20);
    }
}

#[test]
fn each_scope_has_its_own_saved_files_and_old_scopes_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let caches = CacheDir::new(dir.path());
    let a = caches.scan_files(&["/etc/ssl"]);
    assert_eq!(a, caches.scan_files(&["/etc/ssl"]));
    assert_ne!(a, caches.scan_files(&["/etc/pki"]));
    // Parts are delimited, not concatenated.
    assert_ne!(
        caches.scan_files(&["/a", "b/c"]),
        caches.scan_files(&["/a/b", "c"])
    );
    assert_ne!(a, caches.files());

    std::fs::write(caches.files(), b"daemon").unwrap();
    std::fs::write(caches.verified_links(), b"links").unwrap();
    let day = Duration::from_secs(86_400);
    let scopes: Vec<_> = (0..10)
        .map(|i| caches.scan_files(&[format!("/scope/{i}")]))
        .collect();
    let long_ago = std::time::SystemTime::now() - 30 * day;
    for (i, path) in scopes.iter().enumerate() {
        let file = std::fs::File::create(path).unwrap();
        file.set_modified(long_ago + i as u32 * day).unwrap();
    }
    // Used just now: the oldest scope becomes the newest.
    CacheDir::touch(&scopes[0]);
    assert_eq!(caches.prune_scan_files(8), 2);
    let kept = |p: &std::path::PathBuf| p.exists();
    assert!(kept(&scopes[0]));
    assert!(!kept(&scopes[1]) && !kept(&scopes[2]));
    assert!(scopes[3..].iter().all(kept));
    assert!(kept(&caches.files()) && kept(&caches.verified_links()));
    assert_eq!(caches.prune_scan_files(8), 0);
}
