//! Access for a second process (`wasmrelay queue ...`) while a relay may own the spool.
//!
//! Reading takes no lock and changes nothing: envelopes are only ever replaced by rename, so
//! a reader sees either the old or the new one, and a file that vanishes mid-scan was removed.
//! Deleting takes the commit lock so it cannot interleave with a relay's batch.

use std::fs;
use std::io;
use std::path::Path;

use super::format::{self, EnvelopeRecord, Name};
use super::write::{read_optional, remove_if_present};
use super::{Envelope, MessageId, SpoolError};

/// Envelopes of every committed message under spool `dir`, oldest first. Unreadable or
/// corrupt entries are skipped with a warning (the owning relay moves them aside on start).
pub async fn read_queue(dir: &Path) -> Result<Vec<Envelope>, SpoolError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        let queue = dir.join(format::QUEUE_DIR);
        let read_err = |source| SpoolError::Read {
            path: queue.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&queue).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name();
            let Some(Name::Envelope(id)) = name.to_str().map(format::classify) else {
                continue;
            };
            match load_record(&queue, id) {
                Ok(record) => out.push(record.envelope),
                Err(SpoolError::NotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "spool: skipping queue entry"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    })
    .await
}

/// One envelope, read from disk.
pub async fn read_envelope(dir: &Path, id: &MessageId) -> Result<Envelope, SpoolError> {
    let queue = dir.join(format::QUEUE_DIR);
    let id = checked(id)?;
    blocking(move || load_record(&queue, &id.0).map(|r| r.envelope)).await
}

/// One message's bytes, checked against the length and CRC-32 its envelope records.
pub async fn read_message(dir: &Path, id: &MessageId) -> Result<Vec<u8>, SpoolError> {
    let queue = dir.join(format::QUEUE_DIR);
    let id = checked(id)?;
    blocking(move || {
        let record = load_record(&queue, &id.0)?;
        load_message(&queue, &record)
    })
    .await
}

/// Durably deletes a message (envelope first, so it stops being queued at once), safe while
/// a relay runs: the commit lock serializes it with the relay's batches, and the relay
/// re-checks the files before it updates or delivers a message.
pub async fn delete_by_id(dir: &Path, id: &MessageId) -> Result<(), SpoolError> {
    let dir = dir.to_path_buf();
    let id = checked(id)?;
    blocking(move || {
        let queue = dir.join(format::QUEUE_DIR);
        if !queue.is_dir() {
            return Err(SpoolError::Read {
                path: queue,
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        let lock_path = dir.join(format::COMMIT_LOCK);
        let lock = super::commit::open_lock(&lock_path)?;
        lock.lock().map_err(|source| SpoolError::Write {
            path: lock_path.clone(),
            source,
        })?;
        let result = (|| {
            let env = format::env_path(&queue, &id.0);
            let msg = format::msg_path(&queue, &id.0);
            let had_env = remove_if_present(&env)
                .map_err(|source| SpoolError::Write { path: env, source })?;
            let had_msg = remove_if_present(&msg)
                .map_err(|source| SpoolError::Write { path: msg, source })?;
            if !had_env && !had_msg {
                return Err(SpoolError::NotFound(id.clone()));
            }
            format::sync_dir(&queue).map_err(|source| SpoolError::Write {
                path: queue.clone(),
                source,
            })
        })();
        let _ = lock.unlock();
        if result.is_ok() {
            tracing::info!(id = %id, "spool: message deleted");
        }
        result
    })
    .await
}

fn checked(id: &MessageId) -> Result<MessageId, SpoolError> {
    if super::id::is_valid(&id.0) {
        Ok(id.clone())
    } else {
        Err(SpoolError::NotFound(id.clone()))
    }
}

pub(crate) fn load_record(queue: &Path, id: &str) -> Result<EnvelopeRecord, SpoolError> {
    let mid = || MessageId(id.to_string());
    let bytes =
        read_optional(&format::env_path(queue, id))?.ok_or_else(|| SpoolError::NotFound(mid()))?;
    let record = format::decode(&bytes).map_err(|why| SpoolError::Corrupt { id: mid(), why })?;
    if record.envelope.id.0 != id {
        return Err(SpoolError::Corrupt {
            id: mid(),
            why: format!("envelope names id {}", record.envelope.id),
        });
    }
    Ok(record)
}

/// Reads a message file and checks it against its envelope record.
pub(crate) fn load_message(queue: &Path, record: &EnvelopeRecord) -> Result<Vec<u8>, SpoolError> {
    let id = &record.envelope.id;
    let bytes = read_optional(&format::msg_path(queue, &id.0))?
        .ok_or_else(|| SpoolError::NotFound(id.clone()))?;
    if bytes.len() as u64 != record.message_len {
        return Err(SpoolError::Corrupt {
            id: id.clone(),
            why: format!(
                "message file has {} bytes, envelope says {}",
                bytes.len(),
                record.message_len
            ),
        });
    }
    if crc32fast::hash(&bytes) != record.message_crc32 {
        return Err(SpoolError::Corrupt {
            id: id.clone(),
            why: "message checksum mismatch".into(),
        });
    }
    Ok(bytes)
}

/// Runs file-system work off the runtime's worker threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(SpoolError::Read {
            path: "<spool blocking task>".into(),
            source: io::Error::other(e.to_string()),
        }),
    }
}
