//! Bounces, feedback and webhooks, end to end: the relay binary, Python's smtplib sending
//! DSNs and ARF reports to the bounce address, the `router` plugin refusing what was
//! suppressed, and a Python `http.server` receiving signed webhook batches across a receiver
//! outage and a `kill -9` of the relay.
//!
//! `cargo test -p wasmrelay --test feedback`

mod reports;
mod webhooks;

use std::time::Duration;

use serde_json::Value;

use wasmrelay::feedback::{classify, classify_reply, BounceClass};
use wasmrelay_codec::reply::Enhanced;
use wasmrelay_test_support::event_log;

/// Generous: the machine running the tests may be busy.
const WAIT: Duration = Duration::from_secs(60);

/// The first event with every `(key, value)` of `want`.
fn find<'a>(log: &'a [Value], want: &[(&str, &str)]) -> Option<&'a Value> {
    log.iter()
        .find(|e| want.iter().all(|(k, v)| e[*k].as_str() == Some(*v)))
}

#[test]
fn bounce_classes_follow_the_documented_table() {
    use BounceClass::{Hard, Soft};
    let table: &[((u8, u16, u16), &str, BounceClass)] = &[
        ((5, 1, 1), "user unknown", Hard),
        ((5, 1, 2), "bad destination system", Hard),
        ((5, 1, 10), "recipient domain has a null MX", Hard),
        ((5, 1, 8), "sender domain refused", Soft),
        ((5, 2, 1), "mailbox disabled", Hard),
        ((5, 2, 2), "mailbox full", Soft),
        ((5, 2, 3), "message too long", Soft),
        ((5, 2, 0), "mailbox unavailable", Hard),
        ((5, 3, 4), "message too big", Soft),
        ((5, 4, 4), "unable to route", Hard),
        ((5, 4, 6), "routing loop", Soft),
        ((5, 4, 7), "delivery time expired", Soft),
        ((5, 5, 2), "syntax error", Soft),
        ((5, 6, 0), "conversion failed", Soft),
        ((5, 7, 1), "message refused by policy", Soft),
        ((5, 7, 26), "DMARC policy", Soft),
        ((5, 7, 13), "account disabled", Hard),
        ((5, 0, 0), "no such user", Hard),
        ((5, 0, 0), "over quota", Soft),
        ((5, 0, 0), "message rejected as spam", Soft),
        ((5, 9, 9), "a code from the future", Hard),
        ((4, 4, 1), "connection refused", Soft),
        ((4, 2, 2), "mailbox full", Soft),
    ];
    for &((c, s, d), text, want) in table {
        assert_eq!(
            classify(Enhanced(c, s, d), text),
            want,
            "{c}.{s}.{d} {text}"
        );
    }
    assert_eq!(
        classify_reply(550, "Requested action not taken: mailbox unavailable"),
        Hard
    );
    assert_eq!(classify_reply(554, "rejected: listed on a blocklist"), Soft);
    assert_eq!(classify_reply(421, "try later"), Soft);
}
