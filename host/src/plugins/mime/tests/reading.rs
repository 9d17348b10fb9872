//! Reading: the part tree, transfer encodings and charsets, delimiters, file names.

use super::*;

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

/// The `wants` check reads a message's header fields before parsing it: for a message that
/// is not multipart, what it finds is the one leaf the part tree has (its type, file name
/// and disposition, so whether it is an attachment).
#[test]
fn a_single_part_from_the_raw_fields_is_the_trees_one_leaf() {
    let messages: Vec<Vec<u8>> = vec![
        b"Subject: no type\r\n\r\nbody\r\n".to_vec(),
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>x</p>\r\n".to_vec(),
        b"content-TYPE: Text/HTML\r\n\r\n<p>x</p>\r\n".to_vec(),
        b"Content-Type:\r\n text/calendar;\r\n method=REQUEST\r\n\r\nBEGIN\r\n".to_vec(),
        b"Content-Type: text/html;\n charset=utf-8\nSubject: bare LF fold\n\n<p>x</p>\n".to_vec(),
        b"Content-Type: application/x-msdownload; name=a.exe\r\n\r\nMZ\r\n".to_vec(),
        b"Content-Disposition: attachment; filename=notes.txt\r\n\r\nhi\r\n".to_vec(),
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n".to_vec(),
        b"Content-Type: nonsense\r\n\r\nx\r\n".to_vec(),
        b"Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx\r\n".to_vec(),
        b"Subject: no empty line\r\nContent-Type: text/html".to_vec(),
        b"".to_vec(),
        // Multipart, with and without a usable boundary: the tree decides.
        b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n".to_vec(),
        sample(),
    ];
    for bytes in messages {
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let fields_end = header_end(&bytes).map_or(bytes.len(), |h| h.fields);
        let single = single_part(&bytes[..fields_end]);
        let mut m = MessageRes::parse(bytes, MAX);
        let leaves = leaf_types(&mut m).expect("not truncated");
        match single {
            Some(top) => {
                assert_eq!(leaves, std::slice::from_ref(&top.content_type), "{shown:?}");
                assert_eq!(tree(&mut m).nodes[0].info, top, "{shown:?}");
            }
            None => assert!(
                tree(&mut m).nodes[0]
                    .info
                    .content_type
                    .starts_with("multipart/"),
                "{shown:?}"
            ),
        }
    }
}
