//! The sending side of DATA: what the SMTP client puts on the wire for a spooled message.

/// Encodes a message for the DATA phase: every line ending becomes CRLF (a bare CR or a bare
/// LF is a line break, never forwarded as is), lines starting with `.` get another `.`, and the
/// terminating `.CRLF` is appended (after a CRLF if the message did not end with one).
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut encoder = DataEncoder::new();
    encoder.encode(message, &mut out);
    encoder.finish(&mut out);
    out
}

/// [`encode_data`] a piece at a time, for a message sent in blocks (a signature field, then
/// the spooled bytes): the output is the same however the message is split.
#[derive(Debug, Clone)]
pub struct DataEncoder {
    at_line_start: bool,
    /// The last piece ended with a CR, whose LF (if the next piece starts with one) is part
    /// of the same line break.
    after_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder::new()
    }
}

impl DataEncoder {
    pub fn new() -> Self {
        DataEncoder {
            at_line_start: true,
            after_cr: false,
        }
    }

    /// Appends the wire form of the next `piece` of the message to `out`.
    pub fn encode(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        if piece.is_empty() {
            return;
        }
        let mut i = 0;
        if std::mem::take(&mut self.after_cr) && piece[0] == b'\n' {
            i = 1;
        }
        while i < piece.len() {
            if self.at_line_start && piece[i] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr2(b'\r', b'\n', &piece[i..]) {
                None => {
                    out.extend_from_slice(&piece[i..]);
                    self.at_line_start = false;
                    return;
                }
                Some(k) => {
                    out.extend_from_slice(&piece[i..i + k]);
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    let cr = piece[i + k] == b'\r';
                    i += k + 1;
                    // CRLF is one break; a lone CR is one too.
                    if cr {
                        match piece.get(i) {
                            None => self.after_cr = true,
                            Some(b'\n') => i += 1,
                            Some(_) => {}
                        }
                    }
                }
            }
        }
    }

    /// Ends the message: a CRLF if its last line had none, then `.CRLF`. Ready for the next.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = DataEncoder::new();
    }
}

/// Whether the message has any byte outside 7-bit ASCII.
pub fn is_eight_bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_crlf_and_dot_stuffed() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n"),
            (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),
            (
                b".hidden\r\n..two\r\nx.y\r\n",
                b"..hidden\r\n...two\r\nx.y\r\n.\r\n",
            ),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
            (b"x\n.\n", b"x\r\n..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                encode_data(input),
                want.to_vec(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn any_split_encodes_like_the_whole() {
        let input = b"a\r\n.b\r\r\n\n.\r.x\r\n..\ry\n\r.z";
        let whole = encode_data(input);
        for cut in 0..=input.len() {
            for cut2 in cut..=input.len() {
                let mut encoder = DataEncoder::new();
                let mut out = Vec::new();
                for piece in [&input[..cut], &input[cut..cut2], &input[cut2..]] {
                    encoder.encode(piece, &mut out);
                }
                encoder.finish(&mut out);
                assert_eq!(out, whole, "split at {cut} and {cut2}");
            }
        }
    }

    #[test]
    fn encoded_data_never_has_bare_cr_or_lf() {
        let input = b"\r\r\n\n\r.\n.\r\r.x\n";
        let out = encode_data(input);
        for (i, &b) in out.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(out[i + 1], b'\n');
            }
            if b == b'\n' {
                assert_eq!(out[i - 1], b'\r');
            }
        }
    }

    #[test]
    fn the_data_reader_reads_back_what_encode_data_writes() {
        use crate::data::{DataLimits, DataReader};
        let limits = DataLimits {
            max_size: 1 << 20,
            max_line: 1000,
            normalize: false,
        };
        for message in [
            &b"Subject: x\r\n\r\n.\r\n..\r\n.x\r\n"[..],
            b"no final line end",
            b"",
            b"\r\n.\r\n",
            b".",
        ] {
            let mut buf = bytes::BytesMut::from(&encode_data(message)[..]);
            let mut out = Vec::new();
            let result = DataReader::new(limits).feed(&mut buf, &mut out);
            assert_eq!(result, Some(Ok(())), "{message:?}");
            assert!(buf.is_empty(), "{message:?}: read past the terminator");
            let mut want = message.to_vec();
            if !want.is_empty() && !want.ends_with(b"\r\n") {
                want.extend_from_slice(b"\r\n");
            }
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(message));
        }
    }
}
