//! Opening a spool: take the owner lock, replay every segment in order, cut off the torn
//! tail of the last one, copy out and move aside damaged ones, import the previous layout,
//! and hand the result to the committer. Runs on a blocking thread.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};

use memmap2::Mmap;

use super::commit::{Committer, Shared, Stats};
use super::index::Replay;
use super::read::Readers;
use super::reclaim::move_aside;
use super::record::{self, Kind};
use super::segment::{self, read_err, seg_path, write_err, Active};
use super::{legacy, MessageId, RecoveryReport, SpoolError, SpoolOptions};

/// Takes the owner lock of the spool at `dir`, or says who has it.
pub(crate) fn lock_owner(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(segment::OWNER_LOCK);
    let owner = segment::open_lock(&path)?;
    match owner.try_lock() {
        Ok(()) => Ok(owner),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Write {
            path,
            source: io::Error::new(
                io::ErrorKind::WouldBlock,
                "spool is owned by another running relay",
            ),
        }),
        Err(TryLockError::Error(e)) => Err(write_err(&path)(e)),
    }
}

pub(crate) fn open(
    dir: &Path,
    opts: SpoolOptions,
) -> Result<(Committer, RecoveryReport), SpoolError> {
    segment::ensure_layout(dir)?;
    let owner = lock_owner(dir)?;
    let log = dir.join(segment::LOG_DIR);
    let mut report = RecoveryReport::default();
    let scanned = scan_log(dir, &opts, &mut report)?;
    let log_dir = File::open(&log).map_err(read_err(&log))?;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        log: log.clone(),
        index: RwLock::new(scanned.replay.index),
        stats: Stats::default(),
        readers: Readers::new(log),
        in_flight: AtomicI64::new(0),
        arriving: AtomicI64::new(0),
        #[cfg(test)]
        gate: std::sync::Mutex::new(()),
    });
    let mut committer = Committer {
        shared,
        opts,
        segs: scanned.replay.segs,
        active: scanned.active,
        next_seq: scanned.next_seq,
        log_dir,
        dirty: None,
        seal_failed: None,
        relocate_failed: None,
        _owner: owner,
    };
    for (seq, done) in scanned.damaged {
        committer.repair(seq, &done)?;
    }
    legacy::migrate(dir, &mut committer, &mut report)?;
    committer.maintain();
    report.recovered = committer.shared.index().len();
    tracing::info!(
        dir = %dir.display(),
        recovered = report.recovered,
        discarded_partial = report.discarded_partial,
        corrupt = report.corrupt,
        migrated = report.migrated,
        "spool recovered"
    );
    Ok((committer, report))
}

struct Scanned {
    replay: Replay,
    active: Option<Active>,
    next_seq: u64,
    /// Segments with damage, and the ids their Done records finish.
    damaged: Vec<(u64, Vec<MessageId>)>,
}

/// What one segment's scan found, once its mapping is gone.
enum Verdict {
    Intact,
    TornTail { at: u64, why: String },
    Damaged { done: Vec<MessageId> },
}

fn scan_log(
    dir: &Path,
    opts: &SpoolOptions,
    report: &mut RecoveryReport,
) -> Result<Scanned, SpoolError> {
    let log = dir.join(segment::LOG_DIR);
    let corrupt_dir = dir.join(segment::CORRUPT_DIR);
    let seqs = segment::list(&log)?;
    let mut replay = Replay::default();
    let mut active = None;
    let mut damaged = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let last = i + 1 == seqs.len();
        let path = seg_path(&log, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(last)
            .open(&path)
            .map_err(read_err(&path))?;
        let len = file.metadata().map_err(read_err(&path))?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the owner lock is held: nobody else writes to the spool.
            Some(unsafe { Mmap::map(&file) }.map_err(read_err(&path))?)
        };
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let nonce = match record::parse_segment_header(bytes) {
            Ok(nonce) => nonce,
            Err(why) if last => {
                // Created but never synced with a record in it: nothing there was acknowledged.
                drop(map);
                fs::remove_file(&path).map_err(write_err(&path))?;
                segment::sync_dir(&log).map_err(write_err(&log))?;
                tracing::info!(path = %path.display(), why = %why, "spool: removed an unfinished segment");
                report.discarded_partial += usize::from(len > 0);
                continue;
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), why = %why, dir = %corrupt_dir.display(),
                    "spool: unreadable segment moved aside");
                drop(map);
                move_aside(&path, &corrupt_dir)?;
                segment::sync_dir(&corrupt_dir).map_err(write_err(&corrupt_dir))?;
                segment::sync_dir(&log).map_err(write_err(&log))?;
                report.corrupt += 1;
                continue;
            }
        };
        let verdict = {
            let (recs, bad) = record::scan(bytes, nonce);
            let mut done = Vec::new();
            let mut senseless = 0;
            for rec in &recs {
                match replay.apply(seq, rec) {
                    Ok(()) if rec.kind == Kind::Done => done.push(MessageId(rec.id.to_string())),
                    Ok(()) => {}
                    Err(why) => {
                        tracing::warn!(path = %path.display(), offset = rec.start, why = %why,
                            "spool: a record that checks but makes no sense");
                        senseless += 1;
                    }
                }
            }
            if last && senseless == 0 && bad.len() == 1 && bad[0].end == len {
                Verdict::TornTail {
                    at: bad[0].start,
                    why: bad[0].why.clone(),
                }
            } else if bad.is_empty() && senseless == 0 {
                Verdict::Intact
            } else {
                for b in &bad {
                    tracing::warn!(path = %path.display(), start = b.start, end = b.end, why = %b.why,
                        "spool: damaged records; the segment is moved to corrupt/ after copying out what checks");
                }
                report.corrupt += bad.len() + senseless;
                Verdict::Damaged { done }
            }
        };
        drop(map);
        let size = match verdict {
            Verdict::Intact => len,
            Verdict::TornTail { at, why } => {
                // The unfinished last batch: never acknowledged, since a store is answered
                // only after the fdatasync that covers it.
                file.set_len(at).map_err(write_err(&path))?;
                file.sync_data().map_err(write_err(&path))?;
                tracing::info!(path = %path.display(), at, why = %why, "spool: cut off an unfinished write");
                report.discarded_partial += 1;
                at
            }
            Verdict::Damaged { done } => {
                replay.segs.0.entry(seq).or_default().size = len;
                damaged.push((seq, done));
                continue;
            }
        };
        replay.segs.0.entry(seq).or_default().size = size;
        if last && size < opts.segment_size {
            active = Some(Active::reopen(&log, seq, nonce, size)?);
        }
    }
    Ok(Scanned {
        replay,
        active,
        next_seq: seqs.last().map_or(1, |s| s + 1),
        damaged,
    })
}
