//! The DATA reader: finds the end of data (only `CRLF.CRLF`), removes dot-stuffing and
//! enforces the bare-CR/LF, line-length and size rules on byte slices, with no I/O.
//! [`encode_data`] is the other direction, for the SMTP client.

use bytes::{Buf, BytesMut};

use crate::reply::{Enhanced, Reply};

mod encode;
pub use encode::{encode_data, is_eight_bit, DataEncoder};

/// Where the DATA reader and the BDAT checker put message content as they read it: a `Vec`
/// for a message kept in memory, or the relay's incoming buffer, which moves a large message
/// to a file. Infallible by design, so the codec stays free of I/O: a sink that can fail keeps
/// its first error and reports it when the message ends.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

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

/// The line rules DATA and BDAT share: CRLF line ends (or normalized bare ones), the line length
/// and size limits, and the first error, after which nothing more is appended to `out`.
#[derive(Debug)]
struct Body {
    limits: DataLimits,
    /// Octets of the current line so far, without its line end and stuffing dot.
    line_len: usize,
    size: u64,
    error: Option<DataError>,
}

impl Body {
    fn new(limits: DataLimits) -> Self {
        Body {
            limits,
            line_len: 0,
            size: 0,
            error: None,
        }
    }

    fn fail(&mut self, error: DataError) {
        self.error.get_or_insert(error);
    }

    /// Text inside a line (no CR or LF). On a limit breach, the octets that still fit are kept,
    /// so `out` ends at the same octet however the input was split.
    fn text(&mut self, bytes: &[u8], out: &mut impl Sink) {
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        let room = self.limits.max_line.saturating_sub(2 + self.line_len);
        if bytes.len() > room {
            self.append(&bytes[..room], out);
            self.fail(DataError::LineTooLong(self.limits.max_line));
            return;
        }
        self.line_len += bytes.len();
        self.append(bytes, out);
    }

    fn append(&mut self, bytes: &[u8], out: &mut impl Sink) {
        let room = self.limits.max_size - self.size;
        if bytes.len() as u64 > room {
            out.put(&bytes[..room as usize]);
            self.size = self.limits.max_size;
            self.fail(DataError::TooBig(self.limits.max_size));
            return;
        }
        self.size += bytes.len() as u64;
        out.put(bytes);
    }

    fn end_line(&mut self, out: &mut impl Sink) {
        self.line_len = 0;
        if self.error.is_none() {
            self.append(b"\r\n", out);
        }
    }

    /// A CR not followed by LF, or an LF not preceded by CR.
    fn bare_line_end(&mut self, out: &mut impl Sink) {
        if self.limits.normalize {
            self.end_line(out);
        } else {
            self.line_len = 0;
            self.fail(DataError::BareLineEnding);
        }
    }

    /// Ends the message and makes the state ready for the next one.
    fn finish(&mut self) -> Result<(), DataError> {
        self.line_len = 0;
        self.size = 0;
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Where the DATA reader is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// Right after a CRLF, or at the start of the data: the only place a dot means anything.
    LineStart,
    /// A dot at line start: the terminator if CRLF follows, else stuffing to remove.
    Dot,
    /// `.` CR at line start.
    DotCr,
    /// Inside a line, including one that began after a normalized bare line end.
    Text,
    /// A CR inside a line, waiting to see whether LF follows.
    Cr,
}

/// Streaming reader for the DATA phase.
///
/// The message ends only at the first `CRLF.CRLF` (or `.CRLF` as the very first line, since the
/// data begins right after the 354). A dot right after a CRLF is removed (dot-unstuffing).
/// With `normalize`, a bare CR or LF ends a line as if it were CRLF, but the line that follows is
/// plain text: its leading dot is kept and `.` on its own never ends the message, so a bare-LF
/// "terminator" cannot smuggle a second message past a downstream server. Likewise a lone `.`
/// ended by a bare CR or LF is kept as text, however the line began. The reader holds no
/// bytes back in `buf`: a CR that might start a CRLF is remembered in its state. After `Some` it
/// is ready for the next message.
#[derive(Debug)]
pub struct DataReader {
    body: Body,
    state: DataState,
}

impl DataReader {
    pub fn new(limits: DataLimits) -> Self {
        DataReader {
            body: Body::new(limits),
            state: DataState::LineStart,
        }
    }

    /// Moves message bytes from `buf` into `out` (unstuffed, CRLF line endings). Returns `None`
    /// while the terminator has not been seen; `Some(result)` once it has, with any bytes after
    /// the terminator left in `buf` (pipelined commands). After the first error nothing more is
    /// appended: `out` then holds the message up to the offending octet, however it was split.
    pub fn feed(
        &mut self,
        buf: &mut BytesMut,
        out: &mut impl Sink,
    ) -> Option<Result<(), DataError>> {
        use DataState::*;
        let data: &[u8] = buf;
        let body = &mut self.body;
        let mut i = 0;
        let done = loop {
            match self.state {
                LineStart => match data.get(i) {
                    None => break false,
                    Some(b'.') => {
                        i += 1;
                        self.state = Dot;
                    }
                    Some(_) => self.state = Text,
                },
                Dot => match data.get(i) {
                    None => break false,
                    Some(b'\r') => {
                        i += 1;
                        self.state = DotCr;
                    }
                    // `.` then a bare LF: not a terminator, and not stuffing either.
                    Some(b'\n') => {
                        body.text(b".", out);
                        self.state = Text;
                    }
                    Some(_) => self.state = Text,
                },
                DotCr => match data.get(i) {
                    None => break false,
                    Some(b'\n') => {
                        i += 1;
                        break true;
                    }
                    // `.` then a bare CR: the lone dot is text, as above.
                    Some(_) => {
                        body.text(b".", out);
                        body.bare_line_end(out);
                        self.state = Text;
                    }
                },
                Text => match memchr::memchr2(b'\r', b'\n', &data[i..]) {
                    None => {
                        body.text(&data[i..], out);
                        i = data.len();
                        break false;
                    }
                    Some(k) => {
                        body.text(&data[i..i + k], out);
                        i += k + 1;
                        if data[i - 1] == b'\n' {
                            body.bare_line_end(out);
                        } else {
                            self.state = Cr;
                        }
                    }
                },
                Cr => match data.get(i) {
                    None => break false,
                    Some(b'\n') => {
                        i += 1;
                        body.end_line(out);
                        self.state = LineStart;
                    }
                    Some(_) => {
                        body.bare_line_end(out);
                        self.state = Text;
                    }
                },
            }
        };
        buf.advance(i);
        if !done {
            return None;
        }
        self.state = LineStart;
        Some(self.body.finish())
    }
}

/// Checks BDAT chunks, which carry no dot-stuffing, with the same line rules as DATA. State
/// spans chunk boundaries so a CR at the end of one chunk pairs with an LF at the start of the next.
#[derive(Debug)]
pub struct ChunkChecker {
    body: Body,
    /// The last chunk ended with a CR whose LF may start the next one.
    pending_cr: bool,
}

impl ChunkChecker {
    pub fn new(limits: DataLimits) -> Self {
        ChunkChecker {
            body: Body::new(limits),
            pending_cr: false,
        }
    }

    /// Appends `chunk` to `out` (normalized if allowed) or records the first error.
    pub fn push(&mut self, chunk: &[u8], out: &mut impl Sink) {
        let mut i = 0;
        if std::mem::take(&mut self.pending_cr) {
            match chunk.first() {
                None => {
                    self.pending_cr = true;
                    return;
                }
                Some(b'\n') => {
                    self.body.end_line(out);
                    i = 1;
                }
                Some(_) => self.body.bare_line_end(out),
            }
        }
        while let Some(k) = memchr::memchr2(b'\r', b'\n', &chunk[i..]) {
            self.body.text(&chunk[i..i + k], out);
            i += k + 1;
            if chunk[i - 1] == b'\n' {
                self.body.bare_line_end(out);
            } else if i == chunk.len() {
                self.pending_cr = true;
                return;
            } else if chunk[i] == b'\n' {
                self.body.end_line(out);
                i += 1;
            } else {
                self.body.bare_line_end(out);
            }
        }
        self.body.text(&chunk[i..], out);
    }

    /// Called after the `LAST` chunk: the first error seen, if any. Resets for the next message.
    pub fn finish(&mut self, out: &mut impl Sink) -> Result<(), DataError> {
        if std::mem::take(&mut self.pending_cr) {
            self.body.bare_line_end(out);
        }
        self.body.finish()
    }
}

#[cfg(test)]
mod tests;
