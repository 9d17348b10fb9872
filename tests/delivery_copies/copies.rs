//! Per-recipient copies: rendered one per transaction, signed after the edits, the spooled
//! bytes for everyone else; a retry renders the same copy again.

use super::*;
use wasmrelay::config::delivery::DkimAlgorithm;
use wasmrelay::delivery::dkim::keygen;
use wasmrelay_test_support::DnsZone;

const MESSAGE: &str = "From: News <news@example.org>\r\nTo: readers@example.org\r\n\
Subject: This week\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <w1@example.org>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Read it here: https://track.example/c\r\n\
.or here https://track.example/c (same link)\r\n";

/// The body of `MESSAGE` as `rcpt`'s copy has it.
fn tracked_body(token: &str) -> String {
    let body = MESSAGE.split_once("\r\n\r\n").unwrap().1;
    body.replace(
        "https://track.example/c",
        &format!("https://track.example/c?t={token}"),
    )
}

/// The TXT value `keygen` printed for its DKIM record (the quoted strings joined).
fn txt_value(records: &str) -> String {
    let line = records.lines().next().unwrap();
    let quoted = &line[line.find('"').unwrap()..];
    quoted
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

#[test]
fn each_tracked_recipient_gets_its_own_signed_copy() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.pem");
    let records = keygen("example.org", "s1", DkimAlgorithm::RsaSha256, &key).unwrap();
    let dns = DnsZone::start(
        serde_json::json!({ "s1._domainkey.example.org": [["TXT", txt_value(&records)]] }),
    );
    let sink = Aiosmtpd::start();
    let relay = Relay::start(
        dir.path(),
        &Setup {
            sink: &sink,
            bulk: None,
            retry: "1s",
            delivery: format!(
                "[[delivery.dkim]]\ndomain = \"example.org\"\nselector = \"s1\"\nkey = {:?}\n",
                key.display().to_string()
            ),
        },
    );

    let rcpts = [
        "t1@dest.test",
        "plain1@dest.test",
        "t2@dest.test",
        "plain2@dest.test",
        "t3@dest.test",
    ];
    let id = relay.send("news@example.org", &rcpts, MESSAGE);
    let got = sink.wait_for(4, WAIT);
    wait_for("the queue to empty", WAIT, || relay.0.queue_is_empty());
    assert_eq!(got.len(), 4, "{got:#?}");

    let mut tokens = Vec::new();
    for rcpt in ["t1@dest.test", "t2@dest.test", "t3@dest.test"] {
        let copies: Vec<&Delivered> = got.iter().filter(|m| m.rcpt_tos == [rcpt]).collect();
        assert_eq!(copies.len(), 1, "{rcpt} alone in one transaction: {got:#?}");
        let copy = copies[0];
        let expected = token(&id, rcpt);
        assert_eq!(header(copy, "X-Recipient-Token"), [expected.as_str()]);
        assert_eq!(header(copy, "X-Copy-Attempt"), ["1"]);
        let body = copy.text().split_once("\r\n\r\n").unwrap().1.to_string();
        assert_eq!(body, tracked_body(&expected), "{rcpt}'s links");
        tokens.push(expected);
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "three different tokens");

    let shared: Vec<&Delivered> = got.iter().filter(|m| m.rcpt_tos.len() > 1).collect();
    assert_eq!(shared.len(), 1, "{got:#?}");
    assert_eq!(shared[0].rcpt_tos, ["plain1@dest.test", "plain2@dest.test"]);
    assert!(header(shared[0], "X-Recipient-Token").is_empty());
    let text = shared[0].text();
    assert!(
        text.ends_with(MESSAGE.split_once("\r\n\r\n").unwrap().1),
        "the untracked recipients get the spooled body:\n{text}"
    );

    // Every copy carries one signature, made after the edits: dkimpy verifies each.
    for (n, m) in got.iter().enumerate() {
        assert_eq!(header(m, "DKIM-Signature").len(), 1, "{}", m.text());
        if let Err(e) = dns.verify_dkim(&m.data) {
            panic!("dkimpy on {:?} (transaction {n}): {e}", m.rcpt_tos);
        }
    }
    // The four transactions reused one connection.
    assert!(
        got.windows(2).all(|w| peer_port(&w[0]) == peer_port(&w[1])),
        "{:?}",
        got.iter().map(peer_port).collect::<Vec<_>>()
    );
}

#[test]
fn a_retry_renders_the_same_copy_from_the_spooled_original() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::builder().tempfail_data(1).start();
    // No retry on its own during the test: `queue flush` starts the second attempt.
    let relay = Relay::start(
        dir.path(),
        &Setup {
            sink: &sink,
            bulk: None,
            retry: "1h",
            delivery: String::new(),
        },
    );
    let id = relay.send("news@example.org", &["t1@dest.test"], MESSAGE);
    let env = relay.wait_reply(&id, "t1@dest.test", "451 4.3.0 try again later");
    assert_eq!(env["recipients"][0]["attempts"], 1);

    // The spool keeps the original: no token in what is queued.
    let spooled = relay.queue(&["show", &id, "--headers"]);
    assert!(spooled.contains("Subject: This week"), "{spooled}");
    assert!(!spooled.contains("X-Recipient-Token"), "{spooled}");

    assert_eq!(relay.queue(&["flush", &id]).trim(), "ok");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_tos, ["t1@dest.test"]);
    assert_eq!(
        header(&got[0], "X-Recipient-Token"),
        [token(&id, "t1@dest.test")],
        "the same token as the first attempt rendered"
    );
    assert_eq!(header(&got[0], "X-Copy-Attempt"), ["2"]);
}
