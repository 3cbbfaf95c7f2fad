//! systemd integration: readiness, reload and stop notifications, status text and the watchdog.
//!
//! Everything goes through a [`Notifier`], built once from the environment the service manager
//! hands us ([`Notifier::from_env`]) or from explicit values (tests). Without `NOTIFY_SOCKET` every
//! call is a silent no-op, so the daemon calls these unconditionally. Send failures are logged at
//! debug level and otherwise ignored: a lost notification must never take the daemon down.
//!
//! Messages are formatted by the `sd-notify` crate; the datagram is sent here so that the socket
//! path can be injected without touching the process environment.
//!
//! Protocol, for the daemon:
//! - `READY=1` after the first complete scan ([`Notifier::ready`]);
//! - `RELOADING=1` + `MONOTONIC_USEC=…` when SIGHUP arrives ([`Notifier::reloading`]), then
//!   `READY=1` once the new configuration is in force (or was rejected);
//! - `STOPPING=1` on SIGTERM/SIGINT ([`Notifier::stopping`]);
//! - `WATCHDOG=1` every half `WATCHDOG_USEC` while the daemon is healthy
//!   ([`Notifier::watchdog_loop`]).

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;

/// How long a single notification may block when the manager's queue is full.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A handle on the service manager's notification socket (or on nothing).
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    /// `NOTIFY_SOCKET`: a filesystem path, or `@name` for the abstract namespace.
    socket: Option<OsString>,
    /// The full watchdog timeout granted to this process (`WATCHDOG_USEC`).
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that never sends anything.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            usec.as_deref(),
            pid.as_deref(),
        )
    }

    /// Builds a notifier from the values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    ///
    /// The watchdog is enabled when `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID` is
    /// absent or names this process (otherwise the variables were inherited from a parent).
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let socket = notify_socket.filter(|s| !s.is_empty());
        let ours = match watchdog_pid {
            None => true,
            Some(pid) => pid.trim().parse::<u32>().ok() == Some(std::process::id()),
        };
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// A notifier sending to `socket`, with the watchdog timeout `watchdog` (the full
    /// `WATCHDOG_USEC`, not the ping interval).
    pub fn new(socket: Option<OsString>, watchdog: Option<Duration>) -> Self {
        Self {
            socket: socket.filter(|s| !s.is_empty()),
            watchdog: watchdog.filter(|d| !d.is_zero()),
        }
    }

    /// Whether a service manager is listening (`NOTIFY_SOCKET` was set).
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `READY=1`: startup finished (after the first complete scan), or a reload finished.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, as systemd 253+ requires for `Type=notify-reload`
    /// (older versions ignore the timestamp). Follow it with [`Self::ready`].
    pub fn reloading(&self) {
        if !self.is_enabled() {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(e) => {
                tracing::debug!(error = %e, "systemd: cannot read CLOCK_MONOTONIC");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `STATUS=…`: one line shown by `systemctl status`. Newlines are replaced by spaces.
    pub fn status(&self, text: &str) {
        if !self.is_enabled() {
            return;
        }
        let line = text.replace(['\n', '\r'], " ");
        self.send(&[NotifyState::Status(&line)]);
    }

    /// How often to send `WATCHDOG=1`: half the timeout the manager granted, or `None` when
    /// no watchdog is configured for this process (or there is no manager to ping).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        self.watchdog.map(|d| d / 2)
    }

    /// Sends `WATCHDOG=1` every [`Self::watchdog_interval`] while `healthy()` returns true; an
    /// unhealthy daemon stops pinging and lets systemd restart it after `WatchdogSec`.
    ///
    /// Returns at once when no watchdog is configured, so spawn it rather than `select!` on it.
    pub async fn watchdog_loop(&self, healthy: impl Fn() -> bool) {
        let Some(period) = self.watchdog_interval() else {
            return;
        };
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_healthy = true;
        loop {
            ticker.tick().await;
            let now_healthy = healthy();
            if now_healthy {
                self.send(&[NotifyState::Watchdog]);
            } else if was_healthy {
                tracing::warn!(
                    "daemon unhealthy: withholding systemd watchdog pings \
                     (systemd restarts the service if this lasts)"
                );
            }
            if now_healthy && !was_healthy {
                tracing::info!("daemon healthy again: systemd watchdog pings resumed");
            }
            was_healthy = now_healthy;
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(socket) = &self.socket else {
            return;
        };
        let mut msg = String::new();
        for s in states {
            // Writing into a String cannot fail.
            let _ = writeln!(msg, "{s}");
        }
        if let Err(e) = send_datagram(socket, msg.as_bytes()) {
            tracing::debug!(
                error = %e,
                socket = %socket.to_string_lossy(),
                message = %msg.trim_end(),
                "systemd notification not delivered"
            );
        }
    }
}

fn send_datagram(socket: &OsStr, msg: &[u8]) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = match socket.as_encoded_bytes() {
        [b'@', name @ ..] => send_abstract(&sock, name, msg)?,
        [b'/', ..] => sock.send_to(msg, socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract socket",
            ));
        }
    };
    if sent == msg.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification truncated",
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// The process-wide notifier, read from the environment on first use.
pub fn notifier() -> &'static Notifier {
    static NOTIFIER: OnceLock<Notifier> = OnceLock::new();
    NOTIFIER.get_or_init(Notifier::from_env)
}

/// [`Notifier::ready`] on the process-wide notifier.
pub fn ready() {
    notifier().ready();
}

/// [`Notifier::reloading`] on the process-wide notifier.
pub fn reloading() {
    notifier().reloading();
}

/// [`Notifier::stopping`] on the process-wide notifier.
pub fn stopping() {
    notifier().stopping();
}

/// [`Notifier::status`] on the process-wide notifier.
pub fn status(text: &str) {
    notifier().status(text);
}

/// [`Notifier::watchdog_interval`] of the process-wide notifier.
pub fn watchdog_interval() -> Option<Duration> {
    notifier().watchdog_interval()
}

/// [`Notifier::watchdog_loop`] on the process-wide notifier.
pub async fn watchdog_loop(healthy: impl Fn() -> bool) {
    notifier().watchdog_loop(healthy).await;
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A datagram socket bound in a fresh directory, removed on drop.
    struct Listener {
        dir: PathBuf,
        sock: UnixDatagram,
        path: PathBuf,
    }

    impl Listener {
        fn new() -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "certvigil-sd-notify-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify.sock");
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Self { dir, sock, path }
        }

        fn notifier(&self, watchdog: Option<Duration>) -> Notifier {
            Notifier::new(Some(self.path.clone().into_os_string()), watchdog)
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).expect("no notification arrived");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }

        /// Every datagram already queued, without waiting.
        fn drain(&self) -> Vec<String> {
            self.sock.set_nonblocking(true).unwrap();
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
            }
            self.sock.set_nonblocking(false).unwrap();
            out
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn ready_stopping_status_send_exact_datagrams() {
        let l = Listener::new();
        let n = l.notifier(None);
        assert!(n.is_enabled());
        n.ready();
        assert_eq!(l.recv(), "READY=1\n");
        n.stopping();
        assert_eq!(l.recv(), "STOPPING=1\n");
        n.status("scanned 12 certificates\n3 findings");
        assert_eq!(l.recv(), "STATUS=scanned 12 certificates 3 findings\n");
    }

    #[test]
    fn reloading_carries_a_current_monotonic_timestamp() {
        let l = Listener::new();
        let n = l.notifier(None);
        let before = monotonic_usec();
        n.reloading();
        let after = monotonic_usec();
        let msg = l.recv();
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: i128 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC line")
            .parse()
            .unwrap();
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines.next(), None);
        assert!(msg.ends_with('\n'));
    }

    fn monotonic_usec() -> i128 {
        match NotifyState::monotonic_usec_now().unwrap() {
            NotifyState::MonotonicUsec(u) => u,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn abstract_socket_addresses_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("certvigil-test-{}-abstract", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(Some(format!("@{name}").into()), None);
        n.ready();
        let mut buf = [0u8; 64];
        let len = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\n");
    }

    #[test]
    fn without_a_socket_everything_is_a_silent_no_op() {
        for n in [
            Notifier::disabled(),
            Notifier::from_vars(None, Some("60000000"), None),
            Notifier::from_vars(Some(OsString::new()), Some("60000000"), None),
        ] {
            assert!(!n.is_enabled());
            n.ready();
            n.reloading();
            n.stopping();
            n.status("x");
            assert_eq!(n.watchdog_interval(), None);
        }
    }

    #[test]
    fn unreachable_or_invalid_sockets_do_not_panic() {
        let missing = std::env::temp_dir().join("certvigil-no-such-dir/notify.sock");
        for socket in [missing.into_os_string(), OsString::from("relative/path")] {
            let n = Notifier::new(Some(socket), Some(Duration::from_secs(1)));
            n.ready();
            n.reloading();
            n.stopping();
            n.status("x");
        }
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_this_pid() {
        let sock = Some(OsString::from("/run/systemd/notify"));
        let me = std::process::id().to_string();
        let other = (std::process::id() + 1).to_string();
        let half = Some(Duration::from_secs(30));
        let n = |usec, pid| Notifier::from_vars(sock.clone(), usec, pid).watchdog_interval();
        assert_eq!(n(Some("60000000"), None), half);
        assert_eq!(n(Some("60000000"), Some(me.as_str())), half);
        assert_eq!(n(Some("60000000"), Some(other.as_str())), None);
        assert_eq!(n(Some("60000000"), Some("garbage")), None);
        assert_eq!(n(Some("0"), None), None);
        assert_eq!(n(Some("soon"), None), None);
        assert_eq!(n(None, None), None);
        assert_eq!(
            Notifier::new(sock.clone(), Some(Duration::from_millis(100))).watchdog_interval(),
            Some(Duration::from_millis(50))
        );
    }

    #[tokio::test]
    async fn watchdog_loop_pings_only_while_healthy() {
        let l = Listener::new();
        let n = l.notifier(Some(Duration::from_millis(60)));
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let task = tokio::spawn(async move {
            n.watchdog_loop(move || flag.load(Ordering::SeqCst)).await;
        });

        // Healthy: pings at ~30 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pings = l.drain();
        assert!(pings.len() >= 3, "only {} pings: {pings:?}", pings.len());
        assert!(pings.iter().all(|p| p == "WATCHDOG=1\n"), "{pings:?}");

        // Unhealthy: silence.
        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40)).await;
        l.drain();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(l.drain(), Vec::<String>::new());

        // Healthy again: pings resume.
        healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pings = l.drain();
        assert!(!pings.is_empty());
        assert!(pings.iter().all(|p| p == "WATCHDOG=1\n"), "{pings:?}");

        task.abort();
    }

    #[tokio::test]
    async fn watchdog_loop_returns_without_a_watchdog() {
        let l = Listener::new();
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            l.notifier(None).watchdog_loop(|| true),
        )
        .await;
        assert!(done.is_ok());
        assert!(l.drain().is_empty());
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            Notifier::new(None, Some(Duration::from_millis(10))).watchdog_loop(|| true),
        )
        .await;
        assert!(done.is_ok());
    }
}
