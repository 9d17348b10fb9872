//! A slow, obviously correct model of the codec's DATA reader to check the real one against.

use wasmrelay_codec::data::{DataError, DataLimits};

/// What the DATA reader should produce for `input` fed in one piece: the result, the message,
/// and how many octets it consumed. Works line by line on the whole input, with none of the
/// real reader's streaming state.
pub fn data_model(
    limits: DataLimits,
    input: &[u8],
) -> (Option<Result<(), DataError>>, Vec<u8>, usize) {
    let mut model = Model {
        limits,
        out: Vec::new(),
        error: None,
    };
    let mut pos = 0;
    // Whether the current line began right after a real CRLF (or at the start of the data).
    let mut real_start = true;
    loop {
        let rest = &input[pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
            model.line(real_start, rest, false);
            return (None, model.out, input.len());
        };
        let content = &rest[..end];
        let (crlf, len) = match (rest[end], rest.get(end + 1)) {
            (b'\r', Some(b'\n')) => (true, 2),
            (b'\r', None) => {
                // Could still become CRLF: only the line's text has been seen.
                model.line(real_start, content, false);
                return (None, model.out, input.len());
            }
            _ => (false, 1),
        };
        pos += end + len;
        if real_start && crlf && content == b"." {
            let result = match model.error {
                Some(e) => Err(e),
                None => Ok(()),
            };
            return (Some(result), model.out, pos);
        }
        model.line(real_start, content, true);
        if !crlf && !limits.normalize {
            model.fail(DataError::BareLineEnding);
        }
        model.push(b'\r');
        model.push(b'\n');
        real_start = crlf;
    }
}

struct Model {
    limits: DataLimits,
    out: Vec<u8>,
    error: Option<DataError>,
}

impl Model {
    /// A line's text. A leading dot after a real CRLF is stuffing, except a lone dot on a
    /// complete line (which, not being the terminator, was ended by a bare CR or LF). On an
    /// incomplete line a lone dot's fate is still open, so nothing of it is output yet.
    fn line(&mut self, real_start: bool, mut content: &[u8], complete: bool) {
        if real_start && content.first() == Some(&b'.') && (content != b"." || !complete) {
            content = &content[1..];
        }
        for (i, &b) in content.iter().enumerate() {
            if i + 1 + 2 > self.limits.max_line {
                self.fail(DataError::LineTooLong(self.limits.max_line));
            }
            self.push(b);
        }
    }

    fn push(&mut self, b: u8) {
        if self.error.is_some() {
            return;
        }
        if self.out.len() as u64 + 1 > self.limits.max_size {
            self.fail(DataError::TooBig(self.limits.max_size));
            return;
        }
        self.out.push(b);
    }

    fn fail(&mut self, e: DataError) {
        self.error.get_or_insert(e);
    }
}
