//! SMTP replies as typed values: every handler answers with a [`Reply`], never a byte literal.
//! [`Reply::to_wire`] writes one for the server side; [`parse_reply`] reads one for the client.

use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Enhanced(pub u8, pub u16, pub u16);

/// Numbers are written with `itoa` rather than `core::fmt`'s integer formatting: each
/// delivered recipient's status, event and log line show a reply, and `write!` took several
/// times as long.
impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        f.write_str(digits.format(self.0))?;
        f.write_str(".")?;
        f.write_str(digits.format(self.1))?;
        f.write_str(".")?;
        f.write_str(digits.format(self.2))
    }
}

/// One SMTP reply: a code, an optional enhanced status code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<Enhanced>,
    /// Text lines; a multi-line reply has several. Never contains CR or LF.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![sanitize(text.into())],
        }
    }

    /// A one-line reply without an enhanced status code (greeting, EHLO, 354 ...).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: None,
            lines: vec![sanitize(text.into())],
        }
    }

    /// A multi-line reply (EHLO keywords, HELP).
    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            enhanced: None,
            lines: lines.into_iter().map(sanitize).collect(),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as it goes on the wire; `enhanced` controls whether status codes are shown
    /// (they are only sent once ENHANCEDSTATUSCODES was advertised, which wasmrelay always does).
    ///
    /// Written byte by byte, not with `format!`: a session sends seven or so replies per
    /// message, and formatting each line cost about two thousand instructions.
    pub fn to_wire(&self) -> Vec<u8> {
        let text: usize = self.lines.iter().map(|l| l.len() + 16).sum();
        let mut out = Vec::with_capacity(text.max(8));
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            push_decimal(&mut out, self.code);
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(Enhanced(class, subject, detail)) = self.enhanced {
                push_decimal(&mut out, u16::from(class));
                out.push(b'.');
                push_decimal(&mut out, subject);
                out.push(b'.');
                push_decimal(&mut out, detail);
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            push_decimal(&mut out, self.code);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// `n` in decimal, as `Display` writes it.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `code [enhanced] text`, the lines joined by ` / `.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(itoa::Buffer::new().format(self.code))?;
        if let Some(e) = self.enhanced {
            f.write_str(" ")?;
            fmt::Display::fmt(&e, f)?;
        }
        f.write_str(" ")?;
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(" / ")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// Longest reply line we accept (RFC 5321 §4.5.3.1.5 says 512; be generous).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
pub const MAX_REPLY_LINES: usize = 256;

/// Why a server's reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line too long")]
    LineTooLong,
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply code {0} out of range")]
    CodeOutOfRange(u16),
    #[error("reply code changed within a multi-line reply")]
    CodeChanged,
    #[error("too many reply lines")]
    TooManyLines,
    #[error("bad separator after reply code")]
    BadSeparator,
}

/// Parses one complete reply out of `buf` if it holds one: `Ok(Some((reply, consumed)))`,
/// `Ok(None)` when more bytes are needed, `Err` on garbage.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        pos += nl + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed(
                String::from_utf8_lossy(line).into_owned(),
            ));
        }
        let c = line[..3]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if !(200..600).contains(&c) {
            return Err(ReplyError::CodeOutOfRange(c));
        }
        if *code.get_or_insert(c) != c {
            return Err(ReplyError::CodeChanged);
        }
        let sep = line.get(3).copied();
        let text = if line.len() > 4 { &line[4..] } else { &[][..] };
        lines.push(String::from_utf8_lossy(text).into_owned());
        if lines.len() > MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => break,
            Some(_) => return Err(ReplyError::BadSeparator),
        }
    }
    let code = code.unwrap();
    // Split an enhanced status code off the text when it matches the reply's class.
    let enhanced = lines
        .first()
        .and_then(|l| split_enhanced(l, code))
        .map(|(e, _)| e);
    if enhanced.is_some() {
        for l in &mut lines {
            if let Some((_, text_at)) = split_enhanced(l, code) {
                l.drain(..text_at);
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

/// The enhanced status code that starts `line`, when it has the reply's class, and where the
/// text after it begins.
fn split_enhanced(line: &str, code: u16) -> Option<(Enhanced, usize)> {
    // Cut after the status word as it was written (never at a computed byte offset: the
    // text is the peer's and may hold any UTF-8).
    let rest = line.trim_start();
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let mut parts = rest[..end].split('.');
    // RFC 3463: 1 to 3 digits each (`parse` alone would take `+2`).
    let mut number = || {
        let part = parts.next()?.as_bytes();
        if !(1..=3).contains(&part.len()) || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
    };
    let class = u8::try_from(number()?).ok()?;
    let subject = number()?;
    let detail = number()?;
    if parts.next().is_some() || u16::from(class) != code / 100 {
        return None;
    }
    let text = rest[end..].trim_start();
    Some((Enhanced(class, subject, detail), line.len() - text.len()))
}

/// Reply text comes from config and plugins too: strip anything that could break framing.
fn sanitize(text: String) -> String {
    // A fold rather than `any`: every reply passes here and almost none has a control
    // character, so a check the compiler can vectorize is worth reading to the end.
    let controls = text
        .bytes()
        .fold(false, |seen, b| seen | (b < 0x20) & (b != b'\t'));
    if controls {
        text.chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_display_as_one_line() {
        let show = |code, enhanced, lines: &[&str]| {
            let lines = lines.iter().map(|l| l.to_string()).collect();
            Reply {
                code,
                enhanced,
                lines,
            }
            .to_string()
        };
        assert_eq!(
            show(250, Some(Enhanced(2, 0, 0)), &["OK", "queued"]),
            "250 2.0.0 OK / queued"
        );
        assert_eq!(
            show(554, Some(Enhanced(5, 120, 65535)), &["no"]),
            "554 5.120.65535 no"
        );
        assert_eq!(show(421, None, &["bye"]), "421 bye");
        assert_eq!(show(250, Some(Enhanced(2, 1, 5)), &[]), "250 2.1.5 ");
        assert_eq!(show(220, None, &[""]), "220 ");
        assert_eq!(Enhanced(4, 7, 0).to_string(), "4.7.0");
    }

    #[test]
    fn wire_numbers_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 250, 999, 1000, 65535] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let r = Reply {
            code: 451,
            enhanced: Some(Enhanced(4, 120, 65535)),
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.to_wire(), b"451-4.120.65535 a\r\n451 4.120.65535 b\r\n");
        let empty = Reply {
            code: 250,
            enhanced: None,
            lines: Vec::new(),
        };
        assert_eq!(empty.to_wire(), b"250\r\n");
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, Enhanced(2, 1, 0), "Sender OK");
        assert_eq!(r.to_wire(), b"250 2.1.0 Sender OK\r\n");
    }

    #[test]
    fn multiline_uses_dash_until_last() {
        let r = Reply::multiline(
            250,
            vec!["mx.example".into(), "PIPELINING".into(), "SIZE 100".into()],
        );
        assert_eq!(
            r.to_wire(),
            b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
        );
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(550, Enhanced(5, 7, 1), "no\r\n250 ok");
        assert_eq!(r.to_wire(), b"550 5.7.1 no  250 ok\r\n");
        // Any control character, wherever it is, but a tab; plain text is left alone.
        let long = format!("{}\x00", "x".repeat(100));
        assert_eq!(sanitize(long), format!("{} ", "x".repeat(100)));
        assert_eq!(sanitize("a\tb\x1bc".into()), "a\tb c");
        assert_eq!(sanitize("plain text".into()), "plain text");
    }

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
        // Each line that repeats the status loses it; a line without one keeps its text.
        let (r, _) = parse_reply(b"550-5.1.1 no\r\n550-such\r\n550 5.1.1  user\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.enhanced, Some(Enhanced(5, 1, 1)));
        assert_eq!(r.lines, ["no", "such", "user"]);
        let (r, _) = parse_reply(b"250 2.1000.0 big\r\n").unwrap().unwrap();
        assert_eq!((r.enhanced, r.lines[0].as_str()), (None, "2.1000.0 big"));
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
    fn reply_errors() {
        let long = [b"250 ".as_slice(), &[b'x'; MAX_REPLY_LINE]].concat();
        let many = [b"250-x\r\n".repeat(MAX_REPLY_LINES), b"250 x\r\n".to_vec()].concat();
        let cases: &[(&[u8], ReplyError)] = &[
            (&long, ReplyError::LineTooLong),
            (b"25\r\n", ReplyError::Malformed("25".into())),
            (b"abc ok\r\n", ReplyError::Malformed("abc ok".into())),
            (b"199 early\r\n", ReplyError::CodeOutOfRange(199)),
            (b"600 late\r\n", ReplyError::CodeOutOfRange(600)),
            (b"250-a\r\n251 b\r\n", ReplyError::CodeChanged),
            (&many, ReplyError::TooManyLines),
            (b"250+ok\r\n", ReplyError::BadSeparator),
        ];
        for (input, want) in cases {
            let got = parse_reply(input).err();
            assert_eq!(
                got.as_ref(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn parse_reads_back_what_to_wire_writes() {
        let replies = [
            Reply::new(250, Enhanced(2, 1, 0), "Sender OK"),
            Reply::new(451, Enhanced(4, 7, 1), "try later"),
            Reply::plain(220, "mx.example ESMTP"),
            Reply::multiline(250, vec!["mx.example".into(), "SIZE 100".into()]),
        ];
        for reply in replies {
            let wire = reply.to_wire();
            let (back, used) = parse_reply(&wire).unwrap().unwrap();
            assert_eq!((back, used), (reply, wire.len()));
        }
    }
}
