//! A tamper-evident, append-only log of every issuance, activation, reload, verification,
//! rollback and failure: one JSON object per line, each chained to the one before by SHA-256.
//!
//! # Line format
//!
//! ```text
//! {"seq":1,"ts":"2026-05-01T10:00:00.123Z","certificate":"www","event":"activated","stage":"activate","detail":{"serial":"0a1b"},"prev":"000…000","hash":"9f…"}
//! ```
//!
//! - `seq` counts records from 1, `ts` is the UTC append time (RFC 3339), `event` is one of
//!   [`AuditKind`] (or `log_repaired`, below), `stage` may be `null`, `detail` is free-form
//!   JSON: serials, paths, error text, never key material ([`redact`] refuses it).
//! - `prev` is the `hash` of the previous line, 64 zeros on the first line.
//! - `hash` is the lowercase hex SHA-256 of **the exact bytes of the line without
//!   `,"hash":"…"`**: the line up to and including the `prev` value, followed by `}`. That
//!   body is itself a JSON object, always ends the line's fields, and is never re-serialized:
//!   verification hashes bytes, so it does not depend on key order or number formatting.
//!
//! Checking line K by hand:
//!
//! ```sh
//! sed -n Kp audit.jsonl | sed 's/,"hash":"[0-9a-f]*"}$/}/' | tr -d '\n' | sha256sum
//! sed -n Kp audit.jsonl | jq -r .hash            # the same value
//! sed -n "$((K-1))p" audit.jsonl | jq -r .hash   # equals line K's .prev
//! ```
//!
//! # What the chain proves, and what it does not
//!
//! Editing a line breaks its own hash; removing, inserting or reordering lines breaks `seq`
//! and `prev` at the first line after the change. [`verify`] reports the first line where the
//! chain breaks. Removing whole lines *from the end* leaves a valid (shorter) chain, and anyone
//! able to rewrite the file can recompute every hash: keep [`VerifyReport::last_hash`] (or
//! [`AuditLog::head`]) somewhere else, such as the renewal state or a remote log, and compare.
//!
//! # Appends, concurrency and crashes
//!
//! [`AuditLog::append`] opens the file (`O_APPEND`, created 0600, parent directories 0700),
//! takes an exclusive `flock(2)` on it, reads the last record's `seq` and `hash`, writes the
//! new line with one `write(2)`, `fsync`s and unlocks, so several processes can share one log.
//!
//! A crash in the middle of that write leaves an incomplete last line (no newline). [`verify`]
//! reports it as the break. The next append does not refuse (that would turn a crash into a
//! deploy that cannot log): it ends the fragment with a newline and first appends a
//! `log_repaired` record whose `detail` names the fragment (`offset`, `bytes`, `sha256`) and
//! whose `prev` is the hash of the last complete record. [`verify`] accepts a broken line
//! exactly covered by the `log_repaired` record that follows it and lists it in
//! [`VerifyReport::repaired`]. A last *complete* line that is not a valid record is no crash:
//! `append` refuses with [`AuditError::BrokenTail`] and the file must be looked at by a person.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde_json::Value;

/// The longest line `append` writes and `verify` reads.
pub const MAX_LINE: usize = 64 * 1024;
/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The `event` of a repair record.
pub const REPAIRED: &str = "log_repaired";

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditKind {
    Issued,
    Activated,
    Reloaded,
    Verified,
    RolledBack,
    Failed,
}

impl AuditKind {
    /// The `event` value: `issued`, `activated`, `reloaded`, `verified`, `rolled_back`,
    /// `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Activated => "activated",
            Self::Reloaded => "reloaded",
            Self::Verified => "verified",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
        }
    }
}

/// One record to append; `seq`, `ts`, `prev` and `hash` are added by [`AuditLog::append`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub certificate: String,
    pub event: AuditKind,
    /// The pipeline stage, e.g. `activate`, `reload`, `verify`.
    pub stage: Option<String>,
    /// Serials, paths, error text. Never key material: [`redact`] refuses it.
    pub detail: Value,
}

impl AuditEvent {
    pub fn new(certificate: impl Into<String>, event: AuditKind) -> Self {
        Self {
            certificate: certificate.into(),
            event,
            stage: None,
            detail: Value::Object(serde_json::Map::new()),
        }
    }

    pub fn with_stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The last record of a log: the next one gets `seq + 1` and `prev = hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// 0 for an empty log.
    pub seq: u64,
    /// [`GENESIS`] for an empty log.
    pub hash: String,
}

/// Why a write to the audit log was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("audit log {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// A string of the event looks like key material; nothing was written.
    #[error(
        "refusing to write {field} to the audit log: it contains \"PRIVATE KEY\" \
         (key material never goes into the audit log)"
    )]
    KeyMaterial {
        /// `certificate`, `stage`, or a JSON pointer into `detail` such as `detail/error`.
        field: String,
    },
    /// The line would be longer than [`MAX_LINE`].
    #[error("refusing to write a {bytes}-byte line to the audit log (at most {MAX_LINE})")]
    TooLarge { bytes: usize },
    /// The last complete line is not a valid record: not a crash, so nothing is appended.
    #[error(
        "audit log {}: the last complete line is not a valid record ({reason}); nothing was \
         appended. Check it with `certvigil audit verify`, then move the file aside to start a \
         new chain",
        path.display()
    )]
    BrokenTail { path: PathBuf, reason: String },
}

/// An append-only audit log file.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// Creates the file (0600) and its parent directories (0700) when missing, and checks that
    /// its last complete line is a valid record (an incomplete one is repaired by the next
    /// append).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let log = Self { path: path.into() };
        let file = log.open_locked()?;
        log.read_tail(&file)?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last record's `seq` and `hash`, to keep elsewhere as an anchor.
    pub fn head(&self) -> Result<Head, AuditError> {
        let file = self.open_locked()?;
        Ok(self.read_tail(&file)?.head)
    }

    /// Appends one record (see the module docs), fsynced before returning.
    pub fn append(&self, event: &AuditEvent) -> Result<Head, AuditError> {
        check_strings(event)?;
        let mut file = self.open_locked()?;
        let tail = self.read_tail(&file)?;
        let mut head = tail.head;
        let mut out = Vec::new();
        if let Some(fragment) = tail.fragment {
            let detail = serde_json::json!({
                "offset": fragment.offset,
                "bytes": fragment.bytes.len(),
                "sha256": sha256_hex(&fragment.bytes),
                "reason": "incomplete last line (an interrupted write)",
            });
            out.push(b'\n');
            let line = render(head.seq + 1, &head.hash, "", REPAIRED, None, &detail)?;
            head = Head {
                seq: head.seq + 1,
                hash: line_hash(&line),
            };
            out.extend_from_slice(&line);
            tracing::warn!(
                path = %self.path.display(),
                offset = fragment.offset,
                bytes = fragment.bytes.len(),
                "audit log ended in an incomplete line; marked it repaired"
            );
        }
        let line = render(
            head.seq + 1,
            &head.hash,
            &event.certificate,
            event.event.as_str(),
            event.stage.as_deref(),
            &event.detail,
        )?;
        let head = Head {
            seq: head.seq + 1,
            hash: line_hash(&line),
        };
        out.extend_from_slice(&line);
        let io = |action| move |source| self.io(action, source);
        file.write_all(&out).map_err(io("appending"))?;
        file.sync_data().map_err(io("fsync"))?;
        Ok(head)
    }

    fn io(&self, action: &'static str, source: io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn open_locked(&self) -> Result<Flock<File>, AuditError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| self.io("creating its directory", e))?;
        }
        let created = !self.path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.io("opening", e))?;
        if created {
            // The new directory entry must survive a crash as well as the first line.
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = File::open(parent).and_then(|d| d.sync_all());
            }
        }
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| self.io("locking", io::Error::from(errno)))
    }

    /// The last complete record and the incomplete fragment after it, if any.
    fn read_tail(&self, file: &File) -> Result<Tail, AuditError> {
        let mut file = file;
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| self.io("reading", e))?;
        // A fragment and the complete line before it are each at most MAX_LINE (plus newline).
        let window = len.min(2 * MAX_LINE as u64 + 2);
        let start = len - window;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| self.io("reading", e))?;
        let mut buf = Vec::with_capacity(window as usize);
        file.take(window)
            .read_to_end(&mut buf)
            .map_err(|e| self.io("reading", e))?;
        let broken = |reason: String| AuditError::BrokenTail {
            path: self.path.clone(),
            reason,
        };

        let (complete, fragment) = match buf.iter().rposition(|&b| b == b'\n') {
            Some(nl) if nl + 1 == buf.len() => (&buf[..nl + 1], None),
            Some(nl) => (
                &buf[..nl + 1],
                Some((start + nl as u64 + 1, &buf[nl + 1..])),
            ),
            None if buf.is_empty() => (&buf[..], None),
            None if start == 0 => (&buf[..0], Some((0, &buf[..]))),
            None => return Err(broken(format!("no newline in its last {window} bytes"))),
        };
        let fragment = fragment.map(|(offset, bytes)| Fragment {
            offset,
            bytes: bytes.to_vec(),
        });
        let Some(body) = complete.strip_suffix(b"\n") else {
            return Ok(Tail {
                head: Head {
                    seq: 0,
                    hash: GENESIS.to_owned(),
                },
                fragment,
            });
        };
        let last = match body.iter().rposition(|&b| b == b'\n') {
            Some(nl) => &body[nl + 1..],
            None if start == 0 => body,
            None => return Err(broken("its last line is too long".to_owned())),
        };
        let record = Record::check(last).map_err(broken)?;
        Ok(Tail {
            head: Head {
                seq: record.seq,
                hash: record.hash,
            },
            fragment,
        })
    }
}

struct Tail {
    head: Head,
    fragment: Option<Fragment>,
}

struct Fragment {
    offset: u64,
    bytes: Vec<u8>,
}

/// The fields of the body, in the order they are written.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: String,
    certificate: &'a str,
    event: &'a str,
    stage: Option<&'a str>,
    detail: &'a Value,
    prev: &'a str,
}

/// One complete line, newline included.
fn render(
    seq: u64,
    prev: &str,
    certificate: &str,
    event: &str,
    stage: Option<&str>,
    detail: &Value,
) -> Result<Vec<u8>, AuditError> {
    let ts = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = Body {
        seq,
        ts,
        certificate,
        event,
        stage,
        detail,
        prev,
    };
    let mut line = serde_json::to_vec(&body).expect("a JSON value always serializes");
    let hash = sha256_hex(&line);
    line.pop(); // the closing brace
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    if line.len() > MAX_LINE {
        return Err(AuditError::TooLarge { bytes: line.len() });
    }
    Ok(line)
}

/// The hash of a line [`render`] produced.
fn line_hash(line: &[u8]) -> String {
    let end = line.len() - 3; // `"}\n`
    String::from_utf8_lossy(&line[end - 64..end]).into_owned()
}

/// A line that passed its own checks (hash over its bytes, the fields the chain needs).
struct Record {
    seq: u64,
    prev: String,
    hash: String,
    event: String,
    detail: Value,
}

impl Record {
    fn check(line: &[u8]) -> Result<Self, String> {
        if line.len() < HASH_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
            return Err("not a complete record (it does not end with the hash field)".to_owned());
        }
        let split = line.len() - HASH_SUFFIX_LEN;
        let (head, suffix) = line.split_at(split);
        let hash = &suffix[9..9 + 64];
        if !suffix.starts_with(b",\"hash\":\"")
            || !hash
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return Err("not a complete record (no hash field at the end)".to_owned());
        }
        let mut body = head.to_vec();
        body.push(b'}');
        let hash = String::from_utf8_lossy(hash).into_owned();
        if sha256_hex(&body) != hash {
            return Err("hash mismatch: the line was changed after it was written".to_owned());
        }
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| format!("not valid JSON: {e}"))?;
        let seq = value["seq"]
            .as_u64()
            .ok_or("no numeric \"seq\" field".to_owned())?;
        let prev = value["prev"]
            .as_str()
            .ok_or("no \"prev\" field".to_owned())?
            .to_owned();
        let event = value["event"]
            .as_str()
            .ok_or("no \"event\" field".to_owned())?
            .to_owned();
        Ok(Self {
            seq,
            prev,
            hash,
            event,
            detail: value["detail"].clone(),
        })
    }
}

/// Refuses any string in `detail` (keys included) that contains `PRIVATE KEY`, as every PEM
/// private key header does. Error text such as "private key does not match" (lower case)
/// passes. [`AuditLog::append`] applies it, and to `certificate` and `stage` as well.
pub fn redact(detail: &Value) -> Result<(), AuditError> {
    scan(detail, "detail")
}

fn scan(value: &Value, at: &str) -> Result<(), AuditError> {
    let refuse = |field: String| Err(AuditError::KeyMaterial { field });
    match value {
        Value::String(s) if s.contains("PRIVATE KEY") => refuse(at.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| scan(v, &format!("{at}/{i}"))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let at = format!("{at}/{k}");
            if k.contains("PRIVATE KEY") {
                return refuse(at);
            }
            scan(v, &at)
        }),
        _ => Ok(()),
    }
}

fn check_strings(event: &AuditEvent) -> Result<(), AuditError> {
    if event.certificate.contains("PRIVATE KEY") {
        return Err(AuditError::KeyMaterial {
            field: "certificate".to_owned(),
        });
    }
    if event
        .stage
        .as_deref()
        .is_some_and(|s| s.contains("PRIVATE KEY"))
    {
        return Err(AuditError::KeyMaterial {
            field: "stage".to_owned(),
        });
    }
    redact(&event.detail)
}

/// A log whose chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines in the file, repaired fragments and repair records included.
    pub lines: usize,
    /// `hash` of the last record ([`GENESIS`] for an empty file): keep it elsewhere.
    pub last_hash: String,
    /// Line numbers (from 1) of incomplete lines covered by a `log_repaired` record.
    pub repaired: Vec<usize>,
}

/// The first line where the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("chain broken at line {line}: {reason}")]
pub struct AuditBroken {
    /// From 1.
    pub line: usize,
    pub reason: String,
}

/// Why [`verify`] gave no report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Broken(#[from] AuditBroken),
}

/// Checks every line of the log at `path` (see the module docs).
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let read = |source| VerifyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read)?;
    verify_reader(BufReader::new(file)).map_err(|e| match e {
        ReadOrBroken::Read(source) => read(source),
        ReadOrBroken::Broken(b) => VerifyError::Broken(b),
    })
}

enum ReadOrBroken {
    Read(io::Error),
    Broken(AuditBroken),
}

/// A broken line waiting for the next one to be its repair record.
struct Pending {
    line: usize,
    offset: u64,
    bytes: usize,
    sha256: String,
    reason: String,
}

fn verify_reader(mut reader: impl BufRead) -> Result<VerifyReport, ReadOrBroken> {
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut lines = 0usize;
    let mut offset = 0u64;
    let mut repaired = Vec::new();
    let mut pending: Option<Pending> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(ReadOrBroken::Read)?;
        if n == 0 {
            break;
        }
        lines += 1;
        let line_offset = offset;
        offset += n as u64;
        let broken = |reason: String| {
            ReadOrBroken::Broken(AuditBroken {
                line: lines,
                reason,
            })
        };
        let Some(line) = buf.strip_suffix(b"\n") else {
            if n > MAX_LINE {
                return Err(broken(format!("line longer than {MAX_LINE} bytes")));
            }
            let reason = "incomplete last line (no newline: a write was interrupted; the next \
                          append marks it repaired)";
            return Err(match pending {
                Some(p) => unrepaired(p),
                None => broken(reason.to_owned()),
            });
        };
        let checked = Record::check(line).and_then(|r| {
            if r.seq != expected_seq {
                Err(format!(
                    "seq is {}, expected {expected_seq}: lines before it were removed, inserted \
                     or reordered",
                    r.seq
                ))
            } else if r.prev != prev {
                Err(format!(
                    "prev does not match the hash of the record before it ({})",
                    short(&prev)
                ))
            } else {
                Ok(r)
            }
        });
        match (checked, pending.take()) {
            (Ok(record), None) => {
                prev = record.hash;
                expected_seq += 1;
            }
            (Ok(record), Some(p)) => {
                let covers = record.event == REPAIRED
                    && record.detail["offset"].as_u64() == Some(p.offset)
                    && record.detail["bytes"].as_u64() == Some(p.bytes as u64)
                    && record.detail["sha256"].as_str() == Some(p.sha256.as_str());
                if !covers {
                    return Err(unrepaired(p));
                }
                repaired.push(p.line);
                prev = record.hash;
                expected_seq += 1;
            }
            (Err(reason), None) => {
                pending = Some(Pending {
                    line: lines,
                    offset: line_offset,
                    bytes: line.len(),
                    sha256: sha256_hex(line),
                    reason,
                });
            }
            (Err(_), Some(p)) => return Err(unrepaired(p)),
        }
    }
    if let Some(p) = pending {
        return Err(unrepaired(p));
    }
    Ok(VerifyReport {
        lines,
        last_hash: prev,
        repaired,
    })
}

fn unrepaired(p: Pending) -> ReadOrBroken {
    ReadOrBroken::Broken(AuditBroken {
        line: p.line,
        reason: p.reason,
    })
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
