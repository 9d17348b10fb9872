//! The DATA reader: finds the end of data (only `CRLF.CRLF`), removes dot-stuffing and
//! enforces the bare-CR/LF, line-length and size rules on byte slices, with no I/O.

use bytes::BytesMut;

use super::reply::{Enhanced, Reply};

/// Why a message body was refused. The reader keeps consuming to the terminator after an error,
/// so the session stays in sync and answers only once, after the final dot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("bare CR or LF in message")]
    BareLineEnding,
    #[error("line longer than {0} octets")]
    LineTooLong(usize),
    #[error("message larger than {0} octets")]
    TooBig(u64),
}

impl DataError {
    pub fn reply(&self) -> Reply {
        match self {
            DataError::BareLineEnding => Reply::new(
                550,
                Enhanced(5, 6, 0),
                "Message contains bare CR or LF; lines must end with CRLF",
            ),
            DataError::LineTooLong(_) => Reply::new(
                550,
                Enhanced(5, 6, 0),
                "Message contains a line that is too long",
            ),
            DataError::TooBig(max) => Reply::new(
                552,
                Enhanced(5, 3, 4),
                format!("Message exceeds maximum size of {max} octets"),
            ),
        }
    }
}

/// Limits and policy for one message body.
#[derive(Debug, Clone, Copy)]
pub struct DataLimits {
    pub max_size: u64,
    /// Maximum text line length including CRLF (RFC 5321 §4.5.3.1.6: at least 1000).
    pub max_line: usize,
    /// Accept bare CR/LF and rewrite them to CRLF (trusted networks only).
    pub normalize: bool,
}

/// Streaming reader for the DATA phase.
#[derive(Debug)]
pub struct DataReader {
    limits: DataLimits,
}

impl DataReader {
    pub fn new(limits: DataLimits) -> Self {
        DataReader { limits }
    }

    /// Moves message bytes from `buf` into `out` (unstuffed, CRLF line endings). Returns `None`
    /// while the terminator has not been seen; `Some(result)` once it has, with any bytes after
    /// the terminator left in `buf` (pipelined commands).
    pub fn feed(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Option<Result<(), DataError>> {
        let _ = (buf, out, self.limits);
        todo!("data reader")
    }
}

/// Checks BDAT chunks, which carry no dot-stuffing, with the same line rules as DATA. State
/// spans chunk boundaries so a CR at the end of one chunk pairs with an LF at the start of the next.
#[derive(Debug)]
pub struct ChunkChecker {
    limits: DataLimits,
}

impl ChunkChecker {
    pub fn new(limits: DataLimits) -> Self {
        ChunkChecker { limits }
    }

    /// Appends `chunk` to `out` (normalized if allowed) or records the first error.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let _ = (chunk, out, self.limits);
        todo!("chunk checker")
    }

    /// Called after the `LAST` chunk: the first error seen, if any.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), DataError> {
        let _ = out;
        todo!("chunk checker")
    }
}
