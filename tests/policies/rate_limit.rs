//! The `rate-limit` plugin end to end: the relay binary with `builtin = "rate-limit"`, Python
//! smtplib and a raw client on one side, aiosmtpd downstream. A sender over its rate, a
//! calendar quota refusing and then resetting at its window, a connection flood, concurrent
//! connections released at close, an exempt network, and the transcript of plugins/rate-limit.
//!
//! Run: `cargo test -p wasmrelay --test policies rate_limit`

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, binary, python, wait_for, Aiosmtpd, Downstream, Raw, Relay,
};

/// How long to wait for deliveries and for the relay to settle a closed connection.
const WAIT: Duration = Duration::from_secs(30);

/// A relay with the rate-limit plugin, delivering to an aiosmtpd. Bind `_dir` too: the
/// relay's spool lives in it.
struct Setup {
    relay: Relay,
    sink: Aiosmtpd,
    _dir: tempfile::TempDir,
}

/// Starts a [`Setup`] whose plugin `config` is `config` (TOML under `[plugins.config]`).
fn start(config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let sink_addr = SocketAddr::from(([127, 0, 0, 1], sink.port()));
    let plugin = format!("[[plugins]]\nbuiltin = \"rate-limit\"\n[plugins.config]\n{config}\n");
    let relay = Relay::start(dir.path(), &loopback_config(sink_addr, &plugin));
    Setup {
        relay,
        sink,
        _dir: dir,
    }
}

/// What one transaction got: the code of the reply that ended it and its text.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    code: u16,
    text: String,
}

/// One smtplib session from `source` (a loopback address) sending `count` messages from
/// `sender` to `rcpts`; the wall clock before and after (seconds since the epoch) and
/// each transaction's outcome (250 when every recipient was accepted).
struct Batch {
    start: f64,
    end: f64,
    outcomes: Vec<Outcome>,
}

fn send_batch(addr: SocketAddr, source: &str, sender: &str, rcpts: &[&str], count: usize) -> Batch {
    const SEND: &str = r#"
import smtplib, sys, time
host, port, source, sender, rcpts, count = sys.argv[1:7]
print("start", time.time())
with smtplib.SMTP(host, int(port), timeout=30, source_address=(source, 0)) as s:
    s.ehlo("client.test")
    for i in range(int(count)):
        try:
            refused = s.sendmail(sender, rcpts.split(","), f"Subject: {i}\r\n\r\nmessage {i}\r\n")
            if refused:
                code, text = sorted(refused.values())[0]
                print(code, text.decode())
            else:
                print(250, "ok")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
            print(e.smtp_code, e.smtp_error.decode())
            s.rset()
        except smtplib.SMTPRecipientsRefused as e:
            code, text = sorted(e.recipients.values())[0]
            print(code, text.decode())
            s.rset()
print("end", time.time())
"#;
    let out = python(
        SEND,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            source,
            sender,
            &rcpts.join(","),
            &count.to_string(),
        ],
    );
    assert_success("smtplib", &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut batch = Batch {
        start: 0.0,
        end: 0.0,
        outcomes: Vec::new(),
    };
    for line in text.lines() {
        let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
        match first {
            "start" => batch.start = rest.parse().unwrap(),
            "end" => batch.end = rest.parse().unwrap(),
            code => batch.outcomes.push(Outcome {
                code: code.parse().unwrap_or_else(|_| panic!("{text}")),
                text: rest.to_string(),
            }),
        }
    }
    assert_eq!(batch.outcomes.len(), count, "{text}");
    batch
}

/// `try again in N seconds` from a reply.
fn retry_seconds(text: &str) -> u64 {
    let tail = text
        .split("try again in ")
        .nth(1)
        .unwrap_or_else(|| panic!("no retry time in {text:?}"));
    tail.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_sixth_message_of_a_five_per_minute_sender_is_tempfailed() {
    let Setup {
        mut relay,
        sink,
        _dir,
    } = start(
        r#"rules = [{ name = "per-sender", count = "messages", key = "sender", rate = "5/min" }]"#,
    );
    // One token comes back every 12 s. On a machine so loaded that six transactions take
    // longer, the sixth may rightly pass: try again with a fresh sender.
    let mut delivered = 0;
    let mut attempt = 0;
    let refused = loop {
        attempt += 1;
        let sender = format!("burst{attempt}@example.org");
        let batch = send_batch(relay.addr(), "127.0.0.1", &sender, &["user@example.com"], 6);
        let accepted = batch.outcomes.iter().filter(|o| o.code == 250).count();
        delivered += accepted;
        if batch.end - batch.start < 12.0 || attempt == 3 {
            assert!(
                batch.outcomes[..5].iter().all(|o| o.code == 250),
                "{:?}",
                batch.outcomes
            );
            break batch.outcomes[5].clone();
        }
    };
    assert_eq!(refused.code, 451, "{refused:?}");
    assert!(
        refused
            .text
            .starts_with("4.7.1 messages rate limit exceeded (per-sender: 5/min); try again in "),
        "{refused:?}"
    );
    let retry = retry_seconds(&refused.text);
    assert!((1..=12).contains(&retry), "{refused:?}");

    // Another sender is not affected, and what was accepted arrives.
    let other = send_batch(
        relay.addr(),
        "127.0.0.1",
        "other@example.org",
        &["user@example.com"],
        1,
    );
    assert_eq!(other.outcomes[0].code, 250);
    let got = sink.wait_for(delivered + 1, WAIT);
    assert_eq!(got.len(), delivered + 1);
    relay.terminate();
}

#[test]
fn a_transaction_that_does_not_queue_its_message_does_not_count() {
    let Setup {
        mut relay,
        sink,
        _dir,
    } = start(
        r#"rules = [{ name = "per-sender", count = "messages", key = "sender", rate = "2/hour" }]"#,
    );
    let addr = relay.addr();
    let mut a = Raw::connect(addr);
    a.cmd("EHLO client.test", "250");
    let open = |c: &mut Raw| {
        c.cmd("MAIL FROM:<s@example.org>", "250");
        c.cmd("RCPT TO:<user@example.com>", "250");
    };
    // Ended by RSET, by a new EHLO, by the relay refusing the message at the end of DATA
    // (a mail loop), each more times than the rate allows.
    for _ in 0..3 {
        open(&mut a);
        a.cmd("RSET", "250");
    }
    for _ in 0..3 {
        open(&mut a);
        a.cmd("EHLO client.test", "250");
    }
    let looping = "Received: from a.test by b.test; Tue, 1 Dec 2026 00:00:00 +0000\r\n".repeat(60);
    for _ in 0..3 {
        open(&mut a);
        a.cmd("DATA", "354");
        a.send(format!("{looping}Subject: loop\r\n\r\nbody\r\n.\r\n").as_bytes());
        let reply = a.reply();
        assert!(reply.starts_with("554 5.4.6"), "{reply}");
    }
    // Ended by a dropped connection: given back once the relay has seen the close.
    for _ in 0..3 {
        let mut b = Raw::connect(addr);
        b.cmd("EHLO client.test", "250");
        open(&mut b);
        drop(b);
    }
    // So the sender still has its two messages (once the drops are seen), and no third.
    let message = |c: &mut Raw| {
        c.cmd("RCPT TO:<user@example.com>", "250");
        c.cmd("DATA", "354");
        c.cmd("Subject: counted\r\n\r\nbody\r\n.", "250")
    };
    let deadline = Instant::now() + WAIT;
    let mut queued = 0;
    while queued < 2 {
        let reply = a.cmd("MAIL FROM:<s@example.org>", "");
        if reply.starts_with("250") {
            message(&mut a);
            queued += 1;
            continue;
        }
        assert!(
            reply.starts_with("451 4.7.1 messages rate limit exceeded"),
            "{reply}"
        );
        assert!(
            Instant::now() < deadline,
            "a charge was never given back: {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let third = a.cmd("MAIL FROM:<s@example.org>", "451");
    assert!(
        third.starts_with("451 4.7.1 messages rate limit exceeded (per-sender: 2/hour)"),
        "{third}"
    );
    a.cmd("QUIT", "221");
    assert_eq!(sink.wait_for(2, WAIT).len(), 2);
    relay.terminate();
}

#[test]
fn a_quota_refuses_until_its_window_resets() {
    // A `minute` window: the same code path as `day`, checked without waiting a day.
    let Setup {
        mut relay,
        sink,
        _dir,
    } = start(
        r#"rules = [{ name = "per-sender-quota", count = "messages", key = "sender", quota = "2/minute" }]"#,
    );
    // The three messages must fall in one UTC minute for the third to be refused; when a
    // minute boundary falls between them, start over with a fresh sender.
    let mut attempt = 0;
    let (sender, batch) = loop {
        attempt += 1;
        let sender = format!("quota{attempt}@example.org");
        let batch = send_batch(relay.addr(), "127.0.0.1", &sender, &["user@example.com"], 3);
        if minute(batch.start) == minute(batch.end) || attempt == 3 {
            break (sender, batch);
        }
    };
    let codes: Vec<u16> = batch.outcomes.iter().map(|o| o.code).collect();
    assert_eq!(codes, [250, 250, 451], "{:?}", batch.outcomes);
    let reset = (minute(batch.start) + 1) * 60;
    let expected = format!(
        "4.7.1 messages quota reached (per-sender-quota: 2 per minute); try again after {}",
        utc_minute(reset)
    );
    assert_eq!(batch.outcomes[2].text, expected);

    // Once the window has passed, the same sender is accepted again.
    wait_for("the next UTC minute", Duration::from_secs(90), || {
        now_secs() >= reset as f64
    });
    let after = send_batch(relay.addr(), "127.0.0.1", &sender, &["user@example.com"], 1);
    assert_eq!(after.outcomes[0].code, 250, "{:?}", after.outcomes);
    assert_eq!(sink.wait_for(3, WAIT).len(), 3);
    relay.terminate();
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn minute(secs: f64) -> u64 {
    secs as u64 / 60
}

/// `YYYY-MM-DD HH:MM:00 UTC` as `date` prints it.
fn utc_minute(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_connection_flood_gets_421_and_is_disconnected() {
    let Setup {
        mut relay, _dir, ..
    } = start(
        r#"rules = [{ name = "flood", count = "connections", key = "ip", rate = "3/hour" }]"#,
    );
    let open: Vec<Raw> = (0..3).map(|_| Raw::connect(relay.addr())).collect();
    let mut fourth = Raw::open(relay.addr());
    let reply = fourth.reply();
    assert!(
        reply.starts_with(
            "421 4.7.0 connections rate limit exceeded (flood: 3/hour); try again in "
        ),
        "{reply:?}"
    );
    assert!((1..=1200).contains(&retry_seconds(&reply)), "{reply:?}");
    assert!(fourth.closed(), "the flooding client is disconnected");
    // The connections already admitted keep working.
    for mut c in open {
        c.cmd("EHLO client.test", "250");
        c.cmd("QUIT", "221");
    }
    relay.terminate();
}

#[test]
fn concurrent_connections_are_released_at_close() {
    let Setup {
        mut relay, _dir, ..
    } = start(r#"rules = [{ name = "open", count = "concurrent", key = "ip", max = 2 }]"#);
    let addr = relay.addr();
    let mut a = Raw::connect(addr);
    let mut b = Raw::connect(addr);
    // Refused: and the refusal holds nothing, several times over.
    for _ in 0..3 {
        let mut c = Raw::open(addr);
        let reply = c.reply();
        assert_eq!(
            reply,
            "421 4.7.0 too many concurrent connections (open: at most 2); try again later\r\n"
        );
        assert!(c.closed());
    }
    // A session that ends with QUIT gives its place back once the relay has seen it close.
    a.cmd("QUIT", "221");
    assert!(a.closed());
    let mut c = connect_when_admitted(addr);
    // One that drops the connection mid-transaction does too.
    b.cmd("EHLO client.test", "250");
    b.cmd("MAIL FROM:<x@example.org>", "250");
    drop(b);
    let mut d = connect_when_admitted(addr);
    c.cmd("QUIT", "221");
    d.cmd("QUIT", "221");
    // Nothing leaked: two at once again.
    let _e = connect_when_admitted(addr);
    let _f = connect_when_admitted(addr);
    relay.terminate();
}

/// Connects until the relay greets with 220 (a close is seen asynchronously).
fn connect_when_admitted(addr: SocketAddr) -> Raw {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = Raw::open(addr);
        let reply = c.reply();
        if reply.starts_with("220") {
            return c;
        }
        assert!(reply.starts_with("421 4.7.0"), "{reply:?}");
        assert!(Instant::now() < deadline, "never admitted: {reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_exempt_network_is_not_limited() {
    let Setup {
        mut relay,
        sink,
        _dir,
    } = start(
        r#"exempt_networks = ["127.0.0.2"]
rules = [
    { name = "per-sender", count = "messages", key = "sender", rate = "1/hour" },
    { name = "rcpts", count = "recipients", key = "ip", per_message = 2 },
]"#,
    );
    let addr = relay.addr();
    let rcpts = ["a@example.com", "b@example.com", "c@example.com"];
    let exempt = send_batch(addr, "127.0.0.2", "app@example.org", &rcpts, 3);
    assert!(
        exempt.outcomes.iter().all(|o| o.code == 250),
        "{:?}",
        exempt.outcomes
    );
    // The same sender from a network that is not exempt: one message, two recipients.
    let limited = send_batch(addr, "127.0.0.1", "app@example.org", &rcpts, 2);
    assert_eq!(
        limited.outcomes,
        [
            Outcome {
                code: 452,
                text: "4.5.3 too many recipients (rcpts: at most 2 per message); send the \
                       rest in another transaction"
                    .into()
            },
            Outcome {
                code: 451,
                text: format!(
                    "4.7.1 messages rate limit exceeded (per-sender: 1/hour); try again in {} \
                     seconds",
                    retry_seconds(&limited.outcomes[1].text)
                )
            }
        ]
    );
    let got = sink.wait_for(4, WAIT);
    assert_eq!(got.len(), 4);
    let mut counts: Vec<usize> = got.iter().map(|m| m.rcpt_tos.len()).collect();
    counts.sort();
    assert_eq!(counts, [2, 3, 3, 3]);
    relay.terminate();
}

#[test]
fn the_transcript_runs_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/rate-limit");
    let out = Command::new(binary())
        .args(["plugin", "test", "builtin:rate-limit", "--config"])
        .arg(root.join("session.toml"))
        .arg("--transcript")
        .arg(root.join("session.txt"))
        .output()
        .expect("wasmrelay plugin test");
    assert_success("wasmrelay plugin test", &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "plugin rate-limit handles: connect, mail-from, rcpt",
        "connect 192.0.2.1 -> continue",
        "connect 192.0.2.1 -> continue",
        "connect 192.0.2.1 -> disconnect 421 4.7.0 too many concurrent connections (open: at most 2); try again later",
        "closed -> done",
        "connect 192.0.2.9 -> continue",
        "closed -> done",
        "connect 192.0.2.10 -> disconnect 421 4.7.0 connections rate limit exceeded (flood: 3/hour); try again in 1200 seconds",
        "closed -> done",
        "connect 198.51.100.7 -> continue",
        "closed -> done",
        "connect 203.0.113.5 -> continue",
        "helo client.example -> continue",
        "mail <a@example.org> -> continue",
        "rcpt <x@example.com> -> continue",
        "rcpt <y@example.com> -> continue",
        "rcpt <z@example.com> -> tempfail 452 4.5.3 too many recipients (rcpts: at most 2 per message); send the rest in another transaction",
        "data (23 bytes) -> continue",
        "mail <A@Example.ORG> -> continue",
        "rcpt <x@example.com> -> continue",
        "data (24 bytes) -> continue",
        "mail <a@example.org> -> tempfail 451 4.7.1 messages rate limit exceeded (per-sender: 2/hour); try again in 1800 seconds",
        "mail <b@example.org> -> continue",
        "rcpt <x@example.com> -> continue",
        "closed -> done",
        "connect 203.0.113.6 -> continue",
        "auth alice -> continue",
        "mail <c@example.org> -> continue",
        "rcpt <x@example.com> -> continue",
        "data (25 bytes) -> continue",
        // The end of the UTC day follows "after ".
        "mail <d@example.org> -> tempfail 451 4.7.1 messages quota reached (per-user-day: 1 per day); try again after ",
        "closed -> done",
        "connect 203.0.113.7 -> continue",
        "auth bulk -> continue",
        "mail <a@example.org> -> continue",
        "rcpt <x@example.com> -> continue",
        "data (25 bytes) -> continue",
        "closed -> done",
        "connect 2001:db8::8 -> continue",
        "mail <e@example.org> -> continue",
        "rcpt <x@one.example> -> continue",
        "rcpt <y@one.example> -> tempfail 451 4.7.1 recipients quota reached (domain-day: 1 per day); try again after ",
        "mail <e@example.org> -> continue",
        "rcpt <z@two.example> -> continue",
        "rcpt <w@three.example> -> tempfail 451 4.7.1 recipients rate limit exceeded (rcpt-rate: 2/hour); try again in 1800 seconds",
        "closed -> done",
    ];
    assert!(lines.len() > expected.len(), "{text}");
    for (line, want) in lines.iter().zip(expected) {
        match want.strip_suffix("try again after ") {
            Some(_) => assert!(
                line.starts_with(want) && line.ends_with(" 00:00:00 UTC"),
                "{line:?} is not {want:?}<midnight UTC>\n{text}"
            ),
            None => assert_eq!(*line, want, "{text}"),
        }
    }
    assert!(
        lines[expected.len()].starts_with("done: ") && text.contains(" 0 plugin errors"),
        "{text}"
    );
}
