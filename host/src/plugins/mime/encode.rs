//! Encoding a replaced text part for the wire (RFC 2045 §6): 7bit when the text is short-lined
//! ASCII, otherwise quoted-printable or base64, whichever is smaller. Lines are CRLF and at
//! most 76 octets, far under SMTP's 998, and no encoded line can start with `--`, so new
//! content never looks like a boundary delimiter of an enclosing multipart.

use base64::Engine;

/// Longest encoded line (RFC 2045 §6.7 rule 5, §6.8).
pub(super) const LINE: usize = 76;

/// Encoded content and the Content-Transfer-Encoding that names it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub encoding: &'static str,
}

/// The text with every line break (CRLF, LF or a lone CR) as CRLF, the canonical form of
/// text content (RFC 2046 §4.1.1).
pub(crate) fn canonical(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Encodes canonical text (see [`canonical`]). With `end_line`, the encoded bytes end with a
/// line break even when the text does not (the part ends the message, or a delimiter follows
/// with no line break of its own), one that decodes to nothing: a soft break in
/// quoted-printable, a line end in base64.
pub(crate) fn encode(text: Vec<u8>, end_line: bool) -> Encoded {
    let open = end_line && !text.is_empty() && !text.ends_with(b"\r\n");
    if !open && plain(&text) {
        return Encoded {
            bytes: text,
            encoding: "7bit",
        };
    }
    let mut qp = quoted_printable(&text);
    if open {
        qp.extend_from_slice(b"=\r\n");
    }
    let b64_len = base64_len(text.len()) + if end_line { 2 } else { 0 };
    if qp.len() <= b64_len {
        return Encoded {
            bytes: qp,
            encoding: "quoted-printable",
        };
    }
    let mut bytes = base64(&text);
    if end_line && !bytes.is_empty() {
        bytes.extend_from_slice(b"\r\n");
    }
    Encoded {
        bytes,
        encoding: "base64",
    }
}

/// Whether canonical text can go as it is: printable ASCII and tabs in lines of at most
/// [`LINE`] octets, none starting with `--` or ending with blanks (which transports strip).
fn plain(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() <= LINE
            && !line.starts_with(b"--")
            && !line.ends_with(b" ")
            && !line.ends_with(b"\t")
            && line
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    })
}

/// Quoted-printable (RFC 2045 §6.7) of canonical text: CRLF stays a hard line break, soft
/// breaks keep lines within [`LINE`] octets, whitespace before a line end and a `-` that
/// would start a line are encoded.
pub(super) fn quoted_printable(text: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let hard_break = lines.peek().is_some();
        let line = if hard_break {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = |col: usize| match b {
                b' ' | b'\t' => !last,
                b'-' => col > 0,
                b'=' => false,
                _ => (b'!'..=b'~').contains(&b),
            };
            let width = if literal(col) { 1 } else { 3 };
            // The last octet of a line may use the column a soft break's `=` needs.
            let room = if last { LINE } else { LINE - 1 };
            if col + width > room {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal(col) {
                out.push(b);
                col += 1;
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                col += 3;
            }
        }
        if hard_break {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Length of [`base64`] of `n` octets.
fn base64_len(n: usize) -> usize {
    let chars = n.div_ceil(3) * 4;
    chars + chars.saturating_sub(1) / LINE * 2
}

/// Base64 (RFC 2045 §6.8) in lines of [`LINE`] characters joined by CRLF.
fn base64(bytes: &[u8]) -> Vec<u8> {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(base64_len(bytes.len()));
    for (i, line) in flat.as_bytes().chunks(LINE).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    out
}
