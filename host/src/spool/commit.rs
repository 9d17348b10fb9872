//! The committer: one thread owns the active segment. It drains every queued op, appends
//! them, runs ONE fdatasync for the batch when it holds a store (or a sync request), updates
//! the index and only then answers every waiter. While one batch is in its fdatasync the
//! next one accumulates, so the batch size follows the load by itself. The commit delay
//! ([`SpoolOptions::commit_delay`]) lets a batch wait a little longer, but only while other
//! messages are announced ([`super::Arrival`]): a lone client never waits for it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Instant;

use tokio::sync::oneshot;

use super::index::{self, Entry, Index, RecRef, Segs, Span};
use super::read::Readers;
use super::record::{self, HEADER_LEN, MESSAGE_PREFIX};
use super::segment::{self, Active};
use super::{Envelope, MessageBytes, MessageId, SpoolError, SpoolOptions};

/// Upper bound on one batch, so a flood cannot delay the first waiter indefinitely.
const MAX_BATCH: usize = 4096;
/// How often a waiting batch looks whether the messages it waits for are still arriving.
const GATHER_POLL: std::time::Duration = std::time::Duration::from_micros(100);
/// Messages up to this size are written together with their record head in one call.
const COALESCE_MAX: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub file_syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub stored: AtomicU64,
    pub commits: AtomicU64,
    pub max_commit: AtomicU64,
    pub relocated: AtomicU64,
    pub reclaimed: AtomicU64,
}

/// State shared by the `Spool` handles and the committer thread.
pub(crate) struct Shared {
    pub dir: std::path::PathBuf,
    pub log: std::path::PathBuf,
    pub index: RwLock<Index>,
    pub stats: Stats,
    pub readers: Readers,
    /// Stores handed to the committer and not answered yet.
    pub in_flight: AtomicI64,
    /// Messages being received whose store has not been handed over yet (live [`super::Arrival`]s).
    pub arriving: AtomicI64,
    /// Held by a test to make the committer wait before it takes a batch.
    #[cfg(test)]
    pub gate: std::sync::Mutex<()>,
}

impl Shared {
    pub(crate) fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) type Reply = oneshot::Sender<Result<(), SpoolError>>;

pub(crate) enum Op {
    Store {
        envelope: Envelope,
        json: Vec<u8>,
        message: MessageBytes,
        crc: u32,
        reply: Reply,
    },
    Update {
        envelope: Envelope,
        json: Vec<u8>,
        reply: Reply,
    },
    Remove {
        id: MessageId,
        reply: Reply,
    },
    /// Answered once everything appended before it is durable.
    Sync {
        reply: Reply,
    },
}

/// What the committer thread owns.
pub(crate) struct Committer {
    pub shared: Arc<Shared>,
    pub opts: SpoolOptions,
    pub segs: Segs,
    pub active: Option<Active>,
    pub next_seq: u64,
    /// The log directory, for its fsyncs and for free space.
    pub log_dir: File,
    /// Since when the active segment holds appends no fdatasync has covered yet.
    pub dirty: Option<Instant>,
    /// A segment sealed during this batch failed its fdatasync: the batch is not durable.
    pub seal_failed: Option<io::Error>,
    /// The active segment when relocation last failed; it is retried after the next rotation.
    pub relocate_failed: Option<u64>,
    /// The owner lock, released when the thread ends (after its last fdatasync).
    pub _owner: File,
}

/// Pending index changes of the batch being appended; applied once it is durable.
type Overlay = HashMap<MessageId, Option<Entry>>;

/// Adds whatever is queued now to `batch`, up to [`MAX_BATCH`].
fn drain(rx: &mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

pub(crate) fn spawn(
    committer: Committer,
) -> Result<(mpsc::Sender<Op>, std::thread::JoinHandle<()>), SpoolError> {
    let (tx, rx) = mpsc::channel();
    let dir = committer.shared.dir.clone();
    let thread = std::thread::Builder::new()
        .name("spool-commit".into())
        .spawn(move || committer.run(rx))
        .map_err(segment::write_err(&dir))?;
    Ok((tx, thread))
}

fn write_error(path: &std::path::Path, kind: io::ErrorKind, msg: String) -> SpoolError {
    SpoolError::Write {
        path: path.to_path_buf(),
        source: io::Error::new(kind, msg),
    }
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        loop {
            let first = if let Some(since) = self.dirty {
                let left =
                    (since + self.opts.sync_interval).saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(op) => op,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // Updates and removals ride on the next store's fdatasync, or on this.
                        if let Err(e) = self.sync_active() {
                            tracing::error!(dir = %self.shared.log.display(), error = %e,
                                "spool: deferred fdatasync failed");
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                }
            };
            #[cfg(test)]
            let gate = self.shared.gate.lock().unwrap_or_else(|e| e.into_inner());
            let mut batch = vec![first];
            drain(&rx, &mut batch);
            self.gather(&rx, &mut batch);
            #[cfg(test)]
            drop(gate);
            self.commit(batch);
        }
        // Every handle is gone: make what was appended durable before the owner lock goes.
        if let Err(e) = self.sync_active() {
            tracing::error!(dir = %self.shared.log.display(), error = %e, "spool: final fdatasync failed");
        }
        tracing::debug!(dir = %self.shared.dir.display(), "spool committer stopped");
    }

    /// The commit delay: a batch holding a store waits, up to `commit_delay`, while other
    /// messages are still arriving, so that their stores share its fdatasync. It stops as
    /// soon as none is announced any more; with nobody else sending it does not wait at all.
    fn gather(&self, rx: &mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
        if self.opts.commit_delay.is_zero()
            || !batch.iter().any(|op| matches!(op, Op::Store { .. }))
        {
            return;
        }
        let deadline = Instant::now() + self.opts.commit_delay;
        while batch.len() < MAX_BATCH && self.shared.arriving.load(Ordering::Acquire) > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            // An announced message may end without a store (refused, client gone), which
            // sends nothing: look at the count again every so often.
            match rx.recv_timeout(left.min(GATHER_POLL)) {
                Ok(op) => batch.push(op),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        drain(rx, batch);
    }

    fn commit(&mut self, batch: Vec<Op>) {
        let shared = self.shared.clone();
        let stats = &shared.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut space = segment::free_space(&self.log_dir).unwrap_or(u64::MAX);
        let batch_start = self.active.as_ref().map(|a| (a.seq, a.len));
        let mut overlay = Overlay::new();
        let mut answers = Vec::with_capacity(batch.len());
        let (mut stores, mut sync) = (0u64, false);
        for op in batch {
            let (reply, result, is_store) = match op {
                Op::Store {
                    envelope,
                    json,
                    message,
                    crc,
                    reply,
                } => {
                    let r = self.store(&mut overlay, &mut space, envelope, &json, &message, crc);
                    if r.is_ok() {
                        stores += 1;
                        sync = true;
                    }
                    (reply, r, true)
                }
                Op::Update {
                    envelope,
                    json,
                    reply,
                } => (
                    reply,
                    self.update(&mut overlay, &mut space, envelope, &json),
                    false,
                ),
                Op::Remove { id, reply } => {
                    (reply, self.remove(&mut overlay, &mut space, id), false)
                }
                Op::Sync { reply } => {
                    sync = true;
                    (reply, Ok(()), false)
                }
            };
            answers.push((reply, result, is_store));
        }

        let synced = if sync { self.sync_active() } else { Ok(()) };
        let failed = match (synced, self.seal_failed.take()) {
            (Err(e), _) | (Ok(()), Some(e)) => Some(e),
            (Ok(()), None) => None,
        };
        if let Some(e) = &failed {
            tracing::error!(dir = %self.shared.log.display(), error = %e,
                "spool: fdatasync failed; the batch is refused");
            self.abandon_batch(batch_start);
        } else {
            let mut index = shared.index.write().unwrap_or_else(|e| e.into_inner());
            for (id, entry) in overlay {
                index::set(&mut index, &mut self.segs, id, entry);
            }
            drop(index);
            if stores > 0 {
                stats.stored.fetch_add(stores, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.max_commit.fetch_max(stores, Ordering::Relaxed);
            }
        }
        for (reply, result, is_store) in answers {
            let result = match (&failed, result) {
                (Some(e), Ok(())) => Err(write_error(
                    &self.shared.log,
                    e.kind(),
                    format!("fdatasync failed: {e}"),
                )),
                (_, result) => result,
            };
            if is_store {
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
            // The waiter may have gone (client hung up); what is durable stays queued.
            let _ = reply.send(result);
        }
        // A steady stream of updates alone never lets the timer in `run` expire.
        if self
            .dirty
            .is_some_and(|since| since.elapsed() >= self.opts.sync_interval)
        {
            if let Err(e) = self.sync_active() {
                tracing::error!(dir = %self.shared.log.display(), error = %e,
                    "spool: deferred fdatasync failed");
            }
        }
        self.maintain();
    }

    /// After a failed fdatasync nothing appended in this batch may come back at recovery
    /// (its senders are told it failed): cut it off, and continue in a fresh segment since
    /// the state of this one's unsynced pages is unknown.
    fn abandon_batch(&mut self, batch_start: Option<(u64, u64)>) {
        if let (Some(a), Some((seq, len))) = (&self.active, batch_start) {
            if a.seq == seq && a.file.set_len(len).is_ok() {
                if let Some(meta) = self.segs.0.get_mut(&seq) {
                    meta.size = len;
                }
            }
        }
        self.active = None;
        self.dirty = None;
    }

    fn lookup(&self, overlay: &Overlay, id: &MessageId) -> Option<Entry> {
        match overlay.get(id) {
            Some(pending) => pending.clone(),
            None => self.shared.index().get(id).cloned(),
        }
    }

    fn queued(&self, overlay: &Overlay, id: &MessageId) -> bool {
        match overlay.get(id) {
            Some(pending) => pending.is_some(),
            None => self.shared.index().contains_key(id),
        }
    }

    fn store(
        &mut self,
        overlay: &mut Overlay,
        space: &mut u64,
        envelope: Envelope,
        json: &[u8],
        message: &[u8],
        crc: u32,
    ) -> Result<(), SpoolError> {
        let id = envelope.id.clone();
        if self.queued(overlay, &id) {
            return Err(write_error(
                &self.shared.log,
                io::ErrorKind::AlreadyExists,
                format!("message id {id} already spooled"),
            ));
        }
        let head_len = (HEADER_LEN + MESSAGE_PREFIX + json.len()) as u64;
        self.reserve(space, head_len + message.len() as u64)?;
        let entry = self.append_message(envelope, json, message, crc)?;
        overlay.insert(id, Some(entry));
        Ok(())
    }

    /// Appends a Message record (not yet durable) and returns the entry that points at it.
    pub(crate) fn append_message(
        &mut self,
        envelope: Envelope,
        json: &[u8],
        message: &[u8],
        crc: u32,
    ) -> Result<Entry, SpoolError> {
        let head_len = (HEADER_LEN + MESSAGE_PREFIX + json.len()) as u64;
        let msg_len = message.len() as u64;
        let len = head_len + msg_len;
        let id = &envelope.id.0;
        let (seg, start) = self.append(
            len,
            |nonce| record::message_head(nonce, id, json, msg_len, crc),
            message,
        )?;
        Ok(Entry {
            envelope,
            msg: Span {
                seg,
                offset: start + head_len,
                len: msg_len,
                crc,
            },
            msg_rec: RecRef { seg, len },
            env_rec: None,
        })
    }

    fn update(
        &mut self,
        overlay: &mut Overlay,
        space: &mut u64,
        envelope: Envelope,
        json: &[u8],
    ) -> Result<(), SpoolError> {
        let id = envelope.id.clone();
        let old = self
            .lookup(overlay, &id)
            .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
        let len = (HEADER_LEN + json.len()) as u64;
        self.reserve(space, len)?;
        let (seg, _) = self.append(len, |n| record::envelope_record(n, &id.0, json), &[])?;
        let entry = Entry {
            envelope,
            env_rec: Some(RecRef { seg, len }),
            ..old
        };
        overlay.insert(id, Some(entry));
        Ok(())
    }

    fn remove(
        &mut self,
        overlay: &mut Overlay,
        space: &mut u64,
        id: MessageId,
    ) -> Result<(), SpoolError> {
        if !self.queued(overlay, &id) {
            return Err(SpoolError::NotFound(id));
        }
        let len = HEADER_LEN as u64;
        self.reserve(space, len)?;
        self.append(len, |n| record::done_record(n, &id.0), &[])?;
        overlay.insert(id, None);
        Ok(())
    }

    /// Refuses a write the file system has no room for, before it is attempted: a full disk
    /// then fails every write at once, instead of only those that happen to need a new block.
    fn reserve(&self, space: &mut u64, len: u64) -> Result<(), SpoolError> {
        match space.checked_sub(len) {
            Some(left) => {
                *space = left;
                Ok(())
            }
            None => Err(write_error(
                &self.shared.log,
                io::ErrorKind::StorageFull,
                format!("no space left for a {len}-byte record"),
            )),
        }
    }

    /// Appends one record of `len` bytes: the head `encode` makes for the segment's nonce,
    /// then `tail` (message bytes, written straight from where they are, mapped or not).
    /// Returns the segment and the record's offset.
    pub(crate) fn append(
        &mut self,
        len: u64,
        encode: impl FnOnce(u64) -> Vec<u8>,
        tail: &[u8],
    ) -> Result<(u64, u64), SpoolError> {
        let active = self.room(len)?;
        let mut head = encode(active.nonce);
        debug_assert_eq!((head.len() + tail.len()) as u64, len);
        let written = if tail.len() <= COALESCE_MAX {
            head.extend_from_slice(tail);
            active.append(&[&head])
        } else {
            active.append(&[&head, tail])
        };
        match written {
            Ok(start) => {
                let seq = active.seq;
                self.dirty.get_or_insert_with(Instant::now);
                self.segs.grow(seq, len);
                Ok((seq, start))
            }
            Err((e, intact)) => {
                if !intact {
                    tracing::error!(error = %e, "spool: cannot cut off a failed write; sealing the segment");
                    self.seal();
                }
                Err(e)
            }
        }
    }

    /// The active segment with room for `len` more bytes: rotates past the segment size (a
    /// record bigger than that gets a segment of its own) and creates the next segment.
    fn room(&mut self, len: u64) -> Result<&mut Active, SpoolError> {
        let header = record::SEGMENT_HEADER_LEN as u64;
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.len > header && a.len.saturating_add(len) > self.opts.segment_size)
        {
            self.seal();
        }
        if self.active.is_none() {
            let active = Active::create(&self.shared.log, self.next_seq)?;
            self.next_seq += 1;
            // The new name must be durable before any record in the file is acknowledged.
            if let Err(e) = self.log_dir.sync_all() {
                let _ = std::fs::remove_file(&active.path);
                return Err(segment::write_err(&self.shared.log)(e));
            }
            self.shared.stats.dir_syncs.fetch_add(1, Ordering::Relaxed);
            self.segs.grow(active.seq, active.len);
            self.dirty.get_or_insert_with(Instant::now);
            self.active = Some(active);
        }
        Ok(self.active.as_mut().expect("just made"))
    }

    /// Stops appending to the active segment, making what is in it durable first.
    pub(crate) fn seal(&mut self) {
        if let Some(active) = self.active.take() {
            if self.dirty.is_some() {
                match active.file.sync_data() {
                    Ok(()) => {
                        self.shared.stats.file_syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => self.seal_failed = Some(e),
                }
            }
            self.dirty = None;
        }
    }

    /// fdatasync of the active segment if anything was appended since the last one.
    pub(crate) fn sync_active(&mut self) -> io::Result<()> {
        match &self.active {
            Some(active) if self.dirty.is_some() => {
                active.file.sync_data()?;
                self.dirty = None;
                self.shared.stats.file_syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn sync_log_dir(&self) -> Result<(), SpoolError> {
        self.log_dir
            .sync_all()
            .map_err(segment::write_err(&self.shared.log))?;
        self.shared.stats.dir_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
