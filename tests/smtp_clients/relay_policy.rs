//! Who may send where without AUTH: curl to a local domain is accepted; relay probes through
//! routing syntax, quoted local parts and address literals are refused.

use wasmrelay_test_support::{assert_success, curl_smtp, Raw};

use super::setup;

#[test]
fn curl_mail_rcpt() {
    let mut s = setup("");
    let mail = s.dir.path().join("mail.txt");
    std::fs::write(&mail, "From: app@example.org\r\nTo: frank@example.com\r\nSubject: via curl\r\n\r\nHello from curl.\r\n")
        .unwrap();
    let out = curl_smtp(s.relay_addr(), "client.test")
        .args([
            "--mail-from",
            "app@example.org",
            "--mail-rcpt",
            "frank@example.com",
            "--upload-file",
        ])
        .arg(&mail)
        .output()
        .expect("curl");
    assert_success("curl", &out);
    let messages = s.spooled();
    assert_eq!(messages.len(), 1);
    assert!(messages[0]
        .1
        .ends_with(b"Subject: via curl\r\n\r\nHello from curl.\r\n"));
}

#[test]
fn open_relay_probes_are_refused() {
    let mut s = setup("");
    let mut c = Raw::connect(s.relay_addr());
    c.cmd("EHLO prober.test", "250");
    c.cmd("MAIL FROM:<spammer@example.org>", "250");
    for probe in [
        "<victim@foreign.example>",
        "<victim%foreign.example@example.com>",
        "<foreign.example!victim@example.com>",
        "<\"victim@foreign.example\"@example.com>",
        "<\"victim%foreign.example\"@example.com>",
        "<@example.com:victim@foreign.example>",
        "<@example.com,@example.com:victim@foreign.example>",
        "<victim@[127.0.0.1]>",
    ] {
        let reply = c.cmd(&format!("RCPT TO:{probe}"), "5");
        assert!(
            reply.starts_with("554 5.7.1") || reply.starts_with("553"),
            "{probe}: {reply}"
        );
    }
    let reply = c.cmd("RCPT TO:<victim@foreign.example@example.com>", "5");
    assert!(
        reply.starts_with("553") || reply.starts_with("501"),
        "{reply}"
    );
    c.cmd("DATA", "554");
    assert!(s.spooled().is_empty());
}
