//! `certvigil-corpus`: writes a realistic certificate inventory for the scan benchmark
//! (`scripts/bench-scan`, `docs/benchmarks.md`).
//!
//! Everything but the key material is a function of `--seed`, `--leaves` and `--now`: names,
//! layout, counts, serial numbers, validity windows, which CA signs which leaf, which leaves get
//! a wrong private key and which files are malformed. Keys and ECDSA signatures are random, so
//! two runs differ byte for byte but not in anything a scanner reports.
//!
//! ```text
//! <out>/ca/                          roots and intermediates, one PEM each
//! <out>/letsencrypt/live/<name>/     ~16% of leaves: fullchain.pem (leaf + intermediate), privkey.pem
//! <out>/certs/<shard>/<name>.crt     ~48%: leaf only; one in eight has <name>.key next to it
//! <out>/bundles/bundle-<i>.pem       ~31%: 10-50 leaves, then the intermediates they need
//! <out>/der/<shard>/<name>.der       ~5%: leaf only, DER, 1000 a shard
//!
//! The mix is chosen so that 100 000 leaves make about 90 000 files and 118 000 certificate
//! blocks: the shape of the reference corpus the performance targets were set on.
//! <out>/MANIFEST.json                counts, expected findings, the malformed files
//! ```
//!
//! Plus one malformed file per thousand (truncated PEM, binary junk named `.pem`, an empty file,
//! DER with trailing garbage), scattered into the `certs/` and `der/` shards.
//!
//! Leaf keys come from a pool (`--key-pool`, default 2000 P-256 keys, plus a few RSA-2048 and
//! P-384 keys) shared between leaves: generating 100 000 fresh keys would dominate the run, and
//! a scanner cannot take a shortcut from key reuse (every certificate still has its own
//! serial, validity, names and signature, and is parsed and checked on its own). Real fleets
//! reuse keys across renewals too.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use certvigil_testutil::KeyKind;
use clap::Parser;
use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

const DAY: i64 = 86_400;
/// Leaves per `certs/` shard: two files each, leaving room for malformed files under 1000.
const CERTS_SHARD: usize = 450;
const DER_SHARD: usize = 990;
const NAME_PREFIXES: &[&str] = &[
    "www", "api", "mail", "shop", "app", "vpn", "git", "db", "cdn", "auth", "portal", "intranet",
    "grafana", "billing", "status", "smtp",
];

/// Writes a deterministic benchmark corpus of certificates, keys and bundles.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory to write; must be empty or absent (see --force).
    #[arg(long, short)]
    out: PathBuf,
    /// Number of leaf certificates (each counted once, however many files hold it).
    #[arg(long, default_value_t = 100_000)]
    leaves: usize,
    /// Seed for names, layout, validity and everything else but key material.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of P-256 leaf keys to generate and share between leaves.
    #[arg(long, default_value_t = 2000)]
    key_pool: usize,
    /// Unix time validity windows are relative to (default: now).
    #[arg(long)]
    now: Option<i64>,
    /// Replace `--out` if it holds an earlier corpus (a MANIFEST.json).
    #[arg(long)]
    force: bool,
}

/// splitmix64: tiny, fast and good enough to pick names and dates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    fn per_million(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Live,
    Single,
    Bundle,
    Der,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    Valid,
    Expiring7,
    Expiring30,
    Expired,
    NotYetValid,
}

#[derive(Clone, Copy, Debug)]
struct KeyRef {
    kind: KeyKind,
    index: usize,
}

struct LeafPlan {
    name: String,
    layout: Layout,
    /// Position among the leaves of the same layout (drives sharding).
    position: usize,
    /// Index into the intermediates.
    issuer: usize,
    key: KeyRef,
    /// The key written next to the certificate, when it is not the certificate's own.
    wrong_key: Option<KeyRef>,
    validity: Validity,
    not_before: i64,
    not_after: i64,
    sans: usize,
    client_auth: bool,
    serial: [u8; 16],
}

struct CaPlan {
    slug: &'static str,
    name: &'static str,
    key: KeyKind,
    /// Index of the signing root; `None` for a root.
    parent: Option<usize>,
}

const ROOTS: &[CaPlan] = &[
    CaPlan {
        slug: "root-r1",
        name: "Bench Root R1",
        key: KeyKind::Rsa2048,
        parent: None,
    },
    CaPlan {
        slug: "root-e1",
        name: "Bench Root E1",
        key: KeyKind::P384,
        parent: None,
    },
    CaPlan {
        slug: "root-x2",
        name: "Bench Legacy Root X2",
        key: KeyKind::Rsa2048,
        parent: None,
    },
];

/// Intermediates and how many leaves per thousand each signs.
const INTERMEDIATES: &[(CaPlan, u64)] = &[
    (
        CaPlan {
            slug: "int-e5",
            name: "Bench E5",
            key: KeyKind::P256,
            parent: Some(1),
        },
        400,
    ),
    (
        CaPlan {
            slug: "int-e6",
            name: "Bench E6",
            key: KeyKind::P256,
            parent: Some(1),
        },
        350,
    ),
    (
        CaPlan {
            slug: "int-r10",
            name: "Bench R10",
            key: KeyKind::Rsa2048,
            parent: Some(0),
        },
        150,
    ),
    (
        CaPlan {
            slug: "int-r11",
            name: "Bench R11",
            key: KeyKind::Rsa2048,
            parent: Some(2),
        },
        100,
    ),
];

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Leaf keys, shared between leaves; PEM is serialised once.
struct KeyPool {
    p256: Vec<(KeyPair, String)>,
    p384: Vec<(KeyPair, String)>,
    rsa: Vec<(KeyPair, String)>,
}

impl KeyPool {
    fn generate(p256: usize) -> Self {
        let make = |kind: KeyKind, n: usize| -> Vec<(KeyPair, String)> {
            (0..n)
                .into_par_iter()
                .map(|_| {
                    let key = generate_key(kind);
                    let pem = key.serialize_pem();
                    (key, pem)
                })
                .collect()
        };
        Self {
            p256: make(KeyKind::P256, p256.max(1)),
            p384: make(KeyKind::P384, (p256 / 32).max(1)),
            rsa: make(KeyKind::Rsa2048, (p256 / 64).max(1)),
        }
    }

    fn len(&self, kind: KeyKind) -> usize {
        self.of(kind).len()
    }

    fn of(&self, kind: KeyKind) -> &[(KeyPair, String)] {
        match kind {
            KeyKind::P384 => &self.p384,
            KeyKind::Rsa2048 => &self.rsa,
            _ => &self.p256,
        }
    }

    fn get(&self, key: KeyRef) -> &(KeyPair, String) {
        &self.of(key.kind)[key.index]
    }
}

fn generate_key(kind: KeyKind) -> KeyPair {
    let key = match kind {
        KeyKind::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        other => KeyPair::generate_for(other.algorithm()),
    };
    key.expect("key generation")
}

fn ca_params(name: &str, now: i64, serial: [u8; 16]) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "XX");
    dn.push(DnType::OrganizationName, "Certvigil Bench PKI");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.not_before = datetime(now - 400 * DAY);
    params.not_after = datetime(now + 3000 * DAY);
    params.serial_number = Some(SerialNumber::from_slice(&positive(serial)));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

fn build_cas(now: i64, rng: &mut Rng) -> (Vec<Ca>, Vec<Ca>) {
    let serials: Vec<[u8; 16]> = (0..ROOTS.len() + INTERMEDIATES.len())
        .map(|_| rng.bytes())
        .collect();
    let all: Vec<&CaPlan> = ROOTS
        .iter()
        .chain(INTERMEDIATES.iter().map(|(p, _)| p))
        .collect();
    let keys: Vec<KeyPair> = all.par_iter().map(|plan| generate_key(plan.key)).collect();
    let mut keys = keys.into_iter();
    let mut roots = Vec::new();
    for (plan, serial) in ROOTS.iter().zip(&serials) {
        let key = keys.next().expect("root key");
        let params = ca_params(plan.name, now, *serial);
        let cert = params.self_signed(&key).expect("root");
        roots.push(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        });
    }
    let mut intermediates = Vec::new();
    for ((plan, _), serial) in INTERMEDIATES.iter().zip(&serials[ROOTS.len()..]) {
        let key = keys.next().expect("intermediate key");
        let mut params = ca_params(plan.name, now, *serial);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.not_after = datetime(now + 1100 * DAY);
        params.use_authority_key_identifier_extension = true;
        let parent = &roots[plan.parent.expect("intermediates have a root")];
        let cert = params
            .signed_by(&key, &parent.issuer)
            .expect("intermediate");
        intermediates.push(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        });
    }
    (roots, intermediates)
}

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("time in range")
}

/// A DER INTEGER must be positive and minimal: clear the top bit, never start with zero.
fn positive(mut serial: [u8; 16]) -> [u8; 16] {
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

/// certbot directories always hold the key; one single certificate in eight has its key
/// next to it.
fn has_key_file(layout: Layout, position: usize) -> bool {
    match layout {
        Layout::Live => true,
        Layout::Single => position.is_multiple_of(8),
        Layout::Bundle | Layout::Der => false,
    }
}

fn layout_counts(leaves: usize) -> [(Layout, usize); 4] {
    let live = leaves * 16 / 100;
    let single = leaves * 48 / 100;
    let bundle = leaves * 31 / 100;
    [
        (Layout::Live, live),
        (Layout::Single, single),
        (Layout::Bundle, bundle),
        (Layout::Der, leaves - live - single - bundle),
    ]
}

fn plan_leaves(args: &Args, now: i64, pool: &KeyPool, rng: &mut Rng) -> Vec<LeafPlan> {
    let mut plans = Vec::with_capacity(args.leaves);
    for (layout, count) in layout_counts(args.leaves) {
        for position in 0..count {
            let index = plans.len();
            let prefix = NAME_PREFIXES[rng.below(NAME_PREFIXES.len() as u64) as usize];
            let name = format!("{prefix}-{index:06}");

            let mut pick = rng.below(1000);
            let mut issuer = 0;
            for (i, (_, weight)) in INTERMEDIATES.iter().enumerate() {
                if pick < *weight {
                    issuer = i;
                    break;
                }
                pick -= weight;
            }

            let kind = match rng.below(100) {
                0..90 => KeyKind::P256,
                90..97 => KeyKind::Rsa2048,
                _ => KeyKind::P384,
            };
            let key = KeyRef {
                kind,
                index: rng.below(pool.len(kind) as u64) as usize,
            };
            let has_key_file = has_key_file(layout, position);
            // 1 in 44 of the 22% of leaves with a key file: 0.5% of all leaves.
            let wrong_key = (has_key_file && rng.per_million(22_727)).then(|| KeyRef {
                kind: KeyKind::P256,
                index: (key.index + 1 + rng.below(pool.p256.len() as u64 - 1) as usize)
                    % pool.p256.len(),
            });
            // Only a one-key pool can hand back the leaf's own key.
            let wrong_key = wrong_key.filter(|w| key.kind != KeyKind::P256 || w.index != key.index);

            let (validity, not_before, not_after) = plan_validity(now, rng);
            plans.push(LeafPlan {
                name,
                layout,
                position,
                issuer,
                key,
                wrong_key,
                validity,
                not_before,
                not_after,
                sans: 1 + rng.below(3) as usize,
                client_auth: rng.below(10) == 0,
                serial: positive(rng.bytes()),
            });
        }
    }
    plans
}

/// Most leaves have 30 days to a year left; a few expire soon, have expired, or start later.
fn plan_validity(now: i64, rng: &mut Rng) -> (Validity, i64, i64) {
    let jitter = rng.range(0, DAY);
    let class = rng.below(1_000_000);
    let (validity, not_after, lifetime) = match class {
        0..10_000 => (
            Validity::Expired,
            now - rng.range(1, 60) * DAY - jitter,
            90 * DAY,
        ),
        10_000..13_000 => {
            let not_before = now + rng.range(1, 30) * DAY + jitter;
            return (Validity::NotYetValid, not_before, not_before + 90 * DAY);
        }
        13_000..23_000 => (
            Validity::Expiring7,
            now + rng.range(1, 6) * DAY + jitter,
            90 * DAY,
        ),
        23_000..63_000 => (
            Validity::Expiring30,
            now + rng.range(8, 29) * DAY + jitter,
            90 * DAY,
        ),
        _ => {
            let lifetime = match rng.below(10) {
                0..7 => 90,
                7..9 => 365,
                _ => 397,
            };
            let left = rng.range(31, (lifetime - 1).min(365)) * DAY + jitter;
            (Validity::Valid, now + left, lifetime * DAY)
        }
    };
    (validity, not_after - lifetime, not_after)
}

fn leaf_der(plan: &LeafPlan, pool: &KeyPool, issuer: &Ca) -> Vec<u8> {
    let host = format!("{}.example.test", plan.name);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host.as_str());
    params.distinguished_name = dn;
    params.not_before = datetime(plan.not_before);
    params.not_after = datetime(plan.not_after);
    params.serial_number = Some(SerialNumber::from_slice(&plan.serial));
    let sans = [host.clone(), format!("www.{host}"), format!("alt.{host}")];
    for san in &sans[..plan.sans] {
        params
            .subject_alt_names
            .push(SanType::DnsName(san.clone().try_into().expect("dns name")));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if plan.key.kind == KeyKind::Rsa2048 {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if plan.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    let (key, _) = pool.get(plan.key);
    params
        .signed_by(key, &issuer.issuer)
        .expect("leaf")
        .der()
        .to_vec()
}

fn pem(der: &[u8]) -> String {
    const LINE: usize = 48; // 64 base64 characters
    let mut out = String::with_capacity(der.len() * 4 / 3 + 80);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in der.chunks(LINE) {
        base64_into(chunk, &mut out);
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn base64_into(data: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

/// One unit of parallel work: a directory, a file or a bundle.
enum Unit {
    Leaf(usize),
    Bundle { id: usize, leaves: Range<usize> },
}

#[derive(Default)]
struct Written {
    files: usize,
    cert_blocks: usize,
    bytes: u64,
}

impl Written {
    fn add(mut self, other: Self) -> Self {
        self.files += other.files;
        self.cert_blocks += other.cert_blocks;
        self.bytes += other.bytes;
        self
    }

    fn file(&mut self, path: &Path, data: &[u8], certs: usize) -> io::Result<()> {
        fs::write(path, data)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.files += 1;
        self.cert_blocks += certs;
        self.bytes += data.len() as u64;
        Ok(())
    }
}

fn units(plans: &[LeafPlan], rng: &mut Rng) -> Vec<Unit> {
    let mut units = Vec::new();
    let bundled: Vec<usize> = (0..plans.len())
        .filter(|&i| plans[i].layout == Layout::Bundle)
        .collect();
    units.extend(
        (0..plans.len())
            .filter(|&i| plans[i].layout != Layout::Bundle)
            .map(Unit::Leaf),
    );
    let (Some(&first), Some(&last)) = (bundled.first(), bundled.last()) else {
        return units;
    };
    let mut start = first;
    let mut id = 0;
    while start <= last {
        let size = rng.range(10, 51) as usize;
        // A short tail joins the bundle before it rather than making a tiny one.
        let end = if last + 1 - start < size + 10 {
            last + 1
        } else {
            start + size
        };
        units.push(Unit::Bundle {
            id,
            leaves: start..end,
        });
        id += 1;
        start = end;
    }
    units
}

fn write_unit(
    out: &Path,
    unit: &Unit,
    plans: &[LeafPlan],
    pool: &KeyPool,
    intermediates: &[Ca],
) -> io::Result<Written> {
    let mut w = Written::default();
    match *unit {
        Unit::Leaf(i) => {
            let plan = &plans[i];
            let issuer = &intermediates[plan.issuer];
            let der = leaf_der(plan, pool, issuer);
            let key_pem = &pool.get(plan.wrong_key.unwrap_or(plan.key)).1;
            match plan.layout {
                Layout::Live => {
                    let dir = out.join("letsencrypt/live").join(&plan.name);
                    fs::create_dir_all(&dir)?;
                    let leaf = pem(&der);
                    let full = format!("{leaf}{}", issuer.pem);
                    w.file(&dir.join("fullchain.pem"), full.as_bytes(), 2)?;
                    w.file(&dir.join("privkey.pem"), key_pem.as_bytes(), 0)?;
                }
                Layout::Single => {
                    let dir = out
                        .join("certs")
                        .join(format!("{:03}", plan.position / CERTS_SHARD));
                    let path = dir.join(format!("{}.crt", plan.name));
                    w.file(&path, pem(&der).as_bytes(), 1)?;
                    if has_key_file(plan.layout, plan.position) {
                        w.file(&path.with_extension("key"), key_pem.as_bytes(), 0)?;
                    }
                }
                Layout::Der => {
                    let dir = out
                        .join("der")
                        .join(format!("{:03}", plan.position / DER_SHARD));
                    w.file(&dir.join(format!("{}.der", plan.name)), &der, 1)?;
                }
                Layout::Bundle => unreachable!("bundled leaves are written by their bundle"),
            }
        }
        Unit::Bundle { id, ref leaves } => {
            let mut text = String::new();
            let mut used = Vec::new();
            for plan in &plans[leaves.clone()] {
                let issuer = &intermediates[plan.issuer];
                let der = leaf_der(plan, pool, issuer);
                let _ = writeln!(text, "# {}.example.test", plan.name);
                text.push_str(&pem(&der));
                if !used.contains(&plan.issuer) {
                    used.push(plan.issuer);
                }
            }
            used.sort_unstable();
            for &i in &used {
                let _ = writeln!(text, "# intermediate {}", INTERMEDIATES[i].0.name);
                text.push_str(&intermediates[i].pem);
            }
            let path = out.join("bundles").join(format!("bundle-{id:04}.pem"));
            w.file(&path, text.as_bytes(), leaves.len() + used.len())?;
        }
    }
    Ok(w)
}

struct Malformed {
    path: String,
    kind: &'static str,
}

/// One file in a thousand, spread over the `certs/` and `der/` shards.
fn write_malformed(
    out: &Path,
    count: usize,
    now: i64,
    pool: &KeyPool,
    intermediates: &[Ca],
    rng: &mut Rng,
) -> io::Result<(Vec<Malformed>, Written)> {
    let shards = |top: &str| -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(out.join(top)) else {
            return Vec::new();
        };
        let mut shards: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        shards.sort();
        shards
    };
    let mut pem_dirs = shards("certs");
    let mut der_dirs = shards("der");
    if pem_dirs.is_empty() {
        pem_dirs = der_dirs.clone();
    }
    if pem_dirs.is_empty() {
        pem_dirs.push(out.join("certs/000"));
    }
    if der_dirs.is_empty() {
        der_dirs = pem_dirs.clone();
    }
    let mut w = Written::default();
    let mut list = Vec::new();
    for i in 0..count {
        let dirs = if i % 4 == 3 { &der_dirs } else { &pem_dirs };
        let dir = &dirs[(i / 4) % dirs.len()];
        fs::create_dir_all(dir)?;
        let plan = LeafPlan {
            name: format!("broken-{i:04}"),
            layout: Layout::Single,
            position: 0,
            issuer: 0,
            key: KeyRef {
                kind: KeyKind::P256,
                index: 0,
            },
            wrong_key: None,
            validity: Validity::Valid,
            not_before: now - 10 * DAY,
            not_after: now + 80 * DAY,
            sans: 1,
            client_auth: false,
            serial: positive(rng.bytes()),
        };
        let (kind, name, data): (_, _, Vec<u8>) = match i % 4 {
            0 => {
                let text = pem(&leaf_der(&plan, pool, &intermediates[0]));
                let cut = text.len() * rng.range(30, 80) as usize / 100;
                (
                    "truncated_pem",
                    format!("{}.pem", plan.name),
                    text.as_bytes()[..cut].to_vec(),
                )
            }
            1 => {
                let mut junk: Vec<u8> = (0..rng.range(200, 2000))
                    .map(|_| rng.next() as u8)
                    .collect();
                junk[0] = 0x00; // neither PEM nor a DER SEQUENCE
                ("binary_junk", format!("{}.pem", plan.name), junk)
            }
            2 => ("empty", format!("{}.crt", plan.name), Vec::new()),
            _ => {
                let mut der = leaf_der(&plan, pool, &intermediates[0]);
                der.extend((0..rng.range(16, 64)).map(|_| rng.next() as u8));
                ("der_trailing_garbage", format!("{}.der", plan.name), der)
            }
        };
        let path = dir.join(name);
        w.file(&path, &data, 0)?;
        let relative = path
            .strip_prefix(out)
            .unwrap_or(&path)
            .display()
            .to_string();
        list.push(Malformed {
            path: relative,
            kind,
        });
    }
    Ok((list, w))
}

fn prepare_out(args: &Args) -> Result<(), String> {
    let out = &args.out;
    let occupied = fs::read_dir(out)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied {
        if !args.force || !out.join("MANIFEST.json").is_file() {
            return Err(format!(
                "{} is not empty; pass --force to replace an earlier corpus (one with a \
                 MANIFEST.json)",
                out.display()
            ));
        }
        fs::remove_dir_all(out).map_err(|e| format!("removing {}: {e}", out.display()))?;
    }
    for dir in ["ca", "letsencrypt/live", "certs", "bundles", "der"] {
        fs::create_dir_all(out.join(dir)).map_err(|e| format!("creating {dir}: {e}"))?;
    }
    Ok(())
}

fn create_shards(out: &Path, plans: &[LeafPlan]) -> io::Result<()> {
    let count = |layout| plans.iter().filter(|p| p.layout == layout).count();
    for shard in 0..count(Layout::Single).div_ceil(CERTS_SHARD) {
        fs::create_dir_all(out.join(format!("certs/{shard:03}")))?;
    }
    for shard in 0..count(Layout::Der).div_ceil(DER_SHARD) {
        fs::create_dir_all(out.join(format!("der/{shard:03}")))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certvigil-corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let now = args
        .now
        .unwrap_or_else(|| OffsetDateTime::now_utc().unix_timestamp());
    let mut rng = Rng(args.seed);
    prepare_out(args)?;
    let out = args.out.as_path();

    let (roots, intermediates) = build_cas(now, &mut rng);
    let pool = KeyPool::generate(args.key_pool);
    let keys_done = started.elapsed();
    eprintln!(
        "keys: {} CAs, {} P-256 + {} P-384 + {} RSA-2048 leaf keys in {:.2}s",
        roots.len() + intermediates.len(),
        pool.p256.len(),
        pool.p384.len(),
        pool.rsa.len(),
        keys_done.as_secs_f64()
    );

    let plans = plan_leaves(args, now, &pool, &mut rng);
    let units = units(&plans, &mut rng);
    let mut ca_files = Written::default();
    for (plan, ca) in ROOTS
        .iter()
        .zip(&roots)
        .chain(INTERMEDIATES.iter().map(|(p, _)| p).zip(&intermediates))
    {
        ca_files
            .file(
                &out.join(format!("ca/{}.pem", plan.slug)),
                ca.pem.as_bytes(),
                1,
            )
            .map_err(|e| e.to_string())?;
    }
    create_shards(out, &plans).map_err(|e| e.to_string())?;
    let issue_started = Instant::now();
    let written = units
        .par_iter()
        .map(|unit| write_unit(out, unit, &plans, &pool, &intermediates))
        .try_reduce(Written::default, |a, b| Ok(a.add(b)))
        .map_err(|e| e.to_string())?;
    let issue_time = issue_started.elapsed();
    let written = ca_files.add(written);
    eprintln!(
        "leaves: {} issued and written in {:.2}s ({:.0}/s)",
        plans.len(),
        issue_time.as_secs_f64(),
        plans.len() as f64 / issue_time.as_secs_f64().max(1e-9)
    );

    let malformed_count = written.files.div_ceil(1000);
    let (malformed, extra) =
        write_malformed(out, malformed_count, now, &pool, &intermediates, &mut rng)
            .map_err(|e| e.to_string())?;
    let written = written.add(extra);

    let manifest = manifest(args, now, &plans, &units, &written, &malformed, &pool);
    fs::write(out.join("MANIFEST.json"), manifest).map_err(|e| format!("MANIFEST.json: {e}"))?;
    eprintln!(
        "corpus: {} files ({} malformed), {} certificate blocks, {:.1} MiB in {} in {:.2}s",
        written.files,
        malformed.len(),
        written.cert_blocks,
        written.bytes as f64 / (1024.0 * 1024.0),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn manifest(
    args: &Args,
    now: i64,
    plans: &[LeafPlan],
    units: &[Unit],
    written: &Written,
    malformed: &[Malformed],
    pool: &KeyPool,
) -> String {
    let count = |f: &dyn Fn(&LeafPlan) -> bool| plans.iter().filter(|p| f(p)).count();
    let layout = |l: Layout| count(&|p| p.layout == l);
    let validity = |v: Validity| count(&|p| p.validity == v);
    let bundles = units
        .iter()
        .filter(|u| matches!(u, Unit::Bundle { .. }))
        .count();
    let cas = ROOTS.len() + INTERMEDIATES.len();
    let mut s = String::new();
    let _ = writeln!(s, "{{");
    let _ = writeln!(s, "  \"generator\": \"certvigil-corpus\",");
    let _ = writeln!(s, "  \"seed\": {},", args.seed);
    let _ = writeln!(s, "  \"leaves\": {},", plans.len());
    let _ = writeln!(s, "  \"now\": {now},");
    let _ = writeln!(s, "  \"files\": {},", written.files);
    let _ = writeln!(s, "  \"leaf_certs\": {},", plans.len());
    let _ = writeln!(s, "  \"ca_certs\": {cas},");
    let _ = writeln!(s, "  \"unique_certs\": {},", plans.len() + cas);
    let _ = writeln!(s, "  \"cert_blocks\": {},", written.cert_blocks);
    let _ = writeln!(
        s,
        "  \"key_pool\": {{\"p256\": {}, \"p384\": {}, \"rsa2048\": {}}},",
        pool.p256.len(),
        pool.p384.len(),
        pool.rsa.len()
    );
    let _ = writeln!(
        s,
        "  \"layout\": {{\"letsencrypt_live\": {}, \"certs\": {}, \"bundled\": {}, \"bundles\": \
         {bundles}, \"der\": {}}},",
        layout(Layout::Live),
        layout(Layout::Single),
        layout(Layout::Bundle),
        layout(Layout::Der)
    );
    let _ = writeln!(
        s,
        "  \"leaves_by_validity\": {{\"valid\": {}, \"expiring_7d\": {}, \"expiring_30d\": {}, \
         \"expired\": {}, \"not_yet_valid\": {}}},",
        validity(Validity::Valid),
        validity(Validity::Expiring7),
        validity(Validity::Expiring30),
        validity(Validity::Expired),
        validity(Validity::NotYetValid)
    );
    let _ = writeln!(
        s,
        "  \"leaves_with_wrong_key\": {},",
        count(&|p| p.wrong_key.is_some())
    );
    let _ = writeln!(
        s,
        "  \"leaves_by_key\": {{\"p256\": {}, \"p384\": {}, \"rsa2048\": {}}},",
        count(&|p| p.key.kind == KeyKind::P256),
        count(&|p| p.key.kind == KeyKind::P384),
        count(&|p| p.key.kind == KeyKind::Rsa2048)
    );
    let _ = writeln!(s, "  \"malformed_files\": [");
    for (i, m) in malformed.iter().enumerate() {
        let comma = if i + 1 < malformed.len() { "," } else { "" };
        let _ = writeln!(
            s,
            "    {{\"path\": \"{}\", \"kind\": \"{}\"}}{comma}",
            m.path, m.kind
        );
    }
    let _ = writeln!(s, "  ]");
    let _ = writeln!(s, "}}");
    s
}
