//! Shared by `tests/crash.rs` and `tests/activate.rs`: staged generations that are real
//! certificate + key pairs, two copy-out targets, and the consistency check every test runs
//! after a crash or an error.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use certvigil_deploy::activate::{CopyOut, LiveDir};
use certvigil_issue::{Generation, Issued, SecretPem, Staging};
use certvigil_testutil::{Pki, Spec};
use nix::unistd::{Group, User};

pub const NAME: &str = "web";
pub const KEEP: usize = 2;
const PARTS: [&str; 4] = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"];

/// Stages `count` generations under `staging`, each a fresh leaf and key from one PKI, and
/// checks each with `Issued::validate` (the key matches, the intermediate signed the leaf).
pub fn stage(staging: &Path, count: usize) -> Vec<Generation> {
    let pki = Pki::new("deploy crash");
    let staging = Staging::new(staging);
    (0..count)
        .map(|i| {
            let leaf = pki.leaf(&Spec::leaf("web.test"));
            let issued = Issued {
                leaf_pem: leaf.pem.clone(),
                chain_pem: pki.intermediate.cert.pem.clone(),
                key: SecretPem::new(leaf.key_pem()),
            };
            issued.validate(&[], &[], now(), 0).unwrap();
            staging
                .stage(
                    NAME,
                    &issued,
                    1_700_000_000_000_000_000 + i as u128,
                    &format!("{i:02x}"),
                )
                .unwrap()
        })
        .collect()
}

/// The generations staged by [`stage`], oldest first (what a child process sees).
pub fn staged(staging: &Path) -> Vec<Generation> {
    Staging::new(staging).generations(NAME).unwrap()
}

pub fn live(run: &Path) -> LiveDir {
    LiveDir::new(run.join("live"), KEEP)
}

/// Two services: one wants fullchain + key owned by `nobody`, the other cert, chain and a
/// group-readable key.
pub fn targets(run: &Path) -> Vec<CopyOut> {
    let (a, b) = (run.join("out/a"), run.join("out/b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    vec![
        CopyOut {
            fullchain: Some(a.join("fullchain.pem")),
            key: Some(a.join("privkey.pem")),
            owner: Some("nobody".into()),
            group: Some("daemon".into()),
            ..CopyOut::default()
        },
        CopyOut {
            cert: Some(b.join("cert.pem")),
            chain: Some(b.join("chain.pem")),
            key: Some(b.join("key.pem")),
            group: Some("daemon".into()),
            key_mode: Some(0o640),
            ..CopyOut::default()
        },
    ]
}

/// What a consistent live directory looks like after `recover()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The generation `current` points at.
    pub current: String,
    /// The one generation every copy-out target holds (`None`: no copy-out yet).
    pub copied_out: Option<String>,
}

/// Asserts the live directory and the copy-out targets are consistent and returns which
/// generations they hold:
/// - `current` resolves to a complete generation, byte for byte one of `generations`, whose
///   key matches its certificate (checked again with `Issued::validate`), also through the
///   service paths `current/*.pem`;
/// - every directory under `generations/` is complete; no `.partial`, `.trash`, `current.new`
///   or journal is left;
/// - every copy-out file belongs to one and the same generation, with its owner and mode, and
///   no temporary file is left beside them.
pub fn check(run: &Path, generations: &[Generation]) -> Snapshot {
    let live = live(run);
    let current = live.current().unwrap().expect("something is live");
    let generation = generations
        .iter()
        .find(|g| g.id == current)
        .unwrap_or_else(|| panic!("current points at unknown generation {current}"));
    let resolved = live.current_generation().unwrap().unwrap();
    assert_same(&resolved, generation);
    let paths = live.paths();
    assert_pair(&paths.cert, &paths.chain, &paths.key);
    assert_eq!(
        fs::read(&paths.fullchain).unwrap(),
        fs::read(generation.fullchain()).unwrap()
    );
    assert_eq!(fs::metadata(&paths.key).unwrap().mode() & 0o777, 0o600);

    let dir = live.dir();
    for leftover in ["current.new", "copyout.pending", "copyout.pending.new"] {
        assert!(
            fs::symlink_metadata(dir.join(leftover)).is_err(),
            "{leftover} left behind"
        );
    }
    for entry in fs::read_dir(dir.join("generations")).unwrap() {
        let entry = entry.unwrap();
        let id = entry.file_name().into_string().unwrap();
        let staged = generations
            .iter()
            .find(|g| g.id == id)
            .unwrap_or_else(|| panic!("generations/{id} is not a complete generation"));
        let there = Generation {
            dir: entry.path(),
            id,
        };
        assert_same(&there, staged);
    }

    // Which generations could every copy-out file come from? (chain.pem is the same
    // intermediate in all of them; the leaf and the key single one out.)
    let files = copy_out_files(run);
    let present: Vec<_> = files
        .iter()
        .filter_map(|(path, part)| Some((path, part, fs::read(path).ok()?)))
        .collect();
    let mut candidates: Vec<&Generation> = generations.iter().collect();
    for (path, part, bytes) in &present {
        candidates.retain(|g| fs::read(g.dir.join(part)).unwrap() == *bytes);
        assert!(
            !candidates.is_empty(),
            "{} does not belong with the other copy-out files",
            path.display()
        );
    }
    let copied_out = (!present.is_empty()).then(|| {
        assert_eq!(
            candidates.len(),
            1,
            "copy-out files fit several generations"
        );
        candidates[0].id.clone()
    });
    if copied_out.is_some() {
        for (path, _) in &files {
            assert!(
                path.exists(),
                "{} missing while others exist",
                path.display()
            );
        }
        let out = run.join("out");
        assert_pair(
            &out.join("b/cert.pem"),
            &out.join("b/chain.pem"),
            &out.join("b/key.pem"),
        );
        let nobody = User::from_name("nobody").unwrap().unwrap().uid.as_raw();
        let daemon = Group::from_name("daemon").unwrap().unwrap().gid.as_raw();
        let key = fs::metadata(out.join("a/privkey.pem")).unwrap();
        assert_eq!(
            (key.uid(), key.gid(), key.mode() & 0o777),
            (nobody, daemon, 0o600)
        );
        let key = fs::metadata(out.join("b/key.pem")).unwrap();
        assert_eq!(
            (key.uid(), key.gid(), key.mode() & 0o777),
            (0, daemon, 0o640)
        );
    }
    assert_eq!(
        temp_files(run),
        Vec::<PathBuf>::new(),
        "temporary copy-out files left"
    );
    Snapshot {
        current,
        copied_out,
    }
}

/// Temporary copy-out files in the target directories.
pub fn temp_files(run: &Path) -> Vec<PathBuf> {
    ["out/a", "out/b"]
        .iter()
        .flat_map(|d| fs::read_dir(run.join(d)).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".certvigil-new"))
        .collect()
}

/// Every copy-out target file with the generation file it copies.
fn copy_out_files(run: &Path) -> Vec<(PathBuf, &'static str)> {
    let out = run.join("out");
    vec![
        (out.join("a/fullchain.pem"), "fullchain.pem"),
        (out.join("a/privkey.pem"), "privkey.pem"),
        (out.join("b/cert.pem"), "cert.pem"),
        (out.join("b/chain.pem"), "chain.pem"),
        (out.join("b/key.pem"), "privkey.pem"),
    ]
}

fn assert_same(there: &Generation, staged: &Generation) {
    for part in PARTS {
        assert_eq!(
            fs::read(there.dir.join(part)).unwrap(),
            fs::read(staged.dir.join(part)).unwrap(),
            "{} differs from the staged generation",
            there.dir.join(part).display()
        );
    }
}

/// The key in `key` belongs to the leaf in `cert`, which `chain` signed.
pub fn assert_pair(cert: &Path, chain: &Path, key: &Path) {
    let issued = Issued {
        leaf_pem: fs::read_to_string(cert).unwrap(),
        chain_pem: fs::read_to_string(chain).unwrap(),
        key: SecretPem::new(fs::read_to_string(key).unwrap()),
    };
    issued.validate(&[], &[], now(), 0).unwrap();
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
