//! Byte-level pieces of the SMTP client, free of I/O so they are tested on slices: reply
//! parsing, outgoing DATA encoding (CRLF everywhere, dot-stuffing) and xtext.

use crate::smtp::reply::{Enhanced, Reply};

/// Longest reply line we accept (RFC 5321 §4.5.3.1.5 says 512; be generous).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
pub const MAX_REPLY_LINES: usize = 256;

/// Parses one complete reply out of `buf` if it holds one: `Ok(Some((reply, consumed)))`,
/// `Ok(None)` when more bytes are needed, `Err` on garbage.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > MAX_REPLY_LINE {
                return Err("reply line too long".into());
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        pos += nl + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "malformed reply line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        let c: u16 = std::str::from_utf8(&line[..3]).unwrap().parse().unwrap();
        if !(200..600).contains(&c) {
            return Err(format!("reply code {c} out of range"));
        }
        if *code.get_or_insert(c) != c {
            return Err("reply code changed within a multi-line reply".into());
        }
        let sep = line.get(3).copied();
        let text = if line.len() > 4 { &line[4..] } else { &[][..] };
        lines.push(String::from_utf8_lossy(text).into_owned());
        if lines.len() > MAX_REPLY_LINES {
            return Err("too many reply lines".into());
        }
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => break,
            Some(_) => return Err("bad separator after reply code".into()),
        }
    }
    let code = code.unwrap();
    // Split an enhanced status code off the text when it matches the reply's class.
    let enhanced = lines.first().and_then(|l| parse_enhanced(l, code));
    if enhanced.is_some() {
        for l in &mut lines {
            if parse_enhanced(l, code).is_some() {
                // Cut after the status word as it was written (never at a computed byte
                // offset: the text is the peer's and may hold any UTF-8).
                let rest = l.trim_start();
                let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
                *l = rest[word..].trim_start().to_string();
            }
        }
    }
    Ok(Some((
        Reply {
            code,
            enhanced,
            lines,
        },
        pos,
    )))
}

fn parse_enhanced(text: &str, code: u16) -> Option<Enhanced> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    // RFC 3463: 1 to 3 digits each (`parse` alone would take `+2`).
    let mut number = || {
        parts
            .next()
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
    };
    let class = u8::try_from(number()?).ok()?;
    let subject = number()?;
    let detail = number()?;
    if parts.next().is_some() || u16::from(class) != code / 100 {
        return None;
    }
    Some(Enhanced(class, subject, detail))
}

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

/// RFC 3461 xtext for ORCPT and ENVID values.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Whether `s` is valid, non-empty xtext: printable ASCII except `+` and `=`, and `+XX` hex
/// escapes (RFC 3461 §4 says upper case; lower case is taken, as the receiving side does).
pub fn is_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: Option<&u8>| c.is_some_and(u8::is_ascii_hexdigit);
                if !(hex(b.get(i + 1)) && hex(b.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            c if (b'!'..=b'~').contains(&c) => i += 1,
            _ => return false,
        }
    }
    !b.is_empty()
}

/// Whether the message has any byte outside 7-bit ASCII.
pub fn is_eight_bit(message: &[u8]) -> bool {
    message.iter().any(|&b| b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_single_and_multi_line() {
        let (r, n) = parse_reply(b"250 2.1.0 ok\r\nrest").unwrap().unwrap();
        assert_eq!(
            (r.code, r.enhanced, r.lines.clone(), n),
            (250, Some(Enhanced(2, 1, 0)), vec!["ok".to_string()], 14)
        );
        let (r, _) = parse_reply(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, ["mx.example", "PIPELINING", "SIZE 1000"]);
        assert_eq!(r.enhanced, None);
        assert!(parse_reply(b"250-a\r\n250 b").unwrap().is_none());
        assert!(parse_reply(b"250-a\r\n550 b\r\n").is_err());
        assert!(parse_reply(b"hello\r\n").is_err());
        // A 5xx with a 4.x.x status is not taken as enhanced.
        let (r, _) = parse_reply(b"550 4.1.1 odd\r\n").unwrap().unwrap();
        assert_eq!(r.enhanced, None);
        let (r, _) = parse_reply(b"250 +2.0.0 odd\r\n").unwrap().unwrap();
        assert_eq!((r.enhanced, r.lines[0].as_str()), (None, "+2.0.0 odd"));
    }

    #[test]
    fn status_words_are_cut_at_character_boundaries() {
        // Unicode whitespace (U+0085, U+3000) before the status code: the cut must follow
        // the text, not the length of the code's canonical form.
        for wire in [
            "250 \u{85}\u{85}\u{85}2.0.0 queued\r\n",
            "250-2.0.0 first\r\n250 \u{3000}\u{3000}2.0.0 queued\r\n",
            "250 2.00.0 queued\r\n",
        ] {
            let (r, _) = parse_reply(wire.as_bytes()).unwrap().unwrap();
            assert_eq!(r.lines.last().unwrap(), "queued", "{wire:?}");
        }
    }

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
    fn xtext_escapes() {
        assert_eq!(xtext("rfc822;a+b=c@d é"), "rfc822;a+2Bb+3Dc@d+20+C3+A9");
        assert!(is_xtext("a+2Bb+3dc@d"));
        for bad in ["", "a+2", "a+2G", "a=b", "a b", "é"] {
            assert!(!is_xtext(bad), "{bad:?}");
        }
    }
}
