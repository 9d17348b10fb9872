//! Command line framing: splits, overlong lines, bare LF, pipelining.

use super::*;

/// Feeds `input` in pieces of `step` octets (the whole input at once when 0) and collects
/// every line or error.
fn frame(reader: &mut LineReader, input: &[u8], step: usize) -> Vec<Result<Vec<u8>, LineError>> {
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let step = if step == 0 { input.len().max(1) } else { step };
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match reader.next_line(&mut buf) {
                Ok(Some(line)) => got.push(Ok(line.to_vec())),
                Ok(None) => break,
                Err(e) => got.push(Err(e)),
            }
        }
        assert!(buf.len() <= 16, "an overlong line must not be buffered");
    }
    got
}

#[test]
fn line_framing() {
    type Want<'a> = Vec<Result<&'a [u8], LineError>>;
    let too_long = || Err(LineError::TooLong(16));
    // max_len 16: 14 octets of text + CRLF fit.
    let cases: Vec<(&[u8], bool, Want)> = vec![
        (b"NOOP\r\n", false, vec![Ok(b"NOOP")]),
        (
            b"NOOP\r\nRSET\r\nQUIT\r\n",
            false,
            vec![Ok(b"NOOP"), Ok(b"RSET"), Ok(b"QUIT")],
        ),
        (b"NOOP\r\nRSET", false, vec![Ok(b"NOOP")]),
        (b"\r\n", false, vec![Ok(b"")]),
        (b"NOOP\n", false, vec![Err(LineError::BareLf)]),
        (
            b"NOOP\nRSET\r\n",
            false,
            vec![Err(LineError::BareLf), Ok(b"RSET")],
        ),
        (b"NOOP\nRSET\r\n", true, vec![Ok(b"NOOP"), Ok(b"RSET")]),
        (b"NO\rOP\r\n", false, vec![Ok(b"NO\rOP")]),
        (b"\r\r\n", false, vec![Ok(b"\r")]),
        (b"01234567890123\r\n", false, vec![Ok(b"01234567890123")]),
        (b"012345678901234\r\n", false, vec![too_long()]),
        (b"012345678901234\n", true, vec![too_long()]),
        (b"01234567890123\n", true, vec![Ok(b"01234567890123")]),
        (
            b"0123456789012345678\r\nNOOP\r\n",
            false,
            vec![too_long(), Ok(b"NOOP")],
        ),
        (
            b"0123456789012345678901234567890123456789\r\nNOOP\r\n",
            false,
            vec![too_long(), Ok(b"NOOP")],
        ),
        (
            b"0123456789012345678901234567890123456789\nNOOP\r\n",
            false,
            vec![too_long(), Ok(b"NOOP")],
        ),
        (b"01234567890123456789", false, vec![]),
        (
            b"aaaaaaaaaaaaaaaaaaaa\r\nbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\nok\r\n",
            false,
            vec![too_long(), too_long(), Ok(b"ok")],
        ),
    ];
    for (input, bare_lf, want) in cases {
        let want: Vec<Result<Vec<u8>, LineError>> =
            want.into_iter().map(|r| r.map(<[u8]>::to_vec)).collect();
        for step in [0, 1, 2, 3, 5, 7, 16, 17] {
            let got = frame(&mut LineReader::new(16, bare_lf), input, step);
            assert_eq!(
                got,
                want,
                "input {:?} step {step}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn discarding_survives_many_feeds_and_reset() {
    let mut reader = LineReader::new(16, false);
    let mut buf = BytesMut::new();
    for _ in 0..1000 {
        buf.extend_from_slice(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_eq!(reader.next_line(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }
    buf.extend_from_slice(b"x\r\nQUIT\r\n");
    assert_eq!(reader.next_line(&mut buf), Err(LineError::TooLong(16)));
    assert_eq!(reader.next_line(&mut buf).unwrap().unwrap(), &b"QUIT"[..]);

    // STARTTLS drops the buffer; reset forgets the half-discarded line.
    buf.extend_from_slice(&[b'y'; 40]);
    assert_eq!(reader.next_line(&mut buf), Ok(None));
    buf.clear();
    reader.reset();
    buf.extend_from_slice(b"EHLO x\r\n");
    assert_eq!(reader.next_line(&mut buf).unwrap().unwrap(), &b"EHLO x"[..]);
}

#[test]
fn pipelined_commands_parse_in_order() {
    let input = b"EHLO client.example\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\n\
                  RCPT TO:<postmaster>\r\nDATA\r\n";
    let mut reader = LineReader::new(512, false);
    let mut buf = BytesMut::from(&input[..]);
    let mut cmds = Vec::new();
    while let Some(line) = reader.next_line(&mut buf).unwrap() {
        cmds.push(parse_command(&line).unwrap());
    }
    assert_eq!(
        cmds,
        vec![
            ehlo("client.example"),
            mail_with(
                "a",
                "b",
                MailParams {
                    size: Some(10),
                    ..Default::default()
                }
            ),
            rcpt("c", "d"),
            rcpt("postmaster", ""),
            Command::Data,
        ]
    );
    assert!(buf.is_empty());
}
