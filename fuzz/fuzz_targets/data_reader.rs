//! DATA reader on arbitrary bytes, split at arbitrary points. Checks that splitting never
//! changes the outcome, that DATA ends exactly at the first real CRLF.CRLF, that an accepted
//! message has only CRLF line ends, and that the result matches a line-by-line model.
//!
//! Input layout: [flags, max_line, max_size, split seed, data...].
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wasmrelay_codec::data::{ChunkChecker, DataError, DataLimits, DataReader};
use wasmrelay_fuzz::data_model;

type Outcome = (Option<Result<(), DataError>>, Vec<u8>, Vec<u8>);

fn run(limits: DataLimits, input: &[u8], pieces: &[usize]) -> Outcome {
    let mut reader = DataReader::new(limits);
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    let mut at: usize = 0;
    for &size in pieces.iter().chain(std::iter::once(&usize::MAX)) {
        let end = input.len().min(at.saturating_add(size));
        buf.extend_from_slice(&input[at..end]);
        at = end;
        if let Some(result) = reader.feed(&mut buf, &mut out) {
            buf.extend_from_slice(&input[at..]);
            return (Some(result), out, buf.to_vec());
        }
        assert!(buf.is_empty(), "bytes held back in buf");
        if at == input.len() {
            break;
        }
    }
    (None, out, buf.to_vec())
}

fn crlf_clean(out: &[u8]) -> bool {
    out.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => out.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && out[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let [flags, max_line, max_size, seed, ref input @ ..] = *data else {
        return;
    };
    let limits = DataLimits {
        normalize: flags & 1 != 0,
        max_line: if flags & 2 != 0 {
            1000
        } else {
            2 + max_line as usize
        },
        max_size: if flags & 4 != 0 {
            u64::MAX
        } else {
            max_size as u64 * 4
        },
    };

    // Split sizes from a small xorshift seeded by the input, 1..=16 octets (or all ones).
    let mut state = u64::from(seed) << 32 | input.len() as u64 | 1;
    let pieces: Vec<usize> = (0..input.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if flags & 8 != 0 {
                1
            } else {
                (state % 16) as usize + 1
            }
        })
        .collect();

    let whole = run(limits, input, &[]);
    let split = run(limits, input, &pieces);
    assert_eq!(whole, split, "splitting changed the outcome");

    let (result, out, rest) = whole;
    let (model_result, model_out, consumed) = data_model(limits, input);
    assert_eq!(result, model_result, "result differs from the model");
    assert_eq!(out, model_out, "message differs from the model");
    assert_eq!(rest, &input[consumed..], "consumed differs from the model");

    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let end = framed
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|p| p + 3);
    match end {
        Some(end) => {
            assert!(result.is_some());
            assert_eq!(rest, &input[end..], "did not end at the first CRLF.CRLF");
        }
        None => assert!(result.is_none() && rest.is_empty()),
    }
    if result == Some(Ok(())) {
        assert!(crlf_clean(&out), "accepted message has a bare CR or LF");
    }

    // BDAT: chunking never changes the outcome, and an accepted body is CRLF-clean.
    let mut whole_out = Vec::new();
    let mut checker = ChunkChecker::new(limits);
    checker.push(input, &mut whole_out);
    let whole_result = checker.finish(&mut whole_out);
    let mut split_out = Vec::new();
    let mut at = 0;
    for &size in &pieces {
        let end = input.len().min(at + size);
        checker.push(&input[at..end], &mut split_out);
        at = end;
    }
    let split_result = checker.finish(&mut split_out);
    assert_eq!((&whole_result, &whole_out), (&split_result, &split_out));
    if whole_result.is_ok() {
        assert!(crlf_clean(&whole_out));
        if !limits.normalize {
            assert_eq!(
                whole_out, input,
                "without normalize a BDAT body passes unchanged"
            );
        }
    }
});
