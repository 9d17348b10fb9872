use base64::Engine;

use super::*;

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

#[test]
fn the_part_tree_of_nested_alternative_and_related() {
    let mut m = message(sample());
    assert_eq!(
        shape(&mut m),
        [
            ("multipart/mixed".into(), None, None, None),
            ("multipart/alternative".into(), Some(0), None, None),
            (
                "text/plain".into(),
                Some(1),
                s("iso-8859-1"),
                s("quoted-printable")
            ),
            ("multipart/related".into(), Some(1), None, None),
            ("text/html".into(), Some(3), s("utf-8"), s("base64")),
            ("image/png".into(), Some(3), None, s("base64")),
            ("application/pdf".into(), Some(0), None, s("base64")),
        ]
    );
    let p = parts(&mut m);
    assert_eq!(p[5].disposition.as_deref(), Some("inline"));
    assert_eq!(p[5].filename.as_deref(), Some("logo.png"));
    assert_eq!(p[6].disposition.as_deref(), Some("attachment"));
    assert_eq!(p[6].filename.as_deref(), Some("doc.pdf"));
    let sizes: Vec<u64> = p.iter().map(|p| p.size).collect();
    let plain = "Caf\u{e9} au lait, see http://example.org/a and a long line that goes on and on past the soft break.";
    assert_eq!(
        sizes,
        [0, 0, plain.len() as u64 - 1, 0, HTML.len() as u64, 8, 3000]
    );
    assert_eq!(part_text(&mut m, 2).unwrap(), plain);
    assert_eq!(part_text(&mut m, 4).unwrap(), HTML);
    assert_eq!(part_text(&mut m, 0), Err(wit::PartError::NotText));
    assert_eq!(part_text(&mut m, 5), Err(wit::PartError::NotText));
    assert_eq!(part_text(&mut m, 7), Err(wit::PartError::NoSuchPart));
    assert_eq!(read_part(&mut m, 3, 0, 10), Err(wit::PartError::NotText));
}

#[test]
fn binary_parts_read_in_chunks() {
    let mut m = message(sample());
    let mut got = Vec::new();
    loop {
        let chunk = read_part(&mut m, 6, got.len() as u64, 1000).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 1000);
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, pdf());
    assert!(read_part(&mut m, 6, u64::MAX, 10).unwrap().is_empty());
    // Text parts read as their transfer-decoded octets, in their own charset.
    assert_eq!(read_part(&mut m, 2, 0, 4).unwrap(), b"Caf\xe9");
}

#[test]
fn text_decodes_from_each_transfer_encoding_and_charset() {
    // (Content-Type, Content-Transfer-Encoding, raw content, expected part-text)
    type Case<'a> = (&'a str, &'a str, &'a [u8], Result<&'a str, wit::PartError>);
    let cases: &[Case] = &[
        (
            "text/plain; charset=iso-8859-1",
            "quoted-printable",
            b"Caf=E9=\r\n!",
            Ok("Caf\u{e9}!"),
        ),
        (
            "text/plain; charset=utf-8",
            "base64",
            b"w6l0w6k=",
            Ok("\u{e9}t\u{e9}"),
        ),
        (
            "text/plain; charset=utf-8",
            "8bit",
            "\u{e9}t\u{e9}".as_bytes(),
            Ok("\u{e9}t\u{e9}"),
        ),
        ("text/plain; charset=\"UTF-8\"", "8bit", b"ok", Ok("ok")),
        ("text/plain", "8bit", "\u{e9}".as_bytes(), Ok("\u{e9}")),
        // Unlabelled 8-bit text that is not UTF-8 reads as Windows-1252.
        ("text/plain", "8bit", b"\xe9\x80", Ok("\u{e9}\u{20ac}")),
        (
            "text/plain; charset=windows-1252",
            "quoted-printable",
            b"=80",
            Ok("\u{20ac}"),
        ),
        (
            "text/plain; charset=koi8-r",
            "8bit",
            b"\xf0\xd2\xc9",
            Ok("\u{41f}\u{440}\u{438}"),
        ),
        (
            "text/plain; charset=shift_jis",
            "base64",
            b"k/qWe4zq",
            Ok("\u{65e5}\u{672c}\u{8a9e}"),
        ),
        // An unknown charset: ASCII reads, anything else would be a guess.
        (
            "text/plain; charset=x-unknown",
            "7bit",
            b"plain",
            Ok("plain"),
        ),
        (
            "text/plain; charset=x-unknown",
            "8bit",
            b"\xe9",
            Err(wit::PartError::NotText),
        ),
        // Invalid base64 is kept as it came, the way mail-parser recovers it.
        (
            "text/plain; charset=us-ascii",
            "base64",
            b"not*base64",
            Ok("not*base64"),
        ),
        // Lenient quoted-printable: a stray `=` stays.
        (
            "text/plain; charset=us-ascii",
            "quoted-printable",
            b"a=zz b",
            Ok("a=zz b"),
        ),
        (
            "image/gif",
            "base64",
            b"R0lGOA==",
            Err(wit::PartError::NotText),
        ),
    ];
    for (ctype, cte, raw, want) in cases {
        let mut bytes = format!(
            "Subject: x\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(raw);
        let mut m = message(bytes);
        let got = part_text(&mut m, 0);
        assert_eq!(got.as_deref(), want.as_deref(), "{ctype} {cte} {raw:?}");
    }
}

#[test]
fn replacements_are_encoded_as_fits() {
    // (new text, transfer encoding chosen)
    let long_ascii = "word ".repeat(40);
    let cases: &[(&str, &str)] = &[
        ("Hello\nworld\n", "7bit"),
        ("", "7bit"),
        (&long_ascii, "quoted-printable"),
        ("Caf\u{e9} au lait\r\n", "quoted-printable"),
        ("-- \nsignature\n", "quoted-printable"),
        ("trailing space \nand tab\t\n", "quoted-printable"),
        ("a=b\n", "7bit"),
        (
            "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8}",
            "base64",
        ),
        ("bare\rCR and NUL \0\n", "quoted-printable"),
    ];
    for (text, want) in cases {
        let mut m = message(b"Subject: x\r\n\r\nold\r\n".to_vec());
        replace_part_text(&mut m, 0, text).unwrap();
        let p = parts(&mut m);
        assert_eq!(p[0].transfer_encoding.as_deref(), Some(*want), "{text:?}");
        assert_eq!(p[0].charset.as_deref(), Some("utf-8"));
        let canonical = String::from_utf8(encode::canonical(text)).unwrap();
        assert_eq!(part_text(&mut m, 0).unwrap(), canonical, "{text:?}");
        let out = bytes(&m);
        assert!(out.ends_with(b"\r\n"), "{out:?}");
        for line in out.split(|&b| b == b'\n') {
            assert!(line.len() <= 77, "line of {} octets", line.len());
            assert!(!line.starts_with(b"--"), "{line:?}");
            assert!(line.is_empty() || !line[..line.len() - 1].contains(&b'\r'));
        }
        assert_consistent(&mut m);
    }
}

#[test]
fn quoted_printable_lines_stay_short_whatever_the_text() {
    let texts = [
        "x".repeat(75),
        "x".repeat(76),
        "x".repeat(77),
        format!("{}\u{e9}", "x".repeat(74)),
        "=".repeat(100),
        format!("{} ", "y".repeat(75)),
        "-".repeat(200),
        "\u{e9}".repeat(60),
    ];
    for text in &texts {
        let qp = encode::quoted_printable(text.as_bytes());
        for line in qp.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.len() <= 76, "{} octets in {text:?}", line.len());
            assert!(!line.starts_with(b"-"), "{text:?}");
            assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"));
        }
        let decoded = decode::transfer_decoded(&qp, Some("quoted-printable"));
        assert_eq!(decoded.as_ref(), text.as_bytes());
    }
}

#[test]
fn an_html_part_is_replaced_and_everything_else_kept() {
    let original = sample();
    let mut m = message(original.clone());
    let html = part_text(&mut m, 4).unwrap();
    let new_html = html.replace("href=\"http", "href=\"https://t.example/c?u=http");
    replace_part_text(&mut m, 4, &new_html).unwrap();
    assert_eq!(part_text(&mut m, 4).unwrap(), new_html);
    assert_consistent(&mut m);

    // Only the html part's header fields and content changed.
    let out = bytes(&m);
    let cut = |b: &[u8], from: &str, to: &str| {
        let s = memchr::memmem::find(b, from.as_bytes()).unwrap();
        let e = s + memchr::memmem::find(&b[s..], to.as_bytes()).unwrap();
        b[s..e].to_vec()
    };
    assert_eq!(
        cut(&out, "From:", "Content-Type: text/html"),
        cut(&original, "From:", "Content-Type: text/html")
    );
    assert_eq!(
        cut(&out, "\r\n--rel\r\nContent-Type: image/png", "epilogue\r\n"),
        cut(
            &original,
            "\r\n--rel\r\nContent-Type: image/png",
            "epilogue\r\n"
        )
    );
    assert_eq!(read_part(&mut m, 6, 0, 1 << 20).unwrap(), pdf());
    let p = parts(&mut m);
    assert_eq!(p[4].charset.as_deref(), Some("utf-8"));
    assert_eq!(p[4].transfer_encoding.as_deref(), Some("quoted-printable"));
    assert_eq!(p[4].size, new_html.len() as u64);
    assert!(out
        .windows(39)
        .any(|w| w == b"Content-Type: text/html; charset=utf-8\r"));
}

#[test]
fn edits_compose_on_one_message() {
    let mut m = message(sample());
    let plain = part_text(&mut m, 2).unwrap();
    replace_part_text(&mut m, 2, &format!("{plain}\nFirst line added.")).unwrap();
    assert_consistent(&mut m);
    replace_part_text(&mut m, 4, "<p>short</p>").unwrap();
    assert_consistent(&mut m);
    // The same part twice: the second edit works on the first one's result.
    let again = part_text(&mut m, 2).unwrap();
    assert!(again.ends_with("First line added."), "{again:?}");
    replace_part_text(&mut m, 2, &format!("{again}\r\nSecond line added.\r\n")).unwrap();
    assert_consistent(&mut m);
    assert_eq!(
        part_text(&mut m, 2).unwrap(),
        format!("{plain}\r\nFirst line added.\r\nSecond line added.\r\n")
    );
    assert_eq!(part_text(&mut m, 4).unwrap(), "<p>short</p>");
    assert_eq!(read_part(&mut m, 6, 0, 1 << 20).unwrap(), pdf());
    assert_eq!(read_part(&mut m, 5, 0, 100).unwrap(), b"\x89PNG\r\n\x1a\n");
}

#[test]
fn body_and_header_edits_compose_with_part_edits() {
    // replace-body after a part edit: the tree is parsed again from the new body.
    let mut m = message(sample());
    replace_part_text(&mut m, 2, "edited").unwrap();
    m.start_body(b"--mixed\r\n\r\nfirst\r\n".to_vec()).unwrap();
    m.continue_body(
        b"--mixed\r\nContent-Type: text/html\r\n\r\n<b>second</b>\r\n--mixed--\r\n".to_vec(),
    )
    .unwrap();
    assert_eq!(
        shape(&mut m),
        [
            ("multipart/mixed".into(), None, None, None),
            ("text/plain".into(), Some(0), None, None),
            ("text/html".into(), Some(0), None, None),
        ]
    );
    // A part edit on the new body, then append-body no longer continues it.
    replace_part_text(&mut m, 2, "<b>deux</b>").unwrap();
    assert_consistent(&mut m);
    assert!(m.continue_body(b"more".to_vec()).is_err());
    assert_eq!(part_text(&mut m, 1).unwrap(), "first");
    assert_eq!(part_text(&mut m, 2).unwrap(), "<b>deux</b>");

    // The message's own Content-Type changes: the tree follows it.
    m.replace_field("Content-Type", "text/plain").unwrap();
    assert_eq!(shape(&mut m).len(), 1);
    assert!(part_text(&mut m, 0).unwrap().starts_with("--mixed"));
    m.replace_field("Content-Type", "multipart/alternative; boundary=mixed")
        .unwrap();
    assert_eq!(parts(&mut m).len(), 3);
    // Other header edits keep the cached tree.
    let cached = m.mime.tree.clone().unwrap();
    m.replace_field("Subject", "still the same parts").unwrap();
    assert!(Arc::ptr_eq(m.mime.tree.as_ref().unwrap(), &cached));
}

#[test]
fn a_single_part_message_gets_its_own_fields_updated() {
    let mut m = message(
        b"Subject: one part\r\nContent-Type: text/plain; charset=iso-8859-1; format=flowed\r\n\
          Content-Transfer-Encoding: quoted-printable\r\ncontent-transfer-encoding: 8bit\r\n\
          X-Other: kept\r\n\r\nCaf=E9\r\n"
            .to_vec(),
    );
    replace_part_text(&mut m, 0, "Caf\u{e9} cr\u{e8}me\n").unwrap();
    assert_eq!(
        String::from_utf8(bytes(&m)).unwrap(),
        "Subject: one part\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\
         Content-Transfer-Encoding: quoted-printable\r\nX-Other: kept\r\n\
         MIME-Version: 1.0\r\n\r\nCaf=C3=A9 cr=C3=A8me\r\n"
    );
    assert_consistent(&mut m);

    // No MIME fields at all: they are added.
    let mut m = message(b"Subject: bare\r\n\r\nhello\r\n".to_vec());
    replace_part_text(&mut m, 0, "bye\n").unwrap();
    assert_eq!(
        String::from_utf8(bytes(&m)).unwrap(),
        "Subject: bare\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\nbye\r\n"
    );
    // A body must end with a line break; one the text lacks decodes to nothing.
    replace_part_text(&mut m, 0, "bye").unwrap();
    assert!(bytes(&m).ends_with(b"quoted-printable\r\nMIME-Version: 1.0\r\n\r\nbye=\r\n"));
    assert_eq!(part_text(&mut m, 0).unwrap(), "bye");
}

#[test]
fn content_type_parameters_survive_the_charset_change() {
    let cases: &[(&str, &str)] = &[
        ("text/html", "text/html; charset=utf-8"),
        (
            "text/html; charset=\"iso-8859-1\"",
            "text/html; charset=utf-8",
        ),
        (
            "text/html;\r\n\tcharset=us-ascii;\r\n\tformat=flowed",
            "text/html; charset=utf-8;\r\n\tformat=flowed",
        ),
        (
            "text/plain; name=\"a;charset=b.txt\"; CHARSET=x",
            "text/plain; charset=utf-8; name=\"a;charset=b.txt\"",
        ),
        (
            "text/plain; charset*=utf-8''%E9",
            "text/plain; charset=utf-8",
        ),
        (
            "text/plain; delsp=yes (comment; charset=no)",
            "text/plain; charset=utf-8; delsp=yes (comment; charset=no)",
        ),
        // A type that is not a clean `type/subtype` is written as the one reported.
        ("text", "text/plain; charset=utf-8"),
        ("TEXT/Html (x; charset=y", "text/html; charset=utf-8"),
        ("text/\"html; charset=y\"", "text/html; charset=utf-8"),
    ];
    for (before, after) in cases {
        let msg = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: {before}\r\n\r\nold\r\n--b--\r\n"
        );
        let mut m = message(msg.into_bytes());
        replace_part_text(&mut m, 1, "new").unwrap();
        let want = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: {after}\r\nContent-Transfer-Encoding: 7bit\r\n\r\nnew\r\n--b--\r\n"
        );
        assert_eq!(String::from_utf8(bytes(&m)).unwrap(), want, "{before}");
        assert_consistent(&mut m);
    }
}

#[test]
fn delimiters_are_whole_lines_only() {
    // A boundary mid-line, or as the prefix of a longer token, does not split; blanks after a
    // delimiter do not stop it; the missing close delimiter ends the last part at the end.
    let msg = crlf(&[
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b   ",
        "",
        "one --b in the middle",
        "--bb is another boundary",
        "--b\t",
        "Content-Type: text/html",
        "",
        "two",
    ]);
    let mut m = message(msg);
    assert_eq!(parts(&mut m).len(), 3);
    assert_eq!(
        part_text(&mut m, 1).unwrap(),
        "one --b in the middle\r\n--bb is another boundary"
    );
    assert_eq!(part_text(&mut m, 2).unwrap(), "two\r\n");
    // The last part ends the message: text without a final line break gets a soft one.
    replace_part_text(&mut m, 2, "deux").unwrap();
    assert!(bytes(&m).ends_with(b"\r\n\r\ndeux=\r\n"));
    assert_eq!(part_text(&mut m, 2).unwrap(), "deux");
    assert_consistent(&mut m);

    // Parts with no header, an empty part, no blank line.
    let msg = crlf(&[
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "",
        "no header",
        "--b",
        "--b",
        "Content-Type: text/plain",
        "--b--",
    ]);
    let mut m = message(msg);
    let p = parts(&mut m);
    assert_eq!(p.len(), 4);
    assert_eq!(part_text(&mut m, 1).unwrap(), "no header");
    assert_eq!(part_text(&mut m, 2).unwrap(), "");
    assert_eq!(part_text(&mut m, 3).unwrap(), "");
    for id in [3, 2, 1] {
        replace_part_text(&mut m, id, &format!("text {id}")).unwrap();
        assert_consistent(&mut m);
    }
    for id in [1, 2, 3] {
        assert_eq!(part_text(&mut m, id).unwrap(), format!("text {id}"));
    }
}

#[test]
fn structures_that_are_not_multiparts() {
    // (message, content types found)
    let cases: &[(&[u8], &[&str])] = &[
        (b"Subject: x\r\n\r\nhello\r\n", &["text/plain"]),
        (b"Content-Type: image\r\n\r\nx\r\n", &["text/plain"]),
        (b"Content-Type: IMAGE/PNG\r\n\r\nx\r\n", &["image/png"]),
        // multipart without a boundary, or without any delimiter line: a leaf.
        (b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n", &["multipart/mixed"]),
        (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--x\r\n", &["multipart/mixed"]),
        (b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n", &["multipart/mixed"]),
        // A close delimiter before any part.
        (b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q--\r\n--q\r\n", &["multipart/mixed"]),
        // In a digest, a part without Content-Type is a message.
        (
            b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: m\r\n\r\nbody\r\n--d--\r\n",
            &["multipart/digest", "message/rfc822"],
        ),
        // A forwarded message is one leaf: its inside is not split.
        (
            b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n\
              Content-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n--o--\r\n",
            &["multipart/mixed", "message/rfc822"],
        ),
    ];
    for (msg, want) in cases {
        let mut m = message(msg.to_vec());
        let got: Vec<String> = parts(&mut m).into_iter().map(|p| p.content_type).collect();
        assert_eq!(got, *want, "{}", String::from_utf8_lossy(msg));
        let last = got.len() as u32 - 1;
        assert!(matches!(
            replace_part_text(&mut m, last, "x"),
            Ok(()) | Err(wit::PartError::NotText)
        ));
    }
}

#[test]
fn file_names_in_every_form() {
    let cases: &[(&str, &str)] = &[
        (
            "Content-Disposition: attachment; filename=\"a b.pdf\"",
            "a b.pdf",
        ),
        ("Content-Type: application/pdf; name=plain.pdf", "plain.pdf"),
        (
            "Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.txt",
            "\u{20ac}.txt",
        ),
        (
            "Content-Disposition: attachment; filename*0=\"long\"; filename*1=\"name.txt\"",
            "longname.txt",
        ),
        (
            "Content-Disposition: attachment; filename=\"=?utf-8?q?caf=C3=A9.txt?=\"",
            "caf\u{e9}.txt",
        ),
    ];
    for (field, want) in cases {
        let msg = format!("{field}\r\n\r\nx\r\n");
        let mut m = message(msg.into_bytes());
        assert_eq!(parts(&mut m)[0].filename.as_deref(), Some(*want), "{field}");
    }
    let mut m = message(b"Content-Disposition: form-data\r\n\r\nx\r\n".to_vec());
    assert_eq!(parts(&mut m)[0].disposition.as_deref(), Some("attachment"));
}

#[test]
fn errors_and_limits() {
    let mut m = message(sample());
    assert_eq!(
        replace_part_text(&mut m, 0, "x"),
        Err(wit::PartError::NotText)
    );
    assert_eq!(
        replace_part_text(&mut m, 6, "x"),
        Err(wit::PartError::NotText)
    );
    assert_eq!(
        replace_part_text(&mut m, 99, "x"),
        Err(wit::PartError::NoSuchPart)
    );
    let big = "a".repeat(MAX_TEXT + 1);
    assert_eq!(
        replace_part_text(&mut m, 2, &big),
        Err(wit::PartError::TooLarge)
    );
    assert_eq!(bytes(&m), sample(), "refused edits change nothing");

    // Decoded text over the cap is too large to return as a string.
    let mut msg = b"Content-Type: text/plain\r\n\r\n".to_vec();
    msg.extend(std::iter::repeat_n(b'a', MAX_TEXT + 1));
    let mut m = message(msg);
    assert_eq!(part_text(&mut m, 0), Err(wit::PartError::TooLarge));
    assert_eq!(read_part(&mut m, 0, 0, 4).unwrap(), b"aaaa");

    // An edit that would take the message over its size limit.
    let mut m = MessageRes::parse(b"Subject: x\r\n\r\nsmall\r\n".to_vec(), 100);
    assert_eq!(
        replace_part_text(&mut m, 0, &"b".repeat(200)),
        Err(wit::PartError::TooLarge)
    );
}

/// A multipart nested `depth` times, each level with its own boundary.
fn nested(depth: usize) -> Vec<u8> {
    let mut msg = String::new();
    for i in 0..depth {
        msg.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    msg.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    for i in (0..depth).rev() {
        msg.push_str(&format!("--b{i}--\r\n"));
    }
    msg.into_bytes()
}

#[test]
fn hostile_structures_cost_bounded_work() {
    // Deep nesting: split down to the cap, the rest is one leaf.
    let mut m = message(nested(5));
    assert_eq!(parts(&mut m).len(), 6);
    assert_eq!(part_text(&mut m, 5).unwrap(), "deep");
    let mut m = message(nested(5_000));
    let p = parts(&mut m);
    assert_eq!(p.len(), tree::MAX_DEPTH + 1);
    assert_eq!(p.last().unwrap().content_type, "multipart/mixed");

    // Very many parts: the first MAX_PARTS are listed, exact.
    let mut msg = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
    for _ in 0..200_000 {
        msg.extend_from_slice(b"--p\r\n\r\nx\r\n");
    }
    let mut m = message(msg);
    let started = std::time::Instant::now();
    let p = parts(&mut m);
    assert_eq!(p.len(), tree::MAX_PARTS);
    assert!(tree(&mut m).truncated);
    assert_eq!(part_text(&mut m, 999).unwrap(), "x");
    replace_part_text(&mut m, 999, "y").unwrap();
    assert_consistent(&mut m);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // A huge part header, a huge Content-Type, a bogus boundary.
    let mut msg = b"Content-Type: multipart/mixed; boundary=h\r\n\r\n--h\r\n".to_vec();
    for _ in 0..100_000 {
        msg.extend_from_slice(b"X-Filler: 0123456789\r\n");
    }
    msg.extend_from_slice(b"Content-Type: text/plain; name=\"");
    msg.extend(std::iter::repeat_n(b'n', 100_000));
    msg.extend_from_slice(b"\"\r\n\r\nbody\r\n--h--\r\n");
    let mut m = message(msg);
    let p = parts(&mut m);
    assert_eq!(p[1].content_type, "text/plain");
    assert!(p[1].filename.as_ref().is_none_or(|f| f.len() <= 1024));
    replace_part_text(&mut m, 1, "short").unwrap();
    assert_consistent(&mut m);
}

/// Deterministic pseudo-random bytes (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mangled_messages_never_panic_and_edits_stay_consistent() {
    let bases = [
        sample(),
        nested(4),
        b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
          Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n"
            .to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b"--",
        b"--mixed",
        b"--alt--",
        b"--rel\r\n",
        b"=",
        b"=E9",
        b"\r\n\r\n",
        b";",
        b"\"",
        b"(",
        b"Content-Type: text/plain\r\n",
        b"boundary=",
        b"charset=",
        b"Content-Transfer-Encoding: base64\r\n",
        b"\xff\xfe",
        b"*0*=",
        b"=?utf-8?b?",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        let mut msg = bases[round % bases.len()].clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(msg.len() + 1);
            match rng.below(3) {
                0 => {
                    let t = tokens[rng.below(tokens.len())];
                    msg.splice(at..at, t.iter().copied());
                }
                1 => {
                    let end = (at + rng.below(40)).min(msg.len());
                    msg.drain(at..end);
                }
                _ => {
                    if at < msg.len() {
                        msg[at] = rng.next() as u8;
                    }
                }
            }
        }
        let mut m = message(msg);
        let p = parts(&mut m);
        for part in &p {
            let _ = read_part(&mut m, part.id, 0, 64);
            let Ok(text) = part_text(&mut m, part.id) else {
                continue;
            };
            if rng.below(2) == 0 {
                replace_part_text(&mut m, part.id, &format!("{text}\nappended {round}")).unwrap();
                assert_consistent(&mut m);
            }
        }
    }
}
