//! A recipient refused by a plugin, data-hook edits as delivered, and the route hook sending a
//! domain to a second server.

use super::*;

#[test]
fn a_plugin_refuses_one_recipient_with_its_exact_reply() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let (mut relay, addr) = start_relay(
        dir.path(),
        &sink,
        &plugin("policy", "policy", "tempfail", ""),
    );

    // Byte for byte on the wire: the plugin's code, enhanced code and text, nothing else.
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<raw@example.org>", "250");
    let refused = c.cmd("RCPT TO:<blocked@example.com>", "550");
    assert_eq!(refused, "550 5.1.1 mailbox unavailable\r\n");
    c.cmd("RCPT TO:<user@example.com>", "250");
    c.cmd("RCPT TO:<vip@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: raw\r\n\r\nfrom the raw client\r\n.", "250");
    c.cmd("QUIT", "221");

    // smtplib sees the same refusal and delivers to the others.
    let refused = smtplib_send(
        addr,
        "lib@example.org",
        &[
            "other@example.com",
            "blocked@example.com",
            "far@foreign.example",
        ],
        "Subject: smtplib\r\n\r\nfrom smtplib\r\n",
    );
    assert_eq!(
        refused,
        "[('blocked@example.com', (550, b'5.1.1 mailbox unavailable'))]"
    );

    let mut got = sink.wait_for(2, WAIT);
    got.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].mail_from, "lib@example.org");
    assert_eq!(
        got[0].rcpt_tos,
        ["other@example.com", "far@foreign.example"]
    );
    assert_eq!(got[1].mail_from, "raw@example.org");
    assert_eq!(got[1].rcpt_tos, ["user@example.com", "vip@example.com"]);
    assert!(
        got.iter().all(|m| !m.text().contains("blocked@")),
        "the refused recipient is nowhere in what was delivered"
    );
    relay.terminate();
}

// ---------------------------------------------------------------------------------------
// 2. Headers added by the data hook, as delivered.

#[test]
fn data_hook_edits_arrive_at_the_downstream_server() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let (mut relay, addr) = start_relay(
        dir.path(),
        &sink,
        &plugin("policy", "policy", "tempfail", ""),
    );

    let message = "From: a@example.org\r\nTo: user@example.com\r\nSubject: rewrite me\r\n\
                   X-Remove-Me: secret\r\nMessage-ID: <e1@example.org>\r\n\r\n\
                   Hello.\r\n.a line that starts with a dot\r\n";
    assert_eq!(
        smtplib_send(addr, "a@example.org", &["user@example.com"], message),
        "[]"
    );
    let replaced =
        "Subject: keep me\r\nMessage-ID: <e2@example.org>\r\n\r\nplease REPLACE-BODY\r\n";
    assert_eq!(
        smtplib_send(addr, "b@example.org", &["user@example.com"], replaced),
        "[]"
    );

    let mut got = sink.wait_for(2, WAIT);
    got.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    let (first, received) = without_received(&got[0].text());
    assert!(
        received.starts_with("Received: from client.test ([127.0.0.1])"),
        "{received}"
    );
    assert_eq!(
        first,
        "X-Seen-By: policy\r\nFrom: a@example.org\r\nTo: user@example.com\r\n\
         Subject: rewritten\r\nMessage-ID: <e1@example.org>\r\nX-Policy: checked\r\n\r\n\
         Hello.\r\n.a line that starts with a dot\r\n",
        "prepended, appended, replaced and removed headers; the body untouched"
    );
    assert!(
        got[0].text().starts_with("X-Seen-By: policy\r\nReceived: "),
        "a prepended header goes above our trace header:\n{}",
        got[0].text()
    );
    let (second, _) = without_received(&got[1].text());
    assert_eq!(
        second,
        "X-Seen-By: policy\r\nSubject: keep me\r\nMessage-ID: <e2@example.org>\r\n\
         X-Policy: checked\r\n\r\nreplaced body\r\n"
    );
    relay.terminate();
}

// ---------------------------------------------------------------------------------------
// 3. The route hook sends one domain to a second server.

#[test]
fn route_hook_sends_one_domain_to_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let first = Aiosmtpd::start();
    let second = Aiosmtpd::start();
    let route = format!(
        "[[delivery.pools]]\nname = \"routed\"\nhosts = [\
         {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}, \
         {{ host = \"127.0.0.2\", port = 2527, tls = \"require\" }}]\n",
        second.port()
    );
    let (mut relay, addr) = start_relay(
        dir.path(),
        &first,
        &plugin("policy", "policy", "tempfail", &route),
    );
    let message =
        "Subject: split\r\nMessage-ID: <r1@example.org>\r\n\r\none message, two servers\r\n";
    assert_eq!(
        smtplib_send(
            addr,
            "s@example.org",
            &[
                "a@example.com",
                "b@routed.test",
                "c@elsewhere.example",
                "d@routed.test"
            ],
            message,
        ),
        "[]"
    );
    second.wait_for(1, WAIT);
    first.wait_for(1, WAIT);
    // Give a wrong route the time to show up before counting.
    std::thread::sleep(Duration::from_millis(500));
    let (routed, direct) = (second.messages(), first.messages());
    assert_eq!(routed.len(), 1, "{routed:?}");
    assert_eq!(routed[0].rcpt_tos, ["b@routed.test", "d@routed.test"]);
    assert_eq!(direct.len(), 1, "{direct:?}");
    let mut rcpts = direct[0].rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["a@example.com", "c@elsewhere.example"],
        "the other domains stay on the configured route, in one transaction"
    );
    for m in routed.iter().chain(&direct) {
        let (text, _) = without_received(&m.text());
        assert_eq!(
            text,
            format!(
                "X-Seen-By: policy\r\n{}",
                message.replace("\r\n\r\n", "\r\nX-Policy: checked\r\n\r\n")
            ),
        );
    }
    relay.terminate();
}
