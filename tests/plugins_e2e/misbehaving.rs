//! Misbehaving plugins: the `on_error` reply, and the relay keeps serving.

use super::*;

const TEMPFAIL: &str = "451 4.3.0 Temporary policy failure, try again later\r\n";
const REJECT: &str = "550 5.7.0 Rejected by policy\r\n";

/// One full transaction on a fresh connection; every step must succeed.
fn good_transaction(addr: SocketAddr, tag: &str) -> Result<(), String> {
    let mut c = Raw::connect(addr);
    for (line, expect) in [
        ("EHLO other.test".to_string(), "250"),
        (format!("MAIL FROM:<{tag}@example.org>"), "250"),
        (format!("RCPT TO:<{tag}@example.com>"), "250"),
        ("DATA".to_string(), "354"),
        (format!("Subject: {tag}\r\n\r\n{tag}\r\n."), "250"),
        ("QUIT".to_string(), "221"),
    ] {
        c.send(format!("{line}\r\n").as_bytes());
        let reply = c.reply();
        if !reply.starts_with(expect) {
            return Err(format!("{line:?}: expected {expect}, got {reply:?}"));
        }
    }
    Ok(())
}

/// Test plugin `kind` fails its `rcpt` hook for `bad@...`. The client sees the `on_error`
/// reply and goes on; a session running meanwhile and one after it never take the bad path
/// and see nothing; the failure is logged with the plugin's name and kind. With `spins`, the
/// failing call must take at least that long and the session beside it must finish first:
/// a plugin burning its CPU budget does not hold up other sessions.
fn misbehaving(kind: &str, on_error: &str, limits: &str, logged: &str, spins: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let name = format!("misbehaving-{kind}");
    let (mut relay, addr) = start_relay(
        dir.path(),
        &sink,
        &plugin(kind, &name, on_error, &format!("limits = {limits}")),
    );

    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<client@example.org>", "250");
    c.cmd("RCPT TO:<good@example.com>", "250");
    c.send(b"RCPT TO:<bad@example.com>\r\n");
    let started = Instant::now();
    let meanwhile =
        std::thread::spawn(move || good_transaction(addr, "meanwhile").map(|()| Instant::now()));
    let reply = c.reply();
    let replied = Instant::now();
    let took = replied - started;
    match on_error {
        "tempfail" => assert_eq!(reply, TEMPFAIL),
        "reject" => assert_eq!(reply, REJECT),
        "accept" => assert!(reply.starts_with("250 "), "{reply:?}"),
        other => panic!("on_error {other}"),
    }
    assert!(took < Duration::from_secs(10), "the reply took {took:?}");
    let meanwhile_done = meanwhile
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("a session beside the failing plugin: {e}"));
    if let Some(spins) = spins {
        assert!(took >= spins, "the plugin spun for {took:?}");
        assert!(
            meanwhile_done < replied,
            "the session beside the spinning plugin finished first"
        );
    }

    // The session goes on with a fresh instance of the plugin.
    c.cmd("RCPT TO:<good2@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: after a failure\r\n\r\nstill here\r\n.", "250");
    c.cmd("QUIT", "221");
    assert!(relay.is_running(), "the relay is still running");
    good_transaction(addr, "after").unwrap_or_else(|e| panic!("the next session: {e}"));

    let mut got = sink.wait_for(3, WAIT);
    got.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    let rcpts: Vec<_> = got.iter().map(|m| m.rcpt_tos.join(",")).collect();
    let failed_path = if on_error == "accept" {
        "good@example.com,bad@example.com,good2@example.com"
    } else {
        "good@example.com,good2@example.com"
    };
    assert_eq!(
        rcpts,
        ["after@example.com", failed_path, "meanwhile@example.com"]
    );

    relay.wait_log("plugin failed", Duration::from_secs(10));
    let log = relay.log();
    let line = log
        .lines()
        .find(|l| l.contains("plugin failed"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&format!("plugin={name}")) && line.contains("hook=rcpt"),
        "{line}"
    );
    assert!(line.contains(logged), "expected {logged:?} in {line}");
    assert_eq!(
        log.matches("plugin failed").count(),
        1,
        "one failure, one log line:\n{log}"
    );
    assert!(relay.terminate().success(), "a clean shutdown after it");
}

/// Tight limits, so a failure is quick.
const TIGHT: &str = "{ cpu = \"50ms\", wall = \"1s\", memory_mb = 16, capability_calls = 100 }";

#[test]
fn infinite_loop_tempfails() {
    // A long CPU budget: the session beside it runs while the plugin spins.
    misbehaving(
        "loop",
        "tempfail",
        "{ cpu = \"1s\", wall = \"5s\" }",
        "CPU budget exhausted",
        Some(Duration::from_millis(800)),
    );
}

#[test]
fn infinite_loop_with_on_error_accept_lets_the_mail_through() {
    misbehaving("loop", "accept", TIGHT, "CPU budget exhausted", None);
}

#[test]
fn memory_bomb_tempfails() {
    misbehaving("membomb", "tempfail", TIGHT, "memory limit exceeded", None);
}

#[test]
fn memory_bomb_with_on_error_reject_is_refused() {
    misbehaving("membomb", "reject", TIGHT, "memory limit exceeded", None);
}

#[test]
fn trap_tempfails() {
    misbehaving("trap", "tempfail", TIGHT, "trap:", None);
}

#[test]
fn trap_with_on_error_reject_is_refused() {
    misbehaving("trap", "reject", TIGHT, "trap:", None);
}

#[test]
fn enormous_reply_tempfails() {
    misbehaving("huge", "tempfail", TIGHT, "malformed return", None);
}

#[test]
fn enormous_reply_with_on_error_accept_lets_the_mail_through() {
    misbehaving("huge", "accept", TIGHT, "malformed return", None);
}

#[test]
fn capability_spam_tempfails() {
    misbehaving(
        "capspam",
        "tempfail",
        TIGHT,
        "capability call budget exhausted",
        None,
    );
}

#[test]
fn capability_spam_with_on_error_reject_is_refused() {
    misbehaving(
        "capspam",
        "reject",
        TIGHT,
        "capability call budget exhausted",
        None,
    );
}
