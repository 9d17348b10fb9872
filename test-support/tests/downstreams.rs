//! Each downstream server reports what smtplib sent it, envelope and bytes, the same way.

use std::time::Duration;

use wasmrelay_test_support::{smtplib_send, Aiosmtpd, Delivered, Downstream, SmtpSink};

const MESSAGE: &str = "Subject: harness\r\n\r\nline one\r\n.a leading dot\r\n";

/// Sends [`MESSAGE`] from the null sender to two recipients; returns what arrived.
fn round_trip(server: &impl Downstream) -> Delivered {
    let refused = smtplib_send(
        server.addr(),
        "",
        &["a@example.com", "b@example.com"],
        MESSAGE,
    );
    assert_eq!(refused, "[]");
    let mut got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    let got = got.pop().unwrap();
    assert_eq!(got.mail_from, "", "the null sender");
    assert_eq!(got.rcpt_tos, ["a@example.com", "b@example.com"]);
    got
}

#[test]
fn aiosmtpd() {
    let got = round_trip(&Aiosmtpd::start());
    assert_eq!(got.text(), MESSAGE);
}

#[test]
fn postfix_smtp_sink() {
    let got = round_trip(&SmtpSink::start(10));
    // smtp-sink writes LF line ends, and a blank line after the message.
    assert_eq!(
        got.text().trim_end_matches('\n'),
        MESSAGE.replace("\r\n", "\n").trim_end_matches('\n')
    );
}
