//! Limits and hostile input: bounded work, no panics, consistent edits.

use super::*;

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
