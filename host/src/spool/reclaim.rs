//! Giving space back: deleting segments nothing needs, relocating the few live messages that
//! keep an old segment alive, and (at open) repairing around a damaged segment.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::commit::Committer;
use super::index::{self, Entry};
use super::record::{self, HEADER_LEN};
use super::segment::{self, seg_path};
use super::{MessageId, SpoolError};

impl Committer {
    /// Runs after every batch: reclaims, then relocates out of the oldest segment if it is
    /// sealed and mostly dead.
    pub(crate) fn maintain(&mut self) {
        self.reclaim();
        let Some(seq) = self.relocation_candidate() else {
            return;
        };
        match self.relocate(seq) {
            Ok(0) => self.relocate_failed = self.active.as_ref().map(|a| a.seq),
            Ok(n) => {
                tracing::info!(
                    segment = seq,
                    messages = n,
                    "spool: relocated live messages out of an old segment"
                );
                self.reclaim();
            }
            Err(e) => {
                tracing::warn!(segment = seq, error = %e, "spool: relocation failed; retried after the next segment");
                self.relocate_failed = self.active.as_ref().map(|a| a.seq);
            }
        }
    }

    /// Deletes segments from the oldest on while no queued message has a current record in
    /// them. Oldest first only: a Done record must never outlive the Message record it
    /// finishes, or that message would come back at the next start.
    fn reclaim(&mut self) {
        let active = self.active.as_ref().map(|a| a.seq);
        let mut gone = 0u64;
        while let Some((&seq, meta)) = self.segs.0.first_key_value() {
            if Some(seq) == active || meta.refs > 0 {
                break;
            }
            // Everything appended is durable before anything it supersedes disappears.
            if gone == 0 && self.sync_active().is_err() {
                return;
            }
            let path = seg_path(&self.shared.log, seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "spool: cannot delete a finished segment");
                    break;
                }
            }
            self.segs.0.remove(&seq);
            self.shared.readers.forget(seq);
            gone += 1;
        }
        if gone > 0 {
            if let Err(e) = self.sync_log_dir() {
                tracing::warn!(error = %e, "spool: directory fsync after deleting segments failed");
            }
            self.shared
                .stats
                .reclaimed
                .fetch_add(gone, Ordering::Relaxed);
        }
    }

    /// The oldest segment, if it is sealed, still needed, and less than a quarter live.
    fn relocation_candidate(&self) -> Option<u64> {
        let (&seq, meta) = self.segs.0.first_key_value()?;
        let active = self.active.as_ref().map(|a| a.seq);
        let blocked = self.relocate_failed.is_some() && self.relocate_failed == active;
        (Some(seq) != active
            && meta.refs > 0
            && meta.live.saturating_mul(4) < meta.size
            && !blocked)
            .then_some(seq)
    }

    /// Re-appends every queued message that keeps segment `seq` alive (its current envelope
    /// and its bytes, as one Message record) and makes that durable; afterwards nothing
    /// refers to `seq`. Returns how many moved.
    pub(crate) fn relocate(&mut self, seq: u64) -> Result<u64, SpoolError> {
        let movers: Vec<(MessageId, Entry)> = self
            .shared
            .index()
            .iter()
            .filter(|(_, e)| e.msg.seg == seq || e.env_rec.is_some_and(|r| r.seg == seq))
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        let mut moved = Vec::with_capacity(movers.len());
        for (id, e) in movers {
            let bytes = self.shared.readers.read(&id, &e.msg)?;
            let json = serde_json::to_vec(&e.envelope).expect("an envelope serializes");
            let entry = self.append_message(e.envelope, &json, &bytes, e.msg.crc)?;
            moved.push((id, entry));
        }
        self.sync_active()
            .map_err(segment::write_err(&self.shared.log))?;
        if let Some(e) = self.seal_failed.take() {
            return Err(segment::write_err(&self.shared.log)(e));
        }
        let n = moved.len() as u64;
        let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
        for (id, entry) in moved {
            index::set(&mut index, &mut self.segs, id, Some(entry));
        }
        self.shared.stats.relocated.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// At open, for a segment with damage in it: copies out what it still holds (the queued
    /// messages whose current records are there, and its Done records, so that nothing it
    /// finished comes back), makes that durable, then moves the segment to `corrupt/`.
    pub(crate) fn repair(&mut self, seq: u64, done: &[MessageId]) -> Result<(), SpoolError> {
        self.relocate(seq)?;
        for id in done {
            let len = HEADER_LEN as u64;
            self.append(len, |n| record::done_record(n, &id.0), &[])?;
        }
        self.sync_active()
            .map_err(segment::write_err(&self.shared.log))?;
        let corrupt = self.shared.dir.join(segment::CORRUPT_DIR);
        move_aside(&seg_path(&self.shared.log, seq), &corrupt)?;
        segment::sync_dir(&corrupt).map_err(segment::write_err(&corrupt))?;
        self.sync_log_dir()?;
        self.segs.0.remove(&seq);
        self.shared.readers.forget(seq);
        Ok(())
    }
}

/// Moves `path` into `corrupt_dir`, never overwriting an earlier casualty of the same name.
pub(crate) fn move_aside(path: &Path, corrupt_dir: &Path) -> Result<(), SpoolError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut target = corrupt_dir.join(&*name);
    let mut n = 1;
    while target.exists() {
        target = corrupt_dir.join(format!("{name}.{n}"));
        n += 1;
    }
    fs::rename(path, &target).map_err(segment::write_err(path))
}
