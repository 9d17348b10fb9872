//! SMTP replies as typed values: every handler answers with a [`Reply`], never a byte literal.

use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
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
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = match self.enhanced {
                Some(e) => format!("{}{}{} {}\r\n", self.code, sep, e, line),
                None => format!("{}{}{}\r\n", self.code, sep, line),
            };
            out.extend_from_slice(text.as_bytes());
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.lines.join(" / ");
        match self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, text),
            None => write!(f, "{} {}", self.code, text),
        }
    }
}

/// Reply text comes from config and plugins too: strip anything that could break framing.
fn sanitize(text: String) -> String {
    if text
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b < 0x20 && b != b'\t')
    {
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
    }
}
