//! Editing: replacing parts, re-encoding, and edits that compose.

use super::*;

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
