//! `certvigil daemon`: the scan pipeline on a schedule, served over HTTP.
//!
//! Scans never run inside a request: a background task rescans every `scan_interval` and
//! publishes a rendered snapshot; `/metrics` and `/status` only copy the latest one out.
//! SIGHUP re-reads the configuration (a bad one is rejected with every error logged, and the
//! old one stays); SIGTERM and SIGINT stop the server cleanly.

pub mod systemd;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use certvigil_config::{Config, SourceConfig};
use certvigil_core::check::{self, Severity};
use certvigil_core::renewal::Plan;
use certvigil_renew::{Issuers, RenewOptions, RenewOutcome};
use certvigil_report::{DurationHistogram, RenewalStatus, Report, SourceLabels, json, prom};
use certvigil_source::{CacheDir, FileCache, ProbeSchedule, ScanOptions, Target, scan};

mod gz;
mod listener;
mod watch;
use tokio::sync::Notify;

/// What the daemon serves between scans.
/// The rendered outputs are kept gzip-compressed: a hundred thousand certificates make about
/// 100 MB of exposition text that compresses twentyfold, and Prometheus asks for gzip anyway.
/// Clients that do not are served a decompressed copy. A scrape shares the compressed buffer
/// (`GzBody` holds `Bytes`) instead of copying it.
struct Snapshot {
    metrics_gz: gz::GzBody,
    summary: String,
    finished: Instant,
    /// Findings of this scan, to log what appeared and what cleared since the last one.
    findings: Vec<FindingEvent>,
    /// Scan durations since start, this scan included.
    histogram: DurationHistogram,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FindingEvent {
    check: &'static str,
    severity: Severity,
    source: String,
    fingerprint: String,
    not_after: Option<String>,
    message: String,
}

impl FindingEvent {
    fn key(&self) -> (&'static str, &str, &str) {
        (self.check, &self.source, &self.fingerprint)
    }
}

/// One structured log event per finding that appeared or cleared: the log stream is a change
/// feed, not a copy of /status on every scan.
fn log_changes(previous: Option<&Snapshot>, current: &Snapshot) {
    let before: std::collections::HashSet<_> = previous
        .map(|p| p.findings.iter().map(FindingEvent::key).collect())
        .unwrap_or_default();
    let after: std::collections::HashSet<_> =
        current.findings.iter().map(FindingEvent::key).collect();
    for f in current
        .findings
        .iter()
        .filter(|f| !before.contains(&f.key()))
    {
        let not_after = f.not_after.as_deref().unwrap_or("");
        match f.severity {
            Severity::Critical => {
                tracing::error!(event = "finding", check = f.check, severity = "critical", source = %f.source, fingerprint = %f.fingerprint, not_after, message = %f.message)
            }
            Severity::Warning => {
                tracing::warn!(event = "finding", check = f.check, severity = "warning", source = %f.source, fingerprint = %f.fingerprint, not_after, message = %f.message)
            }
            // Informational findings (a lone leaf without its chain) are common and harmless.
            Severity::Info => {
                tracing::debug!(event = "finding", check = f.check, severity = "info", source = %f.source, fingerprint = %f.fingerprint, not_after, message = %f.message)
            }
        }
    }
    if let Some(previous) = previous {
        for f in previous
            .findings
            .iter()
            .filter(|f| !after.contains(&f.key()))
        {
            tracing::info!(event = "resolved", check = f.check, source = %f.source, fingerprint = %f.fingerprint, "finding cleared");
        }
    }
}

struct Shared {
    config: RwLock<Arc<Config>>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// `/status`, rendered after the metrics of the same scan are published (so a change
    /// reaches /metrics first). Kept in a file of the cache directory when there is one, and
    /// then served until the next is complete; otherwise the previous one is dropped when the
    /// next is started, so two never sit in memory together, and clients follow the new one.
    status: RwLock<Output>,
    /// The first scan's metrics while they are being compressed (see [`gz::follow`]).
    first_metrics: RwLock<Option<gz::Follower>>,
    /// Wakes the scanner early (after a reload or a file change).
    rescan: Arc<Notify>,
    /// Where verified signatures and decoded files are kept for the next start.
    cache_dir: Option<CacheDir>,
    /// Files decoded by earlier scans: a rescan reads only what changed.
    files: Arc<FileCache>,
    /// When `files` was last saved (or a save failed) to `cache_dir`.
    files_saved: Mutex<Option<Instant>>,
    /// Endpoints with an `interval` of their own, and what they served last.
    probes: Arc<ProbeSchedule>,
    /// What the renewal scheduler last saw, rendered with the next scan.
    renewals: RwLock<Arc<Vec<RenewalStatus>>>,
}

#[derive(Debug)]
pub enum DaemonError {
    Runtime(io::Error),
    Bind(SocketAddr, io::Error),
    Serve(io::Error),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Runtime(e) => write!(f, "cannot start the async runtime: {e}"),
            Self::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Self::Serve(e) => write!(f, "HTTP server failed: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// Runs until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP. `cache_dir` keeps
/// verified signatures and decoded files across restarts (`daemon.signature_cache`,
/// `daemon.file_cache`).
pub fn run(
    config: Config,
    config_path: Option<PathBuf>,
    cache_dir: Option<CacheDir>,
) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(config, config_path, cache_dir))
}

async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    cache_dir: Option<CacheDir>,
) -> Result<(), DaemonError> {
    let listen = config.daemon.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DaemonError::Bind(listen, e))?;
    // The listener's TLS and authentication are fixed at start (SIGHUP does not change them).
    let tls = config.daemon.tls.clone();
    let basic_auth = config.daemon.basic_auth.clone().map(Arc::new);
    tracing::info!(%listen, tls = tls.is_some(), basic_auth = basic_auth.is_some(), "serving /metrics, /healthz, /readyz, /status");
    let shared = Arc::new(Shared {
        config: RwLock::new(Arc::new(config)),
        snapshot: RwLock::new(None),
        status: RwLock::new(Output::Pending),
        first_metrics: RwLock::new(None),
        files: Arc::new(FileCache::new()),
        files_saved: Mutex::new(None),
        probes: Arc::new(ProbeSchedule::new()),
        rescan: Arc::new(Notify::new()),
        cache_dir,
        renewals: RwLock::default(),
    });
    tokio::spawn(scan_loop(shared.clone()));
    tokio::spawn(renew_loop(shared.clone()));
    tokio::spawn(reload_on_hangup(shared.clone(), config_path));
    let watched = shared.clone();
    tokio::spawn(async move { systemd::watchdog_loop(move || healthy(&watched)).await });

    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status));
    if let Some(auth) = basic_auth {
        app = app.route_layer(axum::middleware::from_fn(move |request, next| {
            listener::require_basic_auth(auth.clone(), request, next)
        }));
    }
    // Liveness and readiness stay open: orchestrators probe them without credentials.
    let app = app
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared.clone());
    listener::serve(listener, app, tls.as_ref(), stop_signal())
        .await
        .map_err(DaemonError::Serve)?;
    let saving = shared.clone();
    // What changed since the last save is kept for the next start.
    let _ = tokio::task::spawn_blocking(move || save_files(&saving, true)).await;
    tracing::info!("stopped");
    Ok(())
}

impl Shared {
    /// The configuration in force (SIGHUP may replace it between calls).
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn rescan_notify(&self) -> Arc<Notify> {
        self.rescan.clone()
    }
}

/// For the systemd watchdog: a first scan was published and scans have not stalled.
fn healthy(shared: &Shared) -> bool {
    let interval = shared.config().daemon.scan_interval;
    current(shared).is_some_and(|s| s.finished.elapsed() < interval * 3 + Duration::from_secs(60))
}

fn current(shared: &Shared) -> Option<Arc<Snapshot>> {
    shared
        .snapshot
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Prometheus text by default; OpenMetrics when the scraper asks for it (Prometheus does).
/// Every family is a gauge or a histogram, whose lines are the same in both formats; OpenMetrics only adds
/// the closing `# EOF`, compressed as the last bytes of the same gzip stream.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = accepts(&headers, header::ACCEPT, "application/openmetrics-text");
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    let tail: &'static [u8] = if openmetrics { b"# EOF\n" } else { b"" };
    if let Some(snapshot) = current(&shared) {
        return compressed_response(
            &headers,
            content_type,
            snapshot.metrics_gz.closed_with(tail),
        );
    }
    // The first metrics are being compressed: a gzip client follows them block by block, any
    // other waits for the whole.
    let progress = shared
        .first_metrics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match progress {
        Some(progress) => followed_response(&headers, content_type, progress, tail).await,
        None => (StatusCode::SERVICE_UNAVAILABLE, "first scan not finished\n").into_response(),
    }
}

/// An output still being compressed: a gzip client follows it block by block, any other
/// waits for the whole.
async fn followed_response(
    headers: &HeaderMap,
    content_type: &'static str,
    mut progress: gz::Follower,
    tail: &'static [u8],
) -> Response {
    if accepts(headers, header::ACCEPT_ENCODING, "gzip") {
        return gzip_response(content_type, Body::from_stream(gz::follow(progress, tail)));
    }
    let done = progress
        .wait_for(|p| p.done().is_some())
        .await
        .ok()
        .and_then(|p| p.done().cloned());
    match done {
        Some(body) => compressed_response(headers, content_type, body.closed_with(tail)),
        None => (StatusCode::SERVICE_UNAVAILABLE, "rendering failed\n").into_response(),
    }
}

/// A rendered output between scans.
#[derive(Clone)]
enum Output {
    /// Never rendered yet.
    Pending,
    /// Being compressed (again); `after_first` once a complete one was published.
    Compressing {
        progress: gz::Follower,
        after_first: bool,
    },
    Done(gz::GzBody),
    /// Done, and kept in a file in the cache directory rather than in memory.
    Spilled(gz::SpilledBody),
}

impl Output {
    fn published(&self) -> bool {
        match self {
            Self::Pending => false,
            Self::Compressing { after_first, .. } => *after_first,
            Self::Done(_) | Self::Spilled(_) => true,
        }
    }
}

async fn status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    const JSON: &str = "application/json";
    let status = shared
        .status
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match status {
        Output::Pending => {
            (StatusCode::SERVICE_UNAVAILABLE, "first scan not finished\n").into_response()
        }
        Output::Compressing { progress, .. } => {
            followed_response(&headers, JSON, progress, b"").await
        }
        Output::Done(body) => compressed_response(&headers, JSON, body.closed_with(b"")),
        Output::Spilled(body) if accepts(&headers, header::ACCEPT_ENCODING, "gzip") => {
            gzip_response(JSON, Body::from_stream(body.stream()))
        }
        Output::Spilled(body) => {
            ([(header::CONTENT_TYPE, JSON)], gunzip(body.reader())).into_response()
        }
    }
}

/// A body kept gzip-compressed, sent as it is to clients that take gzip (as Prometheus
/// does), decompressed for the others.
fn compressed_response(
    headers: &HeaderMap,
    content_type: &'static str,
    parts: Vec<Bytes>,
) -> Response {
    if accepts(headers, header::ACCEPT_ENCODING, "gzip") {
        let body = Body::from_stream(futures_util::stream::iter(
            parts.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        gzip_response(content_type, body)
    } else {
        let parts = PartsReader {
            parts: parts.into(),
        };
        ([(header::CONTENT_TYPE, content_type)], gunzip(parts)).into_response()
    }
}

/// A gzip stream sent as it is, labelled as such.
fn gzip_response(content_type: &'static str, gzip: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        gzip,
    )
        .into_response()
}

fn accepts(headers: &HeaderMap, name: header::HeaderName, what: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what))
}

/// For the rare client that does not take gzip: decompressed as it is sent, so a plain
/// scrape of 100 MB of text never holds that text in memory.
fn gunzip(compressed: impl io::Read + Send + 'static) -> Body {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut decoder = flate2::read::GzDecoder::new(compressed);
        let mut buf = vec![0; 256 * 1024];
        loop {
            let chunk = match decoder.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            // A client that went away closes the channel.
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// The shared compressed blocks read one after the other.
struct PartsReader {
    parts: std::collections::VecDeque<Bytes>,
}

impl io::Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(front) = self.parts.front_mut() {
            if front.is_empty() {
                self.parts.pop_front();
                continue;
            }
            let n = front.len().min(buf.len());
            buf[..n].copy_from_slice(&front[..n]);
            *front = front.slice(n..);
            return Ok(n);
        }
        Ok(0)
    }
}

/// Ready once the first scan's metrics and status are both served.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let status = shared
        .status
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .published();
    if current(&shared).is_some() && status {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "first scan not finished\n").into_response()
    }
}

async fn scan_loop(shared: Arc<Shared>) {
    let mut watcher = watch::Watcher::new(shared.rescan_notify());
    loop {
        let config = shared.config();
        // Watches are set up after the first scan is published, so readiness never waits for
        // them; a change in between is caught by the rescan the new watches trigger.
        if current(&shared).is_some() {
            watcher.update(&watched_paths(&config));
        }
        let polling = watcher.polling.clone();
        let cache = shared.cache_dir.as_ref().map(CacheDir::verified_links);
        let renewals = shared
            .renewals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let histogram = current(&shared)
            .map(|s| s.histogram.clone())
            .unwrap_or_default();
        let started = Instant::now();
        let publisher = shared.clone();
        let job = tokio::task::spawn_blocking(move || {
            scan_once(&publisher, &config, cache, &polling, &renewals, histogram)
        });
        match job.await {
            Ok(first) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "scan finished"
                );
                if first {
                    systemd::ready();
                    // Now set up the watches, and rescan once to cover the gap.
                    let config = shared.config();
                    watcher.update(&watched_paths(&config));
                    shared.rescan.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "scan task failed; keeping the previous results"),
        }
        // Woken for the next endpoint due on its own interval, at the latest.
        let mut wait = shared.config().daemon.scan_interval;
        if let Some(due) = shared.probes.next_due() {
            wait = wait.min(due.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.rescan.notified() => {}
        }
    }
}

/// The renewal scheduler: a renewal pass every `check_interval` over the managed
/// certificates (issue what is due, activate, reload, verify, resume what a crash or a failure
/// left), then the state of each one for /metrics.
async fn renew_loop(shared: Arc<Shared>) {
    let mut issuers: Option<(Arc<Config>, Arc<Issuers>)> = None;
    loop {
        let config = shared.config();
        let interval = config.renewal.check_interval;
        if !config.certificates.is_empty() {
            let fresh = issuers
                .as_ref()
                .is_none_or(|(seen, _)| !Arc::ptr_eq(seen, &config));
            if fresh {
                issuers = Some((config.clone(), Arc::new(Issuers::new((*config).clone()))));
            }
            if let Some((_, current)) = &issuers {
                let names: Vec<String> =
                    config.certificates.iter().map(|c| c.name.clone()).collect();
                for (name, outcome) in current.renew(&names, RenewOptions::default()).await {
                    match &outcome {
                        RenewOutcome::NotDue { .. } | RenewOutcome::BackingOff { .. } => {
                            tracing::debug!(event = "renewal", certificate = %name, outcome = %outcome.describe())
                        }
                        RenewOutcome::Renewed { .. } | RenewOutcome::Staged { .. } => {
                            tracing::info!(event = "renewal", certificate = %name, outcome = %outcome.describe())
                        }
                        _ => {
                            tracing::warn!(event = "renewal", certificate = %name, outcome = %outcome.describe())
                        }
                    }
                }
                let statuses = renewal_statuses(current, &names).await;
                let changed = {
                    let mut slot = shared.renewals.write().unwrap_or_else(|e| e.into_inner());
                    let changed = **slot != statuses;
                    *slot = Arc::new(statuses);
                    changed
                };
                if changed {
                    shared.rescan.notify_one();
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

async fn renewal_statuses(issuers: &Issuers, names: &[String]) -> Vec<RenewalStatus> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = Vec::new();
    for name in names {
        let state = issuers.state(name).unwrap_or_default();
        let next_renewal = match issuers.plan(name, now).await {
            Ok(report) => match report.plan {
                Plan::NotYet { at } => Some(at),
                Plan::Due(_) => Some(now),
            },
            Err(_) => None,
        };
        out.push(RenewalStatus {
            certificate: name.clone(),
            stage: state.stage.as_str(),
            next_renewal,
            last_attempt: state.last_attempt,
            last_success: state.last_success,
            consecutive_failures: state.failure.as_ref().map_or(0, |f| f.attempt),
            reload_failures: state.reload_failures,
        });
    }
    out
}

/// One pass of the same pipeline as `certvigil scan`, rendered for serving.
/// Paths whose changes should trigger a rescan: file and directory sources, target files, or
/// the standard locations when no source is configured.
fn watched_paths(config: &Config) -> Vec<PathBuf> {
    let mut paths = config.path_sources();
    for target in &config.targets {
        paths.push(target.cert.clone());
        paths.extend(target.key.clone());
    }
    if config.sources.is_empty() && config.targets.is_empty() {
        paths.extend(
            certvigil_source::truststore::STANDARD_LOCATIONS
                .iter()
                .map(PathBuf::from),
        );
    }
    paths
}

/// Scans, publishes the metrics, then the status; true when this was the first scan.
fn scan_once(
    shared: &Shared,
    config: &Config,
    link_cache: Option<PathBuf>,
    polling: &[String],
    renewals: &[RenewalStatus],
    mut histogram: DurationHistogram,
) -> bool {
    if current(shared).is_none() && shared.files.is_empty() {
        load_files(shared, config);
    }
    let mut options = ScanOptions {
        system_trust: config.daemon.system_trust,
        link_cache: link_cache.filter(|_| config.daemon.signature_cache),
        deployments: config.deployments(),
        endpoint_concurrency: config.daemon.endpoint_concurrency,
        // Remembering a file shares its certificates with the inventory, so the first scan
        // fills the cache at little cost and the follow-up scan only checks file stamps.
        file_cache: Some(shared.files.clone()),
        probe_schedule: Some(shared.probes.clone()),
        ..ScanOptions::default()
    };
    if config.sources.is_empty() && config.targets.is_empty() {
        options.targets.push(Target::Defaults);
    }
    options
        .targets
        .extend(config.path_sources().into_iter().map(Target::Path));
    for source in &config.sources {
        if let SourceConfig::Endpoint(spec) = source {
            options.targets.push(Target::Endpoint((**spec).clone()));
        }
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let policy = config.policy.to_policy(now);
    let started = Instant::now();
    let inventory = scan(&options);
    let findings = check::run(&inventory, &policy);
    let mut report = Report::new(&inventory, &findings, &policy);
    let seconds = started.elapsed().as_secs_f64();
    report.scan_seconds = Some(seconds);
    histogram.observe(seconds);
    report.scan_histogram = Some(&histogram);
    report.watch_polling = polling;
    report.renewals = renewals;
    let configured: Vec<String> = config
        .path_sources()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    report.configured_sources = &configured;
    let labels: Vec<SourceLabels> = config
        .source_labels
        .iter()
        .map(|s| SourceLabels {
            source: s.source.clone(),
            labels: s.labels.clone(),
        })
        .collect();
    report.source_labels = &labels;
    tracing::debug!(elapsed = ?started.elapsed(), remembered_files = shared.files.len(), from_memory = shared.files.hits(), "scanned and checked");
    // With a cache directory, /status goes to a file there as it is compressed (13 MB for a
    // hundred thousand certificates, seldom read), and the previous one is served until the
    // new one is complete. Without, the previous one goes first, or it would sit in memory
    // next to the served metrics and the new ones' changed blocks; until the new one is
    // rendered, /status clients follow it.
    let status = match spill_file(shared) {
        Some(file) => StatusRender::Spilling(file),
        None => {
            let (gz, progress) = gz::ParallelGz::followed();
            let mut output = shared.status.write().unwrap_or_else(|e| e.into_inner());
            let after_first = output.published();
            *output = Output::Compressing {
                progress,
                after_first,
            };
            StatusRender::InMemory(gz)
        }
    };
    // Rendered straight into the compressor: the full text never sits in memory. The first
    // time, scrapers already waiting follow the blocks as they are compressed; after that,
    // what did not change is taken from the metrics being served.
    let served = current(shared);
    let mut metrics = if let Some(served) = &served {
        gz::ParallelGz::reusing(&served.metrics_gz)
    } else {
        let (metrics, progress) = gz::ParallelGz::followed();
        *shared
            .first_metrics
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(progress);
        metrics
    };
    if let Err(e) = prom::write(&report, &mut metrics) {
        tracing::error!(error = %e, "rendering metrics failed");
    }
    if config.daemon.x509_exporter_compat
        && let Err(e) = certvigil_report::compat::write_x509_exporter(&report, &mut metrics)
    {
        tracing::error!(error = %e, "rendering x509-certificate-exporter metrics failed");
    }
    let metrics = metrics.finish();
    drop(served);
    let (reused_blocks, blocks) = metrics.reused_blocks();
    let snapshot = Snapshot {
        metrics_gz: metrics,
        summary: format!(
            "{} certificates; {} critical, {} warning findings",
            report.occurrences().count(),
            report.count(Severity::Critical),
            report.count(Severity::Warning)
        ),
        finished: Instant::now(),
        histogram: histogram.clone(),
        findings: findings
            .iter()
            .map(|f| {
                let cert = f
                    .fingerprint
                    .and_then(|fp| inventory.find(&fp))
                    .map(|id| inventory.cert(id));
                FindingEvent {
                    check: f.check.as_str(),
                    severity: f.severity,
                    source: f.location.to_string(),
                    fingerprint: f
                        .fingerprint
                        .map(|fp| certvigil_core::cert::hex(&fp))
                        .unwrap_or_default(),
                    not_after: cert.map(|c| certvigil_core::timefmt::rfc3339(c.not_after)),
                    message: f.message.clone(),
                }
            })
            .collect(),
    };
    tracing::debug!(elapsed = ?started.elapsed(), blocks, reused_blocks, "metrics rendered");
    let snapshot = Arc::new(snapshot);
    let previous = shared
        .snapshot
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace(snapshot.clone());
    let first = previous.is_none();
    *shared
        .first_metrics
        .write()
        .unwrap_or_else(|e| e.into_inner()) = None;
    systemd::status(&snapshot.summary);
    // Logged once the new metrics are out: the first scan logs every finding.
    log_changes(previous.as_deref(), &snapshot);
    drop(previous);
    drop(snapshot);
    // /readyz waits for this one too.
    let rendered = match status {
        StatusRender::Spilling(file) => {
            let spilled = gz::ParallelGz::spilling(file).and_then(|mut gz| {
                json::write(&report, &mut gz)?;
                gz.finish_spilled()
            });
            spilled.map(Output::Spilled).unwrap_or_else(|e| {
                // A full disk must not leave /status stale: this one is kept in memory.
                tracing::warn!(error = %e, "/status kept in memory: writing it to the cache directory failed");
                render_status_in_memory(&report, gz::ParallelGz::new())
            })
        }
        StatusRender::InMemory(gz) => render_status_in_memory(&report, gz),
    };
    *shared.status.write().unwrap_or_else(|e| e.into_inner()) = rendered;
    tracing::debug!(elapsed = ?started.elapsed(), "status rendered");
    save_files(shared, false);
    first
}

fn render_status_in_memory(report: &Report<'_>, mut gz: gz::ParallelGz) -> Output {
    if let Err(e) = json::write(report, &mut gz) {
        tracing::error!(error = %e, "rendering status failed");
    }
    Output::Done(gz.finish())
}

enum StatusRender {
    Spilling(std::fs::File),
    InMemory(gz::ParallelGz),
}

/// A new unlinked file in the cache directory for the next /status, if there is one.
fn spill_file(shared: &Shared) -> Option<std::fs::File> {
    let dir = shared.cache_dir.as_ref()?.path();
    let file = std::fs::create_dir_all(dir).and_then(|()| tempfile::tempfile_in(dir));
    file.inspect_err(|e| {
        tracing::warn!(dir = %dir.display(), error = %e, "/status kept in memory: no file for it in the cache directory");
    })
    .ok()
}

/// Decoded files are saved at most this often, and at stop: a hundred thousand files make
/// about 40 MB, too much to write again after every change.
const SAVE_FILES_EVERY: Duration = Duration::from_secs(600);

fn saved_files_path(shared: &Shared, config: &Config) -> Option<PathBuf> {
    shared
        .cache_dir
        .as_ref()
        .filter(|_| config.daemon.file_cache)
        .map(CacheDir::files)
}

/// The daemon reads files with the default size limit; a saved cache must match it.
fn max_file_size() -> u64 {
    ScanOptions::default().walk.max_file_size
}

/// Takes the files a previous run saved, so the first scan reads only what changed since.
fn load_files(shared: &Shared, config: &Config) {
    let Some(path) = saved_files_path(shared, config) else {
        return;
    };
    let started = Instant::now();
    match FileCache::load(&path, max_file_size()) {
        Ok(saved) => {
            let files = saved.len();
            shared.files.replace(saved);
            tracing::info!(path = %path.display(), files, elapsed = ?started.elapsed(), "file cache loaded");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "file cache not used; every file is read");
        }
    }
}

/// Saves the decoded files for the next start when they changed: always at stop (`force`),
/// otherwise at most every [`SAVE_FILES_EVERY`].
fn save_files(shared: &Shared, force: bool) {
    let config = shared.config();
    let Some(path) = saved_files_path(shared, &config) else {
        return;
    };
    let mut saved = shared.files_saved.lock().unwrap_or_else(|e| e.into_inner());
    if !force && saved.is_some_and(|at| at.elapsed() < SAVE_FILES_EVERY) {
        return;
    }
    let started = Instant::now();
    let result = shared.files.save(&path, max_file_size());
    // A failed save waits its turn too: a full disk should not cost 40 MB of writes per scan.
    if !matches!(result, Ok(false)) {
        *saved = Some(Instant::now());
    }
    match result {
        Ok(true) => {
            tracing::info!(path = %path.display(), files = shared.files.len(), elapsed = ?started.elapsed(), "file cache saved");
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "file cache not saved"),
    }
}

async fn reload_on_hangup(shared: Arc<Shared>, config_path: Option<PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; configuration reloads are off");
        return;
    };
    while hangups.recv().await.is_some() {
        systemd::reloading();
        let Some(path) = &config_path else {
            tracing::info!("SIGHUP: running on the built-in configuration; rescanning");
            shared.rescan.notify_one();
            systemd::ready();
            continue;
        };
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Config::parse(&text).map_err(|errors| errors.to_string()))
        {
            Ok(config) => {
                if config.daemon.listen != shared.config().daemon.listen {
                    tracing::warn!("SIGHUP: daemon.listen changed; it takes effect on restart");
                }
                *shared.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                shared.files.clear();
                tracing::info!(path = %path.display(), "configuration reloaded; rescanning");
                shared.rescan.notify_one();
            }
            Err(errors) => {
                for error in errors.lines() {
                    tracing::error!(path = %path.display(), %error, "new configuration rejected; keeping the old one");
                }
            }
        }
        // systemd waits for READY=1 after RELOADING=1, whether the new file was taken or not.
        systemd::ready();
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    systemd::stopping();
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use tokio::task::JoinHandle;

    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            config: RwLock::new(Arc::new(Config::embedded_default())),
            snapshot: RwLock::new(None),
            status: RwLock::new(Output::Pending),
            first_metrics: RwLock::new(None),
            rescan: Arc::new(Notify::new()),
            cache_dir: None,
            files: Arc::new(FileCache::new()),
            files_saved: Mutex::new(None),
            probes: Arc::new(ProbeSchedule::new()),
            renewals: RwLock::default(),
        })
    }

    fn request_headers(gzip: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if gzip {
            headers.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        }
        headers
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Starts the same request from a gzip client and from a plain one.
    fn gzip_and_plain<F, Fut>(shared: &Arc<Shared>, handler: F) -> [JoinHandle<Response>; 2]
    where
        F: Fn(State<Arc<Shared>>, HeaderMap) -> Fut,
        Fut: Future<Output = Response> + Send + 'static,
    {
        [true, false]
            .map(|gzip| tokio::spawn(handler(State(shared.clone()), request_headers(gzip))))
    }

    /// Renders `text` into `gz` in pieces, as the renderers write, on a blocking thread.
    fn write_in_pieces(mut gz: gz::ParallelGz, text: Vec<u8>) -> JoinHandle<gz::GzBody> {
        tokio::task::spawn_blocking(move || {
            for piece in text.chunks(8192) {
                gz.write_all(piece).unwrap();
            }
            gz.finish()
        })
    }

    /// JSON-like lines that compress well but not to nothing.
    fn numbered_json(lines: u32, modulo: u32) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| format!("{{\"n\":{}}}\n", i % modulo).into_bytes())
            .collect()
    }

    fn gunzipped(gzip: &[u8]) -> Vec<u8> {
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(gzip)
            .read_to_end(&mut unpacked)
            .unwrap();
        unpacked
    }

    /// Before the first metrics exist, /metrics is 503; while they are being compressed, a
    /// gzip client and a plain one both get the whole text, once it is done.
    #[test]
    fn first_metrics_are_served_while_they_are_compressed() {
        let runtime = runtime();
        let shared = shared();
        let text: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| format!("certvigil_x{{n=\"{}\"}} 1\n", i % 977).into_bytes())
            .take(6 << 20)
            .collect();
        runtime.block_on(async {
            let early = metrics(State(shared.clone()), request_headers(true)).await;
            assert_eq!(early.status(), StatusCode::SERVICE_UNAVAILABLE);

            let (gz, follower) = gz::ParallelGz::followed();
            *shared.first_metrics.write().unwrap() = Some(follower);
            let [gzip, plain] = gzip_and_plain(&shared, metrics);
            let writer = write_in_pieces(gz, text.clone());
            let gzip = body(gzip.await.unwrap()).await;
            let plain = body(plain.await.unwrap()).await;
            let finished = writer.await.unwrap();
            assert_eq!(gzip, finished.closed_with(b"").concat());
            assert_eq!(gunzipped(&gzip), text);
            assert_eq!(plain, text);
        });
    }

    /// A /status kept in a file is served from there, compressed or not.
    #[test]
    fn a_spilled_status_is_served_from_its_file() {
        let runtime = runtime();
        let shared = shared();
        let json = numbered_json(300_000, 997);
        let mut gz = gz::ParallelGz::spilling(tempfile::tempfile().unwrap()).unwrap();
        gz.write_all(&json).unwrap();
        let spilled = gz.finish_spilled().unwrap();
        *shared.status.write().unwrap() = Output::Spilled(spilled);
        assert!(shared.status.read().unwrap().published());
        runtime.block_on(async {
            let [gzip, plain] = gzip_and_plain(&shared, status);
            let gzip = gzip.await.unwrap();
            assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip");
            assert_eq!(gunzipped(&body(gzip).await), json);
            assert_eq!(body(plain.await.unwrap()).await, json);
        });
    }

    /// While the next /status is rendered the previous one is gone: clients follow the new
    /// one and get it whole, and it counts as published (for /readyz) after the first.
    #[test]
    fn status_is_followed_while_it_is_rendered_again() {
        let runtime = runtime();
        let shared = shared();
        let json = numbered_json(400_000, 991);
        runtime.block_on(async {
            let install = |after_first| {
                let (gz, progress) = gz::ParallelGz::followed();
                *shared.status.write().unwrap() = Output::Compressing {
                    progress,
                    after_first,
                };
                gz
            };
            let early = status(State(shared.clone()), request_headers(true)).await;
            assert_eq!(early.status(), StatusCode::SERVICE_UNAVAILABLE);
            // /readyz waits for the first one, not for those after it.
            let first = install(false);
            assert!(!shared.status.read().unwrap().published());
            drop(first);
            let gz = install(true);
            assert!(shared.status.read().unwrap().published());
            let [gzip, plain] = gzip_and_plain(&shared, status);
            let writer = write_in_pieces(gz, json.clone());
            let gzip = body(gzip.await.unwrap()).await;
            let plain = body(plain.await.unwrap()).await;
            let finished = writer.await.unwrap();
            assert_eq!(gzip, finished.closed_with(b"").concat());
            assert_eq!(plain, json);
        });
    }
}
