//! Redis killed under load and restarted: every plugin that needs it gets `unavailable` at
//! once (here the fail-closed `quota` plugin, so senders get 451 4.3.0 and retry), nothing
//! accepted is lost, and the relays recover by themselves.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use wasmrelay_test_support::{queued_id, wait_for, WasmrelaySink};

/// What the load saw: subjects of accepted messages, and tempfails at MAIL FROM.
#[derive(Default)]
struct Seen {
    accepted: BTreeSet<String>,
    tempfailed: usize,
}

/// Sends one message: `true` accepted, `false` refused at MAIL FROM with
/// 451 4.3.0 (the quota plugin's answer to an unavailable state backend).
fn send_one(addr: SocketAddr, subject: &str) -> bool {
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    let reply = c.cmd("MAIL FROM:<load@example.org>", "");
    if !reply.starts_with("250") {
        assert!(
            reply.starts_with("451 4.3.0 quota state: StateError::Unavailable(\"redis"),
            "{reply}"
        );
        c.cmd("QUIT", "221");
        return false;
    }
    c.cmd("RCPT TO:<sink@example.net>", "250");
    c.cmd("DATA", "354");
    c.send(format!("Subject: {subject}\r\n\r\nload\r\n.\r\n").as_bytes());
    let queued = c.reply();
    assert!(queued.starts_with("250"), "{queued}");
    assert!(!queued_id(&queued).is_empty());
    c.cmd("QUIT", "221");
    true
}

#[test]
fn redis_killed_under_load_fails_closed_loses_nothing_and_recovers() {
    let mut redis = RedisServer::start();
    let sink = WasmrelaySink::start();
    let plugins = plugin("quota", "config = { limit = 1000000 }");
    let fleet = Fleet::start(&redis, &sink, &plugins);

    let stop = Arc::new(AtomicBool::new(false));
    let seen: [Arc<Mutex<Seen>>; 2] = Default::default();
    let load: Vec<_> = (0..2)
        .map(|i| {
            let (addr, stop, seen) = (fleet.addr(i), stop.clone(), seen[i].clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let subject = format!("load-{i}-{n}");
                    let ok = send_one(addr, &subject);
                    let mut seen = seen.lock().unwrap();
                    if ok {
                        seen.accepted.insert(subject);
                    } else {
                        seen.tempfailed += 1;
                    }
                }
            })
        })
        .collect();
    // A load thread that panicked (an unexpected reply) fails the test at once.
    let alive = || {
        assert!(
            load.iter().all(|t| !t.is_finished()),
            "a load thread failed"
        )
    };
    let accepted = |i: usize| {
        alive();
        seen[i].lock().unwrap().accepted.len()
    };
    let tempfailed = |i: usize| {
        alive();
        seen[i].lock().unwrap().tempfailed
    };
    let minute = Duration::from_secs(60);

    wait_for("load through both relays", minute, || {
        accepted(0) >= 10 && accepted(1) >= 10
    });
    redis.kill();
    wait_for("fail-closed answers on both relays", minute, || {
        tempfailed(0) >= 5 && tempfailed(1) >= 5
    });
    let before = [accepted(0), accepted(1)];
    redis.restart();
    wait_for("both relays to accept again by themselves", minute, || {
        accepted(0) >= before[0] + 10 && accepted(1) >= before[1] + 10
    });
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("the load thread");
    }

    // Every message that got its 250 arrives, from both spools; none twice.
    let mut expected: Vec<String> = (0..2)
        .flat_map(|i| seen[i].lock().unwrap().accepted.clone())
        .collect();
    expected.sort();
    let subjects = || {
        let mut got: Vec<String> = sink
            .messages()
            .iter()
            .map(|m| {
                m.text()
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        got.sort();
        got
    };
    wait_for("every accepted message at the sink", minute, || {
        subjects().len() >= expected.len()
    });
    assert_eq!(subjects(), expected);
    for i in 0..2 {
        wait_for("an empty queue", minute, || {
            fleet.relays[i].queue_is_empty()
        });
        let log = fleet.relays[i].log();
        assert!(
            log.contains("Redis unavailable"),
            "relay {i} logs the outage"
        );
        assert!(
            log.contains("Redis answers again"),
            "relay {i} logs the recovery"
        );
    }
}

/// The reply to the end of DATA for one message from `sender`, or the first refusal.
fn try_send(addr: SocketAddr, sender: &str, subject: &str) -> String {
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    let reply = c.cmd(&format!("MAIL FROM:<{sender}>"), "");
    if !reply.starts_with("250") {
        return reply.trim_end().to_string();
    }
    c.cmd("RCPT TO:<sink@example.net>", "250");
    c.cmd("DATA", "354");
    c.send(format!("Subject: {subject}\r\n\r\nmail\r\n.\r\n").as_bytes());
    let reply = c.reply();
    c.cmd("QUIT", "221");
    reply.trim_end().to_string()
}

/// The bundled rate-limit plugin with a per-sender rule, failing as `on_state_error` says.
fn rate_limit(on_state_error: &str) -> String {
    format!(
        "[[plugins]]\nbuiltin = \"rate-limit\"\n[plugins.config]\non_state_error = \
         {on_state_error:?}\n[[plugins.config.rules]]\nname = \"sender\"\ncount = \"messages\"\n\
         key = \"sender\"\nrate = \"1000/min\"\n"
    )
}

#[test]
fn redis_down_the_bundled_rate_limit_fails_open_by_default_and_closed_when_told() {
    let mut redis = RedisServer::start();
    let sink = WasmrelaySink::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let open = Relay::start(
        dirs[0].path(),
        &loopback_config(
            sink.addr(),
            &format!("{}{}", state_section(&redis), rate_limit("allow")),
        ),
    );
    let closed = Relay::start(
        dirs[1].path(),
        &loopback_config(
            sink.addr(),
            &format!("{}{}", state_section(&redis), rate_limit("tempfail")),
        ),
    );
    for (relay, name) in [(&open, "open"), (&closed, "closed")] {
        let reply = try_send(relay.addr(), "app@example.org", &format!("{name}-up"));
        assert!(reply.starts_with("250"), "{name} with Redis up: {reply}");
    }

    redis.kill();
    // Fail-open: the outage of a shared backend does not stop mail, which is delivered.
    let reply = try_send(open.addr(), "app@example.org", "open-down");
    assert!(
        reply.starts_with("250"),
        "fail-open with Redis down: {reply}"
    );
    // Fail-closed: senders are told to come back, not refused for good.
    let reply = try_send(closed.addr(), "app@example.org", "closed-down");
    assert!(
        reply.starts_with("451 4.3.0"),
        "fail-closed with Redis down: {reply}"
    );

    let minute = Duration::from_secs(60);
    wait_for("the accepted messages at the sink", minute, || {
        sink.messages().len() >= 3
    });
    let mut subjects: Vec<String> = sink
        .messages()
        .iter()
        .filter_map(|m| {
            m.text()
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["closed-up", "open-down", "open-up"]);
    assert!(
        open.log().contains("Redis unavailable"),
        "the outage is logged"
    );
}
