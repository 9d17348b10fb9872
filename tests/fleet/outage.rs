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
