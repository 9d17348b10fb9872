//! The `message` resource: header fields parsed once, the body shared and read lazily, edits
//! kept as a new field list and an optional new body until the chain is done.
//!
//! Body edits and MIME edits compose in call order: `replace-body` starts a new body (the
//! part tree is built again from it on the next MIME call), `append-body` continues only a
//! body `replace-body` started, and `replace-part-text` edits whatever body is current (and
//! ends an appendable one). Header edits that touch the message's own MIME fields drop the
//! cached part tree too.

use std::ops::Range;
use std::sync::Arc;

use super::mime::MimeCache;
use crate::spool::MessageBytes;

mod resource;

/// Largest body chunk one `read-body` call returns.
const MAX_READ: usize = 1 << 20;
/// Header names and values a plugin may write.
const MAX_NAME: usize = 128;
const MAX_VALUE: usize = 8 * 1024;
/// Most header fields a message may end up with.
const MAX_FIELDS: usize = 1_000;

/// One header field as it appears on the wire, continuation lines included (without the
/// final CRLF; folded lines joined by CRLF): a span of the original message until a plugin
/// writes it. Every data plugin is called with its own copy of the field list (its edits are
/// dropped if it fails), and a copied field used to be an allocation per field per plugin.
/// Its name is read from the bytes when asked: most fields are never looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Original(Range<usize>),
    Written(Vec<u8>),
}

impl Field {
    fn new(name: &str, value: &str) -> Field {
        Field::Written(format!("{name}: {value}").into_bytes())
    }

    /// The field's bytes; `original` is the message it was parsed from.
    fn raw<'a>(&'a self, original: &'a [u8]) -> &'a [u8] {
        match self {
            Field::Original(span) => &original[span.clone()],
            Field::Written(raw) => raw,
        }
    }

    /// Adds the continuation line at `line` of `original`. A span grows over it when the
    /// lines are joined by CRLF there; a bare LF between them is written out as CRLF.
    fn continue_with(&mut self, original: &[u8], line: Range<usize>) {
        match self {
            Field::Original(span) if original[span.end..line.start] == *b"\r\n" => {
                span.end = line.end;
            }
            Field::Original(span) => {
                let mut raw = original[span.clone()].to_vec();
                raw.extend_from_slice(b"\r\n");
                raw.extend_from_slice(&original[line]);
                *self = Field::Written(raw);
            }
            Field::Written(raw) => {
                raw.extend_from_slice(b"\r\n");
                raw.extend_from_slice(&original[line]);
            }
        }
    }
}

/// A field's name: what comes before the first colon, trimmed (empty without a colon).
fn field_name(raw: &[u8]) -> &[u8] {
    raw.iter()
        .position(|&b| b == b':')
        .map_or(&[][..], |i| raw[..i].trim_ascii())
}

fn field_is_named(raw: &[u8], name: &str) -> bool {
    field_name(raw).eq_ignore_ascii_case(name.as_bytes())
}

/// A field's value unfolded and trimmed.
fn field_value(raw: &[u8]) -> String {
    let after = raw
        .iter()
        .position(|&b| b == b':')
        .map_or(&raw[..0], |i| &raw[i + 1..]);
    let line_break = |b: &u8| *b == b'\r' || *b == b'\n';
    if !after.iter().any(line_break) {
        return String::from_utf8_lossy(after).trim().to_string();
    }
    let unfolded: Vec<u8> = after.iter().copied().filter(|b| !line_break(b)).collect();
    String::from_utf8_lossy(&unfolded).trim().to_string()
}

/// The message as the host handed it over: a buffer of its own (given back as is when nobody
/// edits it), or the host's shared bytes (possibly a mapped file, never copied whole).
#[derive(Debug, Clone)]
enum Original {
    Owned(Arc<Vec<u8>>),
    Shared(MessageBytes),
}

impl std::ops::Deref for Original {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Original::Owned(bytes) => bytes,
            Original::Shared(bytes) => bytes,
        }
    }
}

/// Where [`MessageRes::add_field`] puts a new field.
#[derive(Debug, Clone, Copy)]
enum FieldAt {
    First,
    Last,
}

/// A message as plugins see it. Cloning is cheap: the original bytes, the field list and a
/// replaced body are shared until an edit.
#[derive(Debug, Clone)]
pub struct MessageRes {
    fields: Arc<Vec<Field>>,
    original: Original,
    body_start: usize,
    new_body: Option<Arc<Vec<u8>>>,
    /// Whether `append-body` may continue the body (set by `replace-body`).
    body_open: bool,
    edited: bool,
    max_body: usize,
    /// The MIME part tree and decoded content, cached for the current fields and body.
    pub(super) mime: MimeCache,
}

impl MessageRes {
    /// Parses the header section (up to the first empty line) of a CRLF message.
    pub(crate) fn parse(bytes: Vec<u8>, max_body: usize) -> MessageRes {
        MessageRes::parse_original(Original::Owned(Arc::new(bytes)), max_body)
    }

    /// [`MessageRes::parse`] of bytes the host keeps sharing: the body is read in place.
    pub(crate) fn parse_shared(bytes: MessageBytes, max_body: usize) -> MessageRes {
        MessageRes::parse_original(Original::Shared(bytes), max_body)
    }

    fn parse_original(bytes: Original, max_body: usize) -> MessageRes {
        // Room for a usual header at once (growing from empty took four allocations).
        let mut fields: Vec<Field> = Vec::with_capacity(16);
        // One pass over the lines up to the first empty one, which ends the header section
        // (as `header_end` finds it); without one, the whole message is header.
        let mut pos = 0;
        let body_start = loop {
            let rest = &bytes[pos..];
            match rest {
                [b'\n', ..] => break pos + 1,
                [b'\r', b'\n', ..] => break pos + 2,
                [] => break bytes.len(),
                _ => {}
            }
            let end = memchr::memchr(b'\n', rest).map_or(bytes.len(), |i| pos + i);
            let line = &bytes[pos..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                // A lone CR closing a message that has no empty line: no field left.
                break bytes.len();
            }
            let line = pos..pos + line.len();
            match (bytes[pos], fields.last_mut()) {
                (b' ' | b'\t', Some(f)) => f.continue_with(&bytes, line),
                _ => fields.push(Field::Original(line)),
            }
            pos = (end + 1).min(bytes.len());
        };
        MessageRes {
            fields: Arc::new(fields),
            original: bytes,
            body_start,
            new_body: None,
            body_open: false,
            edited: false,
            max_body,
            mime: MimeCache::default(),
        }
    }

    /// The current body (after the empty line).
    pub(crate) fn body(&self) -> &[u8] {
        match &self.new_body {
            Some(b) => b,
            None => &self.original[self.body_start..],
        }
    }

    /// The message's size as `message.size` tells it: fields with CRLF, the empty line, the
    /// body.
    pub(crate) fn size(&self) -> u64 {
        let header: usize = self.field_lines().map(|raw| raw.len() + 2).sum();
        (header + 2 + self.body().len()) as u64
    }

    /// Largest body edits may leave.
    pub(super) fn max_body(&self) -> usize {
        self.max_body
    }

    /// The header fields as on the wire, each without its final CRLF.
    pub(super) fn field_lines(&self) -> impl Iterator<Item = &[u8]> {
        self.fields.iter().map(|f| f.raw(&self.original))
    }

    /// Whether a header field has one of `names` (compared case-insensitively).
    pub(crate) fn has_any_field(&self, names: &[String]) -> bool {
        self.field_lines().any(|raw| {
            let name = field_name(raw);
            names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        })
    }

    /// Replaces the header fields with `lines` (raw fields without their final CRLF).
    pub(super) fn set_field_lines(&mut self, lines: Vec<Vec<u8>>) {
        self.fields = Arc::new(lines.into_iter().map(Field::Written).collect());
        self.edited = true;
    }

    /// Replaces `range` of the body with `bytes`. Ends a body `replace-body` started: what
    /// follows is a part edit, not more of that body.
    pub(super) fn splice_body(&mut self, range: std::ops::Range<usize>, bytes: &[u8]) {
        match &mut self.new_body {
            Some(body) => {
                Arc::make_mut(body).splice(range, bytes.iter().copied());
            }
            None => {
                let body = self.body();
                let mut new = Vec::with_capacity(body.len() - range.len() + bytes.len());
                new.extend_from_slice(&body[..range.start]);
                new.extend_from_slice(bytes);
                new.extend_from_slice(&body[range.end..]);
                self.new_body = Some(Arc::new(new));
            }
        }
        self.body_open = false;
        self.edited = true;
    }

    /// `add-header` and `prepend-header`: a new field `name: value` at `at`.
    fn add_field(&mut self, name: &str, value: &str, at: FieldAt) -> wasmtime::Result<()> {
        self.check_field(name, value, true)?;
        let field = Field::new(name, value);
        let fields = Arc::make_mut(&mut self.fields);
        match at {
            FieldAt::First => fields.insert(0, field),
            FieldAt::Last => fields.push(field),
        }
        self.fields_changed(name);
        self.edited = true;
        Ok(())
    }

    /// `replace-header`: the first field named `name` gets `value`, the others go.
    pub(super) fn replace_field(&mut self, name: &str, value: &str) -> wasmtime::Result<()> {
        self.check_field(name, value, false)?;
        let new = Field::new(name, value);
        let first = self.field_lines().position(|raw| field_is_named(raw, name));
        let original = &self.original;
        let fields = Arc::make_mut(&mut self.fields);
        match first {
            Some(i) => {
                fields[i] = new;
                let mut seen = 0;
                fields.retain(|f| {
                    let same = field_is_named(f.raw(original), name);
                    seen += same as usize;
                    !same || seen == 1
                });
            }
            None if fields.len() < MAX_FIELDS => fields.push(new),
            None => wasmtime::bail!("too many header fields (max {MAX_FIELDS})"),
        }
        self.fields_changed(name);
        self.edited = true;
        Ok(())
    }

    /// `replace-body`: a new body that `append-body` may continue.
    pub(super) fn start_body(&mut self, body: Vec<u8>) -> wasmtime::Result<()> {
        if body.len() > self.max_body {
            wasmtime::bail!(
                "replacement body of {} bytes over the {} byte limit",
                body.len(),
                self.max_body
            );
        }
        self.new_body = Some(Arc::new(crlf(body)));
        self.body_open = true;
        self.mime = MimeCache::default();
        self.edited = true;
        Ok(())
    }

    /// `append-body`: more of the body `replace-body` started.
    pub(super) fn continue_body(&mut self, chunk: Vec<u8>) -> wasmtime::Result<()> {
        let max = self.max_body;
        let Some(body) = self.new_body.as_mut().filter(|_| self.body_open) else {
            wasmtime::bail!("append-body without replace-body first");
        };
        if body.len().saturating_add(chunk.len()) > max {
            wasmtime::bail!("replacement body over the {max} byte limit");
        }
        // A chunk may end between CR and LF; convert line endings across the seam.
        let body = Arc::make_mut(body);
        let seam_cr = body.last() == Some(&b'\r');
        let mut chunk = chunk;
        if seam_cr && chunk.first() == Some(&b'\n') {
            body.push(b'\n');
            chunk.remove(0);
        }
        body.extend_from_slice(&crlf(chunk));
        self.mime = MimeCache::default();
        Ok(())
    }

    /// Drops the cached part tree when a field that shapes it changes.
    fn fields_changed(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if name.starts_with("content-") || name == "mime-version" {
            self.mime = MimeCache::default();
        }
    }

    /// Whether any plugin changed the message.
    pub(crate) fn is_edited(&self) -> bool {
        self.edited
    }

    /// The message bytes after every edit (headers, blank line, body).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        if !self.edited {
            return match self.original {
                Original::Owned(bytes) => Arc::try_unwrap(bytes).unwrap_or_else(|a| (*a).clone()),
                Original::Shared(bytes) => bytes.to_vec(),
            };
        }
        let mut out = self.head();
        out.extend_from_slice(self.body());
        out
    }

    /// The header section after every edit, with the empty line that ends it: what goes in
    /// front of [`MessageRes::body`] in the edited message.
    pub(crate) fn head(&self) -> Vec<u8> {
        let len: usize = self.field_lines().map(|raw| raw.len() + 2).sum();
        let mut out = Vec::with_capacity(len + 2);
        for raw in self.field_lines() {
            out.extend_from_slice(raw);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn check_field(&self, name: &str, value: &str, adding: bool) -> wasmtime::Result<()> {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        if !name_ok {
            wasmtime::bail!("invalid header name {name:?}");
        }
        if value.len() > MAX_VALUE || value.contains(['\r', '\n', '\0']) {
            wasmtime::bail!(
                "invalid value for header {name} (CR, LF, NUL or over {MAX_VALUE} bytes)"
            );
        }
        if adding && self.fields.len() >= MAX_FIELDS {
            wasmtime::bail!("too many header fields (max {MAX_FIELDS})");
        }
        Ok(())
    }
}

/// Converts bare LF to CRLF so a replaced body keeps SMTP line endings.
fn crlf(body: Vec<u8>) -> Vec<u8> {
    let bare = body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'));
    if !bare {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    let mut prev = 0u8;
    for b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@example.org\r\nSubject: hello\r\n  world\r\nX-Two: 1\r\nx-two: 2\r\n\r\nbody line\r\n";

    #[test]
    fn parses_fields_and_body() {
        let m = MessageRes::parse(MSG.to_vec(), 1 << 20);
        let names: Vec<&[u8]> = m.field_lines().map(field_name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject", b"X-Two", b"x-two"]);
        assert_eq!(field_name(b" Odd :x"), b"Odd");
        assert_eq!(field_name(b"no colon"), b"");
        let subject = m.field_lines().nth(1).unwrap();
        assert_eq!(subject, b"Subject: hello\r\n  world");
        assert_eq!(field_value(subject), "hello  world");
        assert!(m.fields.iter().all(|f| matches!(f, Field::Original(_))));
        assert_eq!(m.body(), b"body line\r\n");
        assert!(!m.is_edited());
        assert_eq!(m.into_bytes(), MSG);
    }

    /// The body starts where `header_end` says, and the fields are the lines before it,
    /// folds joined, whatever the line endings.
    #[test]
    fn the_header_ends_at_the_first_empty_line() {
        use wasmrelay_codec::message::header_end;
        let cases: &[&[u8]] = &[
            MSG,
            b"",
            b"\r\n",
            b"\n",
            b"\r\nbody",
            b"A: 1",
            b"A: 1\r",
            b"A: 1\r\n",
            b"A: 1\r\n\r",
            b"A: 1\nB: 2\n\nbody\n",
            b"A: 1\r\n 2\r\n\t3\r\n\r\nbody",
            b"A: 1\r\n\r\n\r\nB: 2\r\n",
            b" leading fold\r\nA: 1\r\n\r\n",
            b"A: 1\r\nB: 2\n\r\nbody",
            b"A: x\rB: y\r\n\r\n",
        ];
        for &bytes in cases {
            let m = MessageRes::parse(bytes.to_vec(), 1 << 20);
            let (fields_end, body) =
                header_end(bytes).map_or((bytes.len(), bytes.len()), |h| (h.fields, h.body));
            assert_eq!(
                m.body(),
                &bytes[body..],
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            let mut want: Vec<Vec<u8>> = Vec::new();
            for line in bytes[..fields_end].split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                match (line.first(), want.last_mut()) {
                    (None, _) => break,
                    (Some(b' ' | b'\t'), Some(last)) => {
                        last.extend_from_slice(b"\r\n");
                        last.extend_from_slice(line);
                    }
                    _ => want.push(line.to_vec()),
                }
            }
            let got: Vec<&[u8]> = m.field_lines().collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(
                m.into_bytes(),
                bytes,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn edits_serialize_with_crlf() {
        let mut m = MessageRes::parse(MSG.to_vec(), 1 << 20);
        Arc::make_mut(&mut m.fields).insert(0, Field::new("X-First", "1"));
        m.new_body = Some(Arc::new(crlf(b"new\nbody\n".to_vec())));
        m.edited = true;
        assert_eq!(
            m.into_bytes(),
            b"X-First: 1\r\nFrom: a@example.org\r\nSubject: hello\r\n  world\r\nX-Two: 1\r\nx-two: 2\r\n\r\nnew\r\nbody\r\n"
        );
    }

    #[test]
    fn folds_joined_by_bare_lf_are_written_with_crlf() {
        let m = MessageRes::parse(b"Subject: a\n b\r\n\tc\nTo: x\n\nbody\n".to_vec(), 1 << 20);
        let lines: Vec<&[u8]> = m.field_lines().collect();
        assert_eq!(lines, [&b"Subject: a\r\n b\r\n\tc"[..], b"To: x"]);
        assert!(matches!(m.fields[0], Field::Written(_)));
        assert!(matches!(m.fields[1], Field::Original(_)));
        assert_eq!(field_value(lines[0]), "a b\tc");
        assert_eq!(
            field_value(b"X: a\rb "),
            "ab",
            "a bare CR goes as in a fold"
        );
        assert_eq!(m.body(), b"body\n");
    }

    /// Each plugin gets a clone; its edits stay its own, and a clone nobody edits shares
    /// the field list.
    #[test]
    fn clones_share_fields_until_an_edit() {
        let m = MessageRes::parse(MSG.to_vec(), 1 << 20);
        let mut copy = m.clone();
        assert!(Arc::ptr_eq(&m.fields, &copy.fields));
        copy.replace_field("x-two", "3").unwrap();
        assert!(!Arc::ptr_eq(&m.fields, &copy.fields));
        let two = |m: &MessageRes| -> Vec<String> {
            m.field_lines()
                .filter(|raw| field_is_named(raw, "X-Two"))
                .map(field_value)
                .collect()
        };
        assert_eq!(two(&m), ["1", "2"]);
        assert_eq!(two(&copy), ["3"]);
        assert!(!m.is_edited());
        assert_eq!(m.into_bytes(), MSG);
        assert_eq!(
            copy.head(),
            b"From: a@example.org\r\nSubject: hello\r\n  world\r\nx-two: 3\r\n\r\n"
        );
    }

    #[test]
    fn a_field_is_found_by_name_in_the_header_only() {
        let m = MessageRes::parse(
            b"Subject: a\r\n folded\r\nx-STREAM: news\r\n\r\nPrecedence: bulk\r\n".to_vec(),
            1 << 20,
        );
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(m.has_any_field(&names(&["Precedence", "X-Stream"])));
        assert!(
            !m.has_any_field(&names(&["Precedence", "folded"])),
            "a body line or a continuation is not a field"
        );
        assert!(!m.has_any_field(&[]));
    }

    #[test]
    fn headers_only_message() {
        let m = MessageRes::parse(b"Subject: x\r\n".to_vec(), 1 << 20);
        assert_eq!(m.fields.len(), 1);
        assert!(m.body().is_empty());
        let m = MessageRes::parse(b"\r\nbody only\r\n".to_vec(), 1 << 20);
        assert!(m.fields.is_empty());
        assert_eq!(m.body(), b"body only\r\n");
    }

    #[test]
    fn field_checks() {
        let m = MessageRes::parse(MSG.to_vec(), 1 << 20);
        assert!(m.check_field("X-Ok", "fine value", true).is_ok());
        assert!(m.check_field("Bad Name", "v", true).is_err());
        assert!(m.check_field("X-Inject", "a\r\nBcc: x", true).is_err());
        assert!(m.check_field("", "v", true).is_err());
    }
}
