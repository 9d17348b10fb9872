//! Reading message bytes out of segments for the relay that owns the spool: small messages
//! are read into memory, larger ones are handed out as a slice of a shared mapping of their
//! segment (mapped once, remapped only when a message lies past the end of the mapping of a
//! segment that has grown since), so that delivery sends from the file. Every read is checked
//! against the CRC-32 recorded at `store`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use memmap2::Mmap;

use super::index::Span;
use super::segment::{read_err, seg_path};
use super::{MessageBytes, MessageId, SpoolError};

/// Messages up to this size are read into memory rather than mapped.
const OWNED_MAX: u64 = 256 * 1024;

struct SegFile {
    file: File,
    map: Mutex<Option<Arc<Mmap>>>,
}

/// Open segment files (and their mappings), shared by every reader.
pub(crate) struct Readers {
    log: PathBuf,
    open: Mutex<HashMap<u64, Arc<SegFile>>>,
}

impl Readers {
    pub(crate) fn new(log: PathBuf) -> Readers {
        Readers {
            log,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn segment(&self, seq: u64) -> io::Result<Arc<SegFile>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(&seq) {
            return Ok(f.clone());
        }
        let file = File::open(seg_path(&self.log, seq))?;
        let f = Arc::new(SegFile {
            file,
            map: Mutex::new(None),
        });
        open.insert(seq, f.clone());
        Ok(f)
    }

    /// Drops a deleted segment's handle; mappings already handed out stay valid.
    pub(crate) fn forget(&self, seq: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
    }

    /// The bytes at `span`, checked against its CRC.
    pub(crate) fn read(&self, id: &MessageId, span: &Span) -> Result<MessageBytes, SpoolError> {
        let path = || seg_path(&self.log, span.seg);
        let seg = self.segment(span.seg).map_err(|e| read_err(&path())(e))?;
        let end = span
            .offset
            .checked_add(span.len)
            .ok_or_else(|| corrupt(id, "bad span"))?;
        let bytes = if span.len <= OWNED_MAX {
            let mut buf = vec![0u8; span.len as usize];
            seg.file
                .read_exact_at(&mut buf, span.offset)
                .map_err(|e| read_err(&path())(e))?;
            MessageBytes::from(buf)
        } else {
            let map = seg.covering(end).map_err(|e| read_err(&path())(e))?;
            MessageBytes::mapped(map, span.offset as usize, span.len as usize)
                .ok_or_else(|| corrupt(id, "message past the end of its segment"))?
        };
        if crc32fast::hash(&bytes) != span.crc {
            return Err(corrupt(id, "message checksum mismatch"));
        }
        Ok(bytes)
    }
}

impl SegFile {
    /// A mapping of the segment that reaches at least `end`.
    fn covering(&self, end: u64) -> io::Result<Arc<Mmap>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = map.as_ref().filter(|m| m.len() as u64 >= end) {
            return Ok(m.clone());
        }
        // SAFETY: segments are only ever appended to while the relay runs (the one exception,
        // cutting off a failed append, never reaches below a record that was acknowledged and
        // so never below a message anyone reads); the spool directory is private to the relay.
        let fresh = Arc::new(unsafe { Mmap::map(&self.file)? });
        if (fresh.len() as u64) < end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment shorter than its index says",
            ));
        }
        *map = Some(fresh.clone());
        Ok(fresh)
    }
}

fn corrupt(id: &MessageId, why: &str) -> SpoolError {
    SpoolError::Corrupt {
        id: id.clone(),
        why: why.into(),
    }
}
