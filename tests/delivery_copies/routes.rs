//! Routing the plugins name: a pool chosen by an annotation set at `data`, hold and drop
//! as `delivery-result` and `queue show` see them, a hold released by `queue flush`, and
//! every hook call of a delivery batch answered by one instance.

use super::*;

#[test]
fn pools_holds_and_drops() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let bulk = Aiosmtpd::start();
    let relay = Relay::start(
        dir.path(),
        &Setup {
            sink: &sink,
            bulk: Some(&bulk),
            retry: "1s",
            delivery: String::new(),
        },
    );

    // An annotation set at `data` sends the message to the pool's server.
    relay.send(
        "news@example.org",
        &["plain-a@dest.test", "plain-b@other.test"],
        "X-Stream: bulk\r\nSubject: newsletter\r\n\r\nbulk mail\r\n",
    );
    let got = bulk.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        got[0].rcpt_tos,
        ["plain-a@dest.test", "plain-b@other.test"],
        "two domains with the same full route share a transaction"
    );

    // Hold and drop, next to a recipient delivered as configured.
    let id = relay.send(
        "ops@example.org",
        &["plain@dest.test", "h@hold.test", "d@drop.test"],
        "Subject: mixed\r\n\r\nthree fates\r\n",
    );
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_tos, ["plain@dest.test"]);
    let env = relay.wait_reply(&id, "h@hold.test", "held: awaiting review");
    let by_address = |a: &str| {
        env["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == a)
            .unwrap()
            .clone()
    };
    let held = by_address("h@hold.test");
    assert_eq!(held["status"], "pending");
    assert_eq!(held["attempts"], 0, "a hold is not an attempt");
    let dropped = by_address("d@drop.test");
    assert_eq!(dropped["status"], "dropped");
    assert_eq!(dropped["last_reply"], "dropped: unwanted");
    assert_eq!(by_address("plain@dest.test")["status"], "delivered");

    // `delivery-result` hears of the attempt once it is on disk: wait for the last of it.
    let mut stats = String::new();
    wait_for("the results of both messages", WAIT, || {
        stats = relay.stats();
        stat(&stats, "batch-calls") >= 7
    });
    assert_eq!(stat(&stats, "held"), 1, "{stats}");
    assert_eq!(stat(&stats, "dropped"), 1, "{stats}");
    assert_eq!(stat(&stats, "delivered"), 3, "{stats}");
    // The mixed message's batch: three routes, one copy, three results, on one instance.
    assert_eq!(stat(&stats, "batch-calls"), 7, "{stats}");

    // Held mail is not retried on the schedule (1 s here) ...
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stat(&relay.stats(), "held"), 1);
    // ... until `queue flush` releases it: routed again, and held again by this plugin.
    assert_eq!(relay.queue(&["flush", &id]).trim(), "ok");
    wait_for("the released recipient to be routed again", WAIT, || {
        stat(&relay.stats(), "held") == 2
    });
    let env = relay.show(&id);
    assert_eq!(env["recipients"][1]["last_reply"], "held: awaiting review");
    assert_eq!(sink.messages().len(), 1, "nothing else was delivered");
}
