//! The durable queue: every message that got a `250` lives here until each recipient is
//! delivered, bounced or expired.
//!
//! # On-disk layout
//! ```text
//! <spool>/
//!   owner.lock              flock'ed exclusively by the one relay that owns the spool
//!   commit.lock             flock'ed around every batch of renames/unlinks (relay and CLI)
//!   queue/<id>.msg          the message bytes exactly as accepted (no framing)
//!   queue/<id>.env          the envelope record (below); its presence commits the message
//!   queue/<id>.<ext>.<n>.tmp  a write in progress; never valid, removed on start
//!   corrupt/<file>          entries recovery could not trust, moved aside, never deleted
//! ```
//! An envelope record is one line of JSON `{"message_len", "message_crc32", "envelope"}`
//! followed by a trailer line `wasmrelay-env-v1 <json length> <crc32 of json, 8 hex>`.
//! Ids are 21 characters of Crockford base32 (time, sequence, random; see [`MessageId`]) and
//! sort by arrival, so `ls queue/` lists oldest first.
//!
//! # Commit protocol
//! `store`: write `<id>.msg.<n>.tmp` and `<id>.env.<n>.tmp` and fdatasync both (on the
//! blocking pool), then the committer renames the message into place, then the envelope
//! (the commit point), and fsyncs `queue/`. `store` returns after that fsync; that is the
//! moment a `250` may be sent. `update` does the same with the envelope alone and never
//! touches the message file. `remove` unlinks the envelope (un-commit) then the message.
//!
//! Crash states and what `open` does with them:
//! - `*.tmp`: an unfinished write, never acknowledged: removed (`discarded_partial`).
//! - `.msg` without `.env`: the envelope rename never happened (or a removal was half
//!   done): never acknowledged or already finished: removed (`discarded_partial`).
//! - `.env` that fails its trailer check, names another id, or whose `.msg` is missing or
//!   has the wrong length: cannot happen through this code after a completed fsync, so it
//!   is damage; both files are moved to `corrupt/` with a warning (`corrupt`), because the
//!   message may have been acknowledged.
//! - Otherwise the message is recovered into the in-memory index. Message bodies are
//!   checked against their CRC-32 when read ([`Spool::message`]), not at start-up.
//!
//! # Group commit
//! Temp files are fsynced concurrently by the writers themselves; a single committer thread
//! drains every write that is ready, does all the renames, and fsyncs the directory once for
//! the batch. See `commit.rs`.
//!
//! # Other processes
//! [`read_queue`], [`read_envelope`] and [`read_message`] read a spool without changing it;
//! [`delete_by_id`] removes a message under the commit lock. All are safe while a relay runs.

mod bytes;
mod commit;
mod format;
mod id;
mod readonly;
mod recover;
#[cfg(test)]
mod tests;
mod write;

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use bytes::MessageBytes;
use commit::{Op, Shared, Stats};
use format::EnvelopeRecord;
use readonly::blocking;
pub use readonly::{delete_by_id, read_envelope, read_message, read_queue};

/// Now, in the unit envelope times use (Unix seconds).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A spooled message's id: sortable by arrival, safe as a file name, shown in the `250` reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub String);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    Pending,
    Delivered,
    Bounced,
    Expired,
    /// Discarded by a route decision: neither delivered nor bounced.
    Dropped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// RFC 3461 NOTIFY values as given, upper-cased; empty means the default (FAILURE).
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub orcpt: Option<String>,
    pub status: RecipientStatus,
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next delivery attempt (0 = as soon as possible).
    #[serde(default)]
    pub next_attempt: u64,
    /// The last reply or error seen for this recipient, for `queue show` and DSNs.
    #[serde(default)]
    pub last_reply: Option<String>,
}

impl Recipient {
    pub fn pending(address: String) -> Self {
        Recipient {
            address,
            notify: vec![],
            orcpt: None,
            status: RecipientStatus::Pending,
            attempts: 0,
            next_attempt: 0,
            last_reply: None,
        }
    }
}

/// Who handed the message to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub helo: String,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub tls: bool,
    /// Why (or whether) the relay vouches for the content, decided at reception.
    #[serde(default)]
    pub origin: Origin,
}

impl ClientInfo {
    /// Whether delivery may put our DKIM signature on this message: only on mail we know
    /// the author of. An envelope written before `origin` existed reads as
    /// [`Origin::Outsider`], unless it records an AUTH user (set only after a successful AUTH).
    pub fn may_sign(&self) -> bool {
        self.origin != Origin::Outsider || self.auth_user.is_some()
    }
}

/// Where a message came from, as far as trusting its content goes. Recorded in the envelope
/// at reception, because delivery (DKIM signing) cannot ask the session any more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// An unauthenticated client outside `relay_networks`: anyone on the internet sending to
    /// our local domains. Its `From:` is a claim, never signed. Also what an envelope without
    /// the field means: the safe reading of a record that cannot say.
    #[default]
    Outsider,
    /// A session that passed SMTP AUTH.
    Authenticated,
    /// A client in `relay.relay_networks`.
    RelayNetwork,
    /// The relay itself: delivery status notifications.
    Local,
}

/// Everything about a message except its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MessageId,
    /// Unix seconds.
    pub received_at: u64,
    /// `None` is the null sender `<>`.
    pub mail_from: Option<String>,
    pub recipients: Vec<Recipient>,
    pub client: ClientInfo,
    #[serde(default)]
    pub eight_bit: bool,
    #[serde(default)]
    pub smtputf8: bool,
    /// RFC 3461 RET=HDRS.
    #[serde(default)]
    pub ret_headers_only: bool,
    #[serde(default)]
    pub envid: Option<String>,
    /// Size of the message bytes.
    pub size: u64,
    /// The listener that received it (its name, or its address when unnamed).
    #[serde(default)]
    pub listener: String,
    /// Annotations set by plugins at reception, for the delivery-stage hooks.
    #[serde(default)]
    pub annotations: Vec<(String, String)>,
    /// The W3C `traceparent` of the transaction that received it, when traces are exported:
    /// delivery spans continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
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
    pub discarded_partial: usize,
    /// Entries moved to `corrupt/` for an operator to look at.
    pub corrupt: usize,
}

/// Counters for tests and metrics: fsyncs per message is `(file_syncs + dir_syncs) / ops`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// fdatasync calls on message and envelope temp files.
    pub file_syncs: u64,
    /// fsync calls on the queue directory (one per batch that changed it).
    pub dir_syncs: u64,
    /// Batches the committer ran.
    pub batches: u64,
    /// Stores, updates and removals committed or refused.
    pub ops: u64,
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Op>,
    /// Keeps the owner lock for as long as any handle lives.
    _owner: std::fs::File,
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir`, recovering complete messages and
    /// removing partial writes. Fails if another relay owns the spool.
    pub async fn open(dir: &Path) -> Result<(Spool, RecoveryReport), SpoolError> {
        let dir = dir.to_path_buf();
        let queue = dir.join(format::QUEUE_DIR);
        let recovered = {
            let dir = dir.clone();
            blocking(move || recover::recover(&dir)).await?
        };
        let shared = Arc::new(Shared {
            dir,
            queue,
            index: RwLock::new(recovered.index),
            stats: Stats::default(),
            seq: AtomicU64::new(1),
        });
        let tx = commit::spawn(shared.clone())?;
        let spool = Spool {
            inner: Arc::new(Inner {
                shared,
                tx,
                _owner: recovered.owner,
            }),
        };
        Ok((spool, recovered.report))
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
        SpoolStats {
            file_syncs: s.file_syncs.load(Ordering::Relaxed),
            dir_syncs: s.dir_syncs.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
        }
    }

    /// Messages queued now and the arrival (Unix seconds) of the oldest, for the metrics.
    pub fn depth(&self) -> (usize, Option<u64>) {
        let index = self.index();
        let oldest = index.values().map(|e| e.record.envelope.received_at).min();
        (index.len(), oldest)
    }

    /// Writes message and envelope durably; returns once both are fsynced.
    ///
    /// If the caller stops waiting (client hangs up), the write still completes and the
    /// message stays queued: durable mail is never dropped, at worst delivered twice.
    pub async fn store(
        &self,
        envelope: &Envelope,
        message: MessageBytes,
    ) -> Result<(), SpoolError> {
        let shared = self.inner.shared.clone();
        let id = self.checked_id(&envelope.id)?;
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let envelope = envelope.clone();
        let tx = self.inner.tx.clone();
        let (reply, answer) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let msg_tmp = format::tmp_path(&shared.queue, &id.0, format::MSG_EXT, seq);
            let env_tmp = format::tmp_path(&shared.queue, &id.0, format::ENV_EXT, seq);
            let record = EnvelopeRecord {
                message_len: message.len() as u64,
                message_crc32: crc32fast::hash(&message),
                envelope,
            };
            let written = write::write_synced(&msg_tmp, &message, &shared.stats).and_then(|()| {
                write::write_synced(&env_tmp, &format::encode(&record), &shared.stats)
                    .inspect_err(|_| write::remove_quietly(&msg_tmp))
            });
            if let Err(e) = written {
                let _ = reply.send(Err(e));
                return;
            }
            let op = Op::Store {
                record,
                msg_tmp,
                env_tmp,
                reply,
            };
            hand_to_committer(&tx, op);
        });
        self.await_commit(answer).await
    }

    /// Envelopes of every queued message, oldest first.
    pub async fn list(&self) -> Vec<Envelope> {
        self.index()
            .values()
            .map(|entry| entry.record.envelope.clone())
            .collect()
    }

    pub async fn envelope(&self, id: &MessageId) -> Result<Envelope, SpoolError> {
        self.index()
            .get(id)
            .map(|entry| entry.record.envelope.clone())
            .ok_or_else(|| SpoolError::NotFound(id.clone()))
    }

    /// The message bytes, checked against the length and CRC-32 recorded at `store`.
    /// `NotFound` if the message was deleted behind the relay's back.
    pub async fn message(&self, id: &MessageId) -> Result<MessageBytes, SpoolError> {
        let record = self
            .index()
            .get(id)
            .map(|entry| entry.record.clone())
            .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
        let queue = self.inner.shared.queue.clone();
        blocking(move || readonly::load_message(&queue, &record).map(MessageBytes::from)).await
    }

    /// Durably replaces the envelope (recipient status after a delivery attempt).
    ///
    /// Concurrent updates of one message land in call order: a slower older update never
    /// overwrites a newer one.
    pub async fn update(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        let shared = self.inner.shared.clone();
        let id = self.checked_id(&envelope.id)?;
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let (message_len, message_crc32) = self
            .index()
            .get(&id)
            .map(|e| (e.record.message_len, e.record.message_crc32))
            .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
        let record = EnvelopeRecord {
            message_len,
            message_crc32,
            envelope: envelope.clone(),
        };
        let tx = self.inner.tx.clone();
        let (reply, answer) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let env_tmp = format::tmp_path(&shared.queue, &id.0, format::ENV_EXT, seq);
            if let Err(e) = write::write_synced(&env_tmp, &format::encode(&record), &shared.stats) {
                let _ = reply.send(Err(e));
                return;
            }
            let op = Op::Update {
                record,
                env_tmp,
                seq,
                reply,
            };
            hand_to_committer(&tx, op);
        });
        self.await_commit(answer).await
    }

    /// Removes a message once every recipient is done. Files already deleted by another
    /// process count as removed.
    pub async fn remove(&self, id: &MessageId) -> Result<(), SpoolError> {
        let id = self.checked_id(id)?;
        let (reply, answer) = oneshot::channel();
        hand_to_committer(&self.inner.tx, Op::Remove { id, reply });
        self.await_commit(answer).await
    }

    fn index(&self) -> RwLockReadGuard<'_, BTreeMap<MessageId, commit::Entry>> {
        self.inner
            .shared
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn checked_id(&self, id: &MessageId) -> Result<MessageId, SpoolError> {
        if id::is_valid(&id.0) {
            Ok(id.clone())
        } else {
            Err(SpoolError::Write {
                path: self.inner.shared.queue.join(&id.0),
                source: io::Error::new(io::ErrorKind::InvalidInput, "invalid message id"),
            })
        }
    }

    async fn await_commit(
        &self,
        answer: oneshot::Receiver<Result<(), SpoolError>>,
    ) -> Result<(), SpoolError> {
        answer.await.unwrap_or_else(|_| {
            Err(SpoolError::Write {
                path: self.inner.shared.queue.clone(),
                source: io::Error::other("spool committer stopped"),
            })
        })
    }
}

/// Sends an op to the committer; if it is gone, cleans up the op's temp files and fails it.
fn hand_to_committer(tx: &mpsc::Sender<Op>, op: Op) {
    if let Err(mpsc::SendError(op)) = tx.send(op) {
        // Dropping the reply makes the waiter report "committer stopped".
        drop(op.abandon());
    }
}
