//! One-time import of the previous layout (`queue/<id>.msg` + `queue/<id>.env`, one file
//! pair per message) into the log, on the first open by a relay that has the log.
//!
//! The old envelope file is one line of JSON `{"message_len", "message_crc32", "envelope"}`
//! followed by a trailer line `wasmrelay-env-v1 <json length> <crc32 of json, 8 hex>`; its
//! presence committed the message. Committed messages are appended to the log and made
//! durable, then the old files are removed. A crash in between imports again on the next
//! open, skipping ids the log already has.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::commit::Committer;
use super::index;
use super::reclaim::move_aside;
use super::segment::{self, read_err, write_err};
use super::{Envelope, RecoveryReport, SpoolError};

const TRAILER_TAG: &str = "wasmrelay-env-v1";

/// The old envelope file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EnvelopeRecord {
    pub message_len: u64,
    pub message_crc32: u32,
    pub envelope: Envelope,
}

/// What a file name in `queue/` said it was.
#[derive(Debug, PartialEq, Eq)]
enum Name<'a> {
    Message(&'a str),
    Envelope(&'a str),
    Other,
}

fn classify(name: &str) -> Name<'_> {
    match name.rsplit_once('.') {
        Some((id, "msg")) if super::id::is_valid(id) => Name::Message(id),
        Some((id, "env")) if super::id::is_valid(id) => Name::Envelope(id),
        _ => Name::Other,
    }
}

/// `<json>\n<TRAILER_TAG> <json length> <crc32 of json, 8 hex>\n`, as the old layout wrote.
#[cfg(test)]
pub(crate) fn encode(record: &EnvelopeRecord) -> Vec<u8> {
    let mut out = serde_json::to_vec(record).expect("envelope serializes");
    let crc = crc32fast::hash(&out);
    let len = out.len();
    out.extend_from_slice(format!("\n{TRAILER_TAG} {len} {crc:08x}\n").as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<EnvelopeRecord, String> {
    let body = bytes
        .strip_suffix(b"\n")
        .ok_or("missing final newline (truncated)")?;
    let split = body
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or("missing trailer line")?;
    let (json, trailer) = (&body[..split], &body[split + 1..]);
    let trailer = std::str::from_utf8(trailer).map_err(|_| "trailer is not UTF-8")?;
    let mut words = trailer.split(' ');
    if words.next() != Some(TRAILER_TAG) {
        return Err(format!("unknown trailer {trailer:?}"));
    }
    let len: usize = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("bad trailer length")?;
    let crc = words
        .next()
        .and_then(|w| u32::from_str_radix(w, 16).ok())
        .ok_or("bad trailer checksum")?;
    if len != json.len() || crc32fast::hash(json) != crc {
        return Err("envelope checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("invalid envelope JSON: {e}"))
}

/// Checks one old entry; the message bytes if it was committed and intact.
fn check(queue: &Path, id: &str) -> Result<(Envelope, Vec<u8>), String> {
    let env = fs::read(queue.join(format!("{id}.env"))).map_err(|e| e.to_string())?;
    let record = decode(&env)?;
    if record.envelope.id.0 != id {
        return Err(format!("envelope names id {}", record.envelope.id));
    }
    let msg =
        fs::read(queue.join(format!("{id}.msg"))).map_err(|e| format!("message file: {e}"))?;
    if msg.len() as u64 != record.message_len || crc32fast::hash(&msg) != record.message_crc32 {
        return Err("message file does not match its envelope".into());
    }
    Ok((record.envelope, msg))
}

pub(crate) fn migrate(
    dir: &Path,
    c: &mut Committer,
    report: &mut RecoveryReport,
) -> Result<(), SpoolError> {
    let queue = dir.join(segment::LEGACY_QUEUE_DIR);
    if !queue.is_dir() {
        return Ok(());
    }
    let corrupt_dir = dir.join(segment::CORRUPT_DIR);
    let mut ids = Vec::new();
    let mut other = Vec::new();
    let mut msgs: HashMap<String, ()> = HashMap::new();
    for entry in fs::read_dir(&queue).map_err(read_err(&queue))? {
        let entry = entry.map_err(read_err(&queue))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match classify(&name) {
            Name::Envelope(id) => ids.push(id.to_string()),
            Name::Message(id) => {
                msgs.insert(id.to_string(), ());
            }
            // Temp files of unfinished writes, never acknowledged.
            Name::Other => other.push(entry.path()),
        }
    }
    ids.sort();
    let mut imported = Vec::new();
    let mut moved = false;
    for id in &ids {
        msgs.remove(id);
        match check(&queue, id) {
            Ok((envelope, _)) if c.shared.index().contains_key(&envelope.id) => {}
            Ok((envelope, bytes)) => {
                let json = serde_json::to_vec(&envelope).expect("an envelope serializes");
                let crc = crc32fast::hash(&bytes);
                let id = envelope.id.clone();
                imported.push((id, c.append_message(envelope, &json, &bytes, crc)?));
            }
            Err(why) => {
                // Never deleted: this message may have been acknowledged.
                tracing::warn!(id, why = %why, dir = %corrupt_dir.display(),
                    "spool: corrupt entry of the old layout moved aside");
                for ext in ["env", "msg"] {
                    let path = queue.join(format!("{id}.{ext}"));
                    if path.exists() {
                        move_aside(&path, &corrupt_dir)?;
                    }
                }
                report.corrupt += 1;
                moved = true;
            }
        }
    }
    c.sync_active().map_err(write_err(&c.shared.log))?;
    if let Some(e) = c.seal_failed.take() {
        return Err(write_err(&c.shared.log)(e));
    }
    report.migrated = imported.len();
    let mut index = c.shared.index.write().unwrap_or_else(|e| e.into_inner());
    for (id, entry) in imported {
        index::set(&mut index, &mut c.segs, id, Some(entry));
    }
    drop(index);
    // A message file without an envelope was never committed; temp files never finished.
    report.discarded_partial += msgs.len() + other.len();
    let _ = fs::remove_file(dir.join("commit.lock"));
    fs::remove_dir_all(&queue).map_err(write_err(&queue))?;
    segment::sync_dir(dir).map_err(write_err(dir))?;
    if moved {
        segment::sync_dir(&corrupt_dir).map_err(write_err(&corrupt_dir))?;
    }
    tracing::info!(dir = %dir.display(), migrated = report.migrated, "spool: imported the previous queue layout into the log");
    Ok(())
}
