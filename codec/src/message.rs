//! Where a message's header section ends (RFC 5322 §2.1): the first empty line. Everything in
//! the relay that needs the header fields or the body of a message splits it here, so a DSN's
//! attached headers, the plugins' header list and `queue show` always agree.

/// The split between the header section and the body of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEnd {
    /// Length of the header fields, through the line end of the last one; also the offset of
    /// the empty line.
    pub fields: usize,
    /// Offset of the body, just after the empty line.
    pub body: usize,
}

/// Finds the empty line that ends the header section of `message`, or `None` when it has none
/// (the whole message is header, and the body is empty).
///
/// Lines end with CRLF or a bare LF, since a trusted network's message may keep bare LFs; a
/// line is empty when nothing but an optional CR precedes its LF. A message that starts with an
/// empty line has no header fields. Only octets are looked at, so any input is safe, and the
/// scan stops at the empty line: the cost does not grow with the body.
pub fn header_end(message: &[u8]) -> Option<HeaderEnd> {
    let mut line = 0;
    loop {
        let rest = &message[line..];
        let empty = match rest {
            [b'\n', ..] => 1,
            [b'\r', b'\n', ..] => 2,
            _ => 0,
        };
        if empty > 0 {
            return Some(HeaderEnd {
                fields: line,
                body: line + empty,
            });
        }
        line += memchr::memchr(b'\n', rest)? + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(fields: usize, body: usize) -> Option<HeaderEnd> {
        Some(HeaderEnd { fields, body })
    }

    #[test]
    fn finds_the_first_empty_line() {
        let cases: &[(&[u8], Option<HeaderEnd>)] = &[
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", end(12, 14)),
            (b"A: 1\r\n\r\n", end(6, 8)),
            (b"A: 1\n\nbody", end(5, 6)),
            // The first empty line counts, not the last or the longest run.
            (b"A: 1\r\n\r\n\r\n\r\nB: 2\r\n\r\n", end(6, 8)),
            // LF and CRLF lines mixed.
            (b"A: 1\nB: 2\r\n\nbody", end(11, 12)),
            (b"A: 1\r\nB: 2\n\r\nbody", end(11, 13)),
            // Folded fields: a continuation line is not empty.
            (b"A: 1\r\n 2\r\n\t3\r\n\r\nbody", end(14, 16)),
            // No header fields at all.
            (b"\r\nbody\r\n", end(0, 2)),
            (b"\nbody", end(0, 1)),
            // A whitespace-only line is not empty.
            (b"A: 1\r\n \r\nB: 2\r\n\r\n", end(15, 17)),
            // A bare CR is not a line end: no empty line here.
            (b"A: 1\r\r\nB", None),
            (b"A: 1\r\n\r", None),
            (b"A: 1\rB: 2\r\r", None),
            (b"A: 1\r\nB: 2\r\n", None),
            (b"A: 1", None),
            (b"", None),
            // The body starts after the empty line, even when nothing follows it.
            (b"A: 1\n\n", end(5, 6)),
        ];
        for (message, want) in cases {
            assert_eq!(
                header_end(message),
                *want,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    /// The obvious line-by-line reading, to check `header_end` against on every short message
    /// over the octets that matter.
    fn model(message: &[u8]) -> Option<HeaderEnd> {
        let mut start = 0;
        for (i, &b) in message.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            let content = &message[start..i];
            if content.is_empty() || content == b"\r" {
                return end(start, i + 1);
            }
            start = i + 1;
        }
        None
    }

    #[test]
    fn agrees_with_a_line_by_line_model() {
        const ALPHABET: [u8; 4] = [b'a', b'\r', b'\n', b' '];
        let mut checked = 0;
        for len in 0..=8u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let message: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = ALPHABET[n % ALPHABET.len()];
                        n /= ALPHABET.len();
                        b
                    })
                    .collect();
                let got = header_end(&message);
                assert_eq!(got, model(&message), "{message:?}");
                if let Some(e) = got {
                    assert!(e.fields < e.body && e.body <= message.len());
                    assert!(message[..e.fields].is_empty() || message[e.fields - 1] == b'\n');
                }
                checked += 1;
            }
        }
        assert_eq!(checked, (0..=8).map(|l| 4usize.pow(l)).sum::<usize>());
    }
}
