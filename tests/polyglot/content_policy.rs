//! examples/plugins/content-policy-js: tags a spammy subject, rejects a refused phrase found in
//! a decoded text part, lets the rest through untouched.

use wasmrelay_test_support::{assert_success, python};

use super::*;

/// Sends one message with smtplib and prints the reply to the end of DATA (`250`, `550 ...`).
const SEND: &str = r#"
import smtplib, sys
host, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with smtplib.SMTP(host, port, timeout=60) as s:
    s.ehlo("client.test")
    s.mail("alice@example.org")
    s.rcpt("bob@example.com")
    code, text = s.data(msg.encode())
    print(code, text.decode())
"#;

fn send(addr: SocketAddr, message: &str) -> String {
    let out = python(
        SEND,
        &[&addr.ip().to_string(), &addr.port().to_string(), message],
    );
    assert_success("smtplib", &out);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A multipart message whose text part is base64: the phrase is only visible decoded.
fn encoded_message(subject: &str, text: &str) -> String {
    let body = python(
        "import base64, sys; print(base64.encodebytes(sys.argv[1].encode()).decode(), end='')",
        &[text],
    );
    format!(
        "Subject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {body}\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>see the text part</p>\r\n--b1--\r\n",
        body = String::from_utf8(body.stdout).unwrap().replace('\n', "\r\n"),
    )
}

#[test]
fn tags_spammy_subjects_and_rejects_refused_phrases() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let entry = plugin(
        &build::content_policy(),
        "content-policy",
        "tempfail",
        "instances = \"pooled\"\nconfig = { reject_phrases = [\"wire the money today\"], spam_subject_words = [\"lottery\"] }",
    );
    let (mut relay, addr) = start_relay(dir.path(), &sink, &entry);

    let reply = send(
        addr,
        &encoded_message(
            "Quarterly figures",
            "Hello,\nplease WIRE the   money\ntoday.\n",
        ),
    );
    assert_eq!(reply, "550 5.7.1 Message content refused by policy");

    // An RFC 2047 subject ("You won the lottery") is decoded before it is checked.
    let reply = send(
        addr,
        &encoded_message("=?utf-8?B?WW91IHdvbiB0aGUgTE9UVEVSWQ==?=", "Claim it now."),
    );
    assert!(reply.starts_with("250 "), "{reply}");
    let reply = send(addr, &encoded_message("Lunch", "Noon at the usual place."));
    assert!(reply.starts_with("250 "), "{reply}");

    let delivered = sink.wait_for(2, WAIT);
    assert_eq!(delivered.len(), 2, "only the two accepted messages arrive");
    let by_subject = |needle: &str| {
        delivered
            .iter()
            .map(|m| m.text())
            .find(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no message with {needle}"))
    };
    let tagged = by_subject("WW91IHdvbiB0aGUgTE9UVEVSWQ==");
    assert!(tagged.contains("X-Spam-Flag: YES\r\n"), "{tagged}");
    let clean = by_subject("Subject: Lunch");
    assert!(!clean.contains("X-Spam-Flag"), "{clean}");
    assert!(relay.is_running());
}

#[test]
fn refuses_a_bad_config_naming_the_key() {
    let text = refused_config(&build::content_policy(), "{ reject_phrases = \"one\" }");
    assert!(
        text.contains("`reject_phrases`"),
        "the error names the key: {text}"
    );
}
