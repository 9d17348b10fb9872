//! The relay's own log as an operator greps it: one line per message received and one per
//! recipient outcome, all carrying the queue id, in text and in JSON.

use std::net::SocketAddr;
use std::time::Duration;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{smtplib_send, wait_for, Aiosmtpd, Downstream, Relay};

const WAIT: Duration = Duration::from_secs(60);
const MESSAGE: &str = "From: app@example.org\r\nSubject: logs\r\n\r\nfollow me\r\n";

/// The text after `wasmrelay::mail: ` on each message line of `log`.
fn mail_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(" wasmrelay::mail: "))
        .map(|(_, rest)| rest.to_string())
        .collect()
}

/// The queue id a message line is about.
fn queue_id(line: &str) -> &str {
    line.split_once(": ").expect("QUEUEID: fields").0
}

/// Replaces the number after `key=` (a delay, a size) with `N`: those vary.
fn without_numbers(line: &str, keys: &[&str]) -> String {
    let mut out = line.to_string();
    for key in keys {
        let pat = format!("{key}=");
        if let Some(at) = out.find(&pat) {
            let start = at + pat.len();
            let end = out[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(out.len(), |e| start + e);
            assert!(end > start, "{key} is not a number in {line}");
            out.replace_range(start..end, "N");
        }
    }
    out
}

#[test]
fn text_lines_follow_a_message_by_its_queue_id() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::builder().reject_rcpt("nobody").start();
    let mut relay = Relay::start(dir.path(), &loopback_config(sink.addr(), ""));
    let refused = smtplib_send(
        relay.addr(),
        "app@example.org",
        &["user@example.com", "nobody@example.com"],
        MESSAGE,
    );
    assert_eq!(refused, "[]");
    // The message to user@, then the bounce for nobody@ back to app@.
    sink.wait_for(2, WAIT);
    wait_for("the queue to empty", WAIT, || relay.queue_is_empty());
    wait_for("the bounce's delivery line", WAIT, || {
        relay
            .log()
            .contains(": to=<app@example.org>, relay=127.0.0.1[")
    });

    let lines = mail_lines(&relay.log());
    let id = queue_id(&lines[0]).to_string();
    let remote = format!("relay=127.0.0.1[127.0.0.1]:{}", sink.port());
    let ours: Vec<String> = lines
        .iter()
        .filter(|l| queue_id(l) == id)
        .map(|l| without_numbers(l, &["size", "delay"]))
        .collect();
    let about = |needle: &str| -> &str {
        let found: Vec<&String> = ours.iter().filter(|l| l.contains(needle)).collect();
        assert_eq!(found.len(), 1, "one line with {needle:?} in {lines:#?}");
        found[0]
    };
    assert_eq!(
        ours[0],
        format!("{id}: client=127.0.0.1, from=<app@example.org>, size=N, nrcpt=2, listener=relay-0, status=queued")
    );
    assert!(
        about("to=<user@example.com>").starts_with(&format!(
            "{id}: to=<user@example.com>, {remote}, delay=N, attempts=1, status=sent (250 "
        )),
        "{lines:#?}"
    );
    assert_eq!(
        about("to=<nobody@example.com>"),
        format!("{id}: to=<nobody@example.com>, {remote}, delay=N, dsn=5.1.1, status=bounced (550 5.1.1 <nobody@example.com>: recipient rejected)")
    );
    let notice = about("status=notice queued");
    let dsn = notice
        .strip_prefix(&format!("{id}: dsn="))
        .and_then(|rest| rest.strip_suffix(", action=failed, status=notice queued"))
        .unwrap_or_else(|| panic!("{notice}"));
    assert_eq!(ours.len(), 4, "{lines:#?}");
    // The bounce is a message of its own, followed by its own id.
    let bounce: Vec<String> = lines
        .iter()
        .filter(|l| queue_id(l) == dsn)
        .map(|l| without_numbers(l, &["delay"]))
        .collect();
    assert_eq!(bounce.len(), 1, "{lines:#?}");
    assert!(
        bounce[0].starts_with(&format!(
            "{dsn}: to=<app@example.org>, {remote}, delay=N, attempts=1, status=sent (250 "
        )),
        "{lines:#?}"
    );
    relay.terminate();
}

/// The listener address from a JSON `listening` line.
fn json_listening(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "listening")
        .and_then(|v| v["address"].as_str()?.parse().ok())
}

#[test]
fn json_lines_carry_the_same_fields() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let config = dir.path().join("relay.toml");
    let text = loopback_config(sink.addr(), "[log]\nformat = \"json\"\nlevel = \"info\"\n");
    wasmrelay_test_support::relay::write_config(&config, &text);
    let mut relay = Relay::spawn(&config);
    wait_for("the JSON listening line", WAIT, || {
        assert!(relay.is_running(), "the relay exited:\n{}", relay.log());
        json_listening(&relay.log()).is_some()
    });
    let addr = json_listening(&relay.log()).unwrap();
    smtplib_send(addr, "app@example.org", &["user@example.com"], MESSAGE);
    sink.wait_for(1, WAIT);
    wait_for("the delivery line", WAIT, || {
        relay.log().contains("\"sent\"")
    });

    let log = relay.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mail: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["target"] == "wasmrelay::mail")
        .collect();
    assert_eq!(mail.len(), 2, "{log}");
    let (received, sent) = (mail[0], mail[1]);
    let id = received["queue_id"].as_str().unwrap();
    assert!(!id.is_empty());
    assert_eq!(received["level"], "INFO");
    assert_eq!(received["client"], "127.0.0.1");
    assert_eq!(received["from"], "app@example.org");
    assert_eq!(received["nrcpt"], 1);
    assert_eq!(received["status"], "queued");
    assert!(received["size"].as_u64().unwrap() > MESSAGE.len() as u64);
    assert_eq!(sent["queue_id"], id);
    assert_eq!(sent["to"], "user@example.com");
    assert_eq!(
        sent["relay"],
        format!("127.0.0.1[127.0.0.1]:{}", sink.port())
    );
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["attempts"], 1);
    assert!(sent["delay"].is_u64(), "{sent}");
    assert!(
        sent["detail"].as_str().unwrap().starts_with("250 "),
        "{sent}"
    );
    assert!(sent["timestamp"].is_string(), "{sent}");
    relay.terminate();
}
