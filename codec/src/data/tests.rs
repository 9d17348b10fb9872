//! DATA reader tests: the smuggling matrix, framing at every split, limits, BDAT chunks.

use super::*;
use DataError::*;

const BIG: DataLimits = DataLimits {
    max_size: 1 << 20,
    max_line: 1000,
    normalize: false,
};
const NORMALIZE: DataLimits = DataLimits {
    normalize: true,
    ..BIG
};

type Outcome = (Option<Result<(), DataError>>, Vec<u8>, Vec<u8>);

/// Feeds `input` in pieces of `step` octets (all at once when 0), the way the session does:
/// append to the buffer, call `feed`, stop at the first `Some`. Returns the result, the
/// message and what is left for the command reader.
fn run(limits: DataLimits, input: &[u8], step: usize) -> Outcome {
    let mut reader = DataReader::new(limits);
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    let step = if step == 0 { input.len().max(1) } else { step };
    let mut pieces = input.chunks(step);
    for piece in pieces.by_ref() {
        buf.extend_from_slice(piece);
        if let Some(result) = reader.feed(&mut buf, &mut out) {
            for rest in pieces {
                buf.extend_from_slice(rest);
            }
            return (Some(result), out, buf.to_vec());
        }
        assert!(buf.is_empty(), "the reader keeps no bytes back in buf");
    }
    (None, out, buf.to_vec())
}

fn run_all_splits(limits: DataLimits, input: &[u8]) -> Outcome {
    let whole = run(limits, input, 0);
    for step in [1, 2, 3, 4, 5, 7, 64] {
        assert_eq!(run(limits, input, step), whole, "step {step} on {input:?}");
    }
    whole
}

#[test]
fn data_table() {
    let lim = |max_size, max_line, normalize| DataLimits {
        max_size,
        max_line,
        normalize,
    };
    type Case<'a> = (
        DataLimits,
        &'a [u8],
        Option<Result<(), DataError>>,
        &'a [u8],
        &'a [u8],
    );
    let cases: Vec<Case> = vec![
        // (limits, input, result, message, left in buf)
        (BIG, b".\r\n", Some(Ok(())), b"", b""),
        (BIG, b".\r\nQUIT\r\n", Some(Ok(())), b"", b"QUIT\r\n"),
        (BIG, b"a\r\n.\r\n", Some(Ok(())), b"a\r\n", b""),
        (
            BIG,
            b"a\r\n.\r\nMAIL FROM:<x@y>\r\n",
            Some(Ok(())),
            b"a\r\n",
            b"MAIL FROM:<x@y>\r\n",
        ),
        (BIG, b"a\r\n..b\r\n.\r\n", Some(Ok(())), b"a\r\n.b\r\n", b""),
        (BIG, b"..\r\n.\r\n", Some(Ok(())), b".\r\n", b""),
        (BIG, b"...\r\n.\r\n", Some(Ok(())), b"..\r\n", b""),
        (BIG, b".a\r\n.\r\n", Some(Ok(())), b"a\r\n", b""),
        (BIG, b"a\r\n. \r\n.\r\n", Some(Ok(())), b"a\r\n \r\n", b""),
        (BIG, b"\r\n.\r\n", Some(Ok(())), b"\r\n", b""),
        (BIG, b"a\r\n\r\n.\r\n", Some(Ok(())), b"a\r\n\r\n", b""),
        (BIG, b"a.\r\n.\r\n", Some(Ok(())), b"a.\r\n", b""),
        (BIG, b"a\r\n.\r\n.\r\n", Some(Ok(())), b"a\r\n", b".\r\n"),
        (
            BIG,
            b"\xe2\x82\xac\t\x00\r\n.\r\n",
            Some(Ok(())),
            b"\xe2\x82\xac\t\x00\r\n",
            b"",
        ),
        (BIG, b"", None, b"", b""),
        (BIG, b"abc\r\n", None, b"abc\r\n", b""),
        (BIG, b"abc\r\n.", None, b"abc\r\n", b""),
        (BIG, b"abc\r\n.\r", None, b"abc\r\n", b""),
        (BIG, b"abc\r", None, b"abc", b""),
        // Bare line ends: refused, or rewritten to CRLF when normalizing.
        (BIG, b"a\nb\r\n.\r\n", Some(Err(BareLineEnding)), b"a", b""),
        (BIG, b"a\rb\r\n.\r\n", Some(Err(BareLineEnding)), b"a", b""),
        (BIG, b"a\r\r\n.\r\n", Some(Err(BareLineEnding)), b"a", b""),
        (
            BIG,
            b"a\r\n.\nb\r\n.\r\n",
            Some(Err(BareLineEnding)),
            b"a\r\n.",
            b"",
        ),
        (BIG, b"a\r\n.\n.\r\n", None, b"a\r\n.", b""),
        (
            NORMALIZE,
            b"a\nb\r\n.\r\n",
            Some(Ok(())),
            b"a\r\nb\r\n",
            b"",
        ),
        (
            NORMALIZE,
            b"a\rb\r\n.\r\n",
            Some(Ok(())),
            b"a\r\nb\r\n",
            b"",
        ),
        (NORMALIZE, b"a\r\r\n.\r\n", Some(Ok(())), b"a\r\n\r\n", b""),
        (NORMALIZE, b"a\n\n.\r\n", None, b"a\r\n\r\n.\r\n", b""),
        (
            NORMALIZE,
            b"a\n..b\r\n.\r\n",
            Some(Ok(())),
            b"a\r\n..b\r\n",
            b"",
        ),
        (NORMALIZE, b"\n.\r\n.\r\n", Some(Ok(())), b"\r\n.\r\n", b""),
        (NORMALIZE, b".\n.\r\n", None, b".\r\n.\r\n", b""),
        (
            NORMALIZE,
            b".\n.\r\n.\r\n",
            Some(Ok(())),
            b".\r\n.\r\n",
            b"",
        ),
        (
            NORMALIZE,
            b".\r.\r\n.\r\n",
            Some(Ok(())),
            b".\r\n.\r\n",
            b"",
        ),
        // Line length counts the CRLF but not a stuffing dot.
        (
            lim(1000, 10, false),
            b"12345678\r\n.\r\n",
            Some(Ok(())),
            b"12345678\r\n",
            b"",
        ),
        (
            lim(1000, 10, false),
            b"..2345678\r\n.\r\n",
            Some(Ok(())),
            b".2345678\r\n",
            b"",
        ),
        (
            lim(1000, 10, false),
            b"123456789\r\n.\r\n",
            Some(Err(LineTooLong(10))),
            b"12345678",
            b"",
        ),
        (
            lim(1000, 10, true),
            b"123456789\n\r\n.\r\n",
            Some(Err(LineTooLong(10))),
            b"12345678",
            b"",
        ),
        (
            lim(1000, 10, true),
            b"12345678\n\r\n.\r\n",
            Some(Ok(())),
            b"12345678\r\n\r\n",
            b"",
        ),
        // Size counts the message after unstuffing, CRLFs included.
        (
            lim(10, 1000, false),
            b"12345678\r\n.\r\n",
            Some(Ok(())),
            b"12345678\r\n",
            b"",
        ),
        (
            lim(10, 1000, false),
            b"..345678\r\n.\r\n",
            Some(Ok(())),
            b".345678\r\n",
            b"",
        ),
        (
            lim(10, 1000, false),
            b"123456789\r\n.\r\nNOOP\r\n",
            Some(Err(TooBig(10))),
            b"123456789\r",
            b"NOOP\r\n",
        ),
        (
            lim(10, 1000, false),
            b"1234\r\n5678\r\n90\r\n.\r\n",
            Some(Err(TooBig(10))),
            b"1234\r\n5678",
            b"",
        ),
        (lim(0, 1000, false), b".\r\n", Some(Ok(())), b"", b""),
        (
            lim(0, 1000, false),
            b"a\r\n.\r\n",
            Some(Err(TooBig(0))),
            b"",
            b"",
        ),
        // The first error is the one reported.
        (
            lim(5, 1000, false),
            b"a\nbcdefgh\r\n.\r\n",
            Some(Err(BareLineEnding)),
            b"a",
            b"",
        ),
        (
            lim(5, 4, false),
            b"abcdefgh\nb\r\n.\r\n",
            Some(Err(LineTooLong(4))),
            b"ab",
            b"",
        ),
    ];
    for (limits, input, result, message, rest) in cases {
        let got = run_all_splits(limits, input);
        let want = (result, message.to_vec(), rest.to_vec());
        assert_eq!(
            got,
            want,
            "input {:?} {limits:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// The SMTP smuggling sequences: none may end the message, with or without `normalize`.
#[test]
fn smuggling_matrix() {
    let seqs: [&[u8]; 9] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\n",
        b"\r.\r",
        b"\n.\r",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r\n\x00.\r\n",
    ];
    let smuggled =
        b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nforged\r\n";
    for seq in seqs {
        let mut input = b"Subject: hi\r\n\r\nhello".to_vec();
        input.extend_from_slice(seq);
        input.extend_from_slice(smuggled);
        input.extend_from_slice(b".\r\nQUIT\r\n");
        let nul = seq.contains(&0);

        let (result, out, rest) = run_all_splits(BIG, &input);
        let want = if nul { Ok(()) } else { Err(BareLineEnding) };
        assert_eq!(result, Some(want), "{seq:?} without normalize");
        assert_eq!(
            rest, b"QUIT\r\n",
            "{seq:?}: only the real terminator ends DATA"
        );

        let (result, out_n, rest) = run_all_splits(NORMALIZE, &input);
        assert_eq!(result, Some(Ok(())), "{seq:?} with normalize");
        assert_eq!(
            rest, b"QUIT\r\n",
            "{seq:?}: only the real terminator ends DATA"
        );
        let mut want = b"Subject: hi\r\n\r\nhello\r\n".to_vec();
        want.extend_from_slice(if nul { b"\x00.\r\n" } else { b".\r\n" });
        want.extend_from_slice(smuggled);
        assert_eq!(out_n, want, "{seq:?}: the fake terminator is kept as text");
        if nul {
            assert_eq!(out, want);
        }
    }
}

#[test]
fn reader_is_reusable_after_the_terminator() {
    let mut reader = DataReader::new(BIG);
    let mut buf = BytesMut::from(&b"a\nb\r\n.\r\n"[..]);
    let mut out = Vec::new();
    assert_eq!(reader.feed(&mut buf, &mut out), Some(Err(BareLineEnding)));
    let mut buf = BytesMut::from(&b".x\r\n.\r\n"[..]);
    let mut out = Vec::new();
    assert_eq!(reader.feed(&mut buf, &mut out), Some(Ok(())));
    assert_eq!(out, b"x\r\n");
}

/// A message whose lines are all CRLF-terminated, for the invariants below.
fn is_crlf_clean(out: &[u8]) -> bool {
    out.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => out.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && out[i - 1] == b'\r',
        _ => true,
    })
}

/// Pseudo-random inputs over the octets that matter: the reader ends exactly at the first
/// CRLF.CRLF (counting the start of data as a line start), whatever the splits and policy.
#[test]
fn ends_exactly_at_the_first_real_terminator() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"\r\n.\r\n.a\x00";
    for _ in 0..3000 {
        let len = (next() % 24) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(&input);
        let end = framed
            .windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|p| p + 5 - 2);
        for limits in [BIG, NORMALIZE] {
            let (result, out, rest) = run_all_splits(limits, &input);
            match end {
                Some(end) => {
                    assert!(result.is_some(), "{input:?}");
                    assert_eq!(rest, &input[end..], "{input:?}");
                }
                None => assert_eq!((&result, rest.len()), (&None, 0), "{input:?}"),
            }
            if result == Some(Ok(())) {
                assert!(is_crlf_clean(&out), "{input:?} -> {out:?}");
            }
        }
    }
}

fn chunks(limits: DataLimits, chunks: &[&[u8]]) -> (Result<(), DataError>, Vec<u8>) {
    let mut checker = ChunkChecker::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        checker.push(chunk, &mut out);
    }
    (checker.finish(&mut out), out)
}

#[test]
fn bdat_chunks() {
    let lim = |max_size, max_line, normalize| DataLimits {
        max_size,
        max_line,
        normalize,
    };
    type Case<'a> = (DataLimits, Vec<&'a [u8]>, Result<(), DataError>, &'a [u8]);
    let cases: Vec<Case> = vec![
        (BIG, vec![b"a\r\nb\r\n"], Ok(()), b"a\r\nb\r\n"),
        (BIG, vec![b"a\r", b"\nb\r\n"], Ok(()), b"a\r\nb\r\n"),
        (BIG, vec![b"a\r", b"", b"\nb\r\n"], Ok(()), b"a\r\nb\r\n"),
        (BIG, vec![b"a", b"\r", b"\n", b"."], Ok(()), b"a\r\n."),
        (BIG, vec![b".\r\n..\r\n"], Ok(()), b".\r\n..\r\n"),
        (BIG, vec![], Ok(()), b""),
        (BIG, vec![b"a\nb"], Err(BareLineEnding), b"a"),
        (BIG, vec![b"a\r", b"b"], Err(BareLineEnding), b"a"),
        (BIG, vec![b"a\r"], Err(BareLineEnding), b"a"),
        (NORMALIZE, vec![b"a\nb"], Ok(()), b"a\r\nb"),
        (NORMALIZE, vec![b"a\r", b"b\r"], Ok(()), b"a\r\nb\r\n"),
        (NORMALIZE, vec![b"a\r\r\n"], Ok(()), b"a\r\n\r\n"),
        (lim(100, 5, false), vec![b"abc\r\n"], Ok(()), b"abc\r\n"),
        (
            lim(100, 5, false),
            vec![b"ab", b"cd\r\n"],
            Err(LineTooLong(5)),
            b"abc",
        ),
        (lim(5, 100, false), vec![b"abc\r\n"], Ok(()), b"abc\r\n"),
        (
            lim(5, 100, false),
            vec![b"abc", b"\r\nd"],
            Err(TooBig(5)),
            b"abc\r\n",
        ),
    ];
    for (limits, input, result, message) in cases {
        assert_eq!(
            chunks(limits, &input),
            (result, message.to_vec()),
            "{input:?}"
        );
    }
}

#[test]
fn chunk_checker_is_reusable() {
    let mut checker = ChunkChecker::new(BIG);
    let mut out = Vec::new();
    checker.push(b"a\nb\r", &mut out);
    assert_eq!(checker.finish(&mut out), Err(BareLineEnding));
    let mut out = Vec::new();
    checker.push(b"\nok\r\n", &mut out);
    assert_eq!(
        checker.finish(&mut out),
        Err(BareLineEnding),
        "a CR left from the last message does not pair with this LF"
    );
    let mut out = Vec::new();
    checker.push(b"ok\r\n", &mut out);
    assert_eq!(
        (checker.finish(&mut out), out),
        (Ok(()), b"ok\r\n".to_vec())
    );
}

#[test]
fn error_replies() {
    assert_eq!(BareLineEnding.reply().code, 550);
    assert_eq!(LineTooLong(1000).reply().code, 550);
    assert_eq!(TooBig(10).reply().code, 552);
}
