//! DSNs and ARF reports sent to the bounce address: events, suppression, and forgeries.

use std::process::Command;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, binary, rcpt_reply, smtplib_send, wait_for, Aiosmtpd, Downstream, Relay,
};

use super::*;

fn config(sink: &Aiosmtpd) -> String {
    loopback_config(
        sink.addr(),
        r#"
[events]
path = "events.jsonl"

[[lists]]
name = "suppression"
readers = ["router"]

[feedback]
bounce_address = "bounces@example.com"

[[plugins]]
builtin = "router"
[plugins.config]
suppression = { list = "suppression" }
"#,
    )
}

/// A DSN from `MAILER-DAEMON` saying `rcpt` failed with `status`, with `headers` (the
/// original's) as its third part.
fn dsn(rcpt: &str, status: &str, diagnostic: &str, headers: &str) -> String {
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
         To: bounces@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"dsn-b\"\r\n\r\n\
         --dsn-b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
         --dsn-b\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n\
         Remote-MTA: dns; mailstore.example.net\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n\
         --dsn-b\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n\
         --dsn-b--\r\n"
    )
}

/// An ARF abuse report about `rcpt` with `original` (the whole message) attached.
fn arf(rcpt: &str, original: &str) -> String {
    format!(
        "From: fbl@isp.example\r\nTo: bounces@example.com\r\nSubject: FW: complaint\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf-b\"\r\n\r\n\
         --arf-b\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\r\n\
         --arf-b\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n\
         Original-Rcpt-To: <{rcpt}>\r\n\r\n\
         --arf-b\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n\
         --arf-b--\r\n"
    )
}

/// The header section of a message as text.
fn headers_of(message: &str) -> String {
    message.split("\r\n\r\n").next().unwrap().to_string() + "\r\n"
}

fn suppressed(relay: &Relay) -> String {
    let out = Command::new(binary())
        .args(["list", "--config"])
        .arg(relay.config_path())
        .args(["show", "suppression"])
        .output()
        .expect("run wasmrelay list show");
    assert_success("list show", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dsns_and_complaints_about_our_mail_suppress_and_forgeries_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::builder().reject_rcpt("gone@").start();
    let relay = Relay::start(dir.path(), &config(&sink));
    let addr = relay.addr();
    let log = dir.path().join("events.jsonl");

    // One message to three recipients; the downstream refuses one of them at once.
    let refused = smtplib_send(
        addr,
        "news@example.com",
        &["alice@example.net", "carol@example.org", "gone@example.net"],
        "From: news@example.com\r\nTo: alice@example.net, carol@example.org\r\n\
         Message-ID: <n1@example.com>\r\nSubject: news\r\n\r\nNews.\r\n",
    );
    assert_eq!(refused, "[]");
    let original = sink.wait_subject("news", WAIT);
    let mut queue_id = String::new();
    wait_for("deliveries and the bounce in the event log", WAIT, || {
        let log = event_log(&log);
        let ok = ["alice@example.net", "carol@example.org"]
            .iter()
            .all(|r| find(&log, &[("event", "delivered"), ("recipient", r)]).is_some());
        if let Some(e) = find(
            &log,
            &[("event", "delivered"), ("recipient", "alice@example.net")],
        ) {
            queue_id = e["queue_id"].as_str().unwrap().to_string();
        }
        ok && find(
            &log,
            &[("event", "bounced"), ("recipient", "gone@example.net")],
        )
        .is_some()
    });
    // A synchronous bounce carries its class too.
    let all = event_log(&log);
    let sync = find(
        &all,
        &[("event", "bounced"), ("recipient", "gone@example.net")],
    )
    .unwrap();
    assert_eq!(sync["class"], "hard", "{sync}");
    assert!(sync.get("async").is_none(), "{sync}");
    assert!(
        original.contains(&format!("(wasmrelay) with ESMTP id {queue_id}")),
        "{original}"
    );
    let headers = headers_of(&original);

    // Forgeries first: a queue id we never used, and a real one for a recipient it never
    // went to. Both are accepted (a 250, like any mail) and ignored.
    let forged_id = headers.replace(&queue_id, "0000000000000ZZZZZZZZ");
    let unknown = "550 5.1.1 user unknown";
    let bounces = "bounces@example.com";
    let reports = [
        (
            "",
            bounces,
            dsn("dave@example.net", "5.1.1", unknown, &forged_id),
        ),
        (
            "",
            bounces,
            dsn("mallory@example.net", "5.1.1", unknown, &headers),
        ),
        // Genuine ones: a hard bounce for alice, a complaint about carol's copy, and a
        // soft bounce (mailbox full) for carol, which suppresses nobody.
        (
            "",
            "Bounces@Example.com",
            dsn(
                "alice@example.net",
                "5.1.1",
                "550 5.1.1 <alice@example.net>: user unknown",
                &headers,
            ),
        ),
        (
            "fbl@isp.example",
            bounces,
            arf("carol@example.org", &original),
        ),
        (
            "",
            bounces,
            dsn(
                "carol@example.org",
                "5.2.2",
                "552 5.2.2 mailbox full",
                &headers,
            ),
        ),
    ];
    for (from, to, report) in reports {
        assert_eq!(smtplib_send(addr, from, &[to], &report), "[]");
    }

    let mut log_now = Vec::new();
    wait_for(
        "the async bounces and the complaint in the event log",
        WAIT,
        || {
            log_now = event_log(&log);
            let soft = log_now.iter().any(|e| {
                e["event"] == "bounced"
                    && e["recipient"] == "carol@example.org"
                    && e["async"] == true
            });
            soft && find(&log_now, &[("event", "complaint")]).is_some()
        },
    );
    let bounced = find(
        &log_now,
        &[("event", "bounced"), ("recipient", "alice@example.net")],
    )
    .unwrap();
    assert_eq!(
        bounced["queue_id"].as_str(),
        Some(queue_id.as_str()),
        "{bounced}"
    );
    assert_eq!(bounced["async"], true);
    assert_eq!(bounced["class"], "hard");
    assert_eq!(bounced["status"], "5.1.1");
    assert_eq!(bounced["remote"], "mailstore.example.net");
    assert_eq!(
        bounced["reply"],
        "550 5.1.1 <alice@example.net>: user unknown"
    );
    let complaint = find(&log_now, &[("event", "complaint")]).unwrap();
    assert_eq!(complaint["recipient"], "carol@example.org");
    assert_eq!(complaint["queue_id"].as_str(), Some(queue_id.as_str()));
    assert_eq!(complaint["feedback_type"], "abuse");
    let soft = log_now
        .iter()
        .find(|e| e["event"] == "bounced" && e["recipient"] == "carol@example.org")
        .unwrap();
    assert_eq!(soft["class"], "soft", "{soft}");
    for forged in ["dave@example.net", "mallory@example.net"] {
        assert!(
            !log_now.iter().any(|e| e["recipient"] == forged),
            "a forged report made an event about {forged}"
        );
    }

    // The hard bounce and the complaint are on the list, nobody else.
    assert_eq!(
        suppressed(&relay),
        "alice@example.net\ncarol@example.org\n2 member(s) on suppression\n"
    );
    // ... so the router plugin refuses them from now on.
    for rcpt in ["alice@example.net", "Carol@Example.org"] {
        assert!(
            rcpt_reply(addr, "news@example.com", rcpt).starts_with("550 5.7.1"),
            "{rcpt}"
        );
    }
    assert!(rcpt_reply(addr, "news@example.com", "dave@example.net").starts_with("250"));
    // The reports were consumed, never queued: once the queue is empty (the DSN about
    // gone@ delivered), the downstream has the newsletter and that DSN, no report.
    wait_for("an empty queue", WAIT, || relay.queue_is_empty());
    let got = sink.messages();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got
        .iter()
        .all(|m| !m.rcpt_tos.iter().any(|r| r.contains("bounces@"))));
}
