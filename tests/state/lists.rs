//! The suppression list across two plugins, the operator's CLI and restarts.

use std::net::SocketAddr;

use wasmrelay_test_support::rcpt_reply;

use super::*;

const LISTS: &str = r#"
[[lists]]
name = "suppression"
writers = ["list-writer"]
readers = ["list-reader"]
"#;

fn plugins() -> String {
    format!(
        "{}{}{LISTS}",
        plugin("list-writer", ""),
        plugin("list-reader", "")
    )
}

/// Sends one message with Python's smtplib; every recipient must be accepted.
fn send(addr: SocketAddr, sender: &str, rcpt: &str, headers: &str) {
    let msg = format!("From: {sender}\r\nTo: {rcpt}\r\n{headers}Subject: test\r\n\r\nhello\r\n");
    assert_eq!(smtplib_send(addr, sender, &[rcpt], &msg), "[]");
}

const REFUSED: &str = "550 5.7.1 recipient unsubscribed";

fn list_ok(dir: &Path, args: &[&str]) -> (String, String) {
    let out = list_cli(dir, args);
    assert_success(&format!("wasmrelay list {args:?}"), &out);
    (stdout(&out), stderr(&out))
}

#[test]
fn a_list_written_by_one_plugin_is_read_by_another_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sink = WasmrelaySink::start();
    let relay = start_relay(dir, &sink, &plugins());

    // list-writer puts the sender of an unsubscribe request on the list ...
    send(
        relay.addr(),
        "Alice@Example.org",
        "news@example.com",
        "X-Unsubscribe: yes\r\n",
    );
    // ... and list-reader refuses mail to it from then on, in other sessions.
    assert_eq!(
        rcpt_reply(relay.addr(), "carol@example.org", "alice@example.org"),
        REFUSED
    );
    assert!(rcpt_reply(relay.addr(), "carol@example.org", "bob@example.org").starts_with("250 "));

    // Operators see it through the running relay.
    let (out, err) = list_ok(dir, &["show", "suppression"]);
    assert_eq!(out, "alice@example.org\n1 member(s) on suppression\n");
    assert!(!err.contains("no relay is running"), "{err}");
    // An entry added by the operator is seen by the running relay's plugins at once.
    let (out, _) = list_ok(
        dir,
        &["add", "suppression", "dave@example.net", "--ttl", "30d"],
    );
    assert_eq!(out, "added dave@example.net to suppression\n");
    assert_eq!(
        rcpt_reply(relay.addr(), "carol@example.org", "dave@example.net"),
        REFUSED
    );
    // Removing one lets the next RCPT through, and the mail reaches the downstream.
    let (out, _) = list_ok(dir, &["remove", "suppression", "alice@example.org"]);
    assert_eq!(out, "removed alice@example.org from suppression\n");
    let (out, _) = list_ok(dir, &["remove", "suppression", "alice@example.org"]);
    assert_eq!(out, "alice@example.org was not on suppression\n");
    send(relay.addr(), "carol@example.org", "alice@example.org", "");
    wait_for(
        "alice's message at the sink",
        Duration::from_secs(30),
        || recipients(&sink).contains(&"alice@example.org".to_string()),
    );

    // An undeclared list is a clear error, naming the declared ones.
    let out = list_cli(dir, &["show", "supression"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no list named \"supression\" in [[lists]] (declared: suppression)"),
        "{}",
        stderr(&out)
    );

    // The list survives a restart, TTL included.
    stop(relay);
    let relay = start_relay(dir, &sink, &plugins());
    assert_eq!(
        rcpt_reply(relay.addr(), "carol@example.org", "dave@example.net"),
        REFUSED
    );
    assert!(rcpt_reply(relay.addr(), "carol@example.org", "alice@example.org").starts_with("250 "));
    let (out, _) = list_ok(dir, &["show", "suppression"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("dave@example.net  expires 20"),
        "{out}"
    );

    // With no relay running, the CLI edits the journal, and the next relay sees it.
    stop(relay);
    let (out, err) = list_ok(dir, &["add", "suppression", "erin@example.net"]);
    assert_eq!(out, "added erin@example.net to suppression\n");
    assert!(err.contains("no relay is running"), "{err}");
    let (out, _) = list_ok(dir, &["show", "suppression"]);
    assert!(
        out.ends_with("erin@example.net\n2 member(s) on suppression\n"),
        "{out}"
    );
    let relay = start_relay(dir, &sink, &plugins());
    assert_eq!(
        rcpt_reply(relay.addr(), "carol@example.org", "erin@example.net"),
        REFUSED
    );
    assert_eq!(
        rcpt_reply(relay.addr(), "carol@example.org", "dave@example.net"),
        REFUSED
    );
    stop(relay);
}
