//! Command framing and parsing on arbitrary bytes. Checks that splitting never changes the
//! lines, that nothing overlong is buffered or returned, and that parsed paths respect the
//! RFC 5321 limits and parse back to the same address.
//!
//! Input layout: [flags, max_len, data...].
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wasmrelay_codec::command::{parse_command, Command, LineError, LineReader, ReversePath};

fn frame(
    max_len: usize,
    bare_lf: bool,
    input: &[u8],
    step: usize,
) -> Vec<Result<Vec<u8>, LineError>> {
    let mut reader = LineReader::new(max_len, bare_lf);
    let mut buf = BytesMut::new();
    let mut lines = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match reader.next_line(&mut buf) {
                Ok(Some(line)) => {
                    assert!(line.len() + 2 <= max_len, "overlong line returned");
                    lines.push(Ok(line.to_vec()));
                }
                Ok(None) => break,
                Err(e) => lines.push(Err(e)),
            }
        }
        assert!(buf.len() < max_len.max(1), "overlong line buffered");
    }
    lines
}

fn check_roundtrip(verb: &str, local: &str, domain: &str, cmd: &Command) {
    assert!(local.len() <= 64 && domain.len() <= 255);
    let line = format!("{verb}<{local}@{domain}> SMTPUTF8");
    let again = parse_command(line.as_bytes());
    match (cmd, again) {
        (
            Command::Mail {
                from: ReversePath::Mailbox(a),
                ..
            },
            Ok(Command::Mail {
                from: ReversePath::Mailbox(b),
                ..
            }),
        ) => {
            assert_eq!(a, &b)
        }
        (Command::Rcpt { to: a, .. }, Err(_)) if a.domain.is_empty() => {}
        (Command::Rcpt { to: a, .. }, Ok(Command::Rcpt { to: b, .. })) => assert_eq!(a, &b),
        (_, again) => panic!("{line:?} did not parse back: {again:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, max_len, ref input @ ..] = *data else {
        return;
    };
    let max_len = if flags & 1 != 0 {
        512
    } else {
        3 + max_len as usize
    };
    let bare_lf = flags & 2 != 0;
    let whole = frame(max_len, bare_lf, input, input.len());
    for step in [1, 2, 7] {
        assert_eq!(frame(max_len, bare_lf, input, step), whole);
    }
    // The whole input as one line, too, so long arguments are reached.
    let lines = whole
        .iter()
        .flatten()
        .map(Vec::as_slice)
        .chain(std::iter::once(input));
    for line in lines {
        let cmd = parse_command(line);
        match &cmd {
            Ok(
                c @ Command::Mail {
                    from: ReversePath::Mailbox(a),
                    ..
                },
            ) => check_roundtrip("MAIL FROM:", &a.local, &a.domain, c),
            Ok(c @ Command::Rcpt { to, .. }) if !to.domain.is_empty() => {
                check_roundtrip("RCPT TO:", &to.local, &to.domain, c)
            }
            Err(e) => {
                let reply = e.reply();
                assert!((500..600).contains(&reply.code));
            }
            _ => {}
        }
    }
});
