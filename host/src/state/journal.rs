//! The list journal: what makes the in-process backend's lists survive a restart.
//!
//! # Files
//! ```text
//! <spool>/state/
//!   lists.lock              flock'ed exclusively by the one process that may write the journal
//!   lists.journal           the header line, then one record per list change
//!   lists.journal.tmp       a compaction in progress (replaced by rename; removed on start)
//!   lists.journal.corrupt-<ms>  a journal that had damaged records, kept aside when compacted
//! ```
//! The header is `wasmrelay-lists-v1`. A record is a line `<crc32 of the JSON, 8 hex> <JSON>`
//! with the JSON one of `{"op":"add","list":L,"member":M,"expires_ms":T}` (`expires_ms`
//! absent for a member kept until removed; wall-clock ms since the epoch, so TTLs run on
//! while the relay is down) or `{"op":"remove","list":L,"member":M}`. JSON escapes every
//! control character, so a member can never break the line framing.
//!
//! # Writes
//! One thread owns the file. Callers hand it records in the order they changed memory; it
//! appends every record queued so far, fdatasyncs once for the batch (group commit), then
//! answers each caller. A failed write or sync truncates the file back to its last synced
//! length, undoes the batch's changes in memory (newest first) and fails the calls, so
//! memory never claims what the disk does not hold.
//!
//! # Start
//! The whole journal is replayed. An incomplete or damaged tail (a crash during an append:
//! those records were never acknowledged) is cut off. A damaged record followed by good
//! ones cannot come from a crash; it is skipped and counted, the file is copied to
//! `lists.journal.corrupt-<ms>` (never deleted), and the journal is compacted. Members already expired are
//! dropped. When the file is larger than twice what its live members need (and at least
//! [`COMPACT_MIN`]), it is rewritten with one `add` per live member: written to a temp file,
//! fsynced, renamed over the journal and the directory fsynced. A running relay compacts
//! the same way whenever the journal grows past four times its last compacted size.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{StateError, StateResult};

pub const JOURNAL: &str = "lists.journal";
pub const LOCK: &str = "lists.lock";
const TMP: &str = "lists.journal.tmp";
/// Prefix of a damaged journal kept aside: `lists.journal.corrupt-<ms since the epoch>`.
const CORRUPT: &str = "lists.journal.corrupt-";
const HEADER: &[u8] = b"wasmrelay-lists-v1\n";
/// A journal smaller than this is never worth compacting.
pub const COMPACT_MIN: u64 = 1 << 20;
/// Longest record line read back (a 1 KiB member escaped six times over, plus framing).
const MAX_LINE: u64 = 16 * 1024;

/// Every list: member → expiry (ms since the epoch, none for no expiry).
pub type Lists = HashMap<String, HashMap<String, Option<u64>>>;

/// One change to a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Record {
    Add {
        list: String,
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
    },
    Remove {
        list: String,
        member: String,
    },
}

impl Record {
    fn apply(self, lists: &mut Lists) {
        match self {
            Record::Add {
                list,
                member,
                expires_ms,
            } => {
                lists.entry(list).or_default().insert(member, expires_ms);
            }
            Record::Remove { list, member } => {
                if let Some(members) = lists.get_mut(&list) {
                    members.remove(&member);
                    if members.is_empty() {
                        lists.remove(&list);
                    }
                }
            }
        }
    }
}

pub(super) fn encode(record: &Record, out: &mut Vec<u8>) {
    let json = serde_json::to_vec(record).expect("records serialize");
    out.extend_from_slice(format!("{:08x} ", crc32fast::hash(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
}

/// A record line without its `\n`; `None` when damaged.
fn decode(line: &[u8]) -> Option<Record> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    if line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc != crc32fast::hash(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// What the journal file holds: header, then one `add` per live member.
pub fn snapshot(lists: &Lists) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    let mut names: Vec<&String> = lists.keys().collect();
    names.sort();
    for list in names {
        let mut members: Vec<(&String, &Option<u64>)> = lists[list].iter().collect();
        members.sort();
        for (member, expires_ms) in members {
            let record = Record::Add {
                list: list.clone(),
                member: member.clone(),
                expires_ms: *expires_ms,
            };
            encode(&record, &mut out);
        }
    }
    out
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: in use by another process (a running relay)")]
    Busy { path: PathBuf },
    #[error("{path}: not a wasmrelay list journal (no `wasmrelay-lists-v1` header)")]
    Format { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Records replayed.
    pub records: u64,
    /// Live members after the replay, over all lists.
    pub members: u64,
    /// Bytes of an incomplete or damaged tail, cut off.
    pub torn_bytes: u64,
    /// Damaged records followed by good ones: skipped.
    pub corrupt: u64,
    /// Whether the journal was rewritten.
    pub compacted: bool,
}

/// A replay: the lists and where the good part of the file ends.
struct Scan {
    lists: Lists,
    report: LoadReport,
    /// Length of the header and every record up to the last good one.
    good_len: u64,
    file_len: u64,
}

/// Replays the journal at `path` (absent: empty) as of `now_ms`.
fn scan(path: &Path, now_ms: u64) -> Result<Scan, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Scan {
                lists: Lists::new(),
                report: LoadReport::default(),
                good_len: 0,
                file_len: 0,
            })
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = BufReader::new(file);
    let mut lists = Lists::new();
    let mut report = LoadReport::default();
    let mut line = Vec::new();
    let read = |reader: &mut BufReader<File>, line: &mut Vec<u8>| {
        line.clear();
        // A line longer than any record is damage; read it in pieces.
        let mut limited = reader.by_ref().take(MAX_LINE);
        limited.read_until(b'\n', line)
    };
    let n = read(&mut reader, &mut line).map_err(io_err(path))?;
    if line != HEADER {
        // A crash while the header was first written leaves a prefix of it.
        if n < HEADER.len() && HEADER.starts_with(&line) && file_len == n as u64 {
            report.torn_bytes = n as u64;
            return Ok(Scan {
                lists,
                report,
                good_len: 0,
                file_len,
            });
        }
        return Err(JournalError::Format {
            path: path.to_path_buf(),
        });
    }
    let mut pos = n as u64;
    let mut good_len = pos;
    let mut damaged_since_good = 0;
    loop {
        let n = read(&mut reader, &mut line).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        let record = line.strip_suffix(b"\n").and_then(decode);
        match record {
            Some(record) => {
                record.apply(&mut lists);
                report.records += 1;
                report.corrupt += damaged_since_good;
                damaged_since_good = 0;
                good_len = pos;
            }
            None => damaged_since_good += 1,
        }
    }
    report.torn_bytes = file_len - good_len;
    for members in lists.values_mut() {
        members.retain(|_, exp| exp.is_none_or(|e| e > now_ms));
    }
    lists.retain(|_, m| !m.is_empty());
    report.members = lists.values().map(|m| m.len() as u64).sum();
    Ok(Scan {
        lists,
        report,
        good_len,
        file_len,
    })
}

/// The lists in the journal under `dir`, as of `now_ms`, without changing anything: for
/// `wasmrelay list show` when no relay runs.
pub fn read(dir: &Path, now_ms: u64) -> Result<Lists, JournalError> {
    scan(&dir.join(JOURNAL), now_ms).map(|s| s.lists)
}

/// Whether to wait for the journal's lock or fail at once when another process holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Wait,
    Try,
}

/// Undoes one record's change in memory (a failed write).
pub type Undo = Box<dyn FnOnce() + Send>;

enum Op {
    Append {
        bytes: Vec<u8>,
        undo: Undo,
        done: oneshot::Sender<StateResult<()>>,
    },
    Compact {
        contents: Vec<u8>,
    },
}

/// The open journal: the lock and the writer thread. Dropping it waits for the thread to
/// finish what is queued, then releases the lock.
pub struct Journal {
    tx: Option<mpsc::Sender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    _lock: File,
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// What the writer thread and the callers both see.
struct Shared {
    /// Synced length of the journal.
    len: AtomicU64,
    /// Length right after the last compaction.
    compacted_len: AtomicU64,
    compaction_queued: AtomicBool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("len", &self.shared.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating) the journal under `dir`: takes its lock, replays it as of `now_ms`,
    /// cuts a torn tail, compacts if worth it, and starts the writer. Blocking.
    pub fn open(
        dir: &Path,
        lock: LockMode,
        now_ms: u64,
    ) -> Result<(Journal, Lists, LoadReport), JournalError> {
        create_dir(dir)?;
        let lock_path = dir.join(LOCK);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock {
            LockMode::Wait => lock_file.lock().map_err(io_err(&lock_path))?,
            LockMode::Try => match lock_file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(JournalError::Busy { path: lock_path })
                }
                Err(TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
            },
        }
        let path = dir.join(JOURNAL);
        let _ = fs::remove_file(dir.join(TMP));
        let Scan {
            lists,
            mut report,
            good_len,
            file_len,
        } = scan(&path, now_ms)?;
        let contents = snapshot(&lists);
        let compact = report.corrupt > 0
            || good_len == 0
            || (file_len >= COMPACT_MIN && good_len > 2 * contents.len() as u64);
        let len = if compact {
            if report.corrupt > 0 {
                let kept = dir.join(format!("{CORRUPT}{now_ms}"));
                fs::copy(&path, &kept).map_err(io_err(&kept))?;
                tracing::warn!(
                    path = %path.display(),
                    corrupt = report.corrupt,
                    kept = %kept.display(),
                    "list journal: damaged records skipped"
                );
            }
            replace(dir, &contents)?;
            report.compacted = good_len != 0;
            contents.len() as u64
        } else {
            if report.torn_bytes > 0 {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(good_len).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
            }
            good_len
        };
        if report.torn_bytes > 0 {
            tracing::warn!(path = %path.display(), bytes = report.torn_bytes,
                "list journal: incomplete tail cut off (never acknowledged)");
        }
        let file = append_handle(&path)?;
        let shared = Arc::new(Shared {
            len: AtomicU64::new(len),
            compacted_len: AtomicU64::new(len),
            compaction_queued: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            path,
            file,
            shared: shared.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("wasmrelay-lists".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(dir))?;
        let journal = Journal {
            tx: Some(tx),
            writer: Some(writer),
            shared,
            _lock: lock_file,
        };
        Ok((journal, lists, report))
    }

    /// Queues `record`; the receiver answers once it is durable (or failed, after `undo`
    /// ran on the writer thread). Call it while holding the lock that ordered the change in
    /// memory, so the journal's order is memory's order. `Err` when the writer has stopped:
    /// nothing is queued and `undo` is dropped unrun (it would take the lock the caller
    /// holds), so the caller undoes the change itself.
    pub fn append(
        &self,
        record: &Record,
        undo: Undo,
    ) -> StateResult<oneshot::Receiver<StateResult<()>>> {
        let (done, rx) = oneshot::channel();
        let mut bytes = Vec::new();
        encode(record, &mut bytes);
        let op = Op::Append { bytes, undo, done };
        match &self.tx {
            Some(tx) if tx.send(op).is_ok() => Ok(rx),
            _ => Err(stopped()),
        }
    }

    /// Ends the writer thread while callers still hold a sender, as a panic in it would.
    #[cfg(test)]
    pub(crate) fn stop_writer(&mut self) {
        let (orphan, _) = mpsc::channel();
        self.tx = Some(orphan);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    /// Whether the journal has grown enough that the caller should hand it a snapshot.
    pub fn wants_compaction(&self) -> bool {
        let len = self.shared.len.load(Ordering::Relaxed);
        let base = self.shared.compacted_len.load(Ordering::Relaxed);
        len >= COMPACT_MIN.max(base.saturating_mul(4))
            && !self.shared.compaction_queued.load(Ordering::Relaxed)
    }

    /// Queues a rewrite to `lists` (taken under the same lock as [`Journal::append`]).
    pub fn compact(&self, lists: &Lists) {
        self.shared.compaction_queued.store(true, Ordering::Relaxed);
        let contents = snapshot(lists);
        if let Some(tx) = &self.tx {
            let _ = tx.send(Op::Compact { contents });
        }
    }
}

fn stopped() -> StateError {
    StateError::Unavailable("list journal writer stopped".into())
}

fn create_dir(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(io_err(parent))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn append_handle(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

/// Writes `contents` as the whole journal: temp file, fsync, rename, directory fsync.
fn replace(dir: &Path, contents: &[u8]) -> Result<(), JournalError> {
    let tmp = dir.join(TMP);
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, dir.join(JOURNAL)).map_err(io_err(&tmp))?;
    sync_dir(dir).map_err(io_err(dir))
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    shared: Arc<Shared>,
}

type Waiting = Vec<(Undo, oneshot::Sender<StateResult<()>>)>;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut bytes = Vec::new();
            let mut waiting: Waiting = Vec::new();
            let mut op = Some(first);
            // Everything queued so far shares one sync; a compaction ends the batch.
            while let Some(next) = op.take() {
                match next {
                    Op::Append {
                        bytes: b,
                        undo,
                        done,
                    } => {
                        bytes.extend_from_slice(&b);
                        waiting.push((undo, done));
                        op = rx.try_recv().ok();
                    }
                    Op::Compact { contents } => {
                        self.commit(&bytes, std::mem::take(&mut waiting));
                        bytes.clear();
                        self.compact(&contents);
                    }
                }
            }
            self.commit(&bytes, waiting);
        }
    }

    fn commit(&mut self, bytes: &[u8], waiting: Waiting) {
        if waiting.is_empty() {
            return;
        }
        let result = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.shared
                    .len
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                for (_, done) in waiting {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                let good = self.shared.len.load(Ordering::Relaxed);
                tracing::error!(path = %self.path.display(), error = %e,
                    "list journal: write failed; changes undone");
                if let Err(e) = self.file.set_len(good) {
                    tracing::error!(path = %self.path.display(), error = %e,
                        "list journal: cannot cut the failed write off");
                }
                let why = format!("list journal {}: {e}", self.path.display());
                for (undo, done) in waiting.into_iter().rev() {
                    undo();
                    let _ = done.send(Err(StateError::Unavailable(why.clone())));
                }
            }
        }
    }

    fn compact(&mut self, contents: &[u8]) {
        let result = replace(&self.dir, contents).and_then(|()| append_handle(&self.path));
        let len = match result {
            Ok(file) => {
                self.file = file;
                tracing::info!(path = %self.path.display(), bytes = contents.len(),
                    "list journal compacted");
                contents.len() as u64
            }
            Err(e) => {
                let _ = fs::remove_file(self.dir.join(TMP));
                tracing::warn!(error = %e, "list journal: compaction failed; keeping the journal");
                self.shared.len.load(Ordering::Relaxed)
            }
        };
        self.shared.len.store(len, Ordering::Relaxed);
        self.shared.compacted_len.store(len, Ordering::Relaxed);
        self.shared
            .compaction_queued
            .store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A write that fails undoes the batch's changes newest first and fails every call.
    #[test]
    fn a_failed_write_undoes_the_batch_in_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL);
        fs::write(&path, HEADER).unwrap();
        let undone = Arc::new(Mutex::new(Vec::new()));
        let mut waiting: Waiting = Vec::new();
        let mut answers = Vec::new();
        for i in 0..3 {
            let undone = undone.clone();
            let (done, rx) = oneshot::channel();
            waiting.push((Box::new(move || undone.lock().unwrap().push(i)), done));
            answers.push(rx);
        }
        let mut writer = Writer {
            dir: dir.path().to_path_buf(),
            path: path.clone(),
            // Read-only: every write fails.
            file: File::open(&path).unwrap(),
            shared: Arc::new(Shared {
                len: AtomicU64::new(HEADER.len() as u64),
                compacted_len: AtomicU64::new(0),
                compaction_queued: AtomicBool::new(false),
            }),
        };
        writer.commit(b"0000000 {}\n", waiting);
        assert_eq!(*undone.lock().unwrap(), [2, 1, 0]);
        for mut rx in answers {
            assert!(matches!(rx.try_recv(), Ok(Err(StateError::Unavailable(_)))));
        }
        assert_eq!(fs::read(&path).unwrap(), HEADER);
        assert_eq!(
            writer.shared.len.load(Ordering::Relaxed),
            HEADER.len() as u64
        );
    }
}
