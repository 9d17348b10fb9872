//! The DATA reader: finds the end of data (only `CRLF.CRLF`), removes dot-stuffing and
//! enforces the bare-CR/LF, line-length and size rules on byte slices, with no I/O.

use bytes::{Buf, BytesMut};

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
    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
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

    fn append(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let room = self.limits.max_size - self.size;
        if bytes.len() as u64 > room {
            out.extend_from_slice(&bytes[..room as usize]);
            self.size = self.limits.max_size;
            self.fail(DataError::TooBig(self.limits.max_size));
            return;
        }
        self.size += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        self.line_len = 0;
        if self.error.is_none() {
            self.append(b"\r\n", out);
        }
    }

    /// A CR not followed by LF, or an LF not preceded by CR.
    fn bare_line_end(&mut self, out: &mut Vec<u8>) {
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
    pub fn feed(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Option<Result<(), DataError>> {
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
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
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
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), DataError> {
        if std::mem::take(&mut self.pending_cr) {
            self.body.bare_line_end(out);
        }
        self.body.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataError::*;

    const BIG: DataLimits = DataLimits {
        max_size: 1 << 20,
        max_line: 1000,
        normalize: false,
    };
    const NORMALIZE: DataLimits = DataLimits {
        normalize: true,
        ..BIG
    };

    type Outcome = (Option<Result<(), DataError>>, Vec<u8>, Vec<u8>);

    /// Feeds `input` in pieces of `step` octets (all at once when 0), the way the session does:
    /// append to the buffer, call `feed`, stop at the first `Some`. Returns the result, the
    /// message and what is left for the command reader.
    fn run(limits: DataLimits, input: &[u8], step: usize) -> Outcome {
        let mut reader = DataReader::new(limits);
        let (mut buf, mut out) = (BytesMut::new(), Vec::new());
        let step = if step == 0 { input.len().max(1) } else { step };
        let mut pieces = input.chunks(step);
        for piece in pieces.by_ref() {
            buf.extend_from_slice(piece);
            if let Some(result) = reader.feed(&mut buf, &mut out) {
                for rest in pieces {
                    buf.extend_from_slice(rest);
                }
                return (Some(result), out, buf.to_vec());
            }
            assert!(buf.is_empty(), "the reader keeps no bytes back in buf");
        }
        (None, out, buf.to_vec())
    }

    fn run_all_splits(limits: DataLimits, input: &[u8]) -> Outcome {
        let whole = run(limits, input, 0);
        for step in [1, 2, 3, 4, 5, 7, 64] {
            assert_eq!(run(limits, input, step), whole, "step {step} on {input:?}");
        }
        whole
    }

    #[test]
    fn data_table() {
        let lim = |max_size, max_line, normalize| DataLimits {
            max_size,
            max_line,
            normalize,
        };
        type Case<'a> = (
            DataLimits,
            &'a [u8],
            Option<Result<(), DataError>>,
            &'a [u8],
            &'a [u8],
        );
        let cases: Vec<Case> = vec![
            // (limits, input, result, message, left in buf)
            (BIG, b".\r\n", Some(Ok(())), b"", b""),
            (BIG, b".\r\nQUIT\r\n", Some(Ok(())), b"", b"QUIT\r\n"),
            (BIG, b"a\r\n.\r\n", Some(Ok(())), b"a\r\n", b""),
            (
                BIG,
                b"a\r\n.\r\nMAIL FROM:<x@y>\r\n",
                Some(Ok(())),
                b"a\r\n",
                b"MAIL FROM:<x@y>\r\n",
            ),
            (BIG, b"a\r\n..b\r\n.\r\n", Some(Ok(())), b"a\r\n.b\r\n", b""),
            (BIG, b"..\r\n.\r\n", Some(Ok(())), b".\r\n", b""),
            (BIG, b"...\r\n.\r\n", Some(Ok(())), b"..\r\n", b""),
            (BIG, b".a\r\n.\r\n", Some(Ok(())), b"a\r\n", b""),
            (BIG, b"a\r\n. \r\n.\r\n", Some(Ok(())), b"a\r\n \r\n", b""),
            (BIG, b"\r\n.\r\n", Some(Ok(())), b"\r\n", b""),
            (BIG, b"a\r\n\r\n.\r\n", Some(Ok(())), b"a\r\n\r\n", b""),
            (BIG, b"a.\r\n.\r\n", Some(Ok(())), b"a.\r\n", b""),
            (BIG, b"a\r\n.\r\n.\r\n", Some(Ok(())), b"a\r\n", b".\r\n"),
            (
                BIG,
                b"\xe2\x82\xac\t\x00\r\n.\r\n",
                Some(Ok(())),
                b"\xe2\x82\xac\t\x00\r\n",
                b"",
            ),
            (BIG, b"", None, b"", b""),
            (BIG, b"abc\r\n", None, b"abc\r\n", b""),
            (BIG, b"abc\r\n.", None, b"abc\r\n", b""),
            (BIG, b"abc\r\n.\r", None, b"abc\r\n", b""),
            (BIG, b"abc\r", None, b"abc", b""),
            // Bare line ends: refused, or rewritten to CRLF when normalizing.
            (BIG, b"a\nb\r\n.\r\n", Some(Err(BareLineEnding)), b"a", b""),
            (BIG, b"a\rb\r\n.\r\n", Some(Err(BareLineEnding)), b"a", b""),
            (BIG, b"a\r\r\n.\r\n", Some(Err(BareLineEnding)), b"a", b""),
            (
                BIG,
                b"a\r\n.\nb\r\n.\r\n",
                Some(Err(BareLineEnding)),
                b"a\r\n.",
                b"",
            ),
            (BIG, b"a\r\n.\n.\r\n", None, b"a\r\n.", b""),
            (
                NORMALIZE,
                b"a\nb\r\n.\r\n",
                Some(Ok(())),
                b"a\r\nb\r\n",
                b"",
            ),
            (
                NORMALIZE,
                b"a\rb\r\n.\r\n",
                Some(Ok(())),
                b"a\r\nb\r\n",
                b"",
            ),
            (NORMALIZE, b"a\r\r\n.\r\n", Some(Ok(())), b"a\r\n\r\n", b""),
            (NORMALIZE, b"a\n\n.\r\n", None, b"a\r\n\r\n.\r\n", b""),
            (
                NORMALIZE,
                b"a\n..b\r\n.\r\n",
                Some(Ok(())),
                b"a\r\n..b\r\n",
                b"",
            ),
            (NORMALIZE, b"\n.\r\n.\r\n", Some(Ok(())), b"\r\n.\r\n", b""),
            (NORMALIZE, b".\n.\r\n", None, b".\r\n.\r\n", b""),
            (
                NORMALIZE,
                b".\n.\r\n.\r\n",
                Some(Ok(())),
                b".\r\n.\r\n",
                b"",
            ),
            (
                NORMALIZE,
                b".\r.\r\n.\r\n",
                Some(Ok(())),
                b".\r\n.\r\n",
                b"",
            ),
            // Line length counts the CRLF but not a stuffing dot.
            (
                lim(1000, 10, false),
                b"12345678\r\n.\r\n",
                Some(Ok(())),
                b"12345678\r\n",
                b"",
            ),
            (
                lim(1000, 10, false),
                b"..2345678\r\n.\r\n",
                Some(Ok(())),
                b".2345678\r\n",
                b"",
            ),
            (
                lim(1000, 10, false),
                b"123456789\r\n.\r\n",
                Some(Err(LineTooLong(10))),
                b"12345678",
                b"",
            ),
            (
                lim(1000, 10, true),
                b"123456789\n\r\n.\r\n",
                Some(Err(LineTooLong(10))),
                b"12345678",
                b"",
            ),
            (
                lim(1000, 10, true),
                b"12345678\n\r\n.\r\n",
                Some(Ok(())),
                b"12345678\r\n\r\n",
                b"",
            ),
            // Size counts the message after unstuffing, CRLFs included.
            (
                lim(10, 1000, false),
                b"12345678\r\n.\r\n",
                Some(Ok(())),
                b"12345678\r\n",
                b"",
            ),
            (
                lim(10, 1000, false),
                b"..345678\r\n.\r\n",
                Some(Ok(())),
                b".345678\r\n",
                b"",
            ),
            (
                lim(10, 1000, false),
                b"123456789\r\n.\r\nNOOP\r\n",
                Some(Err(TooBig(10))),
                b"123456789\r",
                b"NOOP\r\n",
            ),
            (
                lim(10, 1000, false),
                b"1234\r\n5678\r\n90\r\n.\r\n",
                Some(Err(TooBig(10))),
                b"1234\r\n5678",
                b"",
            ),
            (lim(0, 1000, false), b".\r\n", Some(Ok(())), b"", b""),
            (
                lim(0, 1000, false),
                b"a\r\n.\r\n",
                Some(Err(TooBig(0))),
                b"",
                b"",
            ),
            // The first error is the one reported.
            (
                lim(5, 1000, false),
                b"a\nbcdefgh\r\n.\r\n",
                Some(Err(BareLineEnding)),
                b"a",
                b"",
            ),
            (
                lim(5, 4, false),
                b"abcdefgh\nb\r\n.\r\n",
                Some(Err(LineTooLong(4))),
                b"ab",
                b"",
            ),
        ];
        for (limits, input, result, message, rest) in cases {
            let got = run_all_splits(limits, input);
            let want = (result, message.to_vec(), rest.to_vec());
            assert_eq!(
                got,
                want,
                "input {:?} {limits:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// The SMTP smuggling sequences: none may end the message, with or without `normalize`.
    #[test]
    fn smuggling_matrix() {
        let seqs: [&[u8]; 9] = [
            b"\n.\n",
            b"\n.\r\n",
            b"\r.\n",
            b"\r.\r",
            b"\n.\r",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r\n\x00.\r\n",
        ];
        let smuggled =
            b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nforged\r\n";
        for seq in seqs {
            let mut input = b"Subject: hi\r\n\r\nhello".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(smuggled);
            input.extend_from_slice(b".\r\nQUIT\r\n");
            let nul = seq.contains(&0);

            let (result, out, rest) = run_all_splits(BIG, &input);
            let want = if nul { Ok(()) } else { Err(BareLineEnding) };
            assert_eq!(result, Some(want), "{seq:?} without normalize");
            assert_eq!(
                rest, b"QUIT\r\n",
                "{seq:?}: only the real terminator ends DATA"
            );

            let (result, out_n, rest) = run_all_splits(NORMALIZE, &input);
            assert_eq!(result, Some(Ok(())), "{seq:?} with normalize");
            assert_eq!(
                rest, b"QUIT\r\n",
                "{seq:?}: only the real terminator ends DATA"
            );
            let mut want = b"Subject: hi\r\n\r\nhello\r\n".to_vec();
            want.extend_from_slice(if nul { b"\x00.\r\n" } else { b".\r\n" });
            want.extend_from_slice(smuggled);
            assert_eq!(out_n, want, "{seq:?}: the fake terminator is kept as text");
            if nul {
                assert_eq!(out, want);
            }
        }
    }

    #[test]
    fn reader_is_reusable_after_the_terminator() {
        let mut reader = DataReader::new(BIG);
        let mut buf = BytesMut::from(&b"a\nb\r\n.\r\n"[..]);
        let mut out = Vec::new();
        assert_eq!(reader.feed(&mut buf, &mut out), Some(Err(BareLineEnding)));
        let mut buf = BytesMut::from(&b".x\r\n.\r\n"[..]);
        let mut out = Vec::new();
        assert_eq!(reader.feed(&mut buf, &mut out), Some(Ok(())));
        assert_eq!(out, b"x\r\n");
    }

    /// A message whose lines are all CRLF-terminated, for the invariants below.
    fn is_crlf_clean(out: &[u8]) -> bool {
        out.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => out.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && out[i - 1] == b'\r',
            _ => true,
        })
    }

    /// Pseudo-random inputs over the octets that matter: the reader ends exactly at the first
    /// CRLF.CRLF (counting the start of data as a line start), whatever the splits and policy.
    #[test]
    fn ends_exactly_at_the_first_real_terminator() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"\r\n.\r\n.a\x00";
        for _ in 0..3000 {
            let len = (next() % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut framed = b"\r\n".to_vec();
            framed.extend_from_slice(&input);
            let end = framed
                .windows(5)
                .position(|w| w == b"\r\n.\r\n")
                .map(|p| p + 5 - 2);
            for limits in [BIG, NORMALIZE] {
                let (result, out, rest) = run_all_splits(limits, &input);
                match end {
                    Some(end) => {
                        assert!(result.is_some(), "{input:?}");
                        assert_eq!(rest, &input[end..], "{input:?}");
                    }
                    None => assert_eq!((&result, rest.len()), (&None, 0), "{input:?}"),
                }
                if result == Some(Ok(())) {
                    assert!(is_crlf_clean(&out), "{input:?} -> {out:?}");
                }
            }
        }
    }

    fn chunks(limits: DataLimits, chunks: &[&[u8]]) -> (Result<(), DataError>, Vec<u8>) {
        let mut checker = ChunkChecker::new(limits);
        let mut out = Vec::new();
        for chunk in chunks {
            checker.push(chunk, &mut out);
        }
        (checker.finish(&mut out), out)
    }

    #[test]
    fn bdat_chunks() {
        let lim = |max_size, max_line, normalize| DataLimits {
            max_size,
            max_line,
            normalize,
        };
        type Case<'a> = (DataLimits, Vec<&'a [u8]>, Result<(), DataError>, &'a [u8]);
        let cases: Vec<Case> = vec![
            (BIG, vec![b"a\r\nb\r\n"], Ok(()), b"a\r\nb\r\n"),
            (BIG, vec![b"a\r", b"\nb\r\n"], Ok(()), b"a\r\nb\r\n"),
            (BIG, vec![b"a\r", b"", b"\nb\r\n"], Ok(()), b"a\r\nb\r\n"),
            (BIG, vec![b"a", b"\r", b"\n", b"."], Ok(()), b"a\r\n."),
            (BIG, vec![b".\r\n..\r\n"], Ok(()), b".\r\n..\r\n"),
            (BIG, vec![], Ok(()), b""),
            (BIG, vec![b"a\nb"], Err(BareLineEnding), b"a"),
            (BIG, vec![b"a\r", b"b"], Err(BareLineEnding), b"a"),
            (BIG, vec![b"a\r"], Err(BareLineEnding), b"a"),
            (NORMALIZE, vec![b"a\nb"], Ok(()), b"a\r\nb"),
            (NORMALIZE, vec![b"a\r", b"b\r"], Ok(()), b"a\r\nb\r\n"),
            (NORMALIZE, vec![b"a\r\r\n"], Ok(()), b"a\r\n\r\n"),
            (lim(100, 5, false), vec![b"abc\r\n"], Ok(()), b"abc\r\n"),
            (
                lim(100, 5, false),
                vec![b"ab", b"cd\r\n"],
                Err(LineTooLong(5)),
                b"abc",
            ),
            (lim(5, 100, false), vec![b"abc\r\n"], Ok(()), b"abc\r\n"),
            (
                lim(5, 100, false),
                vec![b"abc", b"\r\nd"],
                Err(TooBig(5)),
                b"abc\r\n",
            ),
        ];
        for (limits, input, result, message) in cases {
            assert_eq!(
                chunks(limits, &input),
                (result, message.to_vec()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn chunk_checker_is_reusable() {
        let mut checker = ChunkChecker::new(BIG);
        let mut out = Vec::new();
        checker.push(b"a\nb\r", &mut out);
        assert_eq!(checker.finish(&mut out), Err(BareLineEnding));
        let mut out = Vec::new();
        checker.push(b"\nok\r\n", &mut out);
        assert_eq!(
            checker.finish(&mut out),
            Err(BareLineEnding),
            "a CR left from the last message does not pair with this LF"
        );
        let mut out = Vec::new();
        checker.push(b"ok\r\n", &mut out);
        assert_eq!(
            (checker.finish(&mut out), out),
            (Ok(()), b"ok\r\n".to_vec())
        );
    }

    #[test]
    fn error_replies() {
        assert_eq!(BareLineEnding.reply().code, 550);
        assert_eq!(LineTooLong(1000).reply().code, 550);
        assert_eq!(TooBig(10).reply().code, 552);
    }
}
