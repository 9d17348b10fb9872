//! Signals: SIGTERM lets a transaction finish and says `421` to the rest; SIGHUP reloads the
//! config for new sessions and refuses a bad one.

use std::time::Duration;

use wasmrelay_test_support::Raw;

use super::setup;

#[test]
fn sigterm_lets_the_transaction_finish_then_421() {
    let mut s = setup("");
    let mut c = Raw::connect(s.relay_addr());
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    let mut idle = Raw::connect(s.relay_addr());
    s.relay.sigterm();
    assert!(idle.reply().starts_with("421 4.3.2"));
    c.cmd("RCPT TO:<bob@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: last one\r\n\r\nbody\r\n.", "250 2.0.0");
    assert!(c.reply().starts_with("421 4.3.2"));
    let status = s.relay.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(s.spooled().len(), 1);
}

#[test]
fn sighup_reloads_config_and_refuses_a_bad_one() {
    let s = setup("");
    let original = std::fs::read_to_string(s.relay.config_path()).unwrap();
    let mut old = Raw::connect(s.relay_addr());
    old.cmd("EHLO old.test", "250");
    old.cmd("MAIL FROM:<a@example.org>", "250");
    old.cmd("RCPT TO:<x@example.net>", "554 5.7.1");

    s.relay.write_config(&original.replace(
        "local_domains = [\"example.com\"]",
        "local_domains = [\"example.net\"]",
    ));
    s.relay.sighup();
    s.relay
        .wait_log("configuration reloaded", Duration::from_secs(30));
    let mut new = Raw::connect(s.relay_addr());
    new.cmd("EHLO new.test", "250");
    new.cmd("MAIL FROM:<a@example.org>", "250");
    new.cmd("RCPT TO:<x@example.net>", "250");
    new.cmd("RCPT TO:<x@example.com>", "554 5.7.1");
    // The session that started before the reload keeps its configuration.
    old.cmd("RCPT TO:<y@example.com>", "250");
    old.cmd("RCPT TO:<y@example.net>", "554 5.7.1");

    s.relay
        .write_config(&original.replace("[relay]", "[relay]\nbogus = true"));
    s.relay.sighup();
    s.relay.wait_log("reload refused", Duration::from_secs(30));
    let mut after = Raw::connect(s.relay_addr());
    after.cmd("EHLO after.test", "250");
    after.cmd("MAIL FROM:<a@example.org>", "250");
    after.cmd("RCPT TO:<x@example.net>", "250");
}
