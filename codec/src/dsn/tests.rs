use super::*;

fn recipient(address: &str, diagnostic: &str) -> ReportRecipient {
    ReportRecipient {
        address: address.into(),
        orcpt: Some("rfc822;bob@x.test".into()),
        status: "5.1.1".into(),
        remote_mta: Some("mx.x.test".into()),
        diagnostic: diagnostic.into(),
        summary: format!("mx.x.test said: {diagnostic}"),
        last_attempt: "Wed, 18 Nov 2026 11:06:40 +0000".into(),
    }
}

fn report<'a>(recipients: &'a [ReportRecipient], message: &'a [u8]) -> Report<'a> {
    Report {
        hostname: "relay.test",
        sender: "a@y.test",
        id: "d1",
        original_id: "m1",
        action: Action::Failed,
        date: "Wed, 18 Nov 2026 11:10:00 +0000",
        arrival_date: "Wed, 18 Nov 2026 11:00:00 +0000",
        will_retry_until: "Thu, 19 Nov 2026 11:00:00 +0000",
        envid: Some("E1"),
        recipients,
        message,
        headers_only: false,
    }
}

#[test]
fn a_bounce_has_its_three_parts() {
    let rcpts = [recipient("bob@x.test", "smtp; 550 5.1.1 no such user")];
    let r = render(&report(&rcpts, b"Subject: hi\r\n\r\nbody\r\n"));
    check_rendered(&r).unwrap();
    let text = String::from_utf8(r.bytes).unwrap();
    assert!(text.contains("\tboundary=\"m1/relay.test\"\r\n"));
    assert!(text.contains("Content-Type: message/rfc822\r\n\r\nSubject: hi\r\n\r\nbody\r\n"));
    assert!(text.ends_with("\r\n--m1/relay.test--\r\n"));
}

#[test]
fn a_message_cannot_forge_parts_of_its_bounce() {
    // The original carries the boundary the report would use, and a fake closing delimiter.
    let message =
        b"Subject: hi\r\n\r\n--m1/relay.test\r\nContent-Type: text/html\r\n\r\n<a>x</a>\r\n--m1/relay.test--\r\n";
    let rcpts = [recipient("bob@x.test", "smtp; 550 no")];
    let r = render(&report(&rcpts, message));
    check_rendered(&r).unwrap();
    let text = String::from_utf8_lossy(&r.bytes);
    assert!(text.contains("boundary=\"m1/relay.test=1\""), "{text}");
}

#[test]
fn remote_text_cannot_break_lines_or_grow_them_past_the_limit() {
    let long = "é".repeat(3000);
    let rcpts = [
        recipient(
            "bob@x.test",
            "smtp; 550 a\r\nFinal-Recipient: rfc822; forged@x\r\n",
        ),
        recipient("carol@x.test", &long),
    ];
    let r = render(&report(&rcpts, b"Subject: hi\r\n\r\nbody\r\n"));
    check_rendered(&r).unwrap();
    let text = String::from_utf8(r.bytes).unwrap();
    assert_eq!(text.matches("\r\nFinal-Recipient:").count(), 2);
    assert!(text.contains("..."));
}

#[test]
fn headers_only_attaches_the_header_section() {
    let rcpts = [recipient("bob@x.test", "smtp; 550 no")];
    let mut rep = report(&rcpts, b"Subject: hi\r\n\r\nsecret body\r\n");
    rep.headers_only = true;
    rep.action = Action::Delayed;
    let r = render(&rep);
    check_rendered(&r).unwrap();
    let text = String::from_utf8(r.bytes).unwrap();
    assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n\r\n"));
    assert!(text.contains("Action: delayed\r\n"));
    assert!(text.contains("Will-Retry-Until: Thu, 19 Nov 2026"));
    assert!(!text.contains("secret body"));
}

#[test]
fn one_line_keeps_short_values_and_cuts_long_ones_on_a_char_boundary() {
    assert_eq!(one_line("a\tb\r\nc"), "a b  c");
    let exact = "x".repeat(MAX_FIELD);
    assert_eq!(one_line(&exact), exact);
    let cut = one_line(&"€".repeat(MAX_FIELD));
    assert!(cut.len() <= MAX_FIELD && cut.ends_with("..."));
}

/// A short fuzz run: pseudo-random values over the octets that matter (CR, LF, controls,
/// multi-byte characters, boundary-like lines, long runs) never break the renderer's promises.
#[test]
fn pseudo_random_inputs_keep_every_promise() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const PIECES: &[&str] = &[
        "a",
        "\r",
        "\n",
        "\r\n",
        "\0",
        "\t",
        "é",
        "€",
        "--",
        "m1/relay.test",
        "--m1/relay.test",
        "=1",
        "\"",
        ";",
        " ",
        "\r\n\r\n",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ];
    let text = |next: &mut dyn FnMut() -> u64, max: u64| -> String {
        let n = next() % max;
        let mut s = String::new();
        for _ in 0..n {
            let piece = PIECES[(next() % PIECES.len() as u64) as usize];
            let repeat = if next().is_multiple_of(16) {
                1 + next() % 200
            } else {
                1
            };
            for _ in 0..repeat {
                s.push_str(piece);
            }
        }
        s
    };
    for _ in 0..3_000 {
        let rcpts: Vec<ReportRecipient> = (0..1 + next() % 3)
            .map(|_| ReportRecipient {
                address: text(&mut next, 8),
                orcpt: (next().is_multiple_of(2)).then(|| text(&mut next, 8)),
                status: text(&mut next, 4),
                remote_mta: (next().is_multiple_of(2)).then(|| text(&mut next, 8)),
                diagnostic: text(&mut next, 40),
                summary: text(&mut next, 40),
                last_attempt: text(&mut next, 4),
            })
            .collect();
        let message = text(&mut next, 60);
        let hostname = text(&mut next, 6);
        let original_id = text(&mut next, 6);
        let envid = text(&mut next, 6);
        let mut rep = report(&rcpts, message.as_bytes());
        rep.hostname = &hostname;
        rep.original_id = &original_id;
        rep.envid = Some(&envid);
        rep.headers_only = next().is_multiple_of(2);
        rep.action = if next().is_multiple_of(2) {
            Action::Failed
        } else {
            Action::Delayed
        };
        let r = render(&rep);
        if let Err(e) = check_rendered(&r) {
            panic!("{e}\n{rep:?}\n{}", String::from_utf8_lossy(&r.bytes));
        }
    }
}
