//! A part's MIME header fields: what its Content-Type, Content-Disposition and
//! Content-Transfer-Encoding say (read with mail-parser's field parsers), and the rewrite that
//! labels a replaced text part as UTF-8 in its new transfer encoding, leaving every other
//! field as it was.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, HeaderValue};

/// Longest field value handed to the field parser; a longer one is cut (its tail cannot
/// change the type, and a parameter cut in half is simply absent).
const MAX_FIELD: usize = 16 * 1024;
/// Longest type or subtype (RFC 6838 §4.2).
const MAX_TOKEN: usize = 127;
/// Longest charset name, transfer encoding and boundary reported; longer ones are ignored.
const MAX_CHARSET: usize = 64;
const MAX_ENCODING: usize = 32;
const MAX_BOUNDARY: usize = 200;
/// Longest file name reported (cut at a character boundary).
const MAX_FILENAME: usize = 1024;

/// The `charset` parameter a replaced text part gets.
const UTF8_PARAM: &[u8] = b"charset=utf-8";

/// What the MIME fields of one part say, normalized as the WIT's `mime-part` documents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MimeHeader {
    /// Lower-cased `type/subtype`.
    pub content_type: String,
    pub charset: Option<String>,
    pub filename: Option<String>,
    /// `inline` or `attachment` (RFC 2183 §2.8: an unknown disposition is an attachment).
    pub disposition: Option<String>,
    /// Lower-cased Content-Transfer-Encoding.
    pub encoding: Option<String>,
    /// The boundary of a `multipart/*` part.
    pub boundary: Option<String>,
}

impl MimeHeader {
    /// Reads the first Content-Type, Content-Disposition and Content-Transfer-Encoding among
    /// `fields` (raw fields as [`fields`] yields them). `default_type` applies when there is
    /// no Content-Type; one that does not name a `type/subtype` is `text/plain` (RFC 2045
    /// §5.2).
    pub(crate) fn parse<'a>(
        fields: impl Iterator<Item = &'a [u8]>,
        default_type: &str,
    ) -> MimeHeader {
        let (mut ctype, mut disposition, mut encoding) = (None, None, None);
        for field in fields {
            let slot = match field_name(field) {
                n if n.eq_ignore_ascii_case(b"content-type") => &mut ctype,
                n if n.eq_ignore_ascii_case(b"content-disposition") => &mut disposition,
                n if n.eq_ignore_ascii_case(b"content-transfer-encoding") => &mut encoding,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(field_value(field));
            }
        }
        let mut header = MimeHeader {
            content_type: default_type.to_string(),
            ..MimeHeader::default()
        };
        if let Some(value) = ctype {
            header.content_type = "text/plain".to_string();
            if let Some(ct) = content_type(&value) {
                if let Some(t) = type_subtype(&ct) {
                    header.content_type = t;
                }
                header.charset = attribute(&ct, "charset")
                    .map(str::trim)
                    .filter(|c| !c.is_empty() && c.len() <= MAX_CHARSET)
                    .map(str::to_ascii_lowercase);
                if header.content_type.starts_with("multipart/") {
                    header.boundary = attribute(&ct, "boundary")
                        .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
                        .map(str::to_string);
                }
                header.filename = attribute(&ct, "name").map(filename);
            }
        }
        if let Some(ct) = disposition.as_deref().and_then(content_type) {
            let inline = ct.ctype().eq_ignore_ascii_case("inline");
            header.disposition = Some(if inline { "inline" } else { "attachment" }.into());
            if let Some(name) = attribute(&ct, "filename") {
                header.filename = Some(filename(name));
            }
        }
        header.encoding = encoding.and_then(|v| {
            let text = String::from_utf8_lossy(&v);
            let token = text
                .split(|c: char| c.is_ascii_whitespace() || c == '(')
                .find(|t| !t.is_empty())?
                .to_ascii_lowercase();
            (token.len() <= MAX_ENCODING).then_some(token)
        });
        header
    }
}

/// The name of a raw field: what precedes its colon, trimmed.
pub(crate) fn field_name(field: &[u8]) -> &[u8] {
    let name = memchr::memchr(b':', field).map_or(field, |i| &field[..i]);
    name.trim_ascii()
}

/// The value of a raw field for mail-parser's field parsers: after the colon, ending in a
/// line break, at most [`MAX_FIELD`] bytes.
fn field_value(field: &[u8]) -> Vec<u8> {
    let start = memchr::memchr(b':', field).map_or(field.len(), |i| i + 1);
    let value = &field[start..];
    let mut out = value[..value.len().min(MAX_FIELD)].to_vec();
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses a Content-Type or Content-Disposition value. The parser is fuzzed upstream; a
/// panic in it would still only cost this part its type, never the session.
fn content_type(value: &[u8]) -> Option<ContentType<'_>> {
    catch_unwind(AssertUnwindSafe(|| {
        match MessageStream::new(value).parse_content_type() {
            HeaderValue::ContentType(ct) => Some(ct),
            _ => None,
        }
    }))
    .ok()
    .flatten()
}

/// `type/subtype` lower-cased, when both are present tokens of sane length.
fn type_subtype(ct: &ContentType<'_>) -> Option<String> {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= MAX_TOKEN
            && t.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
    };
    let (ty, sub) = (ct.ctype().trim(), ct.subtype()?.trim());
    (token(ty) && token(sub)).then(|| format!("{ty}/{sub}").to_ascii_lowercase())
}

fn attribute<'a>(ct: &'a ContentType<'_>, name: &str) -> Option<&'a str> {
    ct.attributes()?
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_ref())
}

fn filename(name: &str) -> String {
    let mut end = name.len().min(MAX_FILENAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The fields of a header section (without the empty line that ends it), each without its
/// final line break; a folded field's continuation lines stay inside it.
pub(crate) fn fields(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= block.len() {
            return None;
        }
        let start = pos;
        let mut end;
        loop {
            let eol = memchr::memchr(b'\n', &block[pos..]).map(|i| pos + i);
            end = eol.unwrap_or(block.len());
            pos = eol.map_or(block.len(), |i| i + 1);
            if !matches!(block.get(pos), Some(b' ' | b'\t')) {
                break;
            }
        }
        let field = &block[start..end];
        Some(field.strip_suffix(b"\r").unwrap_or(field))
    })
}

/// Rewrites the header fields of a `content_type` part whose content becomes UTF-8 text in
/// transfer encoding `encoding`, calling `emit` with each resulting field (no line break).
/// The first Content-Type keeps its type and parameters except `charset`, which becomes
/// `utf-8`; the first Content-Transfer-Encoding names `encoding`; later duplicates of either
/// are dropped so no reader can pick another one; missing ones are added at the end. Every
/// other field is passed through unchanged.
pub(crate) fn rewrite<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
    content_type: &str,
    encoding: &str,
    mut emit: impl FnMut(&[u8]),
) {
    let (mut ctype, mut cte) = (false, false);
    let cte_field = format!("Content-Transfer-Encoding: {encoding}");
    for field in fields {
        let name = field_name(field);
        if name.eq_ignore_ascii_case(b"content-type") {
            if !std::mem::replace(&mut ctype, true) {
                emit(&utf8_content_type(field, content_type));
            }
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            if !std::mem::replace(&mut cte, true) {
                emit(cte_field.as_bytes());
            }
        } else {
            emit(field);
        }
    }
    if !ctype {
        emit(format!("Content-Type: {content_type}; charset=utf-8").as_bytes());
    }
    if !cte {
        emit(cte_field.as_bytes());
    }
}

/// A raw Content-Type field with its `charset` parameter (and any RFC 2231 form of it)
/// replaced by `charset=utf-8`, placed right after the type (where no cut of a long field
/// can lose it); the type and the other parameters keep their bytes. A type that is not a
/// clean `type/subtype` (a comment, a quote) could hide what follows from a reader, so the
/// whole field is then written anew with `content_type`, the type reported for the part.
fn utf8_content_type(field: &[u8], content_type: &str) -> Vec<u8> {
    let colon = memchr::memchr(b':', field).map_or(field.len(), |i| i + 1);
    let (name, value) = field.split_at(colon);
    let segments = split_params(value);
    let clean = |ty: &[u8]| {
        let ty = ty.trim_ascii();
        let token = |t: &[u8]| {
            !t.is_empty()
                && t.iter()
                    .all(|&b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
        };
        let mut halves = ty.splitn(2, |&b| b == b'/');
        let (t, sub) = (
            halves.next().unwrap_or_default(),
            halves.next().unwrap_or_default(),
        );
        token(t) && token(sub)
    };
    let mut out = name.to_vec();
    match segments.first() {
        Some(ty) if clean(ty) => out.extend_from_slice(ty),
        _ => {
            return format!(
                "Content-Type: {content_type}; {}",
                String::from_utf8_lossy(UTF8_PARAM)
            )
            .into_bytes()
        }
    }
    let line = out.len() - memchr::memrchr(b'\n', &out).map_or(0, |i| i + 1);
    if line + UTF8_PARAM.len() + 2 > 76 {
        out.extend_from_slice(b";\r\n ");
    } else {
        out.extend_from_slice(b"; ");
    }
    out.extend_from_slice(UTF8_PARAM);
    for param in segments.iter().skip(1) {
        let pname = param
            .split(|&b| b == b'=' || b == b'*')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if param.trim_ascii().is_empty() || pname.eq_ignore_ascii_case(b"charset") {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(param);
    }
    out
}

/// Splits a parameter list at the semicolons outside quoted strings and comments.
fn split_params(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut comment, mut escaped) = (0, false, 0u32, false);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted || comment > 0 => escaped = true,
            b'"' if comment == 0 => quoted = !quoted,
            b'(' if !quoted => comment += 1,
            b')' if !quoted => comment = comment.saturating_sub(1),
            b';' if !quoted && comment == 0 => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}
