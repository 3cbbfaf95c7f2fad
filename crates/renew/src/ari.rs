//! The ARI (RFC 9773) renewal point of each managed certificate: a random moment inside the
//! CA's suggested window, chosen once per (certificate, window) and persisted, so restarts and
//! repeated polls do not move it and a fleet does not renew in lockstep.

use std::fs;
use std::path::PathBuf;

use certvigil_core::renewal::ari_point;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriSchedule {
    /// The certificate the window is for.
    pub serial: String,
    pub window_start: i64,
    pub window_end: i64,
    /// The chosen renewal moment, inside the window.
    pub renew_at: i64,
    /// When the CA asked to be polled again (unix seconds).
    pub next_check: i64,
}

pub(crate) struct AriStore {
    dir: PathBuf,
}

impl AriStore {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The stored schedule of `name` if it is for certificate `serial`; anything unreadable
    /// is treated as absent (the CA is simply asked again).
    pub(crate) fn load(&self, name: &str, serial: &str) -> Option<AriSchedule> {
        let bytes = fs::read(self.file(name)).ok()?;
        let schedule: AriSchedule = serde_json::from_slice(&bytes).ok()?;
        (schedule.serial == serial).then_some(schedule)
    }

    /// Records the CA's window, keeping the previous point when the window did not change.
    pub(crate) fn update(
        &self,
        name: &str,
        serial: &str,
        window: (i64, i64),
        next_check: i64,
        random: f64,
    ) -> std::io::Result<AriSchedule> {
        let renew_at = match self.load(name, serial) {
            Some(old) if (old.window_start, old.window_end) == window => old.renew_at,
            _ => ari_point(window.0, window.1, random),
        };
        let schedule = AriSchedule {
            serial: serial.to_owned(),
            window_start: window.0,
            window_end: window.1,
            renew_at,
            next_check,
        };
        certvigil_issue::write_file_atomic(
            &self.file(name),
            &serde_json::to_vec_pretty(&schedule).map_err(std::io::Error::other)?,
            0o644,
        )?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_survives_polls_and_moves_only_with_the_window_or_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let store = AriStore::new(dir.path().to_owned());
        let first = store.update("web", "01", (1000, 2000), 500, 0.25).unwrap();
        assert_eq!(first.renew_at, 1250);
        // A later poll with another random draw keeps the persisted point.
        let again = store.update("web", "01", (1000, 2000), 600, 0.9).unwrap();
        assert_eq!(again.renew_at, 1250);
        assert_eq!(again.next_check, 600);
        // The CA moved the window (e.g. the certificate is about to be revoked): new point.
        let moved = store.update("web", "01", (100, 200), 700, 0.5).unwrap();
        assert_eq!(moved.renew_at, 150);
        // A schedule belongs to one certificate.
        assert_eq!(store.load("web", "02"), None);
        assert_eq!(store.load("web", "01"), Some(moved));
        // A corrupt file is as good as none.
        fs::write(dir.path().join("web.json"), b"{").unwrap();
        assert_eq!(store.load("web", "01"), None);
    }
}
