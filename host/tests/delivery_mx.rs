//! MX routing through a zone served by a DNS server on loopback: preference order, fallback
//! to the next MX when the first refuses connections, implicit MX, address literals, null MX
//! and NXDOMAIN
//! bounces, SERVFAIL deferral. The MX hosts are aiosmtpd sinks on 127.0.0.2 and 127.0.0.3
//! (same port, so `mx_port` fits both); 127.0.0.4 has nothing listening.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use wasmrelay_test_support::{fast_config, Aiosmtpd, DeliveryQueue, DnsZone, Downstream};

struct World {
    dns: DnsZone,
    a: Aiosmtpd,
    b: Aiosmtpd,
}

fn world() -> World {
    let dns = DnsZone::start(json!({
        "pref.test": [["MX", "20 b.mx.test"], ["MX", "10 a.mx.test"]],
        "fallback.test": [["MX", "10 dead.mx.test"], ["MX", "20 b.mx.test"]],
        "implicit.test": [["A", "127.0.0.3"]],
        "null.test": [["MX", "0 ."]],
        "servfail.test": [["SERVFAIL", ""]],
        "origin.test": [["MX", "10 a.mx.test"]],
        "a.mx.test": [["A", "127.0.0.2"]],
        "b.mx.test": [["A", "127.0.0.3"]],
        "dead.mx.test": [["A", "127.0.0.4"]],
    }));
    let hosts: [IpAddr; 2] = [[127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
    let [a, b] = <[Aiosmtpd; 2]>::try_from(Aiosmtpd::on_one_port(&hosts))
        .unwrap_or_else(|_| panic!("two servers"));
    World { dns, a, b }
}

fn config(w: &World) -> wasmrelay::config::delivery::DeliveryConfig {
    fast_config(&format!(
        "mx_port = {}\n[resolver]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\nattempts = 1\n",
        w.a.port(),
        w.dns.addr()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preference_order_fallback_and_implicit_mx() {
    let w = world();
    let queue = DeliveryQueue::start(&config(&w)).await;
    let msg = b"From: s@origin.test\r\nSubject: mx\r\n\r\nrouted\r\n";
    queue
        .submit(
            Some("s@origin.test"),
            &[
                "u@pref.test",
                "v@fallback.test",
                "w@implicit.test",
                "l@[127.0.0.3]",
            ],
            msg,
        )
        .await;
    queue.wait_empty(Duration::from_secs(20)).await;
    let a = w.a.messages();
    let b = w.b.messages();
    // pref.test: MX 10 (a) wins over MX 20 (b).
    assert_eq!(a.len(), 1, "a got {a:?}");
    assert_eq!(a[0].rcpt_tos, ["u@pref.test"]);
    assert_eq!(a[0].data, msg);
    // fallback.test: MX 10 refuses connections, MX 20 (b) takes it; implicit.test's A is b;
    // the address literal goes straight to b.
    let mut b_rcpts: Vec<String> = b.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    b_rcpts.sort();
    assert_eq!(
        b_rcpts,
        ["l@[127.0.0.3]", "v@fallback.test", "w@implicit.test"]
    );
    queue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_nxdomain_bounce_while_servfail_defers() {
    let w = world();
    let queue = DeliveryQueue::start(&config(&w)).await;
    let msg = b"From: s@origin.test\r\nSubject: doomed\r\n\r\nbody\r\n";
    let env = queue
        .submit(
            Some("s@origin.test"),
            &["x@null.test", "y@nx.test", "z@servfail.test"],
            msg,
        )
        .await;
    // The DSN for the two permanent failures goes to the sender's MX (a).
    let got = w.a.wait_for_async(1, Duration::from_secs(20)).await;
    let dsn = &got[0];
    assert_eq!(dsn.mail_from, "");
    assert_eq!(dsn.rcpt_tos, ["s@origin.test"]);
    let text = dsn.text();
    for needle in [
        "Final-Recipient: rfc822; x@null.test\r\nAction: failed\r\nStatus: 5.1.10",
        "Final-Recipient: rfc822; y@nx.test\r\nAction: failed\r\nStatus: 5.1.2",
    ] {
        assert!(text.contains(needle), "DSN lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains("z@servfail.test"), "{text}");
    // SERVFAIL is transient: z stays queued with the attempt recorded. Its lookup may still
    // be retrying when the DSN for the others is out (a loaded machine), so wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let env = loop {
        let env = queue.spool.envelope(&env.id).await.unwrap();
        if env.recipients[2].attempts >= 1 || std::time::Instant::now() > deadline {
            break env;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let z = &env.recipients[2];
    assert_eq!(z.status, wasmrelay::spool::RecipientStatus::Pending);
    assert!(z.attempts >= 1);
    assert!(
        z.last_reply.as_deref().unwrap().contains("servfail.test"),
        "{z:?}"
    );
    assert!(w.b.messages().is_empty());
    queue.stop().await;
}
