//! The parts of a message carried inside another (`message/rfc822`), found by a line
//! scanner fed in chunks: header blocks are parsed for their type and file names, and
//! multipart boundaries are followed as RFC 2046 §5.1.1 draws them (a delimiter line of any
//! enclosing multipart ends the inner ones). Only what names a part is kept: the current
//! header block (capped) and the start of the current line.

use super::is_message;

/// Longest line prefix kept: enough for any delimiter (boundaries are at most 70 bytes by
/// RFC 2046, 200 as the host accepts them) and for header lines that matter.
const MAX_LINE: usize = 4 * 1024;
/// Largest header block parsed; the rest of a longer one is ignored.
const MAX_HEADER: usize = 64 * 1024;
/// Deepest multipart nesting followed, and most parts listed, as the host does.
const MAX_LEVELS: usize = 10;
const MAX_PARTS: usize = 1_000;

/// One part of the nested message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub content_type: String,
    /// Every file name the part's fields give (they can disagree; each is checked).
    pub filenames: Vec<String>,
}

struct Level {
    boundary: Vec<u8>,
    digest: bool,
}

pub struct Scanner {
    in_header: bool,
    /// The default type of the header block being read (`message/rfc822` in a digest).
    default_digest: bool,
    header: Vec<u8>,
    levels: Vec<Level>,
    /// The start of a line not yet ended by LF.
    line: Vec<u8>,
    found: Vec<PartInfo>,
    problem: Option<String>,
}

impl Scanner {
    /// A scanner at the start of a message (its header fields first).
    pub fn new() -> Scanner {
        Scanner {
            in_header: true,
            default_digest: false,
            header: Vec::new(),
            levels: Vec::new(),
            line: Vec::new(),
            found: Vec::new(),
            problem: None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            let cap = if self.in_header { MAX_HEADER } else { MAX_LINE };
            if !piece.ends_with(b"\n") {
                keep(&mut self.line, piece, cap);
            } else if self.line.is_empty() {
                self.line_done(piece);
            } else {
                keep(&mut self.line, piece, cap);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line);
            }
        }
    }

    /// The parts found, and why some content could not be inspected.
    pub fn finish(mut self) -> (Vec<PartInfo>, Option<String>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        if self.in_header {
            self.header_done();
        }
        (self.found, self.problem)
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.in_header {
            if line.is_empty() {
                self.header_done();
            } else if self.header.len() + line.len() < MAX_HEADER {
                self.header.extend_from_slice(line);
                self.header.push(b'\n');
            } else {
                self.problem
                    .get_or_insert_with(|| "a header block over 64 KiB in a nested message".into());
            }
            return;
        }
        if !line.starts_with(b"--") {
            return;
        }
        for i in (0..self.levels.len()).rev() {
            let Some(close) = delimiter(line, &self.levels[i].boundary) else {
                continue;
            };
            if close {
                self.levels.truncate(i);
            } else {
                self.default_digest = self.levels[i].digest;
                self.levels.truncate(i + 1);
                self.in_header = true;
            }
            return;
        }
    }

    fn header_done(&mut self) {
        let default = if self.default_digest {
            "message/rfc822"
        } else {
            "text/plain"
        };
        let fields = Fields::parse(&self.header, default);
        self.header.clear();
        self.in_header = false;
        self.default_digest = false;
        if self.found.len() >= MAX_PARTS {
            self.problem
                .get_or_insert_with(|| format!("more than {MAX_PARTS} parts in a nested message"));
            return;
        }
        let ct = fields.content_type.clone();
        self.found.push(PartInfo {
            content_type: ct.clone(),
            filenames: fields.filenames,
        });
        if let (true, Some(boundary)) = (ct.starts_with("multipart/"), fields.boundary) {
            if self.levels.len() >= MAX_LEVELS {
                self.problem
                    .get_or_insert_with(|| "MIME parts nested too deep".into());
                return;
            }
            self.levels.push(Level {
                boundary: boundary.into_bytes(),
                digest: ct == "multipart/digest",
            });
        } else if is_message(&ct) {
            match fields.encoding.as_deref() {
                None | Some("7bit" | "8bit" | "binary") => self.in_header = true,
                Some(other) => {
                    self.problem
                        .get_or_insert_with(|| format!("a nested message encoded as {other}"));
                }
            }
        }
    }
}

/// Appends to `buf` what fits in `cap` bytes.
fn keep(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Whether `line` is a delimiter line for `boundary`: `Some(true)` for the close delimiter.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (rest, close) = match rest.strip_prefix(b"--") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    rest.iter()
        .all(|&b| b == b' ' || b == b'\t')
        .then_some(close)
}

/// What a part's header block says.
#[derive(Debug, Default)]
struct Fields {
    content_type: String,
    boundary: Option<String>,
    encoding: Option<String>,
    filenames: Vec<String>,
}

impl Fields {
    fn parse(block: &[u8], default_type: &str) -> Fields {
        let text = String::from_utf8_lossy(block);
        let mut fields = Fields {
            content_type: default_type.to_string(),
            ..Fields::default()
        };
        let (mut seen_type, mut seen_disposition) = (false, false);
        for (name, value) in unfold(&text) {
            match name.to_ascii_lowercase().as_str() {
                "content-type" if !seen_type => {
                    seen_type = true;
                    let (value, params) = split_params(&value);
                    let t = value.trim().to_ascii_lowercase();
                    // RFC 2045 §5.2: a type that does not parse is text/plain.
                    fields.content_type = match t.split_once('/') {
                        Some((a, b)) if !a.is_empty() && !b.is_empty() && !t.contains(' ') => t,
                        _ => "text/plain".into(),
                    };
                    fields.boundary = param(&params, "boundary").into_iter().next();
                    fields.filenames.extend(param(&params, "name"));
                }
                "content-disposition" if !seen_disposition => {
                    seen_disposition = true;
                    let (_, params) = split_params(&value);
                    fields.filenames.extend(param(&params, "filename"));
                }
                "content-transfer-encoding" if fields.encoding.is_none() => {
                    fields.encoding = Some(value.trim().to_ascii_lowercase());
                }
                _ => {}
            }
        }
        fields
    }
}

/// Header fields as (name, unfolded value).
fn unfold(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// `type/subtype; a=b; c="d"` → (`type/subtype`, [(a, b), (c, d)]), names lower-cased.
fn split_params(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    let head = parts.remove(0);
    let params = parts
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (head, params)
}

/// Every value given for parameter `base`: plain (with RFC 2047 words decoded), extended
/// (`base*`) and continued (`base*0`, `base*1*` ...) as RFC 2231 writes them.
fn param(params: &[(String, String)], base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in params {
        if k == base {
            out.push(decode_words(v));
        } else if k.strip_prefix(base) == Some("*") {
            out.push(extended(v, true));
        }
    }
    let mut continued = String::new();
    for i in 0..100 {
        let plain = format!("{base}*{i}");
        let ext = format!("{base}*{i}*");
        let Some((k, v)) = params.iter().find(|(k, _)| *k == plain || *k == ext) else {
            break;
        };
        if k.ends_with('*') {
            continued.push_str(&extended(v, i == 0));
        } else {
            continued.push_str(v);
        }
    }
    if !continued.is_empty() {
        out.push(continued);
    }
    out
}

/// An RFC 2231 extended value: `charset'lang'percent-encoded` (the prefix only on the
/// first segment), decoded as UTF-8 (lossily: only the extension matters here).
fn extended(value: &str, first: bool) -> String {
    let encoded = if first {
        value.splitn(3, '\'').nth(2).unwrap_or(value)
    } else {
        value
    };
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes RFC 2047 encoded words (`=?charset?B?...?=`, `=?charset?Q?...?=`) in `value`.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let word = &rest[start + 2..];
        let decoded = word.split_once('?').and_then(|(_, after)| {
            let (enc, after) = after.split_once('?')?;
            let (text, tail) = after.split_once("?=")?;
            let bytes = match enc {
                "B" | "b" => base64(text)?,
                "Q" | "q" => {
                    extended(&text.replace('_', " ").replace('=', "%"), false).into_bytes()
                }
                _ => return None,
            };
            Some((String::from_utf8_lossy(&bytes).into_owned(), tail))
        });
        match decoded {
            Some((text, tail)) => {
                let between = &rest[..start];
                // Whitespace between two encoded words is not part of the text.
                if !(after_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&text);
                rest = tail;
                after_word = true;
            }
            None => {
                after_word = false;
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(message: &str, chunk: usize) -> (Vec<PartInfo>, Option<String>) {
        let mut s = Scanner::new();
        for piece in message.as_bytes().chunks(chunk) {
            s.feed(piece);
        }
        s.finish()
    }

    const NESTED: &str = "From: a@b\r\nContent-Type: multipart/mixed; boundary=\"in\"\r\n\r\n\
        preamble\r\n--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n--in\r\n\
        Content-Type: message/rfc822\r\n\r\nSubject: deeper\r\n\
        Content-Type: multipart/mixed;\r\n boundary=deep\r\n\r\n--deep\r\n\
        Content-Type: application/octet-stream;\r\n name*0*=utf-8''ev%69l; name*1=\".exe\"\r\n\
        Content-Disposition: attachment; filename=\"=?utf-8?B?cmVhZG1lLnR4dA==?=\"\r\n\r\n\
        TVqQ\r\n--deep--\r\n--in--\r\nepilogue\r\n";

    #[test]
    fn finds_parts_at_every_depth_in_any_chunking() {
        for chunk in [1, 7, 64, 4096] {
            let (parts, problem) = scan(NESTED, chunk);
            assert_eq!(problem, None);
            let types: Vec<&str> = parts.iter().map(|p| p.content_type.as_str()).collect();
            assert_eq!(
                types,
                [
                    "multipart/mixed",
                    "text/plain",
                    "message/rfc822",
                    "multipart/mixed",
                    "application/octet-stream"
                ],
                "chunk {chunk}"
            );
            assert_eq!(parts[4].filenames, ["evil.exe", "readme.txt"]);
        }
    }

    #[test]
    fn parameters() {
        let (_, p) = split_params("attachment; filename*=UTF-8''na%C3%AFve.EXE; x=\"a;b\"");
        assert_eq!(param(&p, "filename"), ["naïve.EXE"]);
        assert_eq!(param(&p, "x"), ["a;b"]);
        assert_eq!(decode_words("=?iso-8859-1?Q?a_b=2Eexe?="), "a b.exe");
        assert_eq!(
            decode_words("=?utf-8?B?YQ==?= =?utf-8?B?Yg==?=.exe"),
            "ab.exe"
        );
    }

    #[test]
    fn uninspectable_content_is_reported() {
        let encoded =
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
        assert!(scan(encoded, 64).1.unwrap().contains("encoded as base64"));
        let mut deep = String::new();
        for i in 0..12 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        assert!(scan(&deep, 64).1.unwrap().contains("too deep"));
    }

    #[test]
    fn digest_parts_default_to_messages() {
        let digest = "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n\
            Content-Type: application/x-msdownload\r\n\r\nMZ\r\n--d--\r\n";
        let (parts, _) = scan(digest, 64);
        let types: Vec<&str> = parts.iter().map(|p| p.content_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "multipart/digest",
                "message/rfc822",
                "application/x-msdownload"
            ]
        );
    }
}
