//! tests/polyglot/python-probe in the relay: a Python exception gets the plugin's `on_error`
//! and the relay stays up; under `instances = "pooled"` an instance keeps its memory between
//! sessions and under `fresh` it does not; a context handle kept past its call never shows
//! the earlier session's connection.

use wasmrelay_test_support::{wait_for, Raw};

use super::*;

fn start(dir: &Path, sink: &Aiosmtpd, instances: &str) -> (Relay, SocketAddr) {
    let entry = plugin(
        &build::python_probe(),
        "python-probe",
        "reject",
        &format!("instances = {instances:?}"),
    );
    start_relay(dir, sink, &entry)
}

/// A session up to MAIL FROM.
fn session(addr: SocketAddr) -> Raw {
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<alice@example.org>", "250");
    c
}

/// "sessions seen: N" from a new session, which then quits.
fn sessions_seen(addr: SocketAddr) -> u32 {
    let mut c = session(addr);
    let reply = c.cmd("RCPT TO:<seen@example.com>", "451 4.7.1 sessions seen: ");
    c.cmd("QUIT", "221");
    reply
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {reply:?}"))
}

#[test]
fn an_exception_gets_on_error_and_the_relay_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let (mut relay, addr) = start(dir.path(), &sink, "pooled");

    let mut c = session(addr);
    c.cmd("RCPT TO:<raise@example.com>", "550 5.7.0");
    c.cmd("RCPT TO:<bob@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: after an exception\r\n\r\nstill here\r\n.", "250");
    c.cmd("QUIT", "221");

    relay.wait_log("python-probe", WAIT);
    assert!(relay.is_running(), "the relay is still running");
    let (ok, out) = swaks_send(addr, "alice@example.org", "carol@example.com", &[]);
    assert!(ok, "the next session: {out}");
    let delivered = sink.wait_for(2, WAIT);
    assert_eq!(delivered.len(), 2);
}

#[test]
fn pooled_instances_keep_memory_between_sessions_fresh_ones_do_not() {
    let sink = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    let (_fresh, addr) = start(dir.path(), &sink, "fresh");
    for _ in 0..3 {
        assert_eq!(sessions_seen(addr), 1, "a fresh instance per session");
    }

    let dir = tempfile::tempdir().unwrap();
    let (_pooled, addr) = start(dir.path(), &sink, "pooled");
    // A session's instance is back in the pool once the relay has ended that session.
    wait_for("a session served by a warm instance", WAIT, || {
        sessions_seen(addr) >= 2
    });
}

#[test]
fn a_context_kept_past_its_call_never_shows_another_session() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let (mut relay, addr) = start(dir.path(), &sink, "pooled");

    let mut first = session(addr);
    let stashed = first.cmd("RCPT TO:<stash@example.com>", "451 4.7.1 stashed port: ");
    let first_port = stashed.trim().rsplit(' ').next().unwrap().to_string();
    first.cmd("QUIT", "221");
    for _ in 0..5 {
        let mut c = session(addr);
        c.send(b"RCPT TO:<stale@example.com>\r\n");
        let reply = c.reply();
        assert!(
            !reply.contains(&format!("stale port: {first_port}")),
            "an earlier session's connection leaked: {reply:?}"
        );
        // An instance without a stash continues; one with a stash traps on the dead handle
        // and the plugin's `on_error` (reject) answers.
        assert!(
            reply.starts_with("250 ") || reply.starts_with("550 5.7.0 "),
            "{reply:?}"
        );
        c.cmd("QUIT", "221");
    }
    assert!(relay.is_running());
}
