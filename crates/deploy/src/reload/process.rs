//! One child process of a hook: own process group, stdin closed, the tail of its output
//! kept, the whole group killed on timeout or when the future is dropped.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::STDERR_LINES;

/// Trailing bytes of each stream kept while the process runs.
const KEEP_BYTES: usize = 8192;
/// How long output is still read after the process exited: a background child it left may
/// hold the pipe open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

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
    let mut group = GroupGuard(child.id());
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

/// Kills the process group with SIGKILL when dropped while armed.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take().and_then(|p| i32::try_from(p).ok()) {
            // ESRCH (already gone) is fine.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A stream read to its end in the background, keeping its last [`KEEP_BYTES`].
struct Tail {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

fn tail_reader<R>(stream: Option<R>) -> Option<Tail>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut stream = stream?;
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&kept);
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > KEEP_BYTES {
                let excess = kept.len() - KEEP_BYTES;
                kept.drain(..excess);
            }
        }
    });
    Some(Tail { kept, reader })
}

async fn drain(tail: Option<Tail>) -> String {
    let Some(mut tail) = tail else {
        return String::new();
    };
    if tokio::time::timeout(DRAIN_GRACE, &mut tail.reader)
        .await
        .is_err()
    {
        tail.reader.abort();
    }
    let kept = tail.kept.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&kept).into_owned()
}

/// The last [`STDERR_LINES`] lines, with every line of a PEM private key block (and any other
/// line mentioning `PRIVATE KEY`) withheld. The whole kept tail ([`KEEP_BYTES`]) is filtered
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
