//! Repairs messages with lines over 998 octets (RFC 5322 §2.1.1), which applications that
//! send minified HTML produce and which no next hop has to accept. Each part with such a line
//! is re-encoded, losslessly: identity-encoded content (7bit, 8bit, binary, or none) becomes
//! quoted-printable with its charset unchanged, quoted-printable gets soft line breaks, and
//! base64 is re-wrapped. What cannot be re-encoded (a header field, a multipart preamble, a
//! `message/*` part) leaves the message unrepairable, and it is refused as before.

use std::borrow::Cow;

use wasmrelay_codec::message::header_end;

use super::decode::transfer_decoded;
use super::encode::{quoted_printable, LINE};
use super::header::{self, MimeHeader};
use super::tree::{Node, Tree};

/// Longest line RFC 5322 allows, without its CRLF.
pub(crate) const MAX_LINE: usize = 998;

/// Why a message with long lines could not be repaired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unrepairable {
    #[error("a header field line is longer than 998 octets")]
    Header,
    #[error("a line longer than 998 octets outside any part that can be re-encoded")]
    Structure,
}

/// Whether a line of `bytes` (without its line break) is longer than [`MAX_LINE`].
pub(crate) fn has_long_line(bytes: &[u8]) -> bool {
    pieces_have_long_line(&[bytes])
}

/// [`has_long_line`] of the concatenation of `pieces`, with lines that span pieces.
fn pieces_have_long_line(pieces: &[&[u8]]) -> bool {
    // Octets of the current line so far (a final CR included), and its last octet.
    let (mut len, mut last) = (0usize, 0u8);
    let too_long = |len: usize, last: u8| len - usize::from(len > 0 && last == b'\r') > MAX_LINE;
    for piece in pieces {
        let mut rest = *piece;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            if nl > 0 {
                last = rest[nl - 1];
            }
            if too_long(len + nl, last) {
                return true;
            }
            (len, last) = (0, 0);
            rest = &rest[nl + 1..];
        }
        if let Some(&b) = rest.last() {
            len += rest.len();
            last = b;
        }
    }
    too_long(len, last)
}

/// The message with every part that has a long line re-encoded (see the module comment), as
/// its pieces in order: what stays as it was is borrowed from `message` (a large, mapped
/// message is written out again without a heap copy of it); only the re-encoded parts and the
/// header fields that name their encoding are new.
pub(crate) fn repair(message: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, Unrepairable> {
    let (fields_end, body_start) =
        header_end(message).map_or((message.len(), message.len()), |h| (h.fields, h.body));
    if has_long_line(&message[..body_start]) {
        return Err(Unrepairable::Header);
    }
    let top_fields = &message[..fields_end];
    let body = &message[body_start..];
    let tree = Tree::scan(
        MimeHeader::parse(header::fields(top_fields), "text/plain"),
        body,
    );
    // Leaves to re-encode, in order, so that the pieces between them are what is kept.
    let mut edits: Vec<(usize, &Node)> = tree
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.container && has_long_line(n.content(body)))
        .collect();
    edits.sort_by_key(|(_, n)| n.header);
    let mut head = Cow::Borrowed(&message[..body_start]);
    let mut pieces = Vec::with_capacity(edits.len() * 4 + 2);
    let mut at = 0;
    for (id, node) in edits {
        let Some((encoding, content)) = reencode(node, body) else {
            return Err(Unrepairable::Structure);
        };
        if node.header < at || node.content > node.end {
            return Err(Unrepairable::Structure);
        }
        if id == 0 {
            let mut fields = with_encoding(header::fields(top_fields), encoding);
            if !header::fields(top_fields)
                .any(|f| header::field_name(f).eq_ignore_ascii_case(b"mime-version"))
            {
                fields.extend_from_slice(b"MIME-Version: 1.0\r\n");
            }
            fields.extend_from_slice(b"\r\n");
            head = Cow::Owned(fields);
        } else {
            // The part's fields end with the empty line; the rewrite keeps it.
            let fields_block = &body[node.header..node.content];
            let fields_end = header_end(fields_block).map_or(fields_block.len(), |h| h.fields);
            let mut fields = with_encoding(header::fields(&fields_block[..fields_end]), encoding);
            fields.extend_from_slice(b"\r\n");
            pieces.push(Cow::Borrowed(&body[at..node.header]));
            pieces.push(Cow::Owned(fields));
            at = node.content;
        }
        pieces.push(Cow::Borrowed(&body[at..node.content]));
        pieces.push(Cow::Owned(content));
        at = node.end;
    }
    pieces.push(Cow::Borrowed(&body[at..]));
    pieces.insert(0, head);
    let slices: Vec<&[u8]> = pieces.iter().map(|p| &p[..]).collect();
    if pieces_have_long_line(&slices) {
        return Err(Unrepairable::Structure);
    }
    Ok(pieces)
}

/// The part's content in a transfer encoding whose lines fit, and that encoding's name; none
/// for types that may not be re-encoded (RFC 2046 §5.2: `message/*` and `multipart/*` only
/// take identity encodings).
fn reencode(node: &Node, body: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    let ctype = node.info.content_type.as_str();
    if ctype.starts_with("message/") || ctype.starts_with("multipart/") {
        return None;
    }
    let raw = node.content(body);
    match node.info.encoding.as_deref() {
        None | Some("7bit" | "8bit" | "binary") => {
            Some(("quoted-printable", quoted_printable(raw)))
        }
        Some("quoted-printable") => {
            let decoded = transfer_decoded(raw, Some("quoted-printable"));
            Some(("quoted-printable", quoted_printable(&decoded)))
        }
        Some("base64") => {
            let flat: Vec<u8> = raw
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            Some((
                "base64",
                flat.chunks(LINE).collect::<Vec<_>>().join(&b"\r\n"[..]),
            ))
        }
        Some(_) => None,
    }
}

/// `fields`, each ended by CRLF, with the first Content-Transfer-Encoding naming `encoding`,
/// later ones dropped (no reader may pick another) and one added when there was none.
fn with_encoding<'a>(fields: impl Iterator<Item = &'a [u8]>, encoding: &str) -> Vec<u8> {
    let field = format!("Content-Transfer-Encoding: {encoding}");
    let mut out = Vec::new();
    let mut written = false;
    for f in fields {
        if header::field_name(f).eq_ignore_ascii_case(b"content-transfer-encoding") {
            if !std::mem::replace(&mut written, true) {
                out.extend_from_slice(field.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        out.extend_from_slice(f);
        out.extend_from_slice(b"\r\n");
    }
    if !written {
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repair(message: &[u8]) -> Result<Vec<u8>, Unrepairable> {
        Ok(super::repair(message)?.concat())
    }

    fn long(n: usize) -> String {
        "<td>é</td>".repeat(n / 10 + 1)
    }

    /// The decoded payloads of every leaf part, as mail-parser reads them.
    fn payloads(message: &[u8]) -> Vec<Vec<u8>> {
        let parsed = mail_parser::MessageParser::default()
            .parse(message)
            .expect("parses");
        parsed
            .parts
            .iter()
            .filter(|p| !matches!(p.body, mail_parser::PartType::Multipart(_)))
            .map(|p| p.contents().to_vec())
            .collect()
    }

    #[test]
    fn a_plain_message_becomes_quoted_printable_with_the_same_content() {
        let body = format!("<html>{}</html>\r\nshort\r\n", long(5000));
        let message = format!(
            "From: a@b.test\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
        );
        assert!(has_long_line(message.as_bytes()));
        let out = repair(message.as_bytes()).unwrap();
        assert!(!has_long_line(&out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        assert!(!text.contains("8bit"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains("MIME-Version: 1.0\r\n"));
        assert_eq!(payloads(&out), payloads(message.as_bytes()));
    }

    #[test]
    fn only_the_long_part_of_a_multipart_changes() {
        let html = long(3000);
        let pdf = "JVBERi0xLjQK".repeat(200);
        let message = format!(
            "From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
             --B\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n\
             --B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n\
             --B--\r\n"
        );
        let out = repair(message.as_bytes()).unwrap();
        assert!(!has_long_line(&out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B\r\n"));
        assert_eq!(
            text.matches("Content-Transfer-Encoding: quoted-printable")
                .count(),
            1
        );
        assert_eq!(payloads(&out), payloads(message.as_bytes()));
    }

    #[test]
    fn long_lines_are_found_across_pieces() {
        let line = vec![b'x'; MAX_LINE];
        let cases: Vec<(Vec<&[u8]>, bool)> = vec![
            (vec![&line, b"\r\n"], false),
            (vec![&line[..500], &line[500..], b"\r", b"\n"], false),
            (vec![&line[..500], &line[500..], b"y\r\n"], true),
            (vec![&line, b"y"], true),
            (vec![&line, b"\r"], false),
            (vec![b"a\r\n", &line, b"\nb"], false),
            (vec![b"", &line, b"", b"z"], true),
        ];
        for (pieces, want) in cases {
            assert_eq!(pieces_have_long_line(&pieces), want);
            assert_eq!(has_long_line(&pieces.concat()), want);
        }
    }

    #[test]
    fn what_cannot_be_reencoded_is_refused() {
        let header = format!(
            "From: a@b.test\r\nSubject: {}\r\n\r\nbody\r\n",
            "x".repeat(1200)
        );
        assert_eq!(repair(header.as_bytes()), Err(Unrepairable::Header));
        let nested = format!(
            "From: a@b.test\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\n{}\r\n",
            "y".repeat(1200)
        );
        assert_eq!(repair(nested.as_bytes()), Err(Unrepairable::Structure));
    }
}
