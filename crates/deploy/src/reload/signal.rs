//! The signal adapter: pid file, process check, kill(2).

use std::fs;
use std::io;
use std::path::Path;
use std::str::FromStr;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{ReloadError, SignalTarget};

/// `hup`, `HUP`, `SIGHUP` -> `SIGHUP`.
pub(super) fn normalize(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    }
}

pub(super) fn parse(name: &str) -> Option<Signal> {
    Signal::from_str(&normalize(name)).ok()
}

/// Pids that kill(2) reads as groups or as "everyone" are refused: 0 is the caller's own
/// group, and a pid above `i32::MAX` would turn negative.
pub(super) fn check_pid(pid: u32) -> Result<i32, String> {
    match i32::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "{pid} is not a usable pid (it would signal a process group)"
        )),
    }
}

/// Reads, checks and signals. Returns the pid signalled.
pub(super) fn send(
    hook: &str,
    target: &SignalTarget,
    signal_name: &str,
    expect: Option<&str>,
) -> Result<u32, ReloadError> {
    let signal = parse(signal_name).ok_or_else(|| ReloadError::Invalid {
        hook: hook.to_owned(),
        reason: format!("unknown signal {signal_name:?}"),
    })?;
    let pid = match target {
        SignalTarget::Pid(pid) => *pid,
        SignalTarget::PidFile(path) => {
            read_pid_file(path).map_err(|reason| ReloadError::PidFile {
                hook: hook.to_owned(),
                path: path.clone(),
                reason,
            })?
        }
    };
    let raw = check_pid(pid).map_err(|reason| ReloadError::Invalid {
        hook: hook.to_owned(),
        reason,
    })?;
    let no_process = || ReloadError::NoProcess {
        hook: hook.to_owned(),
        pid,
    };
    // Signal 0 checks existence without sending anything; EPERM means it exists.
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return Err(no_process()),
    }
    if is_zombie(pid) {
        return Err(no_process());
    }
    if let Some(expected) = expect {
        let identity = identify(pid).ok_or_else(no_process)?;
        if !identity.matches(expected) {
            return Err(ReloadError::WrongProcess {
                hook: hook.to_owned(),
                pid,
                found: identity.to_string(),
                expected: expected.to_owned(),
            });
        }
    }
    // The pid could in theory be reused between the check and kill(2); the window is a few
    // microseconds, and the pid file is rewritten by the service itself.
    kill(Pid::from_raw(raw), signal).map_err(|e| match e {
        Errno::ESRCH => no_process(),
        e => ReloadError::Signal {
            hook: hook.to_owned(),
            pid,
            signal: signal.as_str().to_owned(),
            reason: e.desc().to_owned(),
        },
    })?;
    Ok(pid)
}

fn read_pid_file(path: &Path) -> Result<u32, String> {
    let text = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            "does not exist (the service is not running, or writes its pid elsewhere)".to_owned()
        }
        _ => format!("cannot be read: {e}"),
    })?;
    // A pid file is a few bytes; anything long is not one.
    let text = String::from_utf8_lossy(&text[..text.len().min(64)]).into_owned();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("is empty (the service may be starting or stopping)".to_owned());
    }
    let pid: u32 = trimmed
        .parse()
        .map_err(|_| format!("does not hold a pid: {:?}", shorten(trimmed)))?;
    check_pid(pid)?;
    Ok(pid)
}

fn shorten(s: &str) -> String {
    s.chars().take(32).collect()
}

/// `/proc/PID/stat` state `Z`: exited, not yet reaped; a signal would do nothing.
fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            after.trim_start().chars().next()
        })
        == Some('Z')
}

/// What a process is: its `comm` and the file name of its executable.
struct Identity {
    comm: Option<String>,
    exe: Option<String>,
}

impl Identity {
    /// `comm` is truncated to 15 bytes by the kernel, so a long expected name matches its
    /// prefix; the executable (when readable) matches in full.
    fn matches(&self, expected: &str) -> bool {
        let truncated: String = expected.chars().take(15).collect();
        self.comm
            .as_deref()
            .is_some_and(|c| c == expected || c == truncated)
            || self.exe.as_deref() == Some(expected)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.comm, &self.exe) {
            (Some(comm), Some(exe)) if comm == exe => f.write_str(comm),
            (Some(comm), Some(exe)) => write!(f, "{comm} (executable {exe})"),
            (Some(comm), None) => f.write_str(comm),
            (None, Some(exe)) => f.write_str(exe),
            (None, None) => f.write_str("unknown"),
        }
    }
}

fn identify(pid: u32) -> Option<Identity> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end_matches('\n').to_owned());
    // Not readable for other users' processes unless we are root; comm still is.
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            // A binary replaced by a package upgrade shows as "nginx (deleted)".
            Some(name.trim_end_matches(" (deleted)").to_owned())
        });
    if comm.is_none() && exe.is_none() {
        return None;
    }
    Some(Identity { comm, exe })
}
