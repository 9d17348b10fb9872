//! The committer: one dedicated thread that makes writes visible and durable in batches.
//!
//! Writers fsync their own temp files concurrently (each on a blocking-pool thread), then hand
//! an [`Op`] to this thread. It drains everything queued, takes the commit lock, performs the
//! renames/unlinks in arrival order, fsyncs the queue directory ONCE for the whole batch,
//! updates the in-memory index and only then answers every waiter. While one batch is in its
//! directory fsync the next one accumulates, so the batch size follows the load by itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};

use tokio::sync::oneshot;

use super::format::{self, EnvelopeRecord};
use super::write::{remove_if_present, remove_quietly};
use super::{MessageId, SpoolError};

/// Upper bound on one batch, so a flood cannot delay the first waiter indefinitely.
const MAX_BATCH: usize = 4096;

/// A queued message as the index knows it: the envelope plus what checks the message file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub record: EnvelopeRecord,
}

pub(crate) type Index = RwLock<BTreeMap<MessageId, Entry>>;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub file_syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
}

/// State shared by the `Spool` handles and the committer thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub queue: PathBuf,
    pub index: Index,
    pub stats: Stats,
    /// Orders envelope updates and names temp files.
    pub seq: AtomicU64,
}

pub(crate) type Reply = oneshot::Sender<Result<(), SpoolError>>;

pub(crate) enum Op {
    Store {
        record: EnvelopeRecord,
        msg_tmp: PathBuf,
        env_tmp: PathBuf,
        reply: Reply,
    },
    Update {
        record: EnvelopeRecord,
        env_tmp: PathBuf,
        seq: u64,
        reply: Reply,
    },
    Remove {
        id: MessageId,
        reply: Reply,
    },
}

impl Op {
    /// Gives up on the op: removes its temp files and hands back its reply channel.
    pub(crate) fn abandon(self) -> Reply {
        let (reply, tmps) = match self {
            Op::Store {
                msg_tmp,
                env_tmp,
                reply,
                ..
            } => (reply, vec![msg_tmp, env_tmp]),
            Op::Update { env_tmp, reply, .. } => (reply, vec![env_tmp]),
            Op::Remove { reply, .. } => (reply, vec![]),
        };
        for tmp in &tmps {
            remove_quietly(tmp);
        }
        reply
    }
}

/// What a successful op changes in the index once the batch is durable.
enum Applied {
    Nothing,
    Insert(MessageId, Box<Entry>),
    Drop(MessageId),
}

pub(crate) fn spawn(shared: Arc<Shared>) -> Result<mpsc::Sender<Op>, SpoolError> {
    let lock_path = shared.dir.join(format::COMMIT_LOCK);
    let lock = open_lock(&lock_path)?;
    let (tx, rx) = mpsc::channel();
    let dir = shared.dir.clone();
    std::thread::Builder::new()
        .name("spool-commit".into())
        .spawn(move || run(&shared, &lock, &lock_path, rx))
        .map_err(|source| SpoolError::Write { path: dir, source })?;
    Ok(tx)
}

pub(crate) fn open_lock(path: &Path) -> Result<File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| SpoolError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn run(shared: &Shared, lock: &File, lock_path: &Path, rx: mpsc::Receiver<Op>) {
    // Highest update sequence renamed into place per id, so a slow older update can never
    // overwrite a newer one that overtook it.
    let mut last_seq: HashMap<MessageId, u64> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(shared, lock, lock_path, &mut last_seq, batch);
    }
    tracing::debug!(dir = %shared.dir.display(), "spool committer stopped");
}

fn commit_batch(
    shared: &Shared,
    lock: &File,
    lock_path: &Path,
    last_seq: &mut HashMap<MessageId, u64>,
    batch: Vec<Op>,
) {
    shared.stats.batches.fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .ops
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    if let Err(e) = lock.lock() {
        tracing::error!(path = %lock_path.display(), error = %e, "spool: commit lock failed");
        for op in batch {
            fail_op(op, lock_path, &e);
        }
        return;
    }

    let mut results: Vec<(Reply, Result<Applied, SpoolError>)> = Vec::with_capacity(batch.len());
    let mut stored_now: HashSet<MessageId> = HashSet::new();
    let mut touched = false;
    for op in batch {
        let (reply, result) = match op {
            Op::Store {
                record,
                msg_tmp,
                env_tmp,
                reply,
            } => {
                let r = apply_store(shared, &mut stored_now, record, &msg_tmp, &env_tmp);
                (reply, r)
            }
            Op::Update {
                record,
                env_tmp,
                seq,
                reply,
            } => (reply, apply_update(shared, last_seq, record, &env_tmp, seq)),
            Op::Remove { id, reply } => {
                last_seq.remove(&id);
                (reply, apply_remove(shared, id))
            }
        };
        touched |= matches!(result, Ok(Applied::Insert(..) | Applied::Drop(_)));
        results.push((reply, result));
    }

    let synced = if touched {
        shared.stats.dir_syncs.fetch_add(1, Ordering::Relaxed);
        format::sync_dir(&shared.queue)
    } else {
        Ok(())
    };
    if let Err(e) = &synced {
        tracing::error!(dir = %shared.queue.display(), error = %e, "spool: directory fsync failed");
        // Acknowledgement is impossible; take new messages back out so that nothing the
        // client was told failed gets delivered anyway.
        for (_, result) in &results {
            if let Ok(Applied::Insert(id, _)) = result {
                if stored_now.contains(id) {
                    remove_quietly(&format::env_path(&shared.queue, &id.0));
                    remove_quietly(&format::msg_path(&shared.queue, &id.0));
                }
            }
        }
        let _ = format::sync_dir(&shared.queue);
    }
    let _ = lock.unlock();
    tracing::trace!(
        ops = results.len(),
        synced = synced.is_ok(),
        "spool batch committed"
    );

    let mut index = shared.index.write().unwrap_or_else(|e| e.into_inner());
    for (reply, result) in results {
        let answer = match (result, &synced) {
            (Ok(applied), Ok(())) => {
                apply_to_index(&mut index, applied);
                Ok(())
            }
            (Ok(applied), Err(e)) => {
                // Updates and removals are visible on disk even if not yet durable; keep the
                // index in line with what the directory shows.
                if let Applied::Insert(id, entry) = applied {
                    if !stored_now.contains(&id) {
                        index.insert(id, *entry);
                    }
                } else {
                    apply_to_index(&mut index, applied);
                }
                Err(SpoolError::Write {
                    path: shared.queue.clone(),
                    source: io::Error::new(e.kind(), e.to_string()),
                })
            }
            (Err(e), _) => Err(e),
        };
        // The waiter may have gone (client hung up); what is durable stays queued.
        let _ = reply.send(answer);
    }
}

fn apply_to_index(index: &mut BTreeMap<MessageId, Entry>, applied: Applied) {
    match applied {
        Applied::Nothing => {}
        Applied::Insert(id, entry) => {
            index.insert(id, *entry);
        }
        Applied::Drop(id) => {
            index.remove(&id);
        }
    }
}

fn apply_store(
    shared: &Shared,
    stored_now: &mut HashSet<MessageId>,
    record: EnvelopeRecord,
    msg_tmp: &Path,
    env_tmp: &Path,
) -> Result<Applied, SpoolError> {
    let id = record.envelope.id.clone();
    let msg = format::msg_path(&shared.queue, &id.0);
    let env = format::env_path(&shared.queue, &id.0);
    let exists = stored_now.contains(&id)
        || read_index(shared).contains_key(&id)
        || fs::symlink_metadata(&msg).is_ok();
    if exists {
        remove_quietly(msg_tmp);
        remove_quietly(env_tmp);
        return Err(SpoolError::Write {
            path: msg,
            source: io::Error::new(io::ErrorKind::AlreadyExists, "message id already spooled"),
        });
    }
    // Message first, envelope second: the envelope's rename is the commit point.
    if let Err(source) = fs::rename(msg_tmp, &msg) {
        remove_quietly(msg_tmp);
        remove_quietly(env_tmp);
        return Err(SpoolError::Write { path: msg, source });
    }
    if let Err(source) = fs::rename(env_tmp, &env) {
        remove_quietly(&msg);
        remove_quietly(env_tmp);
        return Err(SpoolError::Write { path: env, source });
    }
    stored_now.insert(id.clone());
    Ok(Applied::Insert(id, Box::new(Entry { record })))
}

fn apply_update(
    shared: &Shared,
    last_seq: &mut HashMap<MessageId, u64>,
    record: EnvelopeRecord,
    env_tmp: &Path,
    seq: u64,
) -> Result<Applied, SpoolError> {
    let id = record.envelope.id.clone();
    let msg = format::msg_path(&shared.queue, &id.0);
    let env = format::env_path(&shared.queue, &id.0);
    if !read_index(shared).contains_key(&id) {
        remove_quietly(env_tmp);
        return Err(SpoolError::NotFound(id));
    }
    // Also covers a `remove` earlier in this batch, whose index change is not applied yet.
    // Deleted behind our back (`queue delete` from another process): do not resurrect the
    // envelope. The commit lock keeps that deletion from interleaving with this check.
    if fs::symlink_metadata(&msg).is_err() {
        remove_quietly(env_tmp);
        remove_quietly(&env);
        tracing::info!(id = %id, "spool: message was deleted externally; dropping it");
        shared
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        return Err(SpoolError::NotFound(id));
    }
    if last_seq.get(&id).is_some_and(|&newer| newer > seq) {
        // A later update already won; this one is obsolete, not failed.
        remove_quietly(env_tmp);
        return Ok(Applied::Nothing);
    }
    if let Err(source) = fs::rename(env_tmp, &env) {
        remove_quietly(env_tmp);
        return Err(SpoolError::Write { path: env, source });
    }
    last_seq.insert(id.clone(), seq);
    Ok(Applied::Insert(id, Box::new(Entry { record })))
}

fn apply_remove(shared: &Shared, id: MessageId) -> Result<Applied, SpoolError> {
    let env = format::env_path(&shared.queue, &id.0);
    let msg = format::msg_path(&shared.queue, &id.0);
    let known = read_index(shared).contains_key(&id);
    // Envelope first: once it is gone the message is no longer queued, whatever happens next.
    let had_env =
        remove_if_present(&env).map_err(|source| SpoolError::Write { path: env, source })?;
    let had_msg =
        remove_if_present(&msg).map_err(|source| SpoolError::Write { path: msg, source })?;
    if !known && !had_env && !had_msg {
        return Err(SpoolError::NotFound(id));
    }
    Ok(Applied::Drop(id))
}

fn read_index(shared: &Shared) -> std::sync::RwLockReadGuard<'_, BTreeMap<MessageId, Entry>> {
    shared.index.read().unwrap_or_else(|e| e.into_inner())
}

fn fail_op(op: Op, path: &Path, e: &io::Error) {
    let _ = op.abandon().send(Err(SpoolError::Write {
        path: path.to_path_buf(),
        source: io::Error::new(e.kind(), e.to_string()),
    }));
}
