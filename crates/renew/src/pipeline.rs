//! One renewal pass: issue what is due, activate it atomically, run each reload hook once,
//! prove by handshake that the new certificate is served, roll back when it is not. Every
//! transition is persisted before the next step starts, so a crash or a failure resumes at the
//! failed stage instead of issuing again.

use std::collections::BTreeMap;
use std::fs;
use std::time::SystemTime;

use certvigil_config::{CertificateConfig, DeployConfig, ReloadAction, ReloadConfig};
use certvigil_core::renewal::{DueReason, Plan};
use certvigil_core::{Certificate, DecodeOptions, decode};
use certvigil_deploy::activate::LiveDir;
use certvigil_deploy::audit::{AuditEvent, AuditKind, AuditLog};
use certvigil_deploy::fault;
use certvigil_deploy::reload::{Hook, HookEnv, HookEvent, Reload, SignalTarget, SystemdAction};
use serde_json::json;

use crate::issuers::{IssueError, Issuers};
use crate::state::{CertState, Failure, Stage, StateStore};
use crate::verify;

/// Crash points of the pipeline (`CERTVIGIL_FAULT=<name>`), one after each persisted stage.
pub const RENEW_POINTS: &[&str] = &["renew.issued", "renew.activated", "renew.reloaded"];

#[derive(Clone, Copy, Debug, Default)]
pub struct RenewOptions {
    /// Renew even when not due (and ignore failure backoff).
    pub force: bool,
    /// Say what would be done; change nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    NotDue {
        at: i64,
    },
    /// A previous failure is backed off until `until`.
    BackingOff {
        until: i64,
        failure: Failure,
    },
    WouldRenew {
        reason: DueReason,
    },
    /// Issued, activated, reloaded and (when endpoints are configured) seen served.
    Renewed {
        serial: String,
    },
    /// Issued into the staging area; no `[certificate.deploy]` is configured.
    Staged {
        serial: String,
    },
    /// Issued, but activation, reload or verification is incomplete; the next pass resumes.
    Pending {
        stage: Stage,
        message: String,
    },
    /// Nothing of this attempt is live (issuance failed, or verification failed and the
    /// previous generation was rolled back).
    Failed {
        step: String,
        message: String,
    },
}

impl RenewOutcome {
    pub fn describe(&self) -> String {
        let t = certvigil_core::timefmt::rfc3339;
        match self {
            Self::NotDue { at } => format!("not due; renewal at {}", t(*at)),
            Self::BackingOff { until, failure } => format!(
                "backing off until {} after {} failure(s) at {}: {}",
                if *until == i64::MAX {
                    "the configuration changes".to_owned()
                } else {
                    t(*until)
                },
                failure.attempt,
                failure.step,
                failure.message
            ),
            Self::WouldRenew { reason } => format!("would renew ({})", reason.as_str()),
            Self::Renewed { serial } => format!("renewed, deployed and verified: serial {serial}"),
            Self::Staged { serial } => format!("issued into the staging area: serial {serial}"),
            Self::Pending { stage, message } => {
                format!("pending at stage {}: {message}", stage.as_str())
            }
            Self::Failed { step, message } => format!("failed at {step}: {message}"),
        }
    }
}

/// Exit status of `certvigil renew`: worst outcome first.
pub fn exit_code(outcomes: &[(String, RenewOutcome)]) -> u8 {
    let any = |f: fn(&RenewOutcome) -> bool| outcomes.iter().any(|(_, o)| f(o));
    if any(|o| matches!(o, RenewOutcome::Failed { .. })) {
        1
    } else if any(|o| matches!(o, RenewOutcome::Pending { .. })) {
        3
    } else if any(|o| {
        matches!(
            o,
            RenewOutcome::Renewed { .. } | RenewOutcome::Staged { .. }
        )
    }) {
        4
    } else {
        0
    }
}

/// A certificate moving through this pass.
struct InFlight<'a> {
    cert: &'a CertificateConfig,
    deploy: &'a DeployConfig,
    live: LiveDir,
    state: CertState,
    hooks: Vec<Hook>,
    leaf: Certificate,
    leaf_der: Vec<u8>,
    old_serial: Option<String>,
}

impl Issuers {
    fn state_store(&self) -> StateStore {
        StateStore::new(self.config().renewal.state_dir.join("state"))
    }

    fn audit(&self, certificate: &str, event: AuditKind, stage: &str, detail: serde_json::Value) {
        let path = self.config().renewal.state_dir.join("audit.log");
        let record = AuditEvent::new(certificate, event)
            .with_stage(stage)
            .with_detail(detail);
        if let Err(e) = AuditLog::open(&path).and_then(|log| log.append(&record)) {
            tracing::error!(certificate, event = event.as_str(), error = %e, "cannot append to the audit log");
        }
    }

    pub fn live_dir(&self, cert: &CertificateConfig, deploy: &DeployConfig) -> LiveDir {
        let dir = cert
            .live_dir(&self.config().renewal)
            .unwrap_or_else(|| self.config().renewal.default_live_dir(&cert.name));
        LiveDir::new(dir, deploy.keep)
    }

    /// The persisted renewal state of certificate `name`.
    pub fn state(&self, name: &str) -> std::io::Result<CertState> {
        self.state_store().load(name)
    }

    /// Renews every certificate in `names` that is due (all with `force`), in three phases so
    /// that a service shared by several certificates is reloaded once, after all of them are
    /// live.
    pub async fn renew(
        &self,
        names: &[String],
        options: RenewOptions,
    ) -> Vec<(String, RenewOutcome)> {
        let store = self.state_store();
        let mut outcomes: BTreeMap<String, RenewOutcome> = BTreeMap::new();
        let mut flights: Vec<InFlight<'_>> = Vec::new();
        let mut _locks = Vec::new();

        for name in names {
            let now = unix_now();
            let Some(cert) = self.config().certificates.iter().find(|c| &c.name == name) else {
                outcomes.insert(
                    name.clone(),
                    RenewOutcome::Failed {
                        step: "configuration".into(),
                        message: format!("no [[certificate]] named {name:?}"),
                    },
                );
                continue;
            };
            // One renewal of a certificate at a time, across processes; the plan is made
            // (again) after the lock is held, so a second process finds the work done.
            let lock = match lock(&store.lock_file(name), options.dry_run) {
                Ok(lock) => lock,
                Err(e) => {
                    outcomes.insert(name.clone(), failed("lock", e));
                    continue;
                }
            };
            _locks.push(lock);
            let mut state = match store.load(name) {
                Ok(state) => state,
                Err(e) => {
                    outcomes.insert(name.clone(), failed("state", e));
                    continue;
                }
            };
            let digest = self.config_digest(cert);
            if let Some(failure) = &state.failure
                && !options.force
                && failure.next_at > now
                // A configuration error waits for the configuration to change, not for time.
                && failure.config_digest.as_deref().is_none_or(|d| d == digest)
            {
                outcomes.insert(
                    name.clone(),
                    RenewOutcome::BackingOff {
                        until: failure.next_at,
                        failure: failure.clone(),
                    },
                );
                continue;
            }

            if !state.stage.pending() {
                let plan = match self.plan(name, now).await {
                    Ok(report) => report.plan,
                    Err(e) => {
                        outcomes.insert(name.clone(), failed("plan", e));
                        continue;
                    }
                };
                let reason = match plan {
                    Plan::NotYet { at } if !options.force => {
                        outcomes.insert(name.clone(), RenewOutcome::NotDue { at });
                        continue;
                    }
                    Plan::NotYet { .. } => DueReason::Forced,
                    Plan::Due(reason) => reason,
                };
                if options.dry_run {
                    outcomes.insert(name.clone(), RenewOutcome::WouldRenew { reason });
                    continue;
                }
                state.last_attempt = Some(now);
                match self.issue(name).await {
                    Ok(staged) => {
                        let serial = staged.leaf.serial_hex();
                        self.audit(
                            name,
                            AuditKind::Issued,
                            "issue",
                            json!({
                                "serial": serial,
                                "not_after": staged.leaf.not_after,
                                "generation": staged.generation.id,
                                "reason": reason.as_str(),
                            }),
                        );
                        state.stage = Stage::Issued;
                        state.generation = Some(staged.generation.id.clone());
                        state.serial = Some(serial.clone());
                        state.failure = None;
                        if cert.deploy.is_none() {
                            state.stage = Stage::Idle;
                            state.last_success = Some(now);
                            outcomes.insert(name.clone(), RenewOutcome::Staged { serial });
                        }
                        self.save(&store, name, &state);
                        fault::point("renew.issued");
                    }
                    Err(e) => {
                        let outcome = self.fail(&store, name, &mut state, "issue", &e);
                        outcomes.insert(name.clone(), outcome);
                        continue;
                    }
                }
            } else if options.dry_run {
                outcomes.insert(
                    name.clone(),
                    RenewOutcome::Pending {
                        stage: state.stage,
                        message: "would resume".into(),
                    },
                );
                continue;
            }

            let Some(deploy) = &cert.deploy else {
                continue;
            };
            match self.prepare(cert, deploy, state) {
                Ok(flight) => flights.push(flight),
                Err((state, step, message)) => {
                    let mut state = state;
                    let outcome =
                        self.fail_with(&store, name, &mut state, step, "rejected", &message);
                    outcomes.insert(name.clone(), outcome);
                }
            }
        }

        // Phase 1: activation.
        for flight in &mut flights {
            if flight.state.stage != Stage::Issued {
                continue;
            }
            let name = flight.cert.name.clone();
            let generation = flight.state.generation.clone().unwrap_or_default();
            let staged = match self.staging().generations(&name) {
                Ok(all) => all.into_iter().find(|g| g.id == generation),
                Err(_) => None,
            };
            let Some(staged) = staged else {
                let outcome = self.fail_with(
                    &store,
                    &name,
                    &mut flight.state,
                    "activate",
                    "rejected",
                    &format!("staged generation {generation} is gone"),
                );
                outcomes.insert(name, outcome);
                continue;
            };
            let activated = flight
                .live
                .activate(&staged)
                .and_then(|a| flight.live.copy_out(&flight.deploy.copy).map(|()| a));
            match activated {
                Ok(activation) => {
                    flight.state.previous = activation.previous.clone();
                    flight.state.stage = Stage::Activated;
                    self.save(&store, &name, &flight.state);
                    fault::point("renew.activated");
                    self.audit(
                        &name,
                        AuditKind::Activated,
                        "activate",
                        json!({"generation": activation.current, "previous": activation.previous}),
                    );
                }
                Err(e) => {
                    let outcome = self.fail_with(
                        &store,
                        &name,
                        &mut flight.state,
                        "activate",
                        "transient",
                        &e.to_string(),
                    );
                    outcomes.insert(name, outcome);
                }
            }
        }

        // Phase 2: each distinct reload hook once, after every certificate sharing it is live.
        let mut all: Vec<&mut InFlight<'_>> = flights.iter_mut().collect();
        self.reload_all(&store, &mut all, &mut outcomes, HookEvent::Deploy)
            .await;

        // Phase 3: verification, and rollback where it fails.
        for flight in &mut flights {
            if flight.state.stage != Stage::Reloaded {
                continue;
            }
            let name = flight.cert.name.clone();
            let mut failure = None;
            for endpoint in &flight.deploy.verify {
                if let Err(e) =
                    verify::served(endpoint, &flight.leaf_der, flight.deploy.verify_grace).await
                {
                    failure = Some(e.to_string());
                    break;
                }
            }
            match failure {
                None => {
                    let now = unix_now();
                    flight.state.stage = Stage::Idle;
                    flight.state.failure = None;
                    flight.state.last_success = Some(now);
                    self.save(&store, &name, &flight.state);
                    self.audit(
                        &name,
                        AuditKind::Verified, "verify",
                        json!({
                            "serial": flight.leaf.serial_hex(),
                            "endpoints": flight.deploy.verify.iter().map(|e| e.display.clone()).collect::<Vec<_>>(),
                        }),
                    );
                    outcomes.insert(
                        name,
                        RenewOutcome::Renewed {
                            serial: flight.leaf.serial_hex(),
                        },
                    );
                }
                Some(message) => {
                    self.audit(
                        &name,
                        AuditKind::Failed,
                        "verify",
                        json!({"error": message}),
                    );
                    let outcome = self.after_failed_verify(&store, flight, &message).await;
                    outcomes.insert(name, outcome);
                }
            }
        }
        outcomes.into_iter().collect()
    }

    /// Loads what the pass needs for a certificate with a deploy section.
    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        cert: &'a CertificateConfig,
        deploy: &'a DeployConfig,
        state: CertState,
    ) -> Result<InFlight<'a>, (CertState, &'static str, String)> {
        let live = self.live_dir(cert, deploy);
        let generation = state.generation.clone().unwrap_or_default();
        let cert_path = match state.stage {
            Stage::Issued => self
                .staging()
                .generations(&cert.name)
                .ok()
                .and_then(|all| all.into_iter().find(|g| g.id == generation))
                .map(|g| g.cert()),
            _ => Some(live.paths().cert),
        };
        let Some(cert_path) = cert_path else {
            return Err((
                state,
                "activate",
                format!("generation {generation} is gone"),
            ));
        };
        let Some((leaf_der, leaf)) = read_leaf(&cert_path) else {
            return Err((
                state,
                "activate",
                format!("{} does not hold a certificate", cert_path.display()),
            ));
        };
        let old_serial = live
            .current()
            .ok()
            .flatten()
            .filter(|current| Some(current) != state.generation.as_ref())
            .and_then(|_| read_leaf(&live.paths().cert))
            .map(|(_, c)| c.serial_hex());
        Ok(InFlight {
            cert,
            deploy,
            live,
            state,
            hooks: deploy.reload.iter().map(hook).collect(),
            leaf,
            leaf_der,
            old_serial,
        })
    }

    async fn reload_all(
        &self,
        store: &StateStore,
        flights: &mut [&mut InFlight<'_>],
        outcomes: &mut BTreeMap<String, RenewOutcome>,
        event: HookEvent,
    ) {
        // Which flights wait for which hook, by the hook's dedup key.
        let mut by_key: BTreeMap<String, (Hook, Vec<usize>)> = BTreeMap::new();
        for (index, flight) in flights.iter().enumerate() {
            if flight.state.stage != Stage::Activated {
                continue;
            }
            for hook in &flight.hooks {
                by_key
                    .entry(hook.dedup_key())
                    .or_insert_with(|| (hook.clone(), Vec::new()))
                    .1
                    .push(index);
            }
        }
        let mut failed: BTreeMap<usize, String> = BTreeMap::new();
        for (hook, users) in by_key.values() {
            let first = &flights[users[0]];
            let paths = first.live.paths();
            let env = HookEnv {
                certificate: first.cert.name.clone(),
                domains: first
                    .cert
                    .identifiers
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                cert_path: paths.cert.clone(),
                key_path: paths.key.clone(),
                chain_path: paths.chain.clone(),
                fullchain_path: paths.fullchain.clone(),
                old_serial: first.old_serial.clone(),
                new_serial: first.leaf.serial_hex(),
                not_after: first.leaf.not_after,
                event,
            };
            match hook.run(&env).await {
                Ok(done) => {
                    for &i in users {
                        self.audit(
                            &flights[i].cert.name,
                            AuditKind::Reloaded, "reload",
                            json!({"hook": done.hook, "event": event.as_str(), "elapsed_ms": done.elapsed.as_millis()}),
                        );
                    }
                }
                Err(e) => {
                    for &i in users {
                        failed.insert(i, e.to_string());
                    }
                }
            }
        }
        for (index, flight) in flights.iter_mut().enumerate() {
            if flight.state.stage != Stage::Activated {
                continue;
            }
            let name = flight.cert.name.clone();
            match failed.remove(&index) {
                None => {
                    flight.state.stage = Stage::Reloaded;
                    self.save(store, &name, &flight.state);
                    fault::point("renew.reloaded");
                }
                Some(message) => {
                    flight.state.reload_failures += 1;
                    self.audit(
                        &name,
                        AuditKind::Failed,
                        "reload",
                        json!({"error": message}),
                    );
                    let outcome = self.fail_with(
                        store,
                        &name,
                        &mut flight.state,
                        "reload",
                        "transient",
                        &message,
                    );
                    outcomes.insert(name, outcome);
                }
            }
        }
    }

    /// The endpoints do not serve what was deployed: roll back when configured (the new
    /// generation is abandoned), else keep the stage so the next pass reloads and verifies again.
    async fn after_failed_verify(
        &self,
        store: &StateStore,
        flight: &mut InFlight<'_>,
        message: &str,
    ) -> RenewOutcome {
        let name = flight.cert.name.clone();
        if !flight.deploy.rollback || flight.state.previous.is_none() {
            flight.state.stage = Stage::Activated;
            return self.fail_with(
                store,
                &name,
                &mut flight.state,
                "verify",
                "transient",
                message,
            );
        }
        let rolled = flight.live.rollback().and_then(|activation| {
            flight
                .live
                .copy_out(&flight.deploy.copy)
                .map(|()| activation)
        });
        match rolled {
            Ok(activation) => {
                self.audit(
                    &name,
                    AuditKind::RolledBack,
                    "rollback",
                    json!({"generation": activation.current, "abandoned": flight.state.generation}),
                );
                // Tell the services to load the previous set again; the hooks' environment
                // names the abandoned serial as old and the restored one as new.
                if let Some((der, leaf)) = read_leaf(&flight.live.paths().cert) {
                    flight.old_serial = Some(flight.leaf.serial_hex());
                    flight.leaf = leaf;
                    flight.leaf_der = der;
                }
                flight.state.stage = Stage::Activated;
                let mut ignored = BTreeMap::new();
                Box::pin(self.reload_all(
                    store,
                    &mut [&mut *flight],
                    &mut ignored,
                    HookEvent::Rollback,
                ))
                .await;
                flight.state.stage = Stage::Idle;
                flight.state.generation = Some(activation.current);
                let outcome = self.fail_with(
                    store,
                    &name,
                    &mut flight.state,
                    "verify",
                    "rejected",
                    &format!("{message}; rolled back to the previous generation"),
                );
                match outcome {
                    RenewOutcome::Pending { message, .. } => RenewOutcome::Failed {
                        step: "verify".into(),
                        message,
                    },
                    other => other,
                }
            }
            Err(e) => {
                flight.state.stage = Stage::Activated;
                self.fail_with(
                    store,
                    &name,
                    &mut flight.state,
                    "rollback",
                    "transient",
                    &format!("{message}; rollback failed too: {e}"),
                )
            }
        }
    }

    /// A digest of everything that decides how `cert` is issued and deployed.
    fn config_digest(&self, cert: &CertificateConfig) -> String {
        let issuer = self.config().issuers.iter().find(|i| i.name == cert.issuer);
        let text = format!("{cert:?}{issuer:?}");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
        digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn save(&self, store: &StateStore, name: &str, state: &CertState) {
        if let Err(e) = store.save(name, state) {
            tracing::error!(certificate = name, error = %e, "cannot persist the renewal state");
        }
    }

    fn fail(
        &self,
        store: &StateStore,
        name: &str,
        state: &mut CertState,
        step: &'static str,
        error: &IssueError,
    ) -> RenewOutcome {
        let class = error.class();
        let retry_at = error.retry_at();
        let outcome = self.fail_with(store, name, state, step, class, &error.to_string());
        if let (Some(at), Some(failure)) = (retry_at, state.failure.as_mut()) {
            failure.next_at = failure.next_at.max(at);
            self.save(store, name, state);
        }
        outcome
    }

    fn fail_with(
        &self,
        store: &StateStore,
        name: &str,
        state: &mut CertState,
        step: &'static str,
        class: &str,
        message: &str,
    ) -> RenewOutcome {
        let now = unix_now();
        let attempt = state.failure.as_ref().map_or(0, |f| f.attempt) + 1;
        let configuration = class == "configuration";
        let next_at = if configuration {
            i64::MAX
        } else {
            now.saturating_add(backoff_secs(class, attempt))
        };
        let config_digest = configuration
            .then(|| self.config().certificates.iter().find(|c| c.name == name))
            .flatten()
            .map(|cert| self.config_digest(cert));
        state.failure = Some(Failure {
            step: step.to_owned(),
            class: class.to_owned(),
            message: message.to_owned(),
            attempt,
            next_at,
            config_digest,
        });
        state.last_attempt = Some(now);
        self.save(store, name, state);
        if step != "verify" && step != "reload" {
            self.audit(
                name,
                AuditKind::Failed,
                step,
                json!({"error": message, "class": class}),
            );
        }
        tracing::warn!(
            certificate = name,
            step,
            class,
            attempt,
            error = message,
            "renewal step failed"
        );
        if state.stage.pending() {
            RenewOutcome::Pending {
                stage: state.stage,
                message: message.to_owned(),
            }
        } else {
            RenewOutcome::Failed {
                step: step.to_owned(),
                message: message.to_owned(),
            }
        }
    }
}

/// How long to leave a failed certificate alone: exponential per class, capped.
fn backoff_secs(class: &str, attempt: u32) -> i64 {
    let (first, cap) = match class {
        "rate_limited" => (3600, 24 * 3600),
        "rejected" => (300, 24 * 3600),
        _ => (60, 6 * 3600),
    };
    let exp = first * (1i64 << attempt.saturating_sub(1).min(16));
    exp.min(cap)
}

/// The first certificate of a PEM file, DER and parsed.
fn read_leaf(path: &std::path::Path) -> Option<(Vec<u8>, Certificate)> {
    let bytes = fs::read(path).ok()?;
    let der = decode(&bytes, &DecodeOptions::default())
        .certs
        .into_iter()
        .next()?;
    let leaf = Certificate::from_der(&der).ok()?;
    Some((der, leaf))
}

fn failed(step: &str, e: impl std::fmt::Display) -> RenewOutcome {
    RenewOutcome::Failed {
        step: step.to_owned(),
        message: e.to_string(),
    }
}

fn hook(config: &ReloadConfig) -> Hook {
    let reload = match &config.action {
        ReloadAction::Signal {
            signal,
            pid_file,
            process,
        } => Reload::Signal {
            target: SignalTarget::PidFile(pid_file.clone()),
            signal: signal.clone(),
            expect_process: process.clone(),
        },
        ReloadAction::Systemd { unit, action } => Reload::Systemd {
            unit: unit.clone(),
            action: match action.as_str() {
                "restart" => SystemdAction::Restart,
                "reload-or-restart" => SystemdAction::ReloadOrRestart,
                _ => SystemdAction::Reload,
            },
            systemctl: None,
        },
        ReloadAction::Command { argv, shell } => Reload::Command {
            argv: argv.clone(),
            shell: *shell,
        },
    };
    Hook {
        reload,
        pre_check: config.pre_check.clone(),
        timeout: config.timeout,
    }
}

/// An exclusive lock on `path`, held until dropped. A dry run does not wait for it.
fn lock(
    path: &std::path::Path,
    dry_run: bool,
) -> std::io::Result<Option<nix::fcntl::Flock<fs::File>>> {
    if dry_run {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(Some)
        .map_err(|(_, errno)| std::io::Error::from(errno))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_rank_failure_over_pending_over_renewed_over_nothing() {
        let o = |outcome| {
            vec![
                ("a".to_owned(), RenewOutcome::NotDue { at: 0 }),
                ("b".to_owned(), outcome),
            ]
        };
        assert_eq!(exit_code(&o(RenewOutcome::NotDue { at: 1 })), 0);
        assert_eq!(
            exit_code(&o(RenewOutcome::Renewed { serial: "1".into() })),
            4
        );
        assert_eq!(
            exit_code(&o(RenewOutcome::Pending {
                stage: Stage::Activated,
                message: String::new()
            })),
            3
        );
        assert_eq!(
            exit_code(&o(RenewOutcome::Failed {
                step: "issue".into(),
                message: String::new()
            })),
            1
        );
    }

    #[test]
    fn backoff_grows_per_class_and_is_capped() {
        assert_eq!(backoff_secs("transient", 1), 60);
        assert_eq!(backoff_secs("transient", 2), 120);
        assert_eq!(backoff_secs("transient", 30), 6 * 3600);
        assert_eq!(backoff_secs("rejected", 1), 300);
        assert_eq!(backoff_secs("rate_limited", 5), 16 * 3600);
    }
}
