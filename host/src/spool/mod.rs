//! The durable queue: every message that got a `250` lives here until each recipient is
//! delivered, bounced or expired.
//!
//! # On-disk layout
//! ```text
//! <spool>/
//!   owner.lock              flock'ed exclusively by the one process that owns the spool
//!   log/<16 hex seq>.seg    the segment log, appended to in sequence order
//!   corrupt/<file>          segments (or old-layout files) recovery could not trust, never deleted
//! ```
//! Directories are `0700`, files `0600`: mail is private.
//!
//! A segment starts with a 16-byte header (`wrlog\0\0\x01` and a random 64-bit nonce), then
//! records back to back. A record is an 88-byte header (magic `WRrc`, kind, id length, the
//! payload length, the payload's CRC-32, the header's own CRC-32 seeded with the segment's
//! nonce, the id zero-padded to 64 bytes) and its payload:
//! - **Message**: envelope JSON length and message CRC-32 (u32 LE each), the envelope JSON,
//!   then the message bytes exactly as accepted. One record: the message is queued.
//! - **Envelope**: a full replacement envelope (JSON), after a delivery attempt.
//! - **Done**: empty; the message is finished (delivered, bounced, expired or deleted).
//!
//! The active segment is rotated once it passes [`SpoolOptions::segment_size`] (64 MiB); a
//! message bigger than that gets a segment of its own. Ids are 21 characters of Crockford
//! base32 (time, sequence, random; see [`MessageId`]) and sort by arrival.
//!
//! # Durability rules
//! One committer thread owns the active segment (see `commit.rs`). It drains every queued
//! op, appends them, and runs ONE fdatasync for the batch, then updates the index and
//! answers every waiter. A new segment's directory entry is fsynced before anything in it
//! is acknowledged, and a segment is fdatasynced before the next one is started.
//! - `store` returns only after the fdatasync that covers its record, and so after
//!   everything appended before it: that is the moment a `250` may be sent.
//! - `update` and `remove` return once their record is appended (a full disk or an I/O error
//!   is still reported), without waiting for an fdatasync of their own: they ride on the
//!   next store's, or on one at most [`SpoolOptions::sync_interval`] (50 ms) later, or on
//!   the last one when the spool is closed (every handle dropped, or [`Spool::sync`]). A
//!   crash can lose the last of them; the message then comes back with an older envelope
//!   and is delivered again to recipients already done, which SMTP allows (at least once).
//! - A write the file system has no room for (`statvfs`) is refused before it is attempted.
//! - If an fdatasync fails, no op of its batch is acknowledged; the batch is cut off the
//!   segment and writing continues in a fresh one.
//!
//! # Recovery (`open`)
//! Segments are replayed in order: a Message record queues, an Envelope record replaces,
//! a Done record removes; later wins. A torn or bad record that runs to the end of the LAST
//! segment is an unfinished batch that was never acknowledged: it is cut off
//! (`discarded_partial`). A bad record anywhere else is damage: every record of that segment
//! that checks is kept (the queued messages whose current records are there are re-appended,
//! its Done records too), then the segment is moved to `corrupt/` (`corrupt`) with a
//! warning. After damage the scan resynchronises on the next record that checks; header
//! CRCs are seeded with the segment's nonce, so message content that looks like a record is
//! never taken for one. A spool in the previous layout (`queue/<id>.msg` + `.env`) is
//! imported into the log once and its files removed.
//!
//! # Reclaiming
//! A segment is deleted when no queued message has its Message record or its latest Envelope
//! record there AND every older segment is already gone, so a Done record never outlives the
//! Message record it finishes; the directory is fsynced after the unlinks. When the oldest
//! segment is sealed and less than a quarter of it is still live, its live messages are
//! re-appended (current envelope and bytes) and made durable, so that one long-deferred
//! message does not keep everything after it on disk.
//!
//! # Reading
//! The index maps each id to its envelope and where its bytes are (segment, offset, length,
//! CRC-32). [`Spool::message`] reads small messages into memory and hands out larger ones as
//! a slice of a shared mapping of their segment, checked against the CRC on every read.
//!
//! # Other processes
//! [`read_queue`], [`read_envelope`] and [`read_message`] scan the segments read-only and are
//! safe while a relay runs. [`delete_by_id`] works only when no relay owns the spool; with
//! one running, deletion goes through the relay.

mod bytes;
mod commit;
mod envelope;
mod id;
mod index;
mod legacy;
mod read;
mod readonly;
mod reclaim;
mod record;
mod recover;
mod segment;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_log;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::oneshot;

pub use bytes::MessageBytes;
use commit::{Op, Shared};
pub use envelope::{ClientInfo, Envelope, MessageId, Origin, Recipient, RecipientStatus};
use readonly::blocking;
pub use readonly::{delete_by_id, read_envelope, read_message, read_queue};

/// Now, in the unit envelope times use (Unix seconds).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Disk full, permission, I/O: the message was not stored and must not be acknowledged.
    #[error("spool write failed for {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool read failed for {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spooled message {0} not found")]
    NotFound(MessageId),
    #[error("spooled message {id} is corrupt: {why}")]
    Corrupt { id: MessageId, why: String },
}
/// What `open` found on disk.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub recovered: usize,
    /// Unfinished writes cut off (never acknowledged).
    pub discarded_partial: usize,
    /// Damaged records (their segments moved to `corrupt/` for an operator to look at).
    pub corrupt: usize,
    /// Messages imported from the previous layout.
    pub migrated: usize,
}

/// Counters since `open`, for tests, benchmarks and metrics. Fsyncs per message is
/// `(file_syncs + dir_syncs) / stored`; messages per group commit is `stored / commits`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// fdatasync calls on segments.
    pub file_syncs: u64,
    /// fsync calls on the log directory (new segments, deleted segments).
    pub dir_syncs: u64,
    /// Batches the committer ran.
    pub batches: u64,
    /// Stores, updates, removals and sync requests handled.
    pub ops: u64,
    /// Messages stored (acknowledged).
    pub stored: u64,
    /// fdatasyncs that acknowledged at least one store.
    pub commits: u64,
    /// The most stores one fdatasync acknowledged.
    pub max_commit: u64,
    /// Messages re-appended out of old segments.
    pub relocated: u64,
    /// Segments deleted.
    pub reclaimed: u64,
}

/// Tuning of the log; the defaults suit a relay.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Size past which the active segment is sealed and a new one started.
    pub segment_size: u64,
    /// How long a batch holding a store may wait for messages still arriving in other
    /// sessions (announced with [`Spool::announce`]), so that they share its fdatasync. Zero
    /// commits what is queued at once: concurrent stores still share an fdatasync, since
    /// they queue up while one runs, but on a fast disk few do.
    pub commit_delay: Duration,
    /// Longest time an appended update or removal waits for an fdatasync when no store
    /// comes to carry it.
    pub sync_interval: Duration,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            segment_size: 64 << 20,
            commit_delay: DEFAULT_COMMIT_DELAY,
            sync_interval: Duration::from_millis(50),
        }
    }
}

/// The default [`SpoolOptions::commit_delay`]; `[spool] commit_delay` in the config.
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(1);

/// A message on its way to [`Spool::store`]: while one is alive, a batch may wait for it
/// (up to the commit delay) instead of running its fdatasync without it. Drop it right before
/// the store, or when the message will not be stored after all.
#[must_use = "a message counts as arriving only while its Arrival lives"]
pub struct Arrival(Option<Arc<Shared>>);

impl Arrival {
    /// An arrival no batch waits for (stores without a commit delay).
    pub fn none() -> Arrival {
        Arrival(None)
    }
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Arrival"
        } else {
            "Arrival(none)"
        })
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.arriving.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Messages bigger than this have their CRC computed on the blocking pool.
const CRC_INLINE_MAX: usize = 256 * 1024;

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Op>>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// Closing: the committer makes everything appended durable, then releases the owner
    /// lock; waiting for it means a reopen right after sees all of it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.committer.take() {
            let _ = thread.join();
        }
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir`, recovering every queued message and
    /// cutting off unfinished writes. Fails if another process owns the spool.
    pub async fn open(dir: &Path) -> Result<(Spool, RecoveryReport), SpoolError> {
        Spool::open_with(dir, SpoolOptions::default()).await
    }

    /// [`Spool::open`] with non-default [`SpoolOptions`].
    pub async fn open_with(
        dir: &Path,
        options: SpoolOptions,
    ) -> Result<(Spool, RecoveryReport), SpoolError> {
        let dir = dir.to_path_buf();
        let (committer, report) = blocking(move || recover::open(&dir, options)).await?;
        let shared = committer.shared.clone();
        let (tx, thread) = commit::spawn(committer)?;
        let spool = Spool {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                committer: Some(thread),
            }),
        };
        Ok((spool, report))
    }

    /// A fresh, unique id.
    pub fn new_id(&self) -> MessageId {
        id::generate()
    }

    /// The spool directory this handle owns.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Counters since `open`.
    pub fn stats(&self) -> SpoolStats {
        let s = &self.inner.shared.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        SpoolStats {
            file_syncs: get(&s.file_syncs),
            dir_syncs: get(&s.dir_syncs),
            batches: get(&s.batches),
            ops: get(&s.ops),
            stored: get(&s.stored),
            commits: get(&s.commits),
            max_commit: get(&s.max_commit),
            relocated: get(&s.relocated),
            reclaimed: get(&s.reclaimed),
        }
    }

    /// Messages queued now and the arrival (Unix seconds) of the oldest, for the metrics.
    pub fn depth(&self) -> (usize, Option<u64>) {
        let index = self.inner.shared.index();
        let oldest = index.values().map(|e| e.envelope.received_at).min();
        (index.len(), oldest)
    }

    /// Announces a message that is being received and will likely be stored soon.
    pub fn announce(&self) -> Arrival {
        let shared = &self.inner.shared;
        shared.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(Some(shared.clone()))
    }

    /// Writes message and envelope durably (one record); returns once they are fdatasynced.
    ///
    /// A mapped message is written straight from its mapping. If the caller stops waiting
    /// (client hangs up), the write still completes and the message stays queued: durable
    /// mail is never dropped, at worst delivered twice.
    pub async fn store(
        &self,
        envelope: &Envelope,
        message: MessageBytes,
    ) -> Result<(), SpoolError> {
        self.checked_id(&envelope.id)?;
        let json = serde_json::to_vec(envelope).expect("an envelope serializes");
        let crc = if message.len() > CRC_INLINE_MAX {
            let m = message.clone();
            blocking(move || Ok(crc32fast::hash(&m))).await?
        } else {
            crc32fast::hash(&message)
        };
        let (reply, answer) = oneshot::channel();
        let op = Op::Store {
            envelope: envelope.clone(),
            json,
            message,
            crc,
            reply,
        };
        if self.send(op) {
            // After the send, so that a count of N means N stores are queued; the committer
            // may answer first and take the count below zero for a moment.
            self.inner.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        self.await_commit(answer).await
    }

    /// Envelopes of every queued message, oldest first.
    pub async fn list(&self) -> Vec<Envelope> {
        self.inner
            .shared
            .index()
            .values()
            .map(|entry| entry.envelope.clone())
            .collect()
    }

    pub async fn envelope(&self, id: &MessageId) -> Result<Envelope, SpoolError> {
        self.inner
            .shared
            .index()
            .get(id)
            .map(|entry| entry.envelope.clone())
            .ok_or_else(|| SpoolError::NotFound(id.clone()))
    }

    /// The message bytes (mapped from the log when large), checked against the CRC-32
    /// recorded at `store`.
    pub async fn message(&self, id: &MessageId) -> Result<MessageBytes, SpoolError> {
        let shared = self.inner.shared.clone();
        let id = id.clone();
        blocking(move || {
            // A relocation may move the message and delete its old segment between the
            // lookup and the read; the second lookup finds it in its new place.
            let mut attempt = 0;
            loop {
                let span = shared
                    .index()
                    .get(&id)
                    .map(|entry| entry.msg)
                    .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
                match shared.readers.read(&id, &span) {
                    Err(SpoolError::Read { source, .. })
                        if source.kind() == io::ErrorKind::NotFound && attempt == 0 =>
                    {
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    /// Replaces the envelope (recipient status after a delivery attempt). Returns once the
    /// record is appended; it becomes durable with the next fdatasync (see the module docs).
    ///
    /// Updates of one message land in call order.
    pub async fn update(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        self.checked_id(&envelope.id)?;
        let json = serde_json::to_vec(envelope).expect("an envelope serializes");
        let (reply, answer) = oneshot::channel();
        self.send(Op::Update {
            envelope: envelope.clone(),
            json,
            reply,
        });
        self.await_commit(answer).await
    }

    /// Removes a message once every recipient is done. Durable as `update` is.
    pub async fn remove(&self, id: &MessageId) -> Result<(), SpoolError> {
        let id = self.checked_id(id)?;
        let (reply, answer) = oneshot::channel();
        self.send(Op::Remove { id, reply });
        self.await_commit(answer).await
    }

    /// Returns once everything appended so far (updates and removals included) is durable.
    pub async fn sync(&self) -> Result<(), SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Sync { reply });
        self.await_commit(answer).await
    }

    fn checked_id(&self, id: &MessageId) -> Result<MessageId, SpoolError> {
        if id::is_valid(&id.0) {
            Ok(id.clone())
        } else {
            Err(SpoolError::Write {
                path: self.inner.shared.log.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "invalid message id"),
            })
        }
    }

    /// Hands an op to the committer; `false` if it is gone (the waiter then hears so).
    fn send(&self, op: Op) -> bool {
        self.inner.tx.as_ref().is_some_and(|tx| tx.send(op).is_ok())
    }

    async fn await_commit(
        &self,
        answer: oneshot::Receiver<Result<(), SpoolError>>,
    ) -> Result<(), SpoolError> {
        answer.await.unwrap_or_else(|_| {
            Err(SpoolError::Write {
                path: self.inner.shared.log.clone(),
                source: io::Error::other("spool committer stopped"),
            })
        })
    }
}
