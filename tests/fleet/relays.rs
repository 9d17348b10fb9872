//! Two relay processes on one Redis: what one counts, the other sees.

use super::*;
use wasmrelay_test_support::{assert_success, smtplib_send, WasmrelaySink};

const LISTS: &str = r#"
[[lists]]
name = "suppression"
writers = ["list-writer"]
readers = ["list-reader"]
"#;

const QUOTA_REACHED: &str = "451 4.7.1 daily quota of 3 messages reached";

#[test]
fn a_quota_and_the_suppression_list_hold_across_two_relays() {
    let redis = RedisServer::start();
    let sink = WasmrelaySink::start();
    let plugins = format!(
        "{}{}{}{LISTS}",
        plugin("quota", "config = { limit = 3 }"),
        plugin("list-writer", ""),
        plugin("list-reader", "")
    );
    let fleet = Fleet::start(&redis, &sink, &plugins);

    // 3 a day for alice, counted once across both relays: A, B, A pass; B and A refuse.
    for i in [0, 1, 0] {
        assert!(mail_from(fleet.addr(i), "alice@example.org").starts_with("250 "));
    }
    for i in [1, 0] {
        let reply = mail_from(fleet.addr(i), "alice@example.org");
        assert!(reply.starts_with(QUOTA_REACHED), "relay {i}: {reply}");
    }
    assert!(mail_from(fleet.addr(1), "bob@example.org").starts_with("250 "));

    // An operator's entry through relay A's CLI is refused by relay B's plugin.
    let out = list_cli(fleet.dir(0), &["add", "suppression", "dave@example.net"]);
    assert_success("list add", &out);
    assert_eq!(stdout(&out), "added dave@example.net to suppression\n");
    let refused = "550 5.7.1 recipient unsubscribed";
    assert_eq!(
        rcpt_reply(fleet.addr(1), "carl@example.org", "dave@example.net"),
        refused
    );

    // An unsubscribe taken by a plugin on relay B is honoured by relay A.
    let msg = "From: erin@example.org\r\nTo: news@example.com\r\nX-Unsubscribe: yes\r\n\
               Subject: stop\r\n\r\nplease\r\n";
    assert_eq!(
        smtplib_send(
            fleet.addr(1),
            "erin@example.org",
            &["news@example.com"],
            msg
        ),
        "[]"
    );
    assert_eq!(
        rcpt_reply(fleet.addr(0), "cora@example.org", "erin@example.org"),
        refused
    );

    // Both relays' CLIs show the one list; removing through B frees the address on A.
    let out = list_cli(fleet.dir(1), &["show", "suppression"]);
    assert_success("list show", &out);
    assert_eq!(
        stdout(&out),
        "dave@example.net\nerin@example.org\n2 member(s) on suppression\n"
    );
    assert_success(
        "list remove",
        &list_cli(fleet.dir(1), &["remove", "suppression", "dave@example.net"]),
    );
    assert!(rcpt_reply(fleet.addr(0), "cole@example.org", "dave@example.net").starts_with("250 "));

    // With both relays stopped, the CLI goes to Redis itself, and the spools hold no journal.
    let Fleet { dirs, relays } = fleet;
    for mut relay in relays {
        assert!(relay.terminate().success());
    }
    let out = list_cli(dirs[0].path(), &["show", "suppression"]);
    assert_success("list show, no relay", &out);
    assert_eq!(
        stdout(&out),
        "erin@example.org\n1 member(s) on suppression\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("using Redis"));
    assert!(!dirs[0].path().join("spool/state/lists.journal").exists());
    // The keys are under the deployment's prefix.
    let keys = redis.cli(&["--scan", "--pattern", "fleet-test:list:*"]);
    assert_eq!(keys.trim(), "fleet-test:list:suppression");
}

#[test]
fn a_rate_limit_holds_across_two_relays() {
    let redis = RedisServer::start();
    let sink = WasmrelaySink::start();
    // `policy` allows each sender 2 messages a minute (GCRA, bursts of 2) at MAIL FROM.
    let fleet = Fleet::start(&redis, &sink, &plugin("policy", ""));
    assert!(mail_from(fleet.addr(0), "rita@example.org").starts_with("250 "));
    assert!(mail_from(fleet.addr(1), "rita@example.org").starts_with("250 "));
    for i in [0, 1] {
        let reply = mail_from(fleet.addr(i), "rita@example.org");
        assert!(
            reply.starts_with("451 4.7.1 slow down, retry in "),
            "relay {i}: {reply}"
        );
    }
    assert!(mail_from(fleet.addr(1), "sam@example.org").starts_with("250 "));
}

/// The bundled rate-limit hands its limits to the relay (`want-calls-over-limits`): each
/// relay charges them on Redis itself, on the keys the plugin would use, so the plugin is
/// called only for the sender over its rate, on either relay, and refuses it with its reply.
#[test]
fn limits_the_relays_keep_for_the_bundled_rate_limit_hold_across_two_relays() {
    let redis = RedisServer::start();
    let sink = WasmrelaySink::start();
    let plugins = r#"
[[plugins]]
builtin = "rate-limit"
[plugins.config]
rules = [
    { name = "open", count = "concurrent", key = "ip", max = 100 },
    { name = "per-sender", count = "messages", key = "sender", rate = "2/1h" },
]
"#;
    let fleet = Fleet::start(&redis, &sink, plugins);
    let msg = "From: tess@example.org\r\nTo: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n";
    for i in [0, 1] {
        let sent = smtplib_send(fleet.addr(i), "tess@example.org", &["a@example.com"], msg);
        assert_eq!(sent, "[]", "relay {i}");
    }
    for i in [0, 1] {
        let reply = mail_from(fleet.addr(i), "Tess@Example.org");
        assert!(
            reply.starts_with("451 4.7.1 messages rate limit exceeded (per-sender"),
            "relay {i}: {reply}"
        );
    }
    assert!(mail_from(fleet.addr(0), "uma@example.org").starts_with("250 "));
}
