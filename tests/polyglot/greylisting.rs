//! examples/plugins/greylisting-py: refuse, then accept once the delay has passed.

use std::time::Instant;

use wasmrelay_test_support::wait_for;

use super::*;

const DELAY: Duration = Duration::from_secs(2);

#[test]
fn refuses_the_first_attempt_then_accepts_a_retry_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let entry = plugin(
        &build::greylisting(),
        "greylisting",
        "tempfail",
        "instances = \"pooled\"\nconfig = { delay = \"2s\", whitelist = \"1h\", pending = \"1h\" }",
    );
    let (mut relay, addr) = start_relay(dir.path(), &sink, &entry);

    let first = Instant::now();
    let (ok, out) = swaks_send(addr, "alice@example.org", "bob@example.com", &[]);
    assert!(!ok, "the first attempt is refused:\n{out}");
    assert!(
        out.contains("451 4.7.1 Greylisted, please try again in"),
        "{out}"
    );

    // A retry before the delay is refused again (checked only when it surely came early).
    let (ok, out) = swaks_send(addr, "alice@example.org", "bob@example.com", &[]);
    if first.elapsed() < DELAY {
        assert!(!ok && out.contains("451 4.7.1"), "an early retry: {out}");
    }

    // Retry until accepted; never before the delay.
    let mut accepted = None;
    wait_for("the retry to be accepted", WAIT, || {
        let (ok, out) = swaks_send(addr, "alice@example.org", "bob@example.com", &[]);
        if ok {
            accepted = Some(first.elapsed());
        } else {
            assert!(out.contains("451 4.7.1"), "a refused retry: {out}");
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    let waited = accepted.unwrap();
    assert!(
        waited >= DELAY,
        "accepted after {waited:?}, before the delay"
    );

    // The triple is whitelisted now: accepted at once.
    let (ok, out) = swaks_send(addr, "alice@example.org", "bob@example.com", &[]);
    assert!(ok, "a whitelisted triple: {out}");
    // Another recipient (a new triple), and the same recipient for another sender, start over.
    let (ok, out) = swaks_send(addr, "alice@example.org", "carol@example.com", &[]);
    assert!(!ok && out.contains("451 4.7.1"), "a new recipient: {out}");
    let (ok, out) = swaks_send(addr, "mallory@example.org", "bob@example.com", &[]);
    assert!(!ok && out.contains("451 4.7.1"), "a new sender: {out}");

    let delivered = sink.wait_for(2, WAIT);
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    for message in &delivered {
        assert_eq!(message.mail_from, "alice@example.org");
        assert_eq!(message.rcpt_tos, ["bob@example.com"]);
    }
    assert!(relay.is_running());
}

#[test]
fn refuses_a_bad_config_naming_the_key() {
    let text = refused_config(&build::greylisting(), r#"{ delay = "soon" }"#);
    assert!(text.contains("`delay`"), "the error names the key: {text}");
}
