//! Access for a second process (`wasmrelay queue ...`) while a relay may own the spool.
//!
//! Reading takes no lock and changes nothing: it replays the segments as recovery does, but
//! only reads them (whole, not mapped: the relay may cut a failed write off the end of its
//! active segment meanwhile), and tolerates a torn record at the end of any segment (the
//! relay may be writing it). A segment deleted during the scan held nothing still queued.
//! Deleting needs the spool to itself: with a relay running it goes through the relay.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::index::{Entry, Replay};
use super::record;
use super::segment::{self, read_err, seg_path};
use super::{Envelope, MessageId, Spool, SpoolError};

/// Envelopes of every queued message under spool `dir`, oldest first.
pub async fn read_queue(dir: &Path) -> Result<Vec<Envelope>, SpoolError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        Ok(snapshot(&dir)?
            .index
            .into_values()
            .map(|e| e.envelope)
            .collect())
    })
    .await
}

/// One envelope, read from disk.
pub async fn read_envelope(dir: &Path, id: &MessageId) -> Result<Envelope, SpoolError> {
    let dir = dir.to_path_buf();
    let id = checked(id)?;
    blocking(move || find(&dir, &id).map(|e| e.envelope)).await
}

/// One message's bytes, checked against the CRC-32 recorded when it was stored.
pub async fn read_message(dir: &Path, id: &MessageId) -> Result<Vec<u8>, SpoolError> {
    let dir = dir.to_path_buf();
    let id = checked(id)?;
    blocking(move || {
        // A relay may relocate the message and delete its old segment between the scan and
        // the read; then the next scan finds it in its new place.
        let mut attempts = 0;
        loop {
            let entry = find(&dir, &id)?;
            match read_span(&dir, &id, &entry) {
                Err(SpoolError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempts < 3 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    })
    .await
}

/// Durably deletes a message from a spool no relay is running on. While a relay owns the
/// spool this refuses: the relay's own state would disagree, so the deletion has to go
/// through it (its control socket takes `delete ID`).
pub async fn delete_by_id(dir: &Path, id: &MessageId) -> Result<(), SpoolError> {
    let id = checked(id)?;
    let log = dir.join(segment::LOG_DIR);
    if !log.is_dir() && !dir.join(segment::LEGACY_QUEUE_DIR).is_dir() {
        return Err(read_err(&log)(io::Error::from(io::ErrorKind::NotFound)));
    }
    let (spool, _) = match Spool::open(dir).await {
        Err(SpoolError::Write { path, source }) if source.kind() == io::ErrorKind::WouldBlock => {
            return Err(SpoolError::Write {
                path,
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "a running relay owns this spool: delete the message through it \
                     (its control socket takes `delete ID`)",
                ),
            })
        }
        opened => opened?,
    };
    spool.remove(&id).await?;
    spool.sync().await?;
    tracing::info!(id = %id, "spool: message deleted");
    Ok(())
}

fn checked(id: &MessageId) -> Result<MessageId, SpoolError> {
    if super::id::is_valid(&id.0) {
        Ok(id.clone())
    } else {
        Err(SpoolError::NotFound(id.clone()))
    }
}

fn find(dir: &Path, id: &MessageId) -> Result<Entry, SpoolError> {
    snapshot(dir)?
        .index
        .remove(id)
        .ok_or_else(|| SpoolError::NotFound(id.clone()))
}

fn read_span(dir: &Path, id: &MessageId, entry: &Entry) -> Result<Vec<u8>, SpoolError> {
    let path = seg_path(&dir.join(segment::LOG_DIR), entry.msg.seg);
    let file = fs::File::open(&path).map_err(read_err(&path))?;
    let mut bytes = vec![0u8; entry.msg.len as usize];
    file.read_exact_at(&mut bytes, entry.msg.offset)
        .map_err(read_err(&path))?;
    if crc32fast::hash(&bytes) != entry.msg.crc {
        return Err(SpoolError::Corrupt {
            id: id.clone(),
            why: "message checksum mismatch".into(),
        });
    }
    Ok(bytes)
}

/// Replays every segment under `dir` without changing anything.
fn snapshot(dir: &Path) -> Result<Replay, SpoolError> {
    let log = dir.join(segment::LOG_DIR);
    let seqs = segment::list(&log)?;
    let mut replay = Replay::default();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = seg_path(&log, seq);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_err(&path)(e)),
        };
        let last = i + 1 == seqs.len();
        let nonce = match record::parse_segment_header(&bytes) {
            Ok(nonce) => nonce,
            Err(why) => {
                if !last {
                    tracing::warn!(path = %path.display(), why = %why, "spool: skipping an unreadable segment");
                }
                continue;
            }
        };
        let (recs, bad) = record::scan(&bytes, nonce);
        for rec in &recs {
            if let Err(why) = replay.apply(seq, rec) {
                tracing::warn!(path = %path.display(), offset = rec.start, why = %why, "spool: skipping a record");
            }
        }
        let torn_tail = bad.len() == 1 && bad[0].end == bytes.len() as u64;
        if !bad.is_empty() && !torn_tail {
            tracing::warn!(path = %path.display(), "spool: damaged segment; the relay moves it aside on its next start");
        }
    }
    Ok(replay)
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
