//! One child process of a hook: own process group, stdin closed, the tail of its output
//! kept, the whole group killed on timeout or when the future is dropped.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use certvigil_process::{GroupGuard, drain, tail_reader};
use tokio::process::Command;
use tokio::time::Instant;

use super::STDERR_LINES;

pub(super) struct Finished {
    pub(super) status: ExitStatus,
    /// Last [`STDERR_LINES`] lines.
    pub(super) stdout: String,
    pub(super) stderr: String,
}

pub(super) enum RunError {
    Spawn(String),
    /// The deadline passed; the group was killed. Last lines of stderr.
    Timeout {
        stderr: String,
    },
}

pub(super) async fn run(
    program: &str,
    args: &[String],
    vars: &[(&'static str, String)],
    deadline: Instant,
) -> Result<Finished, RunError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| RunError::Spawn(e.to_string()))?;
    // The leader's pid is the group id, and it stays reserved until the leader is reaped, so
    // killing the group before `wait` returns never hits a stranger. Declared after `child`,
    // the guard is dropped first: a dropped future kills the group, then tokio the leader.
    let mut group = GroupGuard::new(child.id());
    let stdout = tail_reader(child.stdout.take());
    let stderr = tail_reader(child.stderr.take());

    let waited = tokio::time::timeout_at(deadline, child.wait()).await;
    let status = match waited {
        Ok(Ok(status)) => {
            group.disarm();
            Ok(status)
        }
        Ok(Err(e)) => {
            group.kill();
            let _ = child.wait().await;
            Err(RunError::Spawn(format!("waiting for it: {e}")))
        }
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            Err(RunError::Timeout {
                stderr: String::new(),
            })
        }
    };
    let stdout = last_lines(&drain(stdout).await);
    let stderr = last_lines(&drain(stderr).await);
    match status {
        Ok(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        Err(RunError::Timeout { .. }) => Err(RunError::Timeout { stderr }),
        Err(e) => Err(e),
    }
}

/// `exited with status 1`, `was killed by signal 9`.
pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The last [`STDERR_LINES`] lines, with every line of a PEM private key block (and any other
/// line mentioning `PRIVATE KEY`) withheld. The whole kept tail ([`certvigil_process::KEEP_BYTES`]) is filtered
/// before the last lines are taken, so a block is recognized by its `BEGIN` line even when
/// that line is not among the lines shown.
fn last_lines(text: &str) -> String {
    const WITHHELD: &str = "[line withheld: it mentions a private key]";
    let mut in_key = false;
    let lines: Vec<&str> = text
        .trim_end()
        .lines()
        .map(|line| {
            let mentions = line.contains("PRIVATE KEY");
            if mentions && line.contains("BEGIN") {
                in_key = true;
            }
            let withhold = mentions || in_key;
            if mentions && line.contains("END") {
                in_key = false;
            }
            if withhold { WITHHELD } else { line }
        })
        .collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n")
}
