use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use certvigil_issue::{Issued, Staging};
use certvigil_testutil::{Pki, Spec};
use nix::unistd::User;

use super::*;

/// `count` staged generations of certificate "web", each a real leaf + intermediate + key.
fn staged(count: usize) -> (tempfile::TempDir, Vec<Generation>) {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new("deploy unit");
    let staging = Staging::new(tmp.path().join("staging"));
    let generations = (0..count)
        .map(|i| {
            let leaf = pki.leaf(&Spec::leaf("web.test"));
            let issued = Issued {
                leaf_pem: leaf.pem.clone(),
                chain_pem: pki.intermediate.cert.pem.clone(),
                key: SecretPem::new(leaf.key_pem()),
            };
            staging
                .stage(
                    "web",
                    &issued,
                    1_700_000_000_000_000_000 + i as u128,
                    &format!("{i:02x}"),
                )
                .unwrap()
        })
        .collect();
    (tmp, generations)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The key in `key` belongs to the leaf in `cert`, which `chain` signed.
fn assert_pair(cert: &Path, chain: &Path, key: &Path) {
    let issued = Issued {
        leaf_pem: fs::read_to_string(cert).unwrap(),
        chain_pem: fs::read_to_string(chain).unwrap(),
        key: SecretPem::new(fs::read_to_string(key).unwrap()),
    };
    issued.validate(&[], &[], now(), 0).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn activate_twice_then_roll_back_and_forth() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 3);
    assert_eq!(live.current().unwrap(), None);
    assert_eq!(live.previous().unwrap(), None);

    let first = live.activate(&g[0]).unwrap();
    assert_eq!(first.previous, None);
    assert_eq!(first.current, g[0].id);
    let second = live.activate(&g[1]).unwrap();
    assert_eq!(second.previous.as_deref(), Some(g[0].id.as_str()));
    assert_eq!(live.current().unwrap().as_deref(), Some(g[1].id.as_str()));
    assert_eq!(live.previous().unwrap().as_deref(), Some(g[0].id.as_str()));
    let paths = live.paths();
    assert_eq!(
        fs::read(&paths.fullchain).unwrap(),
        fs::read(g[1].fullchain()).unwrap()
    );
    assert_pair(&paths.cert, &paths.chain, &paths.key);

    let back = live.rollback().unwrap();
    assert_eq!(back.previous.as_deref(), Some(g[1].id.as_str()));
    assert_eq!(back.current, g[0].id);
    assert_eq!(fs::read(&paths.key).unwrap(), fs::read(g[0].key()).unwrap());
    // Nothing is older than the first generation.
    let err = live.rollback().unwrap_err();
    assert_eq!(err.stage(), Stage::Rollback);
    assert!(err.to_string().starts_with("rollback: "), "{err}");
    assert!(
        err.to_string().contains("no generation older than"),
        "{err}"
    );

    // Activating the newer one again reuses its directory; activating the live one is a no-op.
    live.activate(&g[1]).unwrap();
    let again = live.activate(&g[1]).unwrap();
    assert_eq!(
        again.previous,
        Some(g[0].id.clone()),
        "as the first attempt said"
    );
    assert_eq!(again.current, g[1].id);
    assert_eq!(
        live.generations().unwrap(),
        vec![g[0].id.clone(), g[1].id.clone()]
    );
    assert_eq!(live.recover().unwrap(), None);
}

#[test]
fn prune_keeps_the_newest_and_never_the_live_pair() {
    let (tmp, g) = staged(6);
    let live = LiveDir::new(tmp.path().join("live"), 3);
    for generation in &g[..5] {
        live.activate(generation).unwrap();
    }
    let ids =
        |range: std::ops::Range<usize>| g[range].iter().map(|g| g.id.clone()).collect::<Vec<_>>();
    assert_eq!(live.generations().unwrap(), ids(2..5));

    // Roll back twice: the live generation is now the oldest kept one.
    live.rollback().unwrap();
    live.rollback().unwrap();
    assert_eq!(live.current().unwrap(), Some(g[2].id.clone()));
    assert_eq!(live.previous().unwrap(), None);
    // Re-activating an old, pruned generation copies it in again; pruning keeps the newest
    // three plus the live one and the one before it, so the rollback target survives.
    live.activate(&g[1]).unwrap();
    assert_eq!(live.generations().unwrap(), ids(1..5));
    assert_eq!(live.previous().unwrap(), None);
    live.activate(&g[5]).unwrap();
    assert_eq!(live.generations().unwrap(), ids(3..6));
    assert_eq!(live.previous().unwrap(), Some(g[4].id.clone()));

    // keep below 2 is raised to 2.
    let tight = LiveDir::new(tmp.path().join("tight"), 0);
    for generation in &g {
        tight.activate(generation).unwrap();
    }
    assert_eq!(tight.generations().unwrap(), ids(4..6));
}

#[test]
fn files_and_directories_get_their_modes() {
    let (tmp, g) = staged(1);
    let live = LiveDir::new(tmp.path().join("a/b/live"), 2);
    live.activate(&g[0]).unwrap();
    let generation = live.current_generation().unwrap().unwrap();
    for dir in [
        tmp.path().join("a"),
        tmp.path().join("a/b"),
        live.dir().to_owned(),
        live.dir().join(GENERATIONS),
        generation.dir.clone(),
    ] {
        assert_eq!(mode(&dir), 0o755, "{}", dir.display());
    }
    for file in [
        generation.cert(),
        generation.chain(),
        generation.fullchain(),
    ] {
        assert_eq!(mode(&file), 0o644, "{}", file.display());
    }
    assert_eq!(mode(&generation.key()), 0o600);
    assert_eq!(mode(&live.dir().join(LOCK)), 0o600);
    assert_eq!(
        fs::read_link(live.dir().join(CURRENT)).unwrap(),
        Path::new("generations").join(&g[0].id),
        "a relative link, so the directory can be moved or bind-mounted"
    );
}

#[test]
fn readers_resolving_current_once_always_get_a_matching_pair() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    live.activate(&g[0]).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = g
        .iter()
        .map(|g| (fs::read(g.fullchain()).unwrap(), fs::read(g.key()).unwrap()))
        .collect();
    let done = AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut reads = 0u32;
                    while !done.load(Ordering::Relaxed) {
                        // What a service does at start or reload: resolve the link once, then
                        // open both files below the directory it resolved to.
                        let dir = fs::canonicalize(live.dir().join(CURRENT)).unwrap();
                        let pair = (
                            fs::read(dir.join("fullchain.pem")).unwrap(),
                            fs::read(dir.join("privkey.pem")).unwrap(),
                        );
                        assert!(expected.contains(&pair), "a mixed pair was read");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 0..200 {
            live.activate(&g[i % 2]).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        readers.into_iter().map(|r| r.join().unwrap()).sum::<u32>()
    });
    assert!(reads > 0);
    let paths = live.paths();
    assert_pair(&paths.cert, &paths.chain, &paths.key);
}

#[test]
fn a_different_generation_under_a_live_id_is_refused() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    live.activate(&g[0]).unwrap();
    live.activate(&g[1]).unwrap();
    let impostor = Generation {
        dir: g[1].dir.clone(),
        id: g[0].id.clone(),
    };
    let err = live.activate(&impostor).unwrap_err();
    assert_eq!(err.stage(), Stage::Stage);
    assert_eq!(err.path(), live.dir().join(GENERATIONS).join(&g[0].id));
    assert_eq!(live.current().unwrap(), Some(g[1].id.clone()));

    for id in ["", "../escape", ".hidden", "x.partial", "x.trash", "a/b"] {
        let bad = Generation {
            dir: g[0].dir.clone(),
            id: id.into(),
        };
        let err = live.activate(&bad).unwrap_err();
        assert!(
            err.to_string().contains("not a usable generation id"),
            "{err}"
        );
    }
    assert_eq!(live.current().unwrap(), Some(g[1].id.clone()));
}

#[test]
fn a_missing_staged_file_fails_the_stage_and_leaves_nothing() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    live.activate(&g[0]).unwrap();
    fs::remove_file(g[1].chain()).unwrap();
    let err = live.activate(&g[1]).unwrap_err();
    assert_eq!(err.stage(), Stage::Stage);
    assert_eq!(err.path(), g[1].chain());
    assert!(err.to_string().starts_with("stage: "), "{err}");
    assert_eq!(live.current().unwrap(), Some(g[0].id.clone()));
    assert_eq!(live.generations().unwrap(), vec![g[0].id.clone()]);
    assert_eq!(live.recover().unwrap(), None);
}

#[test]
fn leftovers_of_a_crash_are_removed_by_recover_and_by_the_next_activate() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    live.activate(&g[0]).unwrap();
    let generations = live.dir().join(GENERATIONS);
    let leftovers = [
        generations.join(format!("{}.partial", g[1].id)),
        generations.join(format!("{}.trash", g[0].id)),
    ];
    for dir in &leftovers {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("cert.pem"), "half").unwrap();
    }
    symlink("generations/nowhere", live.dir().join(CURRENT_NEW)).unwrap();
    assert_eq!(
        live.generations().unwrap(),
        vec![g[0].id.clone()],
        "never listed"
    );

    let recovery = live.recover().unwrap().unwrap();
    let mut removed = recovery.removed.clone();
    removed.sort();
    let mut expected = leftovers.to_vec();
    expected.push(live.dir().join(CURRENT_NEW));
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(live.recover().unwrap(), None, "idempotent");

    fs::create_dir(&leftovers[0]).unwrap();
    live.activate(&g[1]).unwrap();
    assert!(!leftovers[0].exists());
}

#[test]
fn current_that_is_not_ours_is_a_clear_error() {
    let (tmp, g) = staged(1);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    fs::create_dir_all(live.dir().join(CURRENT)).unwrap();
    let err = live.activate(&g[0]).unwrap_err();
    assert_eq!(err.path(), live.dir().join(CURRENT));
    assert!(err.to_string().contains("is not a symlink"), "{err}");

    fs::remove_dir(live.dir().join(CURRENT)).unwrap();
    symlink("/etc", live.dir().join(CURRENT)).unwrap();
    let err = live.current().unwrap_err();
    assert!(err.to_string().contains("not at generations/<id>"), "{err}");
}

#[test]
fn copy_out_writes_the_current_generation_with_owner_group_and_mode() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = live.copy_out(&[]).unwrap_err();
    assert!(err.to_string().contains("nothing is live yet"), "{err}");

    live.activate(&g[0]).unwrap();
    let service = CopyOut {
        fullchain: Some(out.join("fullchain.pem")),
        key: Some(out.join("key.pem")),
        owner: Some("nobody".into()),
        group: Some("daemon".into()),
        ..CopyOut::default()
    };
    let group_readable = CopyOut {
        cert: Some(out.join("cert.pem")),
        chain: Some(out.join("chain.pem")),
        key: Some(out.join("shared-key.pem")),
        group: Some("1".into()),
        key_mode: Some(0o640),
        ..CopyOut::default()
    };
    let targets = [service, group_readable];
    live.copy_out(&targets).unwrap();

    let nobody = User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    let meta = fs::metadata(out.join("key.pem")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (nobody, 1, 0o600)
    );
    let meta = fs::metadata(out.join("fullchain.pem")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (nobody, 1, 0o644)
    );
    let meta = fs::metadata(out.join("shared-key.pem")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 1, 0o640)
    );
    assert_pair(
        &out.join("cert.pem"),
        &out.join("chain.pem"),
        &out.join("shared-key.pem"),
    );
    assert_eq!(
        fs::read(out.join("key.pem")).unwrap(),
        fs::read(g[0].key()).unwrap()
    );

    // The next generation replaces every file; nothing else is left in the directory.
    live.activate(&g[1]).unwrap();
    live.copy_out(&targets).unwrap();
    assert_eq!(
        fs::read(out.join("fullchain.pem")).unwrap(),
        fs::read(g[1].fullchain()).unwrap()
    );
    assert_pair(
        &out.join("cert.pem"),
        &out.join("chain.pem"),
        &out.join("key.pem"),
    );
    let mut names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "key.pem",
            "shared-key.pem"
        ]
    );
    assert!(!live.dir().join("copyout.pending").exists());
}

#[test]
fn bad_copy_out_targets_are_refused_before_anything_is_written() {
    let (tmp, g) = staged(2);
    let live = LiveDir::new(tmp.path().join("live"), 2);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    live.activate(&g[0]).unwrap();
    let good = CopyOut {
        fullchain: Some(out.join("fullchain.pem")),
        key: Some(out.join("privkey.pem")),
        ..CopyOut::default()
    };
    live.copy_out(std::slice::from_ref(&good)).unwrap();
    live.activate(&g[1]).unwrap();

    // The parent of a target is a regular file: the temp file cannot be created.
    fs::write(tmp.path().join("not-a-dir"), "").unwrap();
    let blocked = CopyOut {
        key: Some(tmp.path().join("not-a-dir/privkey.pem")),
        ..CopyOut::default()
    };
    let cases = [
        (blocked, "Not a directory"),
        (
            CopyOut {
                cert: Some(out.join("cert.pem")),
                owner: Some("no-such-user-certvigil".into()),
                ..CopyOut::default()
            },
            "no user named",
        ),
        (
            CopyOut {
                cert: Some(out.join("cert.pem")),
                group: Some("no-such-group-certvigil".into()),
                ..CopyOut::default()
            },
            "no group named",
        ),
        (
            CopyOut {
                cert: Some(out.join("fullchain.pem")),
                ..CopyOut::default()
            },
            "more than one copy-out file",
        ),
        (
            CopyOut {
                key: Some(out.join("other-key.pem")),
                key_mode: Some(0o4755),
                ..CopyOut::default()
            },
            "bits beyond rwx",
        ),
        (
            CopyOut {
                cert: Some(PathBuf::from("/")),
                ..CopyOut::default()
            },
            "must name a file",
        ),
    ];
    for (bad, message) in cases {
        let err = live.copy_out(&[good.clone(), bad]).unwrap_err();
        assert_eq!(err.stage(), Stage::CopyOut);
        assert!(err.to_string().starts_with("copy-out: "), "{err}");
        assert!(err.to_string().contains(message), "{err}");
        // The good target still holds the old generation, whole, and no temp file is left.
        assert_eq!(
            fs::read(out.join("fullchain.pem")).unwrap(),
            fs::read(g[0].fullchain()).unwrap()
        );
        assert_eq!(
            fs::read(out.join("privkey.pem")).unwrap(),
            fs::read(g[0].key()).unwrap()
        );
        assert_eq!(fs::read_dir(&out).unwrap().count(), 2);
        assert!(!live.dir().join("copyout.pending").exists());
    }
    let err = live
        .copy_out(&[CopyOut {
            key: Some(tmp.path().join("not-a-dir/privkey.pem")),
            ..CopyOut::default()
        }])
        .unwrap_err();
    assert_eq!(
        err.path(),
        tmp.path().join("not-a-dir/.privkey.pem.certvigil-new")
    );
    live.copy_out(&[good]).unwrap();
    assert_eq!(
        fs::read(out.join("privkey.pem")).unwrap(),
        fs::read(g[1].key()).unwrap()
    );
}

#[test]
fn every_fault_name_in_the_code_is_listed_and_every_listed_name_is_used() {
    let sources = [include_str!("../activate.rs"), include_str!("copy_out.rs")].concat();
    let listed: BTreeSet<&str> = fault::POINTS
        .iter()
        .chain(fault::IO_POINTS)
        .copied()
        .collect();
    for name in &listed {
        assert!(
            sources.contains(&format!("\"{name}\"")),
            "{name} is listed but never used"
        );
    }
    // Every string literal that looks like a point name must be listed.
    let prefixes = [
        "activate.",
        "prune.",
        "rollback.",
        "copyout.",
        "journal.",
        "recover.",
    ];
    let not_points = ["copyout.pending", "copyout.pending.new"];
    for literal in sources.split('"').skip(1).step_by(2) {
        let looks_like_a_point = prefixes.iter().any(|p| literal.starts_with(p))
            && literal
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
        if looks_like_a_point && !not_points.contains(&literal) {
            assert!(
                listed.contains(literal),
                "{literal} is used but not listed in fault.rs"
            );
        }
    }
}
