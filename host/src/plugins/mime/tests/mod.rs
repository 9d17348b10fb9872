use base64::Engine;

use super::*;

mod editing;
mod hostile;
mod reading;

const MAX: usize = 32 << 20;

fn b64(bytes: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = flat
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    lines.join("\r\n")
}

fn crlf(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s.into_bytes()
}

const HTML: &str =
    "<p>Hello <a href=\"http://example.org/a\">there</a> \u{2014} \u{e9}t\u{e9}</p>\r\n";

/// Bytes standing in for a PDF: every octet value, so any re-encoding would show.
fn pdf() -> Vec<u8> {
    (0..=255u8).cycle().take(3000).collect()
}

/// mixed( alternative( text/plain QP latin-1, related( text/html base64, image/png ) ), pdf ).
fn sample() -> Vec<u8> {
    let html = b64(HTML.as_bytes());
    let pdf = b64(&pdf());
    crlf(&[
        "From: a@example.org",
        "To: b@example.com",
        "Subject: sample",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed;",
        " boundary=\"mixed\"",
        "",
        "This is a preamble.",
        "--mixed",
        "Content-Type: multipart/alternative; boundary=alt",
        "",
        "--alt",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Caf=E9 au lait, see http://example.org/a and a long line that goes on and=",
        " on past the soft break.",
        "--alt",
        "Content-Type: multipart/related; boundary=\"rel\"",
        "",
        "--rel",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        &html,
        "--rel",
        "Content-Type: image/png",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: inline; filename=\"logo.png\"",
        "",
        "iVBORw0KGgo=",
        "--rel--",
        "--alt--",
        "--mixed",
        "Content-Type: application/pdf; name=\"doc.pdf\"",
        "Content-Disposition: attachment; filename=\"doc.pdf\"",
        "Content-Transfer-Encoding: base64",
        "",
        &pdf,
        "--mixed--",
        "epilogue",
    ])
}

fn message(bytes: Vec<u8>) -> MessageRes {
    MessageRes::parse(bytes, MAX)
}

/// (content type, parent, charset, encoding) of a part.
type Shape = (String, Option<u32>, Option<String>, Option<String>);

fn shape(m: &mut MessageRes) -> Vec<Shape> {
    parts(m)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            assert_eq!(p.id as usize, i);
            (p.content_type, p.parent, p.charset, p.transfer_encoding)
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The message's bytes as they would be spooled.
fn bytes(m: &MessageRes) -> Vec<u8> {
    m.clone().into_bytes()
}

/// Checks that the tree kept up to date through edits is the tree a fresh parse of the
/// edited message finds, offsets, fields and sizes alike.
fn assert_consistent(m: &mut MessageRes) {
    let kept = format!("{:?}", parts(m));
    let kept_nodes = tree(m).nodes.clone();
    let mut fresh = message(bytes(m));
    assert_eq!(format!("{:?}", parts(&mut fresh)), kept);
    assert_eq!(tree(&mut fresh).nodes, kept_nodes);
}
