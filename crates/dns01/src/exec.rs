//! The exec hook: a program of the operator's publishes and removes the record, for DNS APIs
//! certvigil does not speak.
//!
//! The configured argv runs as is (no shell, no extra arguments). The record comes in the
//! environment:
//!
//! | variable | example |
//! |---|---|
//! | `CERTVIGIL_DNS01_EVENT` | `present` or `cleanup` |
//! | `CERTVIGIL_DNS01_NAME` | `_acme-challenge.www.example.test.` (absolute, wildcard stripped) |
//! | `CERTVIGIL_DNS01_VALUE` | the TXT value (key authorization digest) |
//! | `CERTVIGIL_DNS01_DOMAIN` | the identifier as ordered: `www.example.test`, `*.example.test` |
//!
//! Exit status 0 is success. Anything else is an error carrying the status and the last lines
//! of the hook's standard error. The hook runs in its own process group; when it runs longer
//! than `timeout`, or when the caller gives up on it (the future is dropped), the whole group
//! is killed with SIGKILL, so the helpers it started go too. A hook that exits normally is not
//! chased further: background processes it leaves behind are its own business.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use certvigil_process::{GroupGuard, drain, tail_reader};
use tokio::process::Command;

use crate::TxtRecord;
use crate::config::ExecHookConfig;
use crate::error::{Dns01Error, ErrorKind, Step};
use crate::propagation;
use crate::rfc2136::record_name;

/// How many trailing lines of the hook's stderr an error shows.
const STDERR_LINES: usize = 20;
/// Per-query limit of the optional propagation check.
const PROPAGATION_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// An exec hook provider.
#[derive(Clone, Debug)]
pub struct ExecHook {
    present: Vec<String>,
    cleanup: Vec<String>,
    timeout: Duration,
    propagation_servers: Vec<SocketAddr>,
    propagation_timeout: Duration,
}

impl ExecHook {
    pub fn from_config(config: &ExecHookConfig) -> Result<Self, Dns01Error> {
        for (key, argv) in [("present", &config.present), ("cleanup", &config.cleanup)] {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(Dns01Error::config(
                    key,
                    "the hook command is empty: give an argv like [\"/usr/local/bin/dns-hook\"]",
                ));
            }
        }
        if config.timeout.is_zero() {
            return Err(Dns01Error::config("timeout", "must be more than 0s"));
        }
        Ok(Self {
            present: config.present.clone(),
            cleanup: config.cleanup.clone(),
            timeout: config.timeout,
            propagation_servers: config.propagation_servers.clone(),
            propagation_timeout: config.propagation_timeout,
        })
    }

    pub async fn present(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        self.run(Step::Present, &self.present, record).await
    }

    pub async fn cleanup(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        self.run(Step::Cleanup, &self.cleanup, record).await
    }

    /// Asks `propagation_servers` like the RFC 2136 provider does; without them there is no
    /// way to know the zone's servers, and the hook is trusted to return once the record is
    /// served (returns at once).
    pub async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), Dns01Error> {
        if self.propagation_servers.is_empty() {
            return Ok(());
        }
        let fqdn = record.fqdn();
        let err = |kind: ErrorKind| Dns01Error::new(Step::Propagation, &fqdn, kind);
        let name = record_name(record).map_err(err)?;
        propagation::wait(
            &name,
            &record.value,
            &self.propagation_servers,
            self.propagation_timeout,
            PROPAGATION_QUERY_TIMEOUT,
        )
        .await
        .map_err(err)
    }

    async fn run(&self, step: Step, argv: &[String], record: &TxtRecord) -> Result<(), Dns01Error> {
        let fqdn = record.fqdn();
        let err = |kind: ErrorKind| Dns01Error::new(step, &fqdn, kind);
        let program = argv[0].clone();
        let mut command = Command::new(&program);
        command
            .args(&argv[1..])
            .env("CERTVIGIL_DNS01_EVENT", step.to_string())
            .env("CERTVIGIL_DNS01_NAME", &fqdn)
            .env("CERTVIGIL_DNS01_VALUE", &record.value)
            .env("CERTVIGIL_DNS01_DOMAIN", &record.domain)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let started = std::time::Instant::now();
        let mut child = command.spawn().map_err(|e| {
            err(ErrorKind::HookSpawn {
                program: program.clone(),
                reason: e.to_string(),
            })
        })?;
        // The leader's pid is the group id. It stays reserved until the leader is reaped, so
        // killing the group before that never hits a stranger.
        let mut group = GroupGuard::new(child.id());
        let stdout = tail_reader(child.stdout.take());
        let stderr = tail_reader(child.stderr.take());

        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => {
                group.disarm();
                Ok(status)
            }
            Ok(Err(e)) => {
                group.kill();
                let _ = child.wait().await;
                Err(ErrorKind::HookSpawn {
                    program: program.clone(),
                    reason: format!("waiting for it: {e}"),
                })
            }
            Err(_) => {
                group.kill();
                let _ = child.wait().await;
                Err(ErrorKind::HookTimeout {
                    program: program.clone(),
                    after: self.timeout,
                    stderr: String::new(),
                })
            }
        };
        let stdout = drain(stdout).await;
        let stderr = last_lines(&drain(stderr).await, STDERR_LINES);
        tracing::debug!(
            %program,
            %step,
            name = %fqdn,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            stdout = %last_lines(&stdout, STDERR_LINES),
            stderr = %stderr,
            "DNS-01 hook finished"
        );
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(err(ErrorKind::HookFailed {
                program,
                status: describe(status),
                stderr,
            })),
            Err(ErrorKind::HookTimeout { program, after, .. }) => {
                Err(err(ErrorKind::HookTimeout {
                    program,
                    after,
                    stderr,
                }))
            }
            Err(other) => Err(err(other)),
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}
