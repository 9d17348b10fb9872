//! Hop counting (RFC 5321 §6.3): every MTA adds a `Received:` field, so a message that has
//! gone round a loop carries more of them each time. Counting them is what ends a loop that
//! nothing else detects (two relays forwarding a domain to each other, a misrouted MX).

/// `Received:` fields in the header section of `message` (up to the first empty line).
/// Continuation lines of folded fields do not count; names compare case-insensitively.
pub(crate) fn received_count(message: &[u8]) -> usize {
    const NAME: &[u8] = b"received:";
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::received_count;

    #[test]
    fn counts_fields_of_the_header_section_only() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"Subject: x\r\n\r\nReceived: in the body\r\n", 0),
            (
                b"Received: a\r\n\tfolded\r\nRECEIVED: b\r\nreceived:c\r\n\r\n",
                3,
            ),
            (
                b"X-Received: no\r\nReceived-SPF: no\r\nReceived : odd\r\n\r\n",
                0,
            ),
            (b"Received: a\nReceived: b\n\nReceived: c\n", 2),
            (b"Received: without a body", 1),
        ];
        for (message, want) in cases {
            assert_eq!(
                received_count(message),
                *want,
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }
}
