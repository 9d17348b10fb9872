//! Backscatter: an outsider sends mail with a forged sender (the victim) to a recipient of
//! ours that the next hop refuses. The bounce goes to the victim; it must not carry the
//! attacker's whole message back (the relay would be a reflector of spam to forged senders).
//! Mail from a trusted client still gets its full original back.

use wasmrelay_test_support::{Downstream, RawSink};

use super::*;

#[test]
fn an_outsiders_bounce_returns_headers_only() {
    let dir = tempfile::tempdir().unwrap();
    // One next hop for everything: it refuses `gone@` and accepts the bounces.
    let next_hop = RawSink::builder().reject_prefix("gone@").start();
    let relay = start_relay(
        dir.path(),
        &format!(
            "[relay]\nlocal_domains = [\"local.test\"]\nrelay_networks = [\"127.0.0.2/32\"]\n{}",
            route(&["*"], "127.0.0.1", next_hop.port())
        ),
    );
    let message = |subject: &str| {
        format!(
            "From: victim@victim.test\r\nTo: gone@local.test\r\nSubject: {subject}\r\n\r\n\
             BUY CHEAP WATCHES http://spam.example/\r\n"
        )
    };
    let (spam, trusted) = (message("spam"), message("trusted"));
    send(
        relay.addr(),
        &Mail {
            from: "victim@victim.test",
            to: &["gone@local.test"],
            message: &spam,
            source: None,
            login: false,
        },
    );
    send(
        relay.addr(),
        &Mail {
            from: "victim@victim.test",
            to: &["gone@local.test"],
            message: &trusted,
            source: Some("127.0.0.2"),
            login: false,
        },
    );
    let bounces = next_hop.wait_for(2, WAIT * 2);
    let bounce_of = |subject: &str| {
        bounces
            .iter()
            .map(|b| b.text())
            .find(|t| t.contains(&format!("Subject: {subject}\r\n")))
            .unwrap_or_else(|| panic!("no bounce of {subject}"))
    };
    let outsider = bounce_of("spam");
    assert!(
        outsider.contains("Content-Type: text/rfc822-headers"),
        "{outsider}"
    );
    assert!(!outsider.contains("BUY CHEAP WATCHES"), "{outsider}");
    let insider = bounce_of("trusted");
    assert!(
        insider.contains("Content-Type: message/rfc822"),
        "{insider}"
    );
    assert!(insider.contains("BUY CHEAP WATCHES"), "{insider}");
}
