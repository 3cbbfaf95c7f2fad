//! certvigil-process: what every hook certvigil runs needs around its child process. The child
//! is started in its own process group (`process_group(0)`); [`GroupGuard`] kills that whole
//! group with SIGKILL unless disarmed, so a timeout or a dropped future leaves nothing behind;
//! [`tail_reader`] and [`drain`] keep the last bytes of its output without letting a chatty
//! or stuck process fill memory or hang the caller.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// How much of a stream's end is kept.
pub const KEEP_BYTES: usize = 8192;
/// How long [`drain`] waits for a pipe to close once the child has exited: a process the hook
/// left behind may hold it open.
pub const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Kills the process group `pgid` with SIGKILL when dropped while armed.
pub struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Arms the guard for the group led by the child `pid` (spawned with `process_group(0)`).
    pub fn new(pid: Option<u32>) -> Self {
        Self(pid)
    }

    pub fn kill(&mut self) {
        if let Some(pgid) = self.0.take().and_then(|p| i32::try_from(p).ok()) {
            // ESRCH (already gone) is fine.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    /// The child exited on its own: leave the group alone (its id may be reused).
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A stream read to its end in the background, keeping its last [`KEEP_BYTES`].
pub struct Tail {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

pub fn tail_reader<R>(stream: Option<R>) -> Option<Tail>
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

/// What was read, waiting at most [`DRAIN_GRACE`] for the pipe to close.
pub async fn drain(tail: Option<Tail>) -> String {
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
