//! The sending side of DATA: what the SMTP client puts on the wire for a spooled message.

/// Encodes a message for the DATA phase: every line ending becomes CRLF (a bare CR or a bare
/// LF is a line break, never forwarded as is), lines starting with `.` get another `.`, and the
/// terminating `.CRLF` is appended (after a CRLF if the message did not end with one).
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                // CRLF is one break; a lone CR is one too.
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Whether the message has any byte outside 7-bit ASCII.
pub fn is_eight_bit(message: &[u8]) -> bool {
    message.iter().any(|&b| b >= 0x80)
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
