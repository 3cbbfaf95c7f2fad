//! The inventory: every certificate found, once, and every place it was found.
//!
//! Certificates are stored once by fingerprint (a trust store lists the same roots several
//! times; a fleet of fullchains repeats the same intermediates); sources refer to them by id.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::cert::{Certificate, Fingerprint, IssuerKey, Profile};
use crate::crl::Crl;
use crate::decode::Decoded;
use crate::error::ParseError;
use crate::key::PrivateKey;
use crate::linkcache::LinkCache;
use crate::verify::{SignatureVerdict, verify_prepared};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    File,
    TrustStore,
    Kubeconfig,
    Kube,
    Endpoint,
    Stdin,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::TrustStore => "trust_store",
            Self::Kubeconfig => "kubeconfig",
            Self::Kube => "kube",
            Self::Endpoint => "endpoint",
            Self::Stdin => "stdin",
        }
    }
}

/// Where something was found: a path, an endpoint, a key inside a kube object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub kind: SourceKind,
    /// Path, `host:port`, or the kube object (`secret/namespace/name`).
    pub name: Arc<str>,
    /// Position inside `name`: a data key, a kubeconfig user, an SNI name.
    pub detail: Option<Box<str>>,
}

impl Location {
    pub fn new(kind: SourceKind, name: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            name: name.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<Box<str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(detail) = &self.detail {
            write!(f, " [{detail}]")?;
        }
        Ok(())
    }
}

/// What a source is expected to be, so role and hostname checks know what to test.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// Host names (or IPs) the leaf must cover.
    pub hosts: Vec<String>,
    pub role: Option<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    TlsServer,
    TlsClient,
    /// etcd peers dial each other: both serverAuth and clientAuth.
    EtcdPeer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tls-server" | "server" | "etcd-server" => Self::TlsServer,
            "tls-client" | "client" | "etcd-client" => Self::TlsClient,
            "etcd-peer" | "peer" => Self::EtcdPeer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TlsServer => "tls-server",
            Self::TlsClient => "tls-client",
            Self::EtcdPeer => "etcd-peer",
        }
    }
}

/// What a TLS handshake told us beyond the certificates.
#[derive(Clone, Debug, Default)]
pub struct EndpointInfo {
    pub sni: Option<String>,
    pub tls_version: Option<String>,
    pub cipher_suite: Option<String>,
    pub alpn: Option<String>,
    /// The TLS library's own verdict on the presented chain; `None` means accepted.
    pub verify_error: Option<String>,
    pub handshake_ms: u64,
}

#[derive(Debug)]
pub struct Source {
    pub location: Location,
    pub certs: Box<[CertId]>,
    pub keys: Box<[PrivateKey]>,
    pub expect: Arc<Expectations>,
    /// Certificates here are trust anchors (system trust store, `--ca-file`).
    pub anchor: bool,
    /// Listed in outputs. Anchors loaded only to judge endpoints are not.
    pub reported: bool,
    /// What few sources have, kept out of line: one pointer per file instead of five fields.
    rare: Option<Box<Rare>>,
}

#[derive(Debug, Default)]
struct Rare {
    encrypted_keys: u32,
    crls: Box<[Crl]>,
    endpoint: Option<EndpointInfo>,
    /// DER kept for sources that cannot be read again (endpoints, stdin, kube objects).
    retained_der: Option<Box<[Vec<u8>]>>,
}

impl Source {
    pub fn crls(&self) -> &[Crl] {
        self.rare.as_ref().map_or(&[], |r| &r.crls)
    }

    pub fn endpoint(&self) -> Option<&EndpointInfo> {
        self.rare.as_ref()?.endpoint.as_ref()
    }

    /// Private keys present but encrypted, so not paired.
    pub fn encrypted_keys(&self) -> u32 {
        self.rare.as_ref().map_or(0, |r| r.encrypted_keys)
    }

    fn retained_der(&self) -> Option<&[Vec<u8>]> {
        self.rare.as_ref()?.retained_der.as_deref()
    }
}

/// A source that could not be read or decoded, in whole or in part.
#[derive(Clone, Debug)]
pub struct Problem {
    pub location: Location,
    pub kind: ProblemKind,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The bytes could not be read: permissions, I/O, too large, a symlink loop.
    Read,
    /// The bytes were read but are not (entirely) valid.
    Parse,
    /// A TLS endpoint could not be reached or did not complete a handshake.
    Endpoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkStatus {
    Verified,
    BadSignature,
    /// Names match but the algorithm cannot be checked; treated as a link, reported as info.
    Unchecked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub issuer: CertId,
    pub status: LinkStatus,
}

/// What a deployed certificate looks like on disk and on the wire, for drift detection: the
/// certificate was renewed on disk but the service still serves the old one.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub name: String,
    pub cert_path: String,
    /// The endpoint as `host:port`, and the SNI name used.
    pub endpoint: String,
    pub sni: Option<String>,
    /// The leaf in the certificate file, or why it could not be read.
    pub on_disk: Result<DeployedCert, String>,
    /// The leaf the endpoint served, when the handshake got that far.
    pub served: Option<DeployedCert>,
    /// The configured private key does not belong to the certificate on disk.
    pub key_mismatch: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedCert {
    pub fingerprint: Fingerprint,
    pub serial: String,
    pub not_after: i64,
}

impl Deployment {
    /// `Some(true)` when the served leaf is the one on disk; `None` when either is unknown.
    pub fn served_matches_disk(&self) -> Option<bool> {
        let disk = self.on_disk.as_ref().ok()?;
        Some(self.served.as_ref()?.fingerprint == disk.fingerprint)
    }
}

/// A certificate source paired with a separate key source (`tls.crt` + `tls.key`).
#[derive(Clone, Copy, Debug)]
pub struct KeyPairing {
    pub cert_source: SourceId,
    pub key_source: SourceId,
}

#[derive(Debug, Default)]
pub struct Inventory {
    /// Shared, so a long-running process can remember a file's certificates between scans
    /// without a second copy of each.
    certs: Arena<Arc<Certificate>>,
    /// Ids only: the fingerprint is looked up in `certs`, so the index costs 5 bytes a slot
    /// instead of 37.
    by_fingerprint: HashTable<CertId>,
    /// Seeded per process: certificates planted to collide in the table cannot slow a scan.
    fingerprint_hasher: RandomState,
    /// Certificates that can sign others, by subject name id.
    by_subject: HashMap<u64, Vec<CertId>>,
    sources: Arena<Source>,
    pub problems: Vec<Problem>,
    /// By certificate id, like `anchors`.
    links: Vec<Option<Link>>,
    pub pairings: Vec<KeyPairing>,
    /// Certificates on disk tied to the endpoint that should serve them.
    pub deployments: Vec<Deployment>,
    anchors: Vec<bool>,
    names: NameTable,
}

/// One shared copy per distinct issuer name and per [`Profile`]: a hundred thousand leaves
/// share a few issuers, and the few templates those issue from. Certificates that may sign
/// others are shared whole: every fullchain repeats its intermediate.
#[derive(Debug, Default)]
pub struct NameTable {
    names: HashMap<u64, Arc<str>>,
    profiles: HashSet<Arc<Profile>>,
    authorities: HashMap<Fingerprint, Arc<Certificate>>,
}

impl NameTable {
    /// Points the certificate's issuer (and, for a possible issuer, its subject) and its
    /// profile at the table's copies, or the whole certificate at the table's copy of it. A
    /// certificate already shared elsewhere (with a cache) was shared there and is left as it
    /// is.
    pub fn share(&mut self, cert: &mut Arc<Certificate>) {
        let authority = cert.issuer_spki.is_some();
        if authority && let Some(shared) = self.authorities.get(&cert.fingerprint) {
            *cert = shared.clone();
            return;
        }
        let Some(summary) = Arc::get_mut(cert) else {
            return;
        };
        summary.issuer = self.shared_name(summary.issuer_id, &summary.issuer);
        if authority {
            summary.subject = self.shared_name(summary.subject_id, &summary.subject);
        }
        match self.profiles.get(&summary.profile) {
            Some(shared) => summary.profile = shared.clone(),
            None => {
                self.profiles.insert(summary.profile.clone());
            }
        }
        if authority {
            self.authorities.insert(cert.fingerprint, cert.clone());
        }
    }

    fn shared_name(&mut self, id: u64, name: &Arc<str>) -> Arc<str> {
        self.names.entry(id).or_insert_with(|| name.clone()).clone()
    }

    /// Forgets what no certificate outside the table uses any more.
    pub fn prune(&mut self) {
        // Certificates first: a dropped one lets go of its names and profile.
        self.authorities
            .retain(|_, cert| Arc::strong_count(cert) > 1);
        self.names.retain(|_, name| Arc::strong_count(name) > 1);
        self.profiles
            .retain(|profile| Arc::strong_count(profile) > 1);
    }
}

/// A vector in fixed-size chunks: growing never copies or doubles, which for a hundred
/// thousand certificates is the difference between 40 and 80 MiB at the peak.
#[derive(Debug)]
struct Arena<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const ARENA_CHUNK: usize = 4096;

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Arena<T> {
    fn push(&mut self, value: T) {
        if self.chunks.last().is_none_or(|c| c.len() == ARENA_CHUNK) {
            self.chunks.push(Vec::with_capacity(ARENA_CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(value);
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> &T {
        &self.chunks[index / ARENA_CHUNK][index % ARENA_CHUNK]
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

/// The decoded content of one source, with in-source signature links already checked.
#[derive(Clone, Debug)]
pub struct SourceContent {
    pub certs: Vec<Arc<Certificate>>,
    /// (child index, issuer index, status) within `certs`.
    pub links: Vec<(usize, usize, LinkStatus)>,
    pub keys: Vec<PrivateKey>,
    pub encrypted_keys: usize,
    pub crls: Vec<Crl>,
    pub errors: Vec<ParseError>,
    /// Links verified by signature here, for the caller to remember in its [`LinkCache`].
    pub newly_verified: Vec<[u8; 16]>,
    /// (child index, issuer fingerprint, status): leaves found signed by an issuer read
    /// earlier from another source. They hold only for the inventory they were checked
    /// against, so a cache of decoded files does not keep them.
    pub external_links: Vec<(usize, Fingerprint, LinkStatus)>,
}

impl SourceContent {
    /// Summarises decoded bytes and checks the signatures between certificates of the same
    /// source (the common fullchain case needs no second pass).
    pub fn from_decoded(decoded: Decoded) -> Self {
        Self::from_decoded_with(decoded, &LinkCache::default())
    }

    /// As [`Self::from_decoded`], skipping signature checks the cache already vouches for.
    pub fn from_decoded_with(decoded: Decoded, cache: &LinkCache) -> Self {
        Self::from_decoded_against(decoded, cache, None)
    }

    /// As [`Self::from_decoded_with`], also checking each leaf whose issuer is not in this
    /// source against the issuers `known` holds, while the leaf's DER is at hand: otherwise
    /// the issuer pass reads the file again. Certificates that may sign others are left to
    /// that pass, which checks each once however many fullchains repeat it.
    pub fn from_decoded_against(
        decoded: Decoded,
        cache: &LinkCache,
        known: Option<&Inventory>,
    ) -> Self {
        let mut errors = decoded.errors;
        let mut summaries = decoded.summaries.into_iter();
        // The DER of each summarised certificate, for the signature checks below.
        let mut ders: Vec<&[u8]> = Vec::with_capacity(decoded.certs.len());
        let mut certs = Vec::with_capacity(decoded.certs.len());
        for der in &decoded.certs {
            if let Some(summary) = summaries.next().flatten() {
                certs.push(summary);
                ders.push(der);
                continue;
            }
            match X509Certificate::from_der(der) {
                Ok((_, cert)) => {
                    certs.push(Certificate::from_parsed(&cert, der));
                    ders.push(der);
                }
                Err(e) => errors.push(ParseError::Certificate(e.to_string().into())),
            }
        }
        let mut links = Vec::new();
        let mut newly_verified = Vec::new();
        for (child, cert) in certs.iter().enumerate() {
            if cert.is_self_issued() {
                continue;
            }
            let candidates = certs
                .iter()
                .enumerate()
                .filter(|(i, issuer)| *i != child && cert.may_be_issued_by(issuer));
            for (issuer_idx, issuer) in candidates {
                let Some(key) = &issuer.issuer_spki else {
                    continue;
                };
                // The inventory's copy of a CA read before keeps its parsed key; this file's
                // copy is dropped once added, so parsing its key for one check gains nothing.
                let shared = known
                    .and_then(|known| Some(known.cert(known.find(&issuer.fingerprint)?)))
                    .and_then(|issuer| issuer.issuer_spki.as_deref());
                let (key, shared) = shared.map_or((&**key, false), |shared| (shared, true));
                let status = check_link(cache, cert, ders[child], key, shared, &mut newly_verified);
                links.push((child, issuer_idx, status));
                if status != LinkStatus::BadSignature {
                    break;
                }
            }
        }
        let mut external_links = Vec::new();
        if let Some(known) = known {
            for (child, cert) in certs.iter().enumerate() {
                let linked_here = links.iter().any(|&(c, _, _)| c == child);
                let linked_before = || known.find(&cert.fingerprint).and_then(|id| known.link(id));
                if linked_here
                    || cert.issuer_spki.is_some()
                    || cert.is_self_issued()
                    || linked_before().is_some()
                {
                    continue;
                }
                for issuer in known.issuers_of(cert) {
                    let issuer = known.cert(issuer);
                    let Some(key) = &issuer.issuer_spki else {
                        continue;
                    };
                    let status =
                        check_link(cache, cert, ders[child], key, true, &mut newly_verified);
                    // A bad signature is left to the issuer pass: an issuer read later (a
                    // re-keyed CA of the same name) may still be the right one.
                    if status != LinkStatus::BadSignature {
                        external_links.push((child, issuer.fingerprint, status));
                        break;
                    }
                }
            }
        }
        Self {
            certs: certs.into_iter().map(Arc::new).collect(),
            links,
            keys: decoded.keys,
            encrypted_keys: decoded.encrypted_keys,
            crls: decoded.crls,
            errors,
            newly_verified,
            external_links,
        }
    }
}

/// Whether `key` signed `cert` (whose DER is `der`): as the cache vouches, or by checking the
/// signature, remembered in `newly_verified` when good.
fn check_link(
    cache: &LinkCache,
    cert: &Certificate,
    der: &[u8],
    key: &IssuerKey,
    shared_key: bool,
    newly_verified: &mut Vec<[u8; 16]>,
) -> LinkStatus {
    if cache.contains(&cert.fingerprint, &key.id) {
        return LinkStatus::Verified;
    }
    let status = link_status(verify_prepared(
        &cert.profile.signature_algorithm,
        der,
        &key.der,
        shared_key.then_some(&key.prepared),
    ));
    if status == LinkStatus::Verified {
        newly_verified.push(LinkCache::key(&cert.fingerprint, &key.id));
    }
    status
}

fn link_status(verdict: SignatureVerdict) -> LinkStatus {
    match verdict {
        SignatureVerdict::Valid => LinkStatus::Verified,
        SignatureVerdict::Invalid => LinkStatus::BadSignature,
        SignatureVerdict::Unsupported(_) => LinkStatus::Unchecked,
    }
}

pub struct NewSource {
    pub location: Location,
    pub expect: Arc<Expectations>,
    pub endpoint: Option<Box<EndpointInfo>>,
    pub anchor: bool,
    pub reported: bool,
    /// Keep the DER for the issuer pass because the source cannot be read again.
    pub retain_der: Option<Vec<Vec<u8>>>,
}

impl NewSource {
    pub fn new(location: Location) -> Self {
        Self {
            location,
            expect: Arc::default(),
            endpoint: None,
            anchor: false,
            reported: true,
            retain_der: None,
        }
    }
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_source(&mut self, new: NewSource, content: SourceContent) -> SourceId {
        let id = SourceId(self.sources.len() as u32);
        for error in content.errors {
            self.problems.push(Problem {
                location: new.location.clone(),
                kind: ProblemKind::Parse,
                reason: error.to_string(),
            });
        }
        let ids: Vec<CertId> = content.certs.into_iter().map(|c| self.intern(c)).collect();
        for (child, issuer, status) in content.links {
            self.record_link(ids[child], ids[issuer], status);
        }
        for (child, issuer, status) in content.external_links {
            if let (Some(&child), Some(issuer)) = (ids.get(child), self.find(&issuer)) {
                self.record_link(child, issuer, status);
            }
        }
        if new.anchor {
            for cert in &ids {
                self.anchors[cert.0 as usize] = true;
            }
        }
        let rare = Rare {
            encrypted_keys: content.encrypted_keys as u32,
            crls: content.crls.into_boxed_slice(),
            endpoint: new.endpoint.map(|e| *e),
            retained_der: new.retain_der.map(Vec::into_boxed_slice),
        };
        let has_rare = rare.encrypted_keys > 0
            || !rare.crls.is_empty()
            || rare.endpoint.is_some()
            || rare.retained_der.is_some();
        self.sources.push(Source {
            location: new.location,
            certs: ids.into_boxed_slice(),
            keys: content.keys.into_boxed_slice(),
            expect: new.expect,
            anchor: new.anchor,
            reported: new.reported,
            rare: has_rare.then(|| Box::new(rare)),
        });
        id
    }

    pub fn add_problem(
        &mut self,
        location: Location,
        kind: ProblemKind,
        reason: impl Into<String>,
    ) {
        self.problems.push(Problem {
            location,
            kind,
            reason: reason.into(),
        });
    }

    fn intern(&mut self, mut cert: Arc<Certificate>) -> CertId {
        if let Some(id) = self.find(&cert.fingerprint) {
            return id;
        }
        self.names.share(&mut cert);
        let id = CertId(self.certs.len() as u32);
        if cert.issuer_spki.is_some() {
            self.by_subject.entry(cert.subject_id).or_default().push(id);
        }
        let hasher = &self.fingerprint_hasher;
        let hash = hasher.hash_one(cert.fingerprint);
        self.certs.push(cert);
        self.anchors.push(false);
        self.links.push(None);
        let certs = &self.certs;
        self.by_fingerprint.insert_unique(hash, id, |id| {
            hasher.hash_one(certs.get(id.0 as usize).fingerprint)
        });
        id
    }

    /// Keeps the first good link for a certificate; a bad signature never replaces a good one.
    pub fn record_link(&mut self, child: CertId, issuer: CertId, status: LinkStatus) {
        match self.links.get_mut(child.0 as usize) {
            Some(Some(existing)) if existing.status != LinkStatus::BadSignature => {}
            Some(slot) => *slot = Some(Link { issuer, status }),
            None => {}
        }
    }

    pub fn cert(&self, id: CertId) -> &Certificate {
        self.certs.get(id.0 as usize)
    }

    pub fn certs(&self) -> impl Iterator<Item = (CertId, &Certificate)> {
        self.certs
            .iter()
            .enumerate()
            .map(|(i, c)| (CertId(i as u32), &**c))
    }

    pub fn cert_count(&self) -> usize {
        self.certs.len()
    }

    pub fn source(&self, id: SourceId) -> &Source {
        self.sources.get(id.0 as usize)
    }

    pub fn sources(&self) -> impl Iterator<Item = (SourceId, &Source)> {
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| (SourceId(i as u32), s))
    }

    pub fn is_anchor(&self, id: CertId) -> bool {
        self.anchors[id.0 as usize]
    }

    pub fn link(&self, id: CertId) -> Option<Link> {
        self.links.get(id.0 as usize).copied().flatten()
    }

    pub fn find(&self, fingerprint: &Fingerprint) -> Option<CertId> {
        self.by_fingerprint
            .find(self.fingerprint_hasher.hash_one(fingerprint), |id| {
                self.cert(*id).fingerprint == *fingerprint
            })
            .copied()
    }

    /// Certificates elsewhere in the inventory that may have issued `id`.
    pub fn issuer_candidates(&self, id: CertId) -> impl Iterator<Item = CertId> + '_ {
        // Fingerprints are unique in the inventory: "another fingerprint" is "another id".
        self.issuers_of(self.cert(id))
    }

    /// Certificates in the inventory that may have issued `cert`, which need not be in it.
    pub fn issuers_of<'a>(&'a self, cert: &'a Certificate) -> impl Iterator<Item = CertId> + 'a {
        self.by_subject
            .get(&cert.issuer_id)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |c| {
                let issuer = self.cert(*c);
                issuer.fingerprint != cert.fingerprint && cert.may_be_issued_by(issuer)
            })
    }

    /// Certificates whose issuer was not in their own source but exists elsewhere, grouped by
    /// one source to read each of them from again: every such certificate is checked once per
    /// scan, however many files repeat it (an intermediate sits in every fullchain).
    pub fn issuer_pass_plan(&self) -> Vec<(SourceId, Vec<CertId>)> {
        let mut pending: HashSet<CertId> = self
            .certs()
            .filter(|(id, cert)| {
                self.links[id.0 as usize].is_none()
                    && !cert.is_self_issued()
                    && self.issuer_candidates(*id).next().is_some()
            })
            .map(|(id, _)| id)
            .collect();
        let mut plan = Vec::new();
        // Sources kept in memory first: they cost no read.
        let order = self
            .sources()
            .filter(|(_, s)| s.retained_der().is_some())
            .chain(self.sources().filter(|(_, s)| {
                s.retained_der().is_none()
                    && matches!(s.location.kind, SourceKind::File | SourceKind::TrustStore)
            }));
        for (id, source) in order {
            if pending.is_empty() {
                break;
            }
            let mine: Vec<CertId> = source
                .certs
                .iter()
                .copied()
                .filter(|c| pending.remove(c))
                .collect();
            if !mine.is_empty() {
                plan.push((id, mine));
            }
        }
        plan
    }

    pub fn retained_der(&self, id: SourceId) -> Option<&[Vec<u8>]> {
        self.source(id).retained_der()
    }

    /// Links every certificate whose issuer elsewhere in the inventory the cache vouches for,
    /// so those sources need not be read again. Returns how many were linked.
    pub fn link_from_cache(&mut self, cache: &LinkCache) -> usize {
        if cache.is_empty() {
            return 0;
        }
        let mut found = Vec::new();
        for (i, cert) in self.certs.iter().enumerate() {
            let child = CertId(i as u32);
            if self.links[child.0 as usize].is_some() || cert.is_self_issued() {
                continue;
            }
            let hit = self.issuer_candidates(child).find(|issuer| {
                self.cert(*issuer)
                    .issuer_spki
                    .as_ref()
                    .is_some_and(|key| cache.contains(&cert.fingerprint, &key.id))
            });
            if let Some(issuer) = hit {
                found.push((child, issuer));
            }
        }
        for (child, issuer) in &found {
            self.record_link(*child, *issuer, LinkStatus::Verified);
        }
        found.len()
    }

    /// The cross-source pass for one source: checks the certificates `only` (found again in
    /// `ders`) against issuers anywhere in the inventory. Read-only, so sources can be checked
    /// in parallel; the caller records the links with [`Self::record_link`] and remembers the
    /// verified ones.
    pub fn cross_source_links(
        &self,
        ders: &[Vec<u8>],
        only: &[CertId],
    ) -> Vec<(CertId, CertId, LinkStatus)> {
        let mut out = Vec::new();
        for der in ders {
            let Some(child) = self.find(&crate::cert::sha256(der)) else {
                continue;
            };
            if !only.contains(&child) {
                continue;
            }
            let sig_alg = &self.cert(child).profile.signature_algorithm;
            for issuer in self.issuer_candidates(child) {
                let Some(key) = &self.cert(issuer).issuer_spki else {
                    continue;
                };
                let status =
                    link_status(verify_prepared(sig_alg, der, &key.der, Some(&key.prepared)));
                out.push((child, issuer, status));
                if status != LinkStatus::BadSignature {
                    break;
                }
            }
        }
        out
    }

    /// The cache key of a verified link, to remember it.
    pub fn link_key(&self, child: CertId, issuer: CertId) -> Option<[u8; 16]> {
        let key = self.cert(issuer).issuer_spki.as_ref()?;
        Some(LinkCache::key(&self.cert(child).fingerprint, &key.id))
    }

    /// Drops DER kept for the issuer pass once it is done.
    pub fn release_retained_der(&mut self) {
        for source in self.sources.iter_mut() {
            if let Some(rare) = &mut source.rare {
                rare.retained_der = None;
            }
        }
    }

    /// Locations of every source that holds `id`.
    pub fn locations_of(&self, id: CertId) -> impl Iterator<Item = (SourceId, &Source)> {
        self.sources().filter(move |(_, s)| s.certs.contains(&id))
    }

    pub fn add_pairing(&mut self, cert_source: SourceId, key_source: SourceId) {
        self.pairings.push(KeyPairing {
            cert_source,
            key_source,
        });
    }
}
