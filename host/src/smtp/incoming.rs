//! Message content on its way in, with memory per session bounded whatever the message size.
//!
//! A message is read into memory up to [`SPILL_THRESHOLD`]; past that, everything read so far
//! and everything after goes to `<spool>/incoming/<id>.tmp` (`0600` in a `0700` directory) as
//! it arrives, without fsync: the spool makes the stored copy durable, a spill file is only a
//! buffer. At the end of data a spilled message is mapped ([`MessageBytes::Mapped`]), so the
//! checks that read it (hops, SPF/DKIM/DMARC, plugins) read the page cache, not a heap copy,
//! and its file is unlinked at once: the mapping keeps the content, a crash leaves nothing
//! but files of messages never acknowledged, which [`prepare`] removes at start.
//!
//! Edits of a spilled message (our `Authentication-Results:`, plugin header edits, long-line
//! repair) are written the same way by [`Spill::assemble`]: the new header section from
//! memory, the body copied from the mapping into a new spill file. The header section is
//! capped ([`MAX_HEADER`]) so that header edits always fit in memory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmrelay_codec::data::Sink;
use wasmrelay_codec::reply::{Enhanced, Reply};

use crate::spool::{MessageBytes, MessageId};

/// Largest message kept in memory while it arrives (and after an edit).
pub const SPILL_THRESHOLD: usize = 256 * 1024;
/// Largest header section accepted: header edits are made in memory.
pub const MAX_HEADER: usize = 1024 * 1024;
/// The directory under the spool directory that holds spill files.
pub const INCOMING_DIR: &str = "incoming";
/// How much of a spill file is buffered before a write.
const WRITE_BUFFER: usize = 64 * 1024;

/// Why an incoming message could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error("header section longer than {0} octets")]
    HeaderTooLong(usize),
    #[error("spill file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl IncomingError {
    /// The answer to the end of data: a permanent refusal for the sender's header section,
    /// a temporary one when our disk failed.
    pub fn reply(&self) -> Reply {
        match self {
            IncomingError::HeaderTooLong(max) => Reply::new(
                552,
                Enhanced(5, 3, 4),
                format!("Message header section exceeds {max} octets"),
            ),
            IncomingError::Io { .. } => no_storage_reply(),
        }
    }

    /// Whether the relay, not the sender, is at fault.
    pub fn is_local(&self) -> bool {
        matches!(self, IncomingError::Io { .. })
    }
}

/// The answer when the relay's own storage failed a message.
pub fn no_storage_reply() -> Reply {
    Reply::new(
        452,
        Enhanced(4, 3, 1),
        "Insufficient system storage, try again later",
    )
}

/// Creates `<spool_dir>/incoming` (`0700`) and removes the files a relay that stopped in the
/// middle of a message left there: none of them was ever acknowledged. Called once at start,
/// after the spool is open (and so owned by this process).
pub fn prepare(spool_dir: &Path) -> io::Result<PathBuf> {
    let dir = spool_dir.join(INCOMING_DIR);
    ensure_dir(&dir)?;
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(dir)
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Where one store's incoming messages go past the threshold; `dir` `None` keeps every
/// message in memory (a store without a directory of its own).
#[derive(Debug, Clone)]
pub struct Spill {
    dir: Option<PathBuf>,
    threshold: usize,
}

impl Spill {
    /// Everything in memory.
    pub fn memory() -> Spill {
        Spill {
            dir: None,
            threshold: usize::MAX,
        }
    }

    /// Messages over `threshold` octets go to files in `dir`.
    pub fn to_dir(dir: PathBuf, threshold: usize) -> Spill {
        Spill {
            dir: Some(dir),
            threshold,
        }
    }

    /// An empty buffer for message `id`.
    pub fn buffer(&self, id: &MessageId) -> IncomingBuffer {
        self.named_buffer(id.as_str().to_string())
    }

    /// An empty buffer whose spill file is `<name>.tmp`.
    fn named_buffer(&self, name: String) -> IncomingBuffer {
        IncomingBuffer {
            spill: self.clone(),
            name,
            memory: Vec::new(),
            file: None,
            len: 0,
            error: None,
            header: HeaderScan::default(),
        }
    }

    /// The message made of `pieces` in order: in memory when small, else written to a new
    /// spill file and mapped, so that a large body is copied from one mapping to another
    /// through the page cache and never onto the heap.
    pub fn assemble(
        &self,
        id: &MessageId,
        pieces: &[&[u8]],
    ) -> Result<MessageBytes, IncomingError> {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if self.dir.is_none() || len <= self.threshold {
            return Ok(pieces.concat().into());
        }
        static REWRITES: AtomicU64 = AtomicU64::new(1);
        let n = REWRITES.fetch_add(1, Ordering::Relaxed);
        let write = || {
            let mut buffer = self.named_buffer(format!("{}.{n}", id.as_str()));
            for piece in pieces {
                buffer.spill_write(piece);
            }
            buffer.len = len as u64;
            buffer.header.found = true;
            buffer.finish()
        };
        // Megabytes of file writes: other sessions' tasks move to another worker meanwhile.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(write)
        } else {
            write()
        }
    }
}

/// Finds the empty line that ends the header section as bytes go by: the state is how much of
/// CRLF CRLF was seen last.
#[derive(Debug, Default)]
struct HeaderScan {
    matched: u8,
    found: bool,
}

impl HeaderScan {
    /// Scans `bytes`, which start at offset `at` of the message, while the end is not found
    /// and within `MAX_HEADER`.
    fn scan(&mut self, bytes: &[u8], at: u64) {
        let room = (MAX_HEADER as u64).saturating_sub(at) as usize;
        for &b in &bytes[..bytes.len().min(room)] {
            self.matched = match (b, self.matched) {
                (b'\r', 2) => 3,
                (b'\r', _) => 1,
                (b'\n', 1) => 2,
                (b'\n', 3) => {
                    self.found = true;
                    return;
                }
                _ => 0,
            };
        }
    }
}

/// One message as it arrives: the DATA reader or BDAT checker writes into it, in memory
/// until the threshold, then into its spill file. Dropped before [`IncomingBuffer::finish`]
/// (refused, connection lost), it removes its file.
pub struct IncomingBuffer {
    spill: Spill,
    name: String,
    memory: Vec<u8>,
    file: Option<(BufWriter<File>, PathBuf)>,
    len: u64,
    /// The first write error; nothing more is written after it.
    error: Option<IncomingError>,
    header: HeaderScan,
}

impl std::fmt::Debug for IncomingBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingBuffer")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("spilled", &self.file.is_some())
            .finish()
    }
}

impl Sink for IncomingBuffer {
    fn put(&mut self, bytes: &[u8]) {
        if !self.header.found {
            self.header.scan(bytes, self.len);
        }
        self.len += bytes.len() as u64;
        if !self.header.found && self.len > MAX_HEADER as u64 {
            // Refused at the end whatever follows: keep nothing more.
            self.discard_file();
            self.memory = Vec::new();
            return;
        }
        let in_memory = self.file.is_none() && self.error.is_none();
        if in_memory && self.memory.len() + bytes.len() <= self.spill.threshold {
            self.memory.extend_from_slice(bytes);
        } else if self.spill.dir.is_some() {
            self.spill_write(bytes);
        } else {
            self.memory.extend_from_slice(bytes);
        }
    }
}

impl IncomingBuffer {
    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the message went to a file.
    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Writes `bytes` to the spill file, opening it (with what is in memory) first.
    fn spill_write(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.try_spill_write(bytes) {
            self.discard_file();
            self.memory = Vec::new();
            self.error = Some(e);
        }
    }

    fn try_spill_write(&mut self, bytes: &[u8]) -> Result<(), IncomingError> {
        if self.file.is_none() {
            let (file, path) = self.create()?;
            tracing::debug!(path = %path.display(), "message moves to a spill file");
            self.file = Some((BufWriter::with_capacity(WRITE_BUFFER, file), path));
            let memory = std::mem::take(&mut self.memory);
            self.write_file(&memory)?;
        }
        self.write_file(bytes)
    }

    fn write_file(&mut self, bytes: &[u8]) -> Result<(), IncomingError> {
        let Some((writer, path)) = self.file.as_mut() else {
            return Ok(());
        };
        writer.write_all(bytes).map_err(|source| IncomingError::Io {
            path: path.clone(),
            source,
        })
    }

    /// A new spill file, `0600`; creates the directory if it is missing.
    fn create(&self) -> Result<(File, PathBuf), IncomingError> {
        let dir = self.spill.dir.as_deref().unwrap_or(Path::new("."));
        let path = dir.join(format!("{}.tmp", self.name));
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => ensure_dir(dir).and_then(|()| open()),
            other => other,
        };
        file.map(|f| (f, path.clone()))
            .map_err(|source| IncomingError::Io { path, source })
    }

    fn discard_file(&mut self) {
        if let Some((_, path)) = self.file.take() {
            remove_quietly(&path);
        }
    }

    /// The message, once its end was read: in memory, or mapped from its spill file (which
    /// is unlinked here; the mapping keeps the content until the last clone is dropped).
    pub fn finish(mut self) -> Result<MessageBytes, IncomingError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if !self.header.found && self.len > MAX_HEADER as u64 {
            return Err(IncomingError::HeaderTooLong(MAX_HEADER));
        }
        let Some((writer, path)) = self.file.take() else {
            return Ok(std::mem::take(&mut self.memory).into());
        };
        let mapped = map(writer).map_err(|source| IncomingError::Io {
            path: path.clone(),
            source,
        });
        remove_quietly(&path);
        mapped
    }
}

/// Flushes `writer` and maps its file.
fn map(writer: BufWriter<File>) -> io::Result<MessageBytes> {
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    // SAFETY: the file was created (O_EXCL, 0600, in a 0700 directory) and written by this
    // buffer alone, is complete, and is unlinked right after: nothing else writes or
    // truncates it while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let len = map.len();
    MessageBytes::mapped(Arc::new(map), 0, len)
        .ok_or_else(|| io::Error::other("mapping shorter than the file"))
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove spill file");
        }
    }
}

impl Drop for IncomingBuffer {
    fn drop(&mut self) {
        self.discard_file();
    }
}

#[cfg(test)]
mod tests;
