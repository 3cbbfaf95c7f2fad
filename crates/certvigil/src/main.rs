//! The `certvigil` command line: flags in, library calls, output and exit codes out.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use certvigil_core::check::{self, Policy, Severity};
use certvigil_core::inventory::Role;
use certvigil_report::{Report, inspect, json, nagios, prom, text};
use certvigil_source::files::WalkOptions;
use certvigil_source::{CacheDir, EndpointSpec, FileCache, ScanOptions, StartTls, Target, scan};
use clap::{Args, Parser, Subcommand, ValueEnum};
use globset::{Glob, GlobSet, GlobSetBuilder};

mod audit_cmd;
mod ca_cmd;
mod issue_cmd;

/// Find every TLS certificate that matters and check it before it becomes an outage.
#[derive(Parser)]
#[command(name = "certvigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr; `json` gives one object per event for log pipelines.
    /// Verbosity comes from CERTVIGIL_LOG (e.g. `info`, `certvigil_daemon=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CERTVIGIL_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Inventory and check certificates in files, directories, kube objects and TLS endpoints.
    ///
    /// Without targets: the system trust store and the standard PKI locations on this host.
    /// Exit status: 0 no finding at or above --fail-on, 1 there are such findings,
    /// 2 operational error.
    Scan {
        #[command(flatten)]
        sources: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the output to this file (atomically) instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Lowest severity that makes the exit status 1.
        #[arg(long, value_enum, default_value_t = FailOn::Critical)]
        fail_on: FailOn,
        /// List trust-store roots even when they have no findings (text format).
        #[arg(long)]
        show_anchors: bool,
    },
    /// Show one certificate source in full detail: fields, extensions, chain and verdicts.
    Inspect {
        #[command(flatten)]
        sources: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Watch continuously: rescan on a schedule and serve /metrics, /healthz, /readyz and
    /// /status (loopback port 9910 by default). SIGHUP reloads the configuration.
    Daemon {
        /// TOML configuration (docs/daemon.md); without it, the built-in default.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Do not read or update the caches of verified signatures and of decoded files.
        #[arg(long)]
        no_cache: bool,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The internal CA: create it, issue etcd, gRPC and TLS certificates from it.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// The deploy audit log: check its hash chain.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Issue managed certificates ([[certificate]] in the configuration) now, whatever their
    /// renewal plan, into the staging area the deploy stage consumes.
    ///
    /// Exit status: 0 all issued, 1 at least one failed, 2 configuration error.
    Issue {
        /// The [[certificate]] names to issue.
        names: Vec<String>,
        /// Issue every configured certificate.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// TOML configuration with [[issuer]] and [[certificate]] entries.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// One renewal pass over the managed certificates: issue what is due, activate it
    /// atomically, run each reload hook once, verify by handshake that the new certificate is
    /// served, roll back when it is not. A pass resumes where an earlier one failed.
    ///
    /// Exit status: 0 nothing was due, 4 renewed (and verified where endpoints are
    /// configured), 3 issued but activation, reload or verification is still pending,
    /// 1 a renewal failed, 2 operational error.
    Renew {
        /// The [[certificate]] names (default: all).
        names: Vec<String>,
        /// TOML configuration with [[issuer]] and [[certificate]] entries.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Renew even when not due, and ignore the backoff of earlier failures.
        #[arg(long)]
        force: bool,
        /// Only say what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Where each managed certificate stands: renewal stage, what is live, when it is due,
    /// the last attempt and success, and the failure being backed off, if any.
    Status {
        /// The [[certificate]] names (default: all).
        names: Vec<String>,
        /// TOML configuration with [[issuer]] and [[certificate]] entries.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// One JSON array for scripts.
        #[arg(long)]
        json: bool,
    },
    /// When each managed certificate is due for renewal, and why (the CA's ARI window is
    /// asked for and remembered when it offers one).
    Plan {
        /// The [[certificate]] names (default: all).
        names: Vec<String>,
        /// TOML configuration with [[issuer]] and [[certificate]] entries.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Nagios/Icinga plugin: one status line with perfdata; exit 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN.
    Check {
        #[command(flatten)]
        sources: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Warning threshold in days left.
        #[arg(short = 'w', long = "warning", value_name = "DAYS")]
        warning: Option<f64>,
        /// Critical threshold in days left.
        #[arg(short = 'c', long = "critical", value_name = "DAYS")]
        critical: Option<f64>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and report every error in it.
    Check { file: PathBuf },
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// Files, directories, `-` for stdin, or endpoints (`host:port`, `[v6]:port`,
    /// `https://host`, `smtp://host`, `imap://`, `pop3://`, `ldap://`, `postgres://`).
    targets: Vec<String>,
    /// Also list the system trust store.
    #[arg(long)]
    trust_store: bool,
    /// Only read files matching this glob inside directories (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Skip files matching this glob inside directories (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Skip files larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = certvigil_source::files::DEFAULT_MAX_FILE_SIZE)]
    max_file_size: u64,
    /// Read the PKCS#12 password from this file (first line).
    #[arg(long, value_name = "FILE", conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// Read the PKCS#12 password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Extra trust anchors (PEM/DER bundle), e.g. a private CA (repeatable).
    #[arg(long, value_name = "FILE")]
    ca_file: Vec<PathBuf>,
    /// Do not load the system trust store to judge chains.
    #[arg(long)]
    no_system_trust: bool,
    /// SNI name to send to endpoints (default: the host name).
    #[arg(long)]
    sni: Option<String>,
    /// ALPN protocol to offer to endpoints (repeatable), e.g. h2.
    #[arg(long)]
    alpn: Vec<String>,
    /// Client certificate (PEM) for mTLS endpoints such as etcd.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM) for --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// STARTTLS protocol for `host:port` endpoints.
    #[arg(long, value_enum)]
    starttls: Option<StartTlsArg>,
    /// Do not read or update the caches of verified signatures and of decoded files
    /// ($CERTVIGIL_CACHE_DIR, else $XDG_CACHE_HOME/certvigil, else ~/.cache/certvigil).
    #[arg(long)]
    no_cache: bool,
    /// Endpoint timeout in seconds (connect + STARTTLS + handshake).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Endpoints probed at the same time.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
}

#[derive(Args, Clone)]
struct PolicyArgs {
    /// Host name every leaf must cover (repeatable).
    #[arg(long, value_name = "NAME")]
    host: Vec<String>,
    /// Role every leaf must be fit for: tls-server, tls-client, etcd-peer.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// Warn when fewer days than this are left (and the fraction below is reached).
    #[arg(long, value_name = "DAYS", default_value_t = 30.0)]
    warn_days: f64,
    /// Critical when fewer days than this are left (and the fraction below is reached).
    #[arg(long, value_name = "DAYS", default_value_t = 7.0)]
    crit_days: f64,
    /// Warn when at most this fraction of the lifetime is left.
    #[arg(long, value_name = "FRACTION", default_value_t = 1.0 / 3.0)]
    warn_fraction: f64,
    /// Critical when at most this fraction of the lifetime is left.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.1)]
    crit_fraction: f64,
    /// Allowance in seconds for clock skew before a certificate counts as not yet valid.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    clock_skew: i64,
    /// Judge as of this time (RFC 3339) instead of now: "what breaks next month?"
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Prom,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    Critical,
    Warning,
    Info,
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum StartTlsArg {
    Smtp,
    Imap,
    Pop3,
    Postgres,
    Ldap,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
        .ok_or_else(|| format!("unknown role {s:?}: use tls-server, tls-client or etcd-peer"))
}

/// jemalloc, configured in `.cargo/config.toml` to hand freed pages back at once: with the
/// system allocator the daemon's resident memory stayed about 50 MB above its heap peak and
/// grew with each rescan (docs/benchmarks.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("certvigil: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<certvigil_config::Config> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    certvigil_config::Config::parse(&text).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CERTVIGIL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Scan {
            sources,
            policy,
            format,
            output,
            fail_on,
            show_anchors,
        } => {
            let policy = build_policy(&policy)?;
            let (mut options, saved_files) = build_scan_options(&sources, &policy, false)?;
            let started = std::time::Instant::now();
            let inventory = scan(&options);
            save_file_cache(&mut options, saved_files);
            let findings = check::run(&inventory, &policy);
            tracing::debug!(elapsed = ?started.elapsed(), "checked");
            let report = Report::new(&inventory, &findings, &policy);
            let color = output.is_none()
                && io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none();
            write_output(output.as_ref(), |out| match format {
                Format::Text => text::write(
                    &report,
                    text::TextOptions {
                        color,
                        show_anchors,
                    },
                    out,
                ),
                Format::Json => json::write(&report, out),
                Format::Prom => prom::write(&report, out),
            })?;
            tracing::debug!(elapsed = ?started.elapsed(), "written");
            let threshold = match fail_on {
                FailOn::Critical => Some(Severity::Critical),
                FailOn::Warning => Some(Severity::Warning),
                FailOn::Info => Some(Severity::Info),
                FailOn::Never => None,
            };
            let failed = threshold.is_some_and(|t| report.worst().is_some_and(|w| w >= t));
            // The process ends next: freeing a hundred thousand certificates one by one would
            // only delay the exit.
            std::mem::forget(findings);
            std::mem::forget(inventory);
            Ok(u8::from(failed))
        }
        Command::Inspect { sources, policy } => {
            if sources.targets.is_empty() {
                bail!("inspect needs a source: a file, `-` for stdin, or an endpoint");
            }
            let policy = build_policy(&policy)?;
            let (options, _) = build_scan_options(&sources, &policy, true)?;
            let inventory = scan(&options);
            let findings = check::run(&inventory, &policy);
            let report = Report::new(&inventory, &findings, &policy);
            inspect::write(&report, io::stdout().lock()).context("writing to stdout")?;
            Ok(u8::from(report.worst() == Some(Severity::Critical)))
        }
        Command::Daemon { config, no_cache } => {
            let parsed = match &config {
                Some(path) => load_config(path)?,
                None => certvigil_config::Config::embedded_default(),
            };
            let cache = if no_cache { None } else { cache_dir() };
            certvigil_daemon::run(parsed, config, cache)?;
            Ok(0)
        }
        Command::Issue { names, all, config } => issue_cmd::run(load_config(&config)?, names, all),
        Command::Plan { names, config } => issue_cmd::plan(load_config(&config)?, names),
        Command::Status {
            names,
            config,
            json,
        } => issue_cmd::status(load_config(&config)?, names, json),
        Command::Renew {
            names,
            config,
            force,
            dry_run,
        } => issue_cmd::renew(load_config(&config)?, names, force, dry_run),
        Command::Ca(command) => ca_cmd::run(command),
        Command::Audit(command) => audit_cmd::run(command),
        Command::Config(ConfigCommand::Check { file }) => {
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            match certvigil_config::Config::parse(&text) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(0)
                }
                Err(errors) => {
                    for error in &errors.0 {
                        println!("{}: {error}", file.display());
                    }
                    Ok(1)
                }
            }
        }
        Command::Check {
            sources,
            policy: policy_args,
            warning,
            critical,
        } => {
            let outcome = (|| -> Result<u8> {
                let mut policy = build_policy(&policy_args)?;
                // Plugin thresholds are plain days, as with check_ssl_cert.
                if let Some(w) = warning {
                    policy.warn_days = w;
                    policy.warn_fraction = 1.0;
                }
                if let Some(c) = critical {
                    policy.crit_days = c;
                    policy.crit_fraction = 1.0;
                }
                let (mut options, saved_files) = build_scan_options(&sources, &policy, false)?;
                let inventory = scan(&options);
                save_file_cache(&mut options, saved_files);
                let findings = check::run(&inventory, &policy);
                let report = Report::new(&inventory, &findings, &policy);
                let code = nagios::write(&report, io::stdout().lock())?;
                Ok(code as u8)
            })();
            match outcome {
                Ok(code) => Ok(code),
                Err(e) => {
                    println!("CERTVIGIL UNKNOWN - {e:#}");
                    Ok(nagios::UNKNOWN as u8)
                }
            }
        }
    }
}

fn build_policy(args: &PolicyArgs) -> Result<Policy> {
    let now = match &args.at {
        Some(at) => {
            use time::format_description::well_known::Rfc3339;
            time::OffsetDateTime::parse(at, &Rfc3339)
                .with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?
                .unix_timestamp()
        }
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    for (name, value) in [
        ("--warn-fraction", args.warn_fraction),
        ("--crit-fraction", args.crit_fraction),
    ] {
        if !(0.0..=1.0).contains(&value) {
            bail!("{name} must be between 0 and 1, got {value}");
        }
    }
    let mut policy = Policy::new(now);
    policy.warn_days = args.warn_days;
    policy.crit_days = args.crit_days;
    policy.warn_fraction = args.warn_fraction;
    policy.crit_fraction = args.crit_fraction;
    policy.clock_skew_secs = args.clock_skew;
    policy.hosts = args.host.clone();
    policy.role = args.role;
    Ok(policy)
}

/// The scan's options, and where its decoded files are saved for the next run.
fn build_scan_options(
    args: &SourceArgs,
    _policy: &Policy,
    keep_der: bool,
) -> Result<(ScanOptions, Option<(CacheDir, PathBuf)>)> {
    let mut options = ScanOptions {
        walk: WalkOptions {
            include: globs(&args.include)?,
            exclude: globs(&args.exclude)?,
            max_file_size: args.max_file_size,
        },
        pkcs12_password: pkcs12_password(args)?,
        system_trust: !args.no_system_trust,
        ca_files: args.ca_file.clone(),
        expect: Default::default(),
        keep_der,
        endpoint_concurrency: usize::from(args.concurrency),
        link_cache: if args.no_cache {
            None
        } else {
            cache_dir().map(|dir| dir.verified_links())
        },
        ..ScanOptions::default()
    };
    // Decoded files are remembered only where the decoding depends on nothing secret, and
    // not for `inspect`, which needs every certificate's DER.
    let mut saved_files = None;
    if !args.no_cache
        && !keep_der
        && options.pkcs12_password.is_none()
        && let Some(dir) = cache_dir()
    {
        let path = dir.scan_files(&cache_scope(args));
        let cache = FileCache::load(&path, options.walk.max_file_size)
            .inspect(|_| CacheDir::touch(&path))
            .unwrap_or_else(|e| {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::info!(path = %path.display(), error = %e, "file cache not used");
                }
                FileCache::new()
            });
        options.file_cache = Some(Arc::new(cache));
        saved_files = Some((dir, path));
    }
    for ca in &args.ca_file {
        if !ca.is_file() {
            bail!("--ca-file {}: no such file", ca.display());
        }
    }
    if args.targets.is_empty() {
        options.targets.push(Target::Defaults);
    }
    if args.trust_store {
        options.targets.push(Target::TrustStore);
    }
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    for arg in &args.targets {
        options.targets.push(resolve_target(arg, args, timeout)?);
    }
    Ok((options, saved_files))
}

/// What tells one scan's set of files from another's: its roots and filters. The roots are
/// taken as given (relative ones from the working directory), since the cache knows files by
/// the names the walk gives them, which start with the root as given.
fn cache_scope(args: &SourceArgs) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut scope: Vec<Vec<u8>> = args
        .targets
        .iter()
        .map(|target| cwd.join(target).as_os_str().as_bytes().to_vec())
        .collect();
    if args.targets.is_empty() {
        scope.push(b"\0defaults".to_vec());
    }
    scope.sort();
    scope.dedup();
    let filters = [("\0include ", &args.include), ("\0exclude ", &args.exclude)];
    for (kind, globs) in filters {
        scope.extend(
            globs
                .iter()
                .map(|glob| [kind.as_bytes(), glob.as_bytes()].concat()),
        );
    }
    scope
}

fn cache_dir() -> Option<CacheDir> {
    std::env::var_os("CERTVIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("certvigil")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/certvigil")))
        .map(CacheDir::new)
}

/// Saves the decoded files for the next run (failing to only costs that run some speed), and
/// lets go of the cache's own table before the report is rendered.
fn save_file_cache(options: &mut ScanOptions, saved: Option<(CacheDir, PathBuf)>) {
    let (Some(files), Some((dir, path))) = (options.file_cache.take(), saved) else {
        return;
    };
    match files.save(&path, options.walk.max_file_size) {
        Ok(true) => {
            dir.prune_scan_files(KEPT_SCAN_CACHES);
        }
        Ok(false) => {}
        Err(e) => tracing::info!(path = %path.display(), error = %e, "file cache not saved"),
    }
}

/// Scopes whose decoded files are kept (the most recently used): a host's regular scans and
/// a few one-off ones. For a hundred thousand files, one is about 40 MB.
const KEPT_SCAN_CACHES: usize = 8;

fn resolve_target(arg: &str, args: &SourceArgs, timeout: Duration) -> Result<Target> {
    if arg == "-" {
        return Ok(Target::Stdin);
    }
    let path = PathBuf::from(arg);
    if fs::symlink_metadata(&path).is_ok() {
        return Ok(Target::Path(path));
    }
    let Some(mut spec) = EndpointSpec::parse(arg) else {
        bail!("{arg}: no such file or directory, and not an endpoint (host:port or URL)");
    };
    if args.sni.is_some() {
        spec.sni = args.sni.clone();
    }
    spec.alpn = args.alpn.clone();
    spec.client_cert = args.client_cert.clone();
    spec.client_key = args.client_key.clone();
    spec.timeout = timeout;
    if let Some(starttls) = args.starttls {
        spec.starttls = Some(match starttls {
            StartTlsArg::Smtp => StartTls::Smtp,
            StartTlsArg::Imap => StartTls::Imap,
            StartTlsArg::Pop3 => StartTls::Pop3,
            StartTlsArg::Postgres => StartTls::Postgres,
            StartTlsArg::Ldap => StartTls::Ldap,
        });
    }
    Ok(Target::Endpoint(spec))
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).with_context(|| format!("invalid glob {pattern:?}"))?);
    }
    Ok(Some(builder.build()?))
}

fn pkcs12_password(args: &SourceArgs) -> Result<Option<String>> {
    if let Some(file) = &args.password_file {
        let text = fs::read_to_string(file)
            .with_context(|| format!("reading --password-file {}", file.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    if let Some(var) = &args.password_env {
        let value = std::env::var(var)
            .with_context(|| format!("--password-env {var}: variable is not set"))?;
        return Ok(Some(value));
    }
    Ok(None)
}

/// Writes to stdout, or to a file atomically (temp file + rename) so a textfile collector
/// never reads half a file.
fn write_output(
    path: Option<&PathBuf>,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let Some(path) = path else {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        return match render(&mut lock) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing to stdout"),
        };
    };
    // A device, FIFO or socket (`-o /dev/null`, `-o /dev/stdout`, a pipe to a collector) is
    // written in place: renaming a file over it would replace the device itself.
    if fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        return render(&mut out).with_context(|| format!("writing {}", path.display()));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    render(tmp.as_file_mut()).with_context(|| format!("writing {}", path.display()))?;
    // Reports hold no secrets, and the textfile collector runs as another user.
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
