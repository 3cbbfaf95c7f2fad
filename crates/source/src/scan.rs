//! One scan: every target read, decoded and linked into a single inventory.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certvigil_core::decode::{DecodeOptions, decode};
use certvigil_core::inventory::{DeployedCert, Deployment};
use certvigil_core::inventory::{
    Expectations, Inventory, LinkStatus, Location, NewSource, ProblemKind, SourceContent, SourceId,
    SourceKind,
};
use certvigil_core::linkcache::LinkCache;
use rayon::prelude::*;

use crate::endpoint::{EndpointSpec, ProbeOutcome, probe, root_store};
use crate::filecache::{FileCache, Stamp};
use crate::files::{self, FoundFile, WalkOptions};
use crate::kube::{self, DocumentKind};
use crate::schedule::ProbeSchedule;
use crate::truststore::{STANDARD_LOCATIONS, TrustStore};

#[derive(Clone, Debug)]
pub enum Target {
    /// A file or directory.
    Path(PathBuf),
    Stdin,
    Endpoint(EndpointSpec),
    /// The system trust store, reported like any other source.
    TrustStore,
    /// The trust store and every standard PKI location that exists on this host.
    Defaults,
}

#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub targets: Vec<Target>,
    pub walk: WalkOptions,
    pub pkcs12_password: Option<String>,
    /// Load the system trust store as anchors, to judge chains (also when not reported).
    pub system_trust: bool,
    /// Extra trust anchors (`--ca-file`).
    pub ca_files: Vec<PathBuf>,
    /// Expectations applied to every certificate source (`--host`, `--role`).
    pub expect: Arc<Expectations>,
    pub endpoint_concurrency: usize,
    /// Keep every certificate's DER after the scan (for `inspect`).
    pub keep_der: bool,
    /// File remembering verified signatures between scans (see `certvigil_core::linkcache`).
    pub link_cache: Option<PathBuf>,
    /// Certificate files tied to the endpoint that serves them, for drift detection.
    pub deployments: Vec<DeploymentSpec>,
    /// Decoded files kept from earlier scans (a long-running process's rescans read only
    /// what changed). Not for concurrent scans.
    pub file_cache: Option<Arc<FileCache>>,
    /// Outcomes of endpoints probed by earlier scans, reported until each endpoint's own
    /// interval comes round. Not for concurrent scans.
    pub probe_schedule: Option<Arc<ProbeSchedule>>,
}

/// A certificate (and key) on disk and the endpoint that should be serving it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentSpec {
    pub name: String,
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
    pub endpoint: EndpointSpec,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            walk: WalkOptions {
                max_file_size: files::DEFAULT_MAX_FILE_SIZE,
                ..Default::default()
            },
            pkcs12_password: None,
            system_trust: true,
            ca_files: Vec::new(),
            expect: Arc::default(),
            endpoint_concurrency: 32,
            keep_der: false,
            link_cache: None,
            deployments: Vec::new(),
            file_cache: None,
            probe_schedule: None,
        }
    }
}

pub fn scan(options: &ScanOptions) -> Inventory {
    let cache = options
        .link_cache
        .as_deref()
        .and_then(|path| files::read_limited(path, 64 * 1024 * 1024).ok())
        .map(|bytes| LinkCache::from_bytes(&bytes))
        .unwrap_or_default();
    let mut scanner = Scanner {
        options,
        cache,
        new_links: Vec::new(),
        inventory: Inventory::new(),
        seen: HashSet::new(),
        key_sources: HashMap::new(),
        cert_sources: Vec::new(),
        explicit_keys: HashMap::new(),
        anchors_der: Vec::new(),
    };
    if let Some(files) = &options.file_cache {
        files.start_scan();
    }
    scanner.run();
    scanner.save_cache();
    if let Some(files) = &options.file_cache {
        files.finish_scan();
        tracing::debug!(
            remembered = files.len(),
            from_memory = files.hits(),
            "file cache"
        );
    }
    if let Some(schedule) = &options.probe_schedule {
        schedule.finish_scan();
    }
    scanner.inventory
}

struct Scanner<'a> {
    options: &'a ScanOptions,
    cache: LinkCache,
    /// Links verified during this scan, to add to the cache file.
    new_links: Vec<[u8; 16]>,
    inventory: Inventory,
    /// Files already read, by (dev, inode), across all targets.
    seen: HashSet<(u64, u64)>,
    /// Sources holding only private keys, by path, for pairing.
    key_sources: HashMap<Arc<str>, SourceId>,
    /// Certificate sources, with the key a kubeconfig named for them.
    cert_sources: Vec<SourceId>,
    /// Keys a kubeconfig names for its certificate files.
    explicit_keys: HashMap<SourceId, PathBuf>,
    anchors_der: Vec<Vec<u8>>,
}

/// What reading one file produced, computed in parallel before it joins the inventory.
enum FileOutcome {
    Content(SourceContent, Option<Vec<Vec<u8>>>),
    Kube(
        Vec<(Location, SourceContent, Vec<Vec<u8>>)>,
        kube::Extracted,
    ),
    Unreadable(String),
}

impl Scanner<'_> {
    fn run(&mut self) {
        let wants_trust_store = self
            .options
            .targets
            .iter()
            .any(|t| matches!(t, Target::TrustStore | Target::Defaults));
        let started = std::time::Instant::now();
        if self.options.system_trust || wants_trust_store {
            self.load_trust_store(wants_trust_store);
        }
        tracing::debug!(elapsed = ?started.elapsed(), "trust store loaded");
        for path in &self.options.ca_files {
            self.add_anchor_file(path);
        }

        let mut paths: Vec<PathBuf> = Vec::new();
        let mut endpoints = Vec::new();
        for target in &self.options.targets {
            match target {
                Target::Path(path) => paths.push(path.clone()),
                Target::Defaults => {
                    paths.extend(
                        STANDARD_LOCATIONS
                            .iter()
                            .map(PathBuf::from)
                            .filter(|p| p.exists()),
                    );
                    if let Some(home) = std::env::var_os("HOME") {
                        let kubeconfig = Path::new(&home).join(".kube/config");
                        if kubeconfig.is_file() {
                            paths.push(kubeconfig);
                        }
                    }
                }
                Target::Stdin => self.scan_stdin(),
                Target::Endpoint(spec) => endpoints.push(spec.clone()),
                Target::TrustStore => {}
            }
        }
        self.scan_paths(&paths);
        tracing::debug!(elapsed = ?started.elapsed(), "files read");
        self.pair_keys();
        tracing::debug!(elapsed = ?started.elapsed(), "keys paired");
        for deployment in &self.options.deployments {
            let spec = &deployment.endpoint;
            if !endpoints
                .iter()
                .any(|e| e.display == spec.display && e.sni == spec.sni)
            {
                endpoints.push(spec.clone());
            }
        }
        if !endpoints.is_empty() {
            self.scan_endpoints(&endpoints);
        }
        self.issuer_pass();
        self.resolve_deployments();
        tracing::debug!(elapsed = ?started.elapsed(), "issuers linked");
    }

    /// Compares each deployment's certificate file with what its endpoint served in this scan.
    fn resolve_deployments(&mut self) {
        for spec in &self.options.deployments {
            let on_disk = files::read_limited(&spec.cert, self.options.walk.max_file_size)
                .and_then(|bytes| {
                    leaf_of(&bytes).ok_or_else(|| "no certificate in the file".to_owned())
                });
            let key_mismatch = match (&on_disk, &spec.key) {
                (Ok((_, key_id)), Some(key_path)) => {
                    match files::read_limited(key_path, self.options.walk.max_file_size) {
                        Ok(bytes) => {
                            let keys = decode(&bytes, &DecodeOptions::default()).keys;
                            (!keys.is_empty() && !keys.iter().any(|k| k.key_id == *key_id)).then(
                                || {
                                    format!(
                                        "{}: private key {} does not belong to certificate {}; the \
                                     service will fail to load them together",
                                        spec.name,
                                        key_path.display(),
                                        spec.cert.display()
                                    )
                                },
                            )
                        }
                        Err(reason) => {
                            let location =
                                Location::new(SourceKind::File, key_path.to_string_lossy());
                            self.inventory
                                .add_problem(location, ProblemKind::Read, reason);
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Err(reason) = &on_disk {
                let location = Location::new(SourceKind::File, spec.cert.to_string_lossy());
                self.inventory
                    .add_problem(location, ProblemKind::Read, reason.clone());
            }
            let served = self.inventory.sources().find_map(|(_, source)| {
                let info = source.endpoint()?;
                let same = *source.location.name == *spec.endpoint.display
                    && info.sni
                        == spec
                            .endpoint
                            .sni
                            .clone()
                            .or_else(|| sni_default(&spec.endpoint));
                let leaf = inventory_leaf(&self.inventory, source)?;
                same.then_some(leaf)
            });
            self.inventory.deployments.push(Deployment {
                name: spec.name.clone(),
                cert_path: spec.cert.to_string_lossy().into_owned(),
                endpoint: spec.endpoint.display.clone(),
                sni: spec.endpoint.sni.clone(),
                on_disk: on_disk.map(|(cert, _)| cert),
                served,
                key_mismatch,
            });
        }
    }

    fn load_trust_store(&mut self, reported: bool) {
        let store = TrustStore::locate();
        if let Some(bundle) = &store.bundle {
            self.add_trust_file(bundle, reported, false);
        }
        if reported && let Some(dir) = &store.dir {
            let (found, _) = files::walk(dir, &self.options.walk);
            for file in found {
                let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // The hashed names point at the same roots as the bundle; only roots that the
                // bundle lacks (added by hand) are listed again.
                let is_pem_like = name.ends_with(".pem") || name.ends_with(".crt");
                if self.seen.insert(file.inode) && (is_pem_like || !name.contains(".r")) {
                    self.add_trust_file(&file.path, reported, true);
                }
            }
        }
    }

    fn add_trust_file(&mut self, path: &Path, reported: bool, skip_known: bool) {
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::MetadataExt;
            self.seen.insert((meta.dev(), meta.ino()));
        }
        let location = Location::new(SourceKind::TrustStore, path.to_string_lossy());
        let bytes = match files::read_limited(path, self.options.walk.max_file_size) {
            Ok(bytes) => bytes,
            Err(reason) => {
                self.inventory
                    .add_problem(location, ProblemKind::Read, reason);
                return;
            }
        };
        let summarize = DecodeOptions {
            summarize: true,
            ..DecodeOptions::default()
        };
        let decoded = decode(&bytes, &summarize);
        self.anchors_der.extend(decoded.certs.iter().cloned());
        let mut content = SourceContent::from_decoded(decoded);
        if skip_known {
            content
                .certs
                .retain(|c| self.inventory.find(&c.fingerprint).is_none());
            content.links.clear();
            if content.certs.is_empty() {
                return;
            }
        }
        let mut new = NewSource::new(location);
        new.anchor = true;
        new.reported = reported;
        self.inventory.add_source(new, content);
    }

    fn add_anchor_file(&mut self, path: &Path) {
        let location = Location::new(SourceKind::File, path.to_string_lossy());
        match files::read_limited(path, self.options.walk.max_file_size) {
            Ok(bytes) => {
                let decoded = decode(&bytes, &DecodeOptions::default());
                self.anchors_der.extend(decoded.certs.iter().cloned());
                let mut new = NewSource::new(location);
                new.anchor = true;
                new.reported = false;
                self.inventory
                    .add_source(new, SourceContent::from_decoded(decoded));
            }
            Err(reason) => self
                .inventory
                .add_problem(location, ProblemKind::Read, reason),
        }
    }

    fn scan_paths(&mut self, roots: &[PathBuf]) {
        let started = std::time::Instant::now();
        let mut found: Vec<(FoundFile, bool)> = Vec::new();
        for root in roots {
            match std::fs::metadata(root) {
                Ok(meta) if meta.is_dir() => {
                    let (files, problems) = files::walk(root, &self.options.walk);
                    for problem in problems {
                        let location =
                            Location::new(SourceKind::File, problem.path.to_string_lossy());
                        self.inventory
                            .add_problem(location, ProblemKind::Read, problem.reason);
                    }
                    found.extend(files.into_iter().map(|f| (f, false)));
                }
                Ok(meta) => {
                    use std::os::unix::fs::MetadataExt;
                    let file = FoundFile {
                        path: root.clone(),
                        inode: (meta.dev(), meta.ino()),
                    };
                    found.push((file, true));
                }
                Err(e) => {
                    let location = Location::new(SourceKind::File, root.to_string_lossy());
                    let reason = files::describe_io_error(&e);
                    self.inventory
                        .add_problem(location, ProblemKind::Read, reason);
                }
            }
        }
        found.retain(|(f, _)| self.seen.insert(f.inode));
        tracing::debug!(files = found.len(), elapsed = ?started.elapsed(), "walked");
        self.read_files(
            found
                .into_iter()
                .map(|(f, explicit)| (f.path, explicit, None)),
        );
    }

    /// Reads and decodes files in parallel, then adds them in a stable order.
    fn read_files(&mut self, files: impl IntoIterator<Item = (PathBuf, bool, Option<PathBuf>)>) {
        let options = DecodeOptions {
            pkcs12_password: self.options.pkcs12_password.as_deref(),
            summarize: true,
        };
        let max = self.options.walk.max_file_size;
        let keep = self.options.keep_der;
        // Remembered files serve later scans; a scan that keeps DER reads every file.
        let file_cache = self.options.file_cache.as_deref().filter(|_| !keep);
        let now = certvigil_core::timefmt::unix_now();
        let mut referenced = Vec::new();
        // In chunks, so only a chunk's decoded content is alive before it joins the inventory
        // (where repeated certificates collapse into one).
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            let chunk: Vec<_> = files.by_ref().take(READ_CHUNK).collect();
            let link = Linking {
                cache: &self.cache,
                known: Some(&self.inventory),
            };
            let t0 = std::time::Instant::now();
            let outcomes: Vec<(Option<Arc<str>>, FileOutcome)> = chunk
                .par_iter()
                .map(|(path, explicit, _)| match file_cache {
                    Some(files) => {
                        read_file_cached(path, *explicit, max, &options, link, files, now)
                    }
                    None => (
                        None,
                        read_file(path, *explicit, max, &options, keep, link, None),
                    ),
                })
                .collect();
            let t1 = t0.elapsed();
            self.add_outcomes(chunk, outcomes, &mut referenced);
            tracing::trace!(parallel = ?t1, total = ?t0.elapsed(), "chunk");
        }
        self.read_referenced(referenced);
    }

    fn add_outcomes(
        &mut self,
        chunk: Vec<(PathBuf, bool, Option<PathBuf>)>,
        outcomes: Vec<(Option<Arc<str>>, FileOutcome)>,
        referenced: &mut Vec<(PathBuf, Option<PathBuf>)>,
    ) {
        for ((path, _, paired_key), (name, outcome)) in chunk.into_iter().zip(outcomes) {
            let name = name.unwrap_or_else(|| path.to_string_lossy().into());
            let location = Location::new(SourceKind::File, name);
            match outcome {
                FileOutcome::Unreadable(reason) => {
                    self.inventory
                        .add_problem(location, ProblemKind::Read, reason);
                }
                FileOutcome::Content(mut content, der) => {
                    self.new_links.append(&mut content.newly_verified);
                    let has_certs = !content.certs.is_empty();
                    let has_keys = !content.keys.is_empty();
                    let mut new = NewSource::new(location);
                    new.expect = self.options.expect.clone();
                    new.retain_der = der;
                    let id = self.inventory.add_source(new, content);
                    if has_certs {
                        self.cert_sources.push(id);
                        if let Some(key) = paired_key {
                            self.explicit_keys.insert(id, key);
                        }
                    } else if has_keys {
                        let name = self.inventory.source(id).location.name.clone();
                        self.key_sources.insert(name, id);
                    }
                }
                FileOutcome::Kube(entries, extracted) => {
                    referenced.extend(self.add_kube(entries, extracted));
                }
            }
        }
    }

    /// Adds the certificate-bearing entries of kube documents; returns the files a kubeconfig
    /// refers to.
    fn add_kube(
        &mut self,
        entries: Vec<(Location, SourceContent, Vec<Vec<u8>>)>,
        extracted: kube::Extracted,
    ) -> Vec<(PathBuf, Option<PathBuf>)> {
        for (location, mut content, der) in entries {
            self.new_links.append(&mut content.newly_verified);
            let mut new = NewSource::new(location);
            new.expect = self.options.expect.clone();
            new.retain_der = Some(der);
            self.inventory.add_source(new, content);
        }
        for (location, reason) in extracted.errors {
            self.inventory
                .add_problem(location, ProblemKind::Parse, reason);
        }
        extracted.referenced
    }

    /// Files a kubeconfig names: read them too, pairing certificate and key explicitly.
    fn read_referenced(&mut self, referenced: Vec<(PathBuf, Option<PathBuf>)>) {
        let mut more = Vec::new();
        for (cert, key) in referenced {
            if let Ok(meta) = std::fs::metadata(&cert) {
                use std::os::unix::fs::MetadataExt;
                if self.seen.insert((meta.dev(), meta.ino())) {
                    more.push((cert.clone(), true, key.clone()));
                }
            } else {
                let location = Location::new(SourceKind::File, cert.to_string_lossy());
                self.inventory.add_problem(
                    location,
                    ProblemKind::Read,
                    "referenced by a kubeconfig: no such file",
                );
            }
            if let Some(key) = key
                && let Ok(meta) = std::fs::metadata(&key)
            {
                use std::os::unix::fs::MetadataExt;
                if self.seen.insert((meta.dev(), meta.ino())) {
                    more.push((key, true, None));
                }
            }
        }
        if !more.is_empty() {
            self.read_files(more);
        }
    }

    fn scan_stdin(&mut self) {
        let location = Location::new(SourceKind::Stdin, "stdin");
        let mut bytes = Vec::new();
        let max = self.options.walk.max_file_size;
        if let Err(e) = std::io::stdin()
            .lock()
            .take(max + 1)
            .read_to_end(&mut bytes)
        {
            self.inventory
                .add_problem(location, ProblemKind::Read, e.to_string());
            return;
        }
        if bytes.len() as u64 > max {
            let reason = format!("skipped: more than the {max} byte limit (--max-file-size)");
            self.inventory
                .add_problem(location, ProblemKind::Read, reason);
            return;
        }
        let options = DecodeOptions {
            pkcs12_password: self.options.pkcs12_password.as_deref(),
            summarize: true,
        };
        // stdin cannot be read twice: keep the DER for the issuer pass.
        let link = Linking {
            cache: &self.cache,
            known: Some(&self.inventory),
        };
        match classify_bytes(&bytes, "stdin", &options, true, link) {
            FileOutcome::Content(content, der) => {
                let mut new = NewSource::new(location);
                new.expect = self.options.expect.clone();
                new.retain_der = der;
                self.inventory.add_source(new, content);
            }
            FileOutcome::Kube(entries, extracted) => {
                // stdin names no directory, so files a kubeconfig references are not followed.
                let _ = self.add_kube(entries, extracted);
            }
            FileOutcome::Unreadable(reason) => {
                self.inventory
                    .add_problem(location, ProblemKind::Read, reason);
            }
        }
    }

    /// Pairs each certificate file with the key file next to it by naming convention.
    fn pair_keys(&mut self) {
        let cert_sources = std::mem::take(&mut self.cert_sources);
        let explicit_keys = std::mem::take(&mut self.explicit_keys);
        let (inventory, key_sources) = (&self.inventory, &self.key_sources);
        // The candidate names of a hundred thousand files are built on every core.
        let pairings: Vec<(SourceId, SourceId)> = cert_sources
            .par_iter()
            .filter_map(|&cert_source| {
                let candidates = match explicit_keys.get(&cert_source) {
                    Some(key) => vec![key.clone()],
                    None => {
                        let cert_path = Path::new(&*inventory.source(cert_source).location.name);
                        files::key_candidates(cert_path)
                    }
                };
                let key_source = candidates
                    .iter()
                    .find_map(|k| k.to_str().and_then(|k| key_sources.get(k)))?;
                Some((cert_source, *key_source))
            })
            .collect();
        for (cert_source, key_source) in pairings {
            self.inventory.add_pairing(cert_source, key_source);
        }
    }

    fn scan_endpoints(&mut self, specs: &[EndpointSpec]) {
        let now = std::time::Instant::now();
        let schedule = self.options.probe_schedule.as_deref();
        let mut remembered: Vec<Option<ProbeOutcome>> = specs
            .iter()
            .map(|spec| schedule.and_then(|s| s.remembered(spec, now)))
            .collect();
        let due: Vec<EndpointSpec> = specs
            .iter()
            .zip(&remembered)
            .filter(|(_, outcome)| outcome.is_none())
            .map(|(spec, _)| spec.clone())
            .collect();
        let mut probed = self.probe(&due).into_iter();
        for (spec, outcome) in specs.iter().zip(remembered.iter_mut()) {
            let outcome = match outcome.take() {
                Some(outcome) => outcome,
                None => {
                    let outcome = probed.next().unwrap_or_default();
                    if let Some(schedule) = schedule {
                        schedule.record(spec, &outcome, std::time::Instant::now());
                    }
                    outcome
                }
            };
            self.add_endpoint(spec, outcome);
        }
    }

    /// Probes `specs` concurrently (bounded), outcomes in the same order.
    fn probe(&self, specs: &[EndpointSpec]) -> Vec<ProbeOutcome> {
        if specs.is_empty() {
            return Vec::new();
        }
        let roots = Arc::new(root_store(&self.anchors_der));
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let failed = ProbeOutcome {
                    error: Some(format!("cannot start the async runtime: {e}")),
                    ..ProbeOutcome::default()
                };
                return vec![failed; specs.len()];
            }
        };
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.options.endpoint_concurrency.max(1),
        ));
        let outcomes: Vec<ProbeOutcome> = runtime.block_on(async {
            let tasks: Vec<_> = specs
                .iter()
                .cloned()
                .map(|spec| {
                    let roots = roots.clone();
                    let limit = limit.clone();
                    tokio::spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        probe(&spec, roots).await
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(tasks.len());
            for task in tasks {
                out.push(task.await.unwrap_or_else(|e| ProbeOutcome {
                    chain: Vec::new(),
                    info: Default::default(),
                    error: Some(format!("probe task failed: {e}")),
                }));
            }
            out
        });
        outcomes
    }

    fn add_endpoint(&mut self, spec: &EndpointSpec, outcome: ProbeOutcome) {
        let mut location = Location::new(SourceKind::Endpoint, spec.display.as_str());
        if let Some(sni) = &outcome.info.sni
            && sni != &spec.host
        {
            location = location.with_detail(format!("sni={sni}"));
        }
        if let Some(error) = &outcome.error {
            self.inventory
                .add_problem(location.clone(), ProblemKind::Endpoint, error.clone());
        }
        if outcome.chain.is_empty() {
            return;
        }
        let mut expect = (*self.options.expect).clone();
        let name = outcome
            .info
            .sni
            .clone()
            .unwrap_or_else(|| spec.host.clone());
        expect.hosts.push(name);
        let decoded = certvigil_core::Decoded {
            container: certvigil_core::decode::Container::Der,
            certs: outcome.chain.clone(),
            keys: Vec::new(),
            encrypted_keys: 0,
            crls: Vec::new(),
            errors: Vec::new(),
            summaries: Vec::new(),
        };
        let mut new = NewSource::new(location);
        new.expect = Arc::new(expect);
        new.endpoint = Some(Box::new(outcome.info));
        new.retain_der = Some(outcome.chain);
        self.inventory
            .add_source(new, SourceContent::from_decoded(decoded));
    }

    /// Adds this scan's verified links to the cache file, atomically. A cache that cannot be
    /// written only costs speed next time, so failures are logged, not reported.
    fn save_cache(&mut self) {
        let Some(path) = &self.options.link_cache else {
            return;
        };
        let mut added = 0;
        for key in self.new_links.drain(..) {
            added += usize::from(self.cache.insert(key));
        }
        if added == 0 {
            return;
        }
        if let Err(e) = files::write_atomic(path, &self.cache.to_bytes()) {
            tracing::debug!(path = %path.display(), error = %e, "signature cache not saved");
        }
    }

    /// Checks signatures between certificates in different sources (a leaf file and the CA
    /// file it was issued by). The DER is read again; only sources that need it are touched.
    fn issuer_pass(&mut self) {
        let cached = self.inventory.link_from_cache(&self.cache);
        let plan = self.inventory.issuer_pass_plan();
        tracing::debug!(cached, reread = plan.len(), "issuer pass");
        let max = self.options.walk.max_file_size;
        let options = DecodeOptions {
            pkcs12_password: self.options.pkcs12_password.as_deref(),
            ..DecodeOptions::default()
        };
        let inventory = &self.inventory;
        let links: Vec<Vec<(_, _, LinkStatus)>> = plan
            .par_iter()
            .map(|(id, only)| {
                if let Some(der) = inventory.retained_der(*id) {
                    return inventory.cross_source_links(der, only);
                }
                let source = inventory.source(*id);
                match files::read_limited(Path::new(&*source.location.name), max) {
                    Ok(bytes) => {
                        inventory.cross_source_links(&decode(&bytes, &options).certs, only)
                    }
                    Err(_) => Vec::new(),
                }
            })
            .collect();
        for (child, issuer, status) in links.into_iter().flatten() {
            self.inventory.record_link(child, issuer, status);
            if status == LinkStatus::Verified
                && let Some(key) = self.inventory.link_key(child, issuer)
            {
                self.new_links.push(key);
            }
        }
        if !self.options.keep_der {
            self.inventory.release_retained_der();
        }
    }
}

fn read_file(
    path: &Path,
    explicit: bool,
    max: u64,
    options: &DecodeOptions<'_>,
    keep_der: bool,
    link: Linking<'_>,
    stat: Option<&mut Option<std::fs::Metadata>>,
) -> FileOutcome {
    let origin = path.to_string_lossy();
    // Walked files are known to be regular; a named argument may be a pipe (`<(kubectl ...)`).
    if explicit {
        return match files::read_limited(path, max) {
            Ok(bytes) => classify_bytes(&bytes, &origin, options, keep_der, link),
            Err(reason) => FileOutcome::Unreadable(reason),
        };
    }
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buf| {
        let (outcome, read) = match files::read_regular_into_stat(path, max, buf, stat) {
            Ok(bytes) => (
                classify_bytes(bytes, &origin, options, keep_der, link),
                bytes.len(),
            ),
            Err(reason) => (FileOutcome::Unreadable(reason), 0),
        };
        // The buffer outlives the scan in a daemon's threads: a private key read into it
        // does not stay there.
        buf[..read].fill(0);
        outcome
    })
}

/// As [`read_file`], through the cache of files read by earlier scans. A remembered file
/// comes with its name as the cache holds it, for the inventory to share.
fn read_file_cached(
    path: &Path,
    explicit: bool,
    max: u64,
    options: &DecodeOptions<'_>,
    link: Linking<'_>,
    files: &FileCache,
    now: i64,
) -> (Option<Arc<str>>, FileOutcome) {
    // Only a file read before needs a `stat` by path to be taken from memory.
    if files.remembers(path)
        && let Ok(meta) = std::fs::metadata(path)
        && let Some((name, content)) = files.get(path, Stamp::of(&meta))
    {
        return (Some(name), FileOutcome::Content(content, None));
    }
    // A named argument is read by path (it may be a pipe), so it is stamped by path, before
    // the read: a change in between then leaves a stale stamp, never stale content.
    let mut stat = explicit.then(|| std::fs::metadata(path).ok()).flatten();
    let fstat = (!explicit).then_some(&mut stat);
    let mut outcome = read_file(path, explicit, max, options, false, link, fstat);
    if let (Some(meta), FileOutcome::Content(content, None)) = (stat, &mut outcome)
        && meta.is_file()
        && let Some(name) = path.to_str()
    {
        let name = Arc::from(name);
        files.put(&name, Stamp::of(&meta), content, now);
        return (Some(name), outcome);
    }
    (None, outcome)
}

/// Kube documents (JSON or YAML with `apiVersion:`/`kind:`) are recognised first: they can
/// embed PEM, which must keep its object and key names. Everything else is decoded as
/// certificates, keys or CRLs.
fn classify_bytes(
    bytes: &[u8],
    origin: &str,
    options: &DecodeOptions<'_>,
    keep_der: bool,
    link: Linking<'_>,
) -> FileOutcome {
    if let Some(outcome) = kube_outcome(bytes, origin, options) {
        return outcome;
    }
    let decoded = decode(bytes, options);
    let der = keep_der.then(|| decoded.certs.clone());
    let content = SourceContent::from_decoded_against(decoded, link.cache, link.known);
    FileOutcome::Content(content, der)
}

/// What a file's certificates are checked against besides each other.
#[derive(Clone, Copy)]
struct Linking<'a> {
    /// Links verified by earlier scans.
    cache: &'a LinkCache,
    /// The issuers read so far in this scan.
    known: Option<&'a Inventory>,
}

fn kube_outcome(bytes: &[u8], origin: &str, options: &DecodeOptions<'_>) -> Option<FileOutcome> {
    if !kube::looks_like_kube(bytes) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let docs = kube::parse_documents(text)?;
    let mut extracted = kube::Extracted::default();
    let mut recognised = false;
    for doc in &docs {
        match kube::classify(doc) {
            Some(DocumentKind::Kubeconfig) => {
                recognised = true;
                let more = kube::extract_kubeconfig(doc, origin);
                extracted.entries.extend(more.entries);
                extracted.referenced.extend(more.referenced);
                extracted.errors.extend(more.errors);
            }
            Some(DocumentKind::Objects) => {
                recognised = true;
                kube::extract_objects(doc, origin, &mut extracted);
            }
            None => {}
        }
    }
    if !recognised {
        return None;
    }
    let entries = std::mem::take(&mut extracted.entries)
        .into_iter()
        .map(|entry| {
            let decoded = decode(&entry.data, options);
            let der = decoded.certs.clone();
            (entry.location, SourceContent::from_decoded(decoded), der)
        })
        .collect();
    Some(FileOutcome::Kube(entries, extracted))
}

/// The first certificate of a file, as a deployment sees it, with its public key id.
fn leaf_of(bytes: &[u8]) -> Option<(DeployedCert, certvigil_core::cert::KeyId)> {
    let der = decode(bytes, &DecodeOptions::default())
        .certs
        .into_iter()
        .next()?;
    let cert = certvigil_core::Certificate::from_der(&der).ok()?;
    Some((
        DeployedCert {
            fingerprint: cert.fingerprint,
            serial: cert.serial_hex(),
            not_after: cert.not_after,
        },
        cert.key_id,
    ))
}

fn inventory_leaf(
    inventory: &Inventory,
    source: &certvigil_core::inventory::Source,
) -> Option<DeployedCert> {
    let cert = inventory.cert(*source.certs.first()?);
    Some(DeployedCert {
        fingerprint: cert.fingerprint,
        serial: cert.serial_hex(),
        not_after: cert.not_after,
    })
}

/// The SNI a probe sends when none is configured: the host, unless it is an IP address.
fn sni_default(spec: &EndpointSpec) -> Option<String> {
    spec.host
        .parse::<std::net::IpAddr>()
        .is_err()
        .then(|| spec.host.clone())
}

/// Files decoded in parallel before their results join the inventory.
const READ_CHUNK: usize = 4096;

/// A timeout for endpoints when the caller gives none.
pub const DEFAULT_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
