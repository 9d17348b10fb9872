//! The event log, end to end: one message through the `policy` plugin to an aiosmtpd
//! downstream that answers 451 once for one recipient and 550 for another. The log must tell
//! the message's whole life: received, queued, the plugin's own event at data, a recipient
//! refused by the plugin (with plugin and hook) and a sender refused by the relay, deferred
//! then delivered, bounced with its DSN queued and delivered, held and dropped by the route
//! hook with their reasons.

use serde_json::Value;

use wasmrelay_test_support::{event_log, queued_id, wait_for};

use super::*;

/// Appended to the test config: the plugin, the event log (relative to the config file) and
/// a small size limit to trip.
fn extra() -> String {
    format!(
        "{}\n[events]\npath = \"events.jsonl\"\nmax_size = \"1MB\"\n\n[limits]\nmax_message_size = 100000\n",
        plugin("policy", "policy", "tempfail", "")
    )
}

/// Index of the first event that has every `(key, value)` of `want`.
fn find(log: &[Value], want: &[(&str, &str)]) -> Option<usize> {
    log.iter()
        .position(|e| want.iter().all(|(k, v)| e[*k].as_str() == Some(*v)))
}

#[test]
fn the_event_log_tells_a_message_life() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::builder()
        .tempfail_rcpt_once("slow@")
        .reject_rcpt("bad@")
        .start();
    let (mut relay, addr) = start_relay(dir.path(), &sink, &extra());
    // An unnamed listener is named after its role and configured port (here `:0`).
    let listener = "relay-0".to_string();
    let log_path = dir.path().join("events.jsonl");

    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    // Refused by the relay (SIZE over the limit): no plugin decided.
    c.cmd("MAIL FROM:<sender@example.org> SIZE=200000", "552");
    c.cmd("MAIL FROM:<sender@example.org>", "250");
    for rcpt in ["user", "slow"] {
        c.cmd(&format!("RCPT TO:<{rcpt}@example.com>"), "250");
    }
    c.cmd(
        "RCPT TO:<blocked@example.com>",
        "550 5.1.1 mailbox unavailable",
    );
    for rcpt in ["bad@example.com", "h@hold.test", "d@drop.test"] {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), "250");
    }
    c.cmd("DATA", "354");
    let id = queued_id(&c.cmd("Subject: events\r\n\r\nthe life of a message\r\n.", "250"));
    c.cmd("QUIT", "221");

    let has = |want: &[(&str, &str)]| find(&event_log(&log_path), want).is_some();
    wait_for(
        "every outcome in the event log",
        Duration::from_secs(30),
        || {
            has(&[("event", "delivered"), ("recipient", "user@example.com")])
                && has(&[("event", "delivered"), ("recipient", "slow@example.com")])
                && has(&[("event", "bounced"), ("recipient", "bad@example.com")])
                && has(&[("event", "held"), ("recipient", "h@hold.test")])
                && has(&[("event", "dropped"), ("recipient", "d@drop.test")])
                && has(&[("event", "delivered"), ("recipient", "sender@example.org")])
        },
    );
    assert!(relay.terminate().success());
    let log = event_log(&log_path);
    let show = || {
        log.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Every line: an RFC 3339 UTC time with milliseconds, and an event name.
    for e in &log {
        let t = e["time"].as_str().unwrap();
        assert_eq!(
            (t.len(), &t[10..11], &t[19..20], &t[23..]),
            (24, "T", ".", "Z"),
            "{e}"
        );
        assert!(e["event"].is_string(), "{e}");
    }
    let at = |want: &[(&str, &str)]| {
        find(&log, want).unwrap_or_else(|| panic!("no {want:?} in:\n{}", show()))
    };
    let ours =
        |event: &str, rcpt: &str| at(&[("event", event), ("queue_id", &id), ("recipient", rcpt)]);

    // Refused at MAIL by the relay, and at RCPT by the plugin.
    let size = &log[at(&[("event", "rejected"), ("stage", "mail-from")])];
    assert_eq!(size["code"], 552, "{size}");
    assert_eq!(
        (size["client_ip"].as_str(), size["listener"].as_str()),
        (Some("127.0.0.1"), Some(listener.as_str()))
    );
    assert!(
        size.get("plugin").is_none() && size.get("hook").is_none(),
        "{size}"
    );
    let blocked = &log[at(&[("event", "rejected"), ("recipient", "blocked@example.com")])];
    assert_eq!(
        (
            &blocked["plugin"],
            &blocked["hook"],
            &blocked["stage"],
            &blocked["code"]
        ),
        (
            &Value::from("policy"),
            &Value::from("rcpt"),
            &Value::from("rcpt"),
            &Value::from(550)
        ),
        "{blocked}"
    );
    assert_eq!(
        (&blocked["status"], &blocked["from"]),
        (&Value::from("5.1.1"), &Value::from("sender@example.org"))
    );

    // The plugin's own event at data carries its name, the hook and the message's id.
    let emitted = &log[at(&[("event", "plugin"), ("name", "policy-checked")])];
    assert_eq!(
        (emitted["plugin"].as_str(), emitted["hook"].as_str()),
        (Some("policy"), Some("data"))
    );
    assert_eq!(emitted["queue_id"].as_str(), Some(id.as_str()), "{emitted}");
    assert_eq!(emitted["fields"]["recipients"], "5");
    assert_eq!(emitted["fields"]["listed"], "5");

    // Received, then queued, with what the client sent.
    let received = at(&[("event", "received"), ("queue_id", &id)]);
    let r = &log[received];
    assert_eq!(
        (r["from"].as_str(), r["rcpts"].as_u64()),
        (Some("sender@example.org"), Some(5))
    );
    assert_eq!(
        (
            r["client_ip"].as_str(),
            r["listener"].as_str(),
            r["helo"].as_str()
        ),
        (
            Some("127.0.0.1"),
            Some(listener.as_str()),
            Some("client.test")
        )
    );
    assert!(r["size"].as_u64().unwrap() > 40, "{r}");
    let queued = at(&[("event", "queued"), ("queue_id", &id)]);
    assert_eq!(
        log[queued]["recipients"],
        serde_json::json!([
            "user@example.com",
            "slow@example.com",
            "bad@example.com",
            "h@hold.test",
            "d@drop.test"
        ])
    );
    assert!(at(&[("event", "plugin")]) < received && received < queued);

    // Deferred once, then delivered; the others delivered, bounced, held, dropped.
    let deferred = ours("deferred", "slow@example.com");
    assert_eq!(
        log[deferred]["reply"],
        "451 4.2.0 <slow@example.com>: try again later"
    );
    assert_eq!(log[deferred]["attempts"], 1);
    let delivered = ours("delivered", "slow@example.com");
    assert!(queued < deferred && deferred < delivered, "{}", show());
    assert_eq!(log[delivered]["attempts"], 2);
    assert!(queued < ours("delivered", "user@example.com"));
    let bounced = &log[ours("bounced", "bad@example.com")];
    assert_eq!(bounced["status"], "5.1.1");
    let remote = format!("127.0.0.1[127.0.0.1]:{}", sink.port());
    assert_eq!(
        bounced["remote"].as_str(),
        Some(remote.as_str()),
        "{bounced}"
    );
    assert!(
        bounced["reply"].as_str().unwrap().starts_with("550 5.1.1"),
        "{bounced}"
    );
    for (event, rcpt, reason) in [
        ("held", "h@hold.test", "quarantined"),
        ("dropped", "d@drop.test", "discarded"),
    ] {
        let e = &log[ours(event, rcpt)];
        assert_eq!(
            (
                e["plugin"].as_str(),
                e["hook"].as_str(),
                e["reason"].as_str()
            ),
            (Some("policy"), Some("route"), Some(reason)),
            "{e}"
        );
    }
    assert_eq!(
        find(
            &log,
            &[("event", "delivered"), ("recipient", "d@drop.test")]
        ),
        None,
        "a drop is not a delivery"
    );
    assert_eq!(
        find(
            &log,
            &[("event", "deferred"), ("recipient", "user@example.com")]
        ),
        None
    );

    // The bounce's DSN: queued as a message of its own, naming the original, and delivered.
    let dsn = &log[at(&[("event", "queued"), ("dsn_for", &id)])];
    assert_eq!(
        (dsn["from"].as_str(), &dsn["recipients"]),
        (Some(""), &serde_json::json!(["sender@example.org"]))
    );
    let dsn_id = dsn["queue_id"].as_str().unwrap();
    at(&[
        ("event", "delivered"),
        ("queue_id", dsn_id),
        ("recipient", "sender@example.org"),
    ]);
    assert_eq!(find(&log, &[("event", "events-lost")]), None);
}
