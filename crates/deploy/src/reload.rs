//! Reload adapters: make a running service pick up the certificate files just activated.
//!
//! A [`Hook`] is one of three [`Reload`] kinds, an optional pre-check command and a timeout:
//!
//! - [`Reload::Signal`]: a signal (`HUP`, `USR1`, ...) to a pid or to the pid read from a pid
//!   file. With `expect_process`, the process must be the expected program (its
//!   `/proc/PID/comm`, or the file name of `/proc/PID/exe`), so a stale pid file that now
//!   points at an unrelated process gets [`ReloadError::WrongProcess`] and no signal.
//! - [`Reload::Systemd`]: `systemctl --no-ask-password <reload|restart|reload-or-restart>
//!   UNIT`, whose exit status is checked (systemctl waits for the reload job to finish).
//! - [`Reload::Command`]: an argv run as is, without a shell; `shell = true` runs `argv[0]` as
//!   a `sh -c` script instead (with `argv[1..]` as `$1...`, `$0` is `certvigil-hook`).
//!
//! The pre-check (e.g. `["nginx", "-t"]`) runs first; when it fails the reload is not
//! attempted ([`ReloadError::PreCheck`]), so a service is never asked to load a configuration
//! it would reject.
//!
//! # Timeouts and process groups
//!
//! `timeout` bounds the whole hook, pre-check included. Every process a hook starts (the
//! pre-check, systemctl, the command) runs in its own process group with stdin closed. When
//! the timeout passes, or when the caller drops the future returned by [`Hook::run`], the whole
//! group is killed with SIGKILL, so helpers the hook started in the background go too. A
//! process that exits normally is not chased further: what it leaves behind is its own
//! business. Killing `systemctl` does not cancel a systemd job already queued.
//!
//! # Environment
//!
//! Commands (the pre-check, [`Reload::Command`] and systemctl) inherit certvigil's environment
//! plus:
//!
//! | variable | value |
//! |---|---|
//! | `CERTVIGIL_CERT_NAME` | the certificate's configured name |
//! | `CERTVIGIL_DOMAINS` | its names, space separated |
//! | `CERTVIGIL_CERT_PATH` | the leaf certificate (PEM) |
//! | `CERTVIGIL_KEY_PATH` | the private key (PEM); the path only, never the key |
//! | `CERTVIGIL_CHAIN_PATH` | the intermediates (PEM) |
//! | `CERTVIGIL_FULLCHAIN_PATH` | leaf followed by intermediates (PEM) |
//! | `CERTVIGIL_OLD_SERIAL` | serial (hex) of the certificate replaced, empty for the first |
//! | `CERTVIGIL_NEW_SERIAL` | serial (hex) of the certificate now live |
//! | `CERTVIGIL_NOT_AFTER` | its expiry, RFC 3339 UTC (`2026-09-01T12:00:00Z`) |
//! | `CERTVIGIL_EVENT` | `deploy`, or `rollback` when the previous generation came back |
//! | `RENEWED_LINEAGE` | certbot compatibility: the directory holding `fullchain_path` |
//! | `RENEWED_DOMAINS` | certbot compatibility: same as `CERTVIGIL_DOMAINS` |
//!
//! The two certbot variables let existing `--deploy-hook` scripts run unchanged; they are set
//! on rollback too (the hook has to reload either way).
//!
//! # Errors
//!
//! A [`ReloadError`] names the hook ([`Hook::describe`]: kind plus unit, argv or pid file), the
//! cause, and for processes the exit status and the last [`STDERR_LINES`] lines of standard
//! error. Certificate paths and serials are not secret; a stderr line containing
//! `PRIVATE KEY` is replaced by `[line withheld: it mentions a private key]` before it is kept.
//!
//! # De-duplication
//!
//! Several certificates often share a service. [`Hook::dedup_key`] is equal for hooks that
//! would do the same thing (same unit and action, same pid file or pid and signal, same argv
//! and shell flag, same pre-check and process check), and [`unique`] keeps the first of each,
//! so one renew pass reloads nginx once, whatever the number of certificates it serves.

mod process;
mod signal;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use process::{Finished, RunError};

/// Timeout of [`Hook::new`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many trailing lines of a process's stderr (and stdout) are kept.
pub const STDERR_LINES: usize = 20;

/// What a [`Reload::Signal`] is sent to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SignalTarget {
    Pid(u32),
    /// Read when the hook runs: a decimal pid, surrounding whitespace allowed.
    PidFile(PathBuf),
}

/// The systemctl verb of a [`Reload::Systemd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemdAction {
    Reload,
    Restart,
    ReloadOrRestart,
}

impl SystemdAction {
    /// The systemctl verb: `reload`, `restart`, `reload-or-restart`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reload => "reload",
            Self::Restart => "restart",
            Self::ReloadOrRestart => "reload-or-restart",
        }
    }
}

/// How a service is told to load its new certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reload {
    Signal {
        target: SignalTarget,
        /// `HUP`, `SIGHUP`, `usr1`...: any signal name nix knows, `SIG` optional.
        signal: String,
        /// The program the pid must belong to: `/proc/PID/comm` (which the kernel truncates
        /// to 15 bytes) or the file name of `/proc/PID/exe`, e.g. `nginx`.
        expect_process: Option<String>,
    },
    Systemd {
        unit: String,
        action: SystemdAction,
        /// The systemctl binary; `None` looks `systemctl` up in `PATH`.
        systemctl: Option<PathBuf>,
    },
    Command {
        argv: Vec<String>,
        /// Run `argv[0]` as a `sh -c` script; otherwise `argv` is executed directly.
        shell: bool,
    },
}

/// One reload hook of a deploy target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub reload: Reload,
    /// Run first, without a shell; a non-zero exit stops the hook before the reload.
    pub pre_check: Option<Vec<String>>,
    /// Bound on the whole hook, pre-check included.
    pub timeout: Duration,
}

/// Why the hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookEvent {
    /// A new generation was activated.
    Deploy,
    /// The previous generation was re-activated after a failed deploy.
    Rollback,
}

impl HookEvent {
    /// `deploy` or `rollback`, the value of `CERTVIGIL_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
        }
    }
}

/// What a hook is told about the certificate it reloads (see the module docs for the
/// environment variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEnv {
    pub certificate: String,
    pub domains: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub chain_path: PathBuf,
    pub fullchain_path: PathBuf,
    pub old_serial: Option<String>,
    pub new_serial: String,
    /// Unix seconds.
    pub not_after: i64,
    pub event: HookEvent,
}

impl HookEnv {
    /// The variables given to the hook's processes, in the order of the module docs' table.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        let domains = self.domains.join(" ");
        let not_after = time::OffsetDateTime::from_unix_timestamp(self.not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let lineage = self.fullchain_path.parent().map(path).unwrap_or_default();
        vec![
            ("CERTVIGIL_CERT_NAME", self.certificate.clone()),
            ("CERTVIGIL_DOMAINS", domains.clone()),
            ("CERTVIGIL_CERT_PATH", path(&self.cert_path)),
            ("CERTVIGIL_KEY_PATH", path(&self.key_path)),
            ("CERTVIGIL_CHAIN_PATH", path(&self.chain_path)),
            ("CERTVIGIL_FULLCHAIN_PATH", path(&self.fullchain_path)),
            (
                "CERTVIGIL_OLD_SERIAL",
                self.old_serial.clone().unwrap_or_default(),
            ),
            ("CERTVIGIL_NEW_SERIAL", self.new_serial.clone()),
            ("CERTVIGIL_NOT_AFTER", not_after),
            ("CERTVIGIL_EVENT", self.event.as_str().to_owned()),
            ("RENEWED_LINEAGE", lineage),
            ("RENEWED_DOMAINS", domains),
        ]
    }
}

/// What a successful hook did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookOutcome {
    /// [`Hook::describe`].
    pub hook: String,
    pub elapsed: Duration,
    /// The pid a signal was sent to.
    pub signalled: Option<u32>,
    /// Last lines of the reload process's stdout and stderr (empty for signals).
    pub stdout: String,
    pub stderr: String,
}

/// The part of a hook that was running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    PreCheck,
    Reload,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PreCheck => "the pre-check",
            Self::Reload => "the reload",
        })
    }
}

/// Why a hook failed. Every variant names the hook ([`Hook::describe`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The hook itself is unusable: empty argv, unknown signal, zero timeout...
    #[error("reload hook {hook}: {reason}")]
    Invalid { hook: String, reason: String },
    /// The pid file is missing, unreadable, empty or not a pid.
    #[error("reload hook {hook}: pid file {}: {reason}", path.display())]
    PidFile {
        hook: String,
        path: PathBuf,
        reason: String,
    },
    /// No such process (or only a zombie): the service is not running.
    #[error("reload hook {hook}: no running process with pid {pid}; is the service running?")]
    NoProcess { hook: String, pid: u32 },
    /// The pid belongs to another program; no signal was sent.
    #[error(
        "reload hook {hook}: pid {pid} is {found:?}, not {expected:?}; no signal sent \
         (stale pid file?)"
    )]
    WrongProcess {
        hook: String,
        pid: u32,
        found: String,
        expected: String,
    },
    /// kill(2) failed (EPERM: certvigil may not signal that process).
    #[error("reload hook {hook}: sending {signal} to pid {pid}: {reason}")]
    Signal {
        hook: String,
        pid: u32,
        signal: String,
        reason: String,
    },
    /// A process could not be started (not found, not executable).
    #[error("reload hook {hook}: cannot run {program}: {reason}")]
    Spawn {
        hook: String,
        program: String,
        reason: String,
    },
    /// The pre-check exited unsuccessfully; the reload was not attempted.
    #[error(
        "reload hook {hook}: pre-check {argv:?} {status}; reload not attempted{}",
        stderr_suffix(stderr)
    )]
    PreCheck {
        hook: String,
        argv: Vec<String>,
        /// `exited with status 1` or `was killed by signal 9`.
        status: String,
        stderr: String,
    },
    /// systemctl says the unit does not exist.
    #[error("reload hook {hook}: unit {unit} not found{}", stderr_suffix(stderr))]
    UnitNotFound {
        hook: String,
        unit: String,
        stderr: String,
    },
    /// systemctl exited unsuccessfully for another reason.
    #[error("reload hook {hook}: systemctl {status}{}", stderr_suffix(stderr))]
    Systemctl {
        hook: String,
        unit: String,
        status: String,
        stderr: String,
    },
    /// The reload command exited unsuccessfully.
    #[error("reload hook {hook}: {status}{}", stderr_suffix(stderr))]
    CommandFailed {
        hook: String,
        status: String,
        stderr: String,
    },
    /// The hook's timeout passed; the running process group was killed.
    #[error(
        "reload hook {hook}: {stage} did not finish within the hook's {after:?} timeout; \
         killed its process group{}",
        stderr_suffix(stderr)
    )]
    Timeout {
        hook: String,
        stage: Stage,
        after: Duration,
        stderr: String,
    },
}

impl ReloadError {
    /// [`Hook::describe`] of the failed hook.
    pub fn hook(&self) -> &str {
        match self {
            Self::Invalid { hook, .. }
            | Self::PidFile { hook, .. }
            | Self::NoProcess { hook, .. }
            | Self::WrongProcess { hook, .. }
            | Self::Signal { hook, .. }
            | Self::Spawn { hook, .. }
            | Self::PreCheck { hook, .. }
            | Self::UnitNotFound { hook, .. }
            | Self::Systemctl { hook, .. }
            | Self::CommandFailed { hook, .. }
            | Self::Timeout { hook, .. } => hook,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{stderr}")
    }
}

impl Hook {
    /// A hook without pre-check and with [`DEFAULT_TIMEOUT`].
    pub fn new(reload: Reload) -> Self {
        Self {
            reload,
            pre_check: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Kind and target, for errors and logs: `signal SIGHUP to the pid in /run/nginx.pid`,
    /// `systemctl reload nginx.service`, `command ["/usr/local/bin/x"]`, `sh -c "..."`.
    pub fn describe(&self) -> String {
        match &self.reload {
            Reload::Signal { target, signal, .. } => {
                let signal = signal::normalize(signal);
                match target {
                    SignalTarget::Pid(pid) => format!("signal {signal} to pid {pid}"),
                    SignalTarget::PidFile(path) => {
                        format!("signal {signal} to the pid in {}", path.display())
                    }
                }
            }
            Reload::Systemd { unit, action, .. } => {
                format!("systemctl {} {unit}", action.as_str())
            }
            Reload::Command { argv, shell: false } => format!("command {argv:?}"),
            Reload::Command { argv, shell: true } => {
                format!("sh -c {:?}", argv.first().map_or("", String::as_str))
            }
        }
    }

    /// Checks what can be checked without running anything: a known signal, a usable pid, a
    /// non-empty argv and unit, a timeout above zero. [`Hook::run`] calls it first.
    pub fn validate(&self) -> Result<(), ReloadError> {
        let invalid = |reason: &str| ReloadError::Invalid {
            hook: self.describe(),
            reason: reason.to_owned(),
        };
        if self.timeout.is_zero() {
            return Err(invalid("the timeout must be more than 0s"));
        }
        if let Some(argv) = &self.pre_check
            && argv.first().is_none_or(String::is_empty)
        {
            return Err(invalid("the pre-check command is empty"));
        }
        match &self.reload {
            Reload::Signal { target, signal, .. } => {
                if signal::parse(signal).is_none() {
                    return Err(invalid(&format!(
                        "unknown signal {signal:?}: use a name such as HUP or USR1"
                    )));
                }
                if let SignalTarget::Pid(pid) = target {
                    signal::check_pid(*pid).map_err(|r| invalid(&r))?;
                }
            }
            Reload::Systemd { unit, .. } => {
                if unit.is_empty() || unit.starts_with('-') {
                    return Err(invalid("the unit name is empty or starts with '-'"));
                }
            }
            Reload::Command { argv, .. } => {
                if argv.first().is_none_or(String::is_empty) {
                    return Err(invalid("the command is empty"));
                }
            }
        }
        Ok(())
    }

    /// Equal for hooks that do the same thing; see the module docs.
    pub fn dedup_key(&self) -> String {
        let action = match &self.reload {
            Reload::Signal {
                target,
                signal,
                expect_process,
            } => {
                let target = match target {
                    SignalTarget::Pid(pid) => format!("pid:{pid}"),
                    SignalTarget::PidFile(path) => format!("pidfile:{}", path.display()),
                };
                format!(
                    "signal:{}:{target}:expect={expect_process:?}",
                    signal::normalize(signal)
                )
            }
            Reload::Systemd {
                unit,
                action,
                systemctl,
            } => {
                // systemctl completes a bare name the same way.
                let unit = if unit.contains('.') {
                    unit.clone()
                } else {
                    format!("{unit}.service")
                };
                format!("systemd:{}:{unit}:{systemctl:?}", action.as_str())
            }
            Reload::Command { argv, shell } => format!("command:shell={shell}:{argv:?}"),
        };
        format!("{action}|pre_check={:?}", self.pre_check)
    }

    /// Runs the pre-check, then the reload, within `timeout`.
    pub async fn run(&self, env: &HookEnv) -> Result<HookOutcome, ReloadError> {
        self.validate()?;
        let hook = self.describe();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let vars = env.vars();

        if let Some(argv) = &self.pre_check {
            match process::run(&argv[0], &argv[1..], &vars, deadline).await {
                Ok(done) if done.status.success() => {}
                Ok(done) => {
                    return Err(ReloadError::PreCheck {
                        hook,
                        argv: argv.clone(),
                        status: process::describe(done.status),
                        stderr: done.stderr,
                    });
                }
                Err(e) => return Err(self.process_error(hook, Stage::PreCheck, &argv[0], e)),
            }
        }

        let mut outcome = HookOutcome {
            hook: hook.clone(),
            elapsed: Duration::ZERO,
            signalled: None,
            stdout: String::new(),
            stderr: String::new(),
        };
        match &self.reload {
            Reload::Signal {
                target,
                signal,
                expect_process,
            } => {
                let pid = signal::send(&hook, target, signal, expect_process.as_deref())?;
                outcome.signalled = Some(pid);
            }
            Reload::Systemd {
                unit,
                action,
                systemctl,
            } => {
                let program = systemctl
                    .as_ref()
                    .map_or_else(|| "systemctl".to_owned(), |p| p.display().to_string());
                let args = [
                    "--no-ask-password".to_owned(),
                    action.as_str().to_owned(),
                    unit.clone(),
                ];
                let done = process::run(&program, &args, &vars, deadline)
                    .await
                    .map_err(|e| self.process_error(hook.clone(), Stage::Reload, &program, e))?;
                check_systemctl(&hook, unit, &done)?;
                outcome.stdout = done.stdout;
                outcome.stderr = done.stderr;
            }
            Reload::Command { argv, shell } => {
                let (program, args) = if *shell {
                    let mut args = vec![
                        "-c".to_owned(),
                        argv[0].clone(),
                        "certvigil-hook".to_owned(),
                    ];
                    args.extend_from_slice(&argv[1..]);
                    ("sh", args)
                } else {
                    (argv[0].as_str(), argv[1..].to_vec())
                };
                let done = process::run(program, &args, &vars, deadline)
                    .await
                    .map_err(|e| self.process_error(hook.clone(), Stage::Reload, program, e))?;
                if !done.status.success() {
                    return Err(ReloadError::CommandFailed {
                        hook,
                        status: process::describe(done.status),
                        stderr: done.stderr,
                    });
                }
                outcome.stdout = done.stdout;
                outcome.stderr = done.stderr;
            }
        }
        outcome.elapsed = started.elapsed();
        tracing::debug!(
            hook = %outcome.hook,
            certificate = %env.certificate,
            event = env.event.as_str(),
            elapsed_ms = outcome.elapsed.as_secs_f64() * 1e3,
            "reload hook done"
        );
        Ok(outcome)
    }

    fn process_error(&self, hook: String, stage: Stage, program: &str, e: RunError) -> ReloadError {
        match e {
            RunError::Spawn(reason) => ReloadError::Spawn {
                hook,
                program: program.to_owned(),
                reason,
            },
            RunError::Timeout { stderr } => ReloadError::Timeout {
                hook,
                stage,
                after: self.timeout,
                stderr,
            },
        }
    }
}

/// systemctl's exit status 5 (LSB "not installed") and its "not found" message mean the
/// unit does not exist.
fn check_systemctl(hook: &str, unit: &str, done: &Finished) -> Result<(), ReloadError> {
    if done.status.success() {
        return Ok(());
    }
    if done.status.code() == Some(5) || done.stderr.contains("not found") {
        return Err(ReloadError::UnitNotFound {
            hook: hook.to_owned(),
            unit: unit.to_owned(),
            stderr: done.stderr.clone(),
        });
    }
    Err(ReloadError::Systemctl {
        hook: hook.to_owned(),
        unit: unit.to_owned(),
        status: process::describe(done.status),
        stderr: done.stderr.clone(),
    })
}

/// The first hook of each [`Hook::dedup_key`], in order.
pub fn unique<'a>(hooks: impl IntoIterator<Item = &'a Hook>) -> Vec<&'a Hook> {
    let mut seen = std::collections::HashSet::new();
    hooks
        .into_iter()
        .filter(|h| seen.insert(h.dedup_key()))
        .collect()
}
