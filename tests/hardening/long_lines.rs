//! A line over 998 octets (minified HTML from an application): by default the part is
//! re-encoded before delivery, so the next hop gets RFC 5322-conforming lines and Python's
//! `email` reads the same HTML; a listener with `long_lines = "refuse"` answers 550 5.6.0.

use wasmrelay_test_support::{Downstream, RawSink};

use super::*;

/// Prints the decoded HTML of the message file in argv[1] and its longest line.
const READ_HTML: &str = r#"
import sys, email, email.policy
raw = open(sys.argv[1], "rb").read()
msg = email.message_from_bytes(raw, policy=email.policy.default)
print(max(len(l) for l in raw.split(b"\r\n")))
print(msg.get_body(("html",)).get_content().rstrip("\r\n"))
"#;

/// Sends `message` from app@shop.test to user@x.test and returns it as `next_hop` got it.
pub fn send_to_next_hop(relay: &Relay, next_hop: &RawSink, message: &str) -> Vec<u8> {
    send(
        relay.addr(),
        &Mail {
            from: "app@shop.test",
            to: &["user@x.test"],
            message,
            ..Mail::default()
        },
    );
    next_hop.wait_for(1, WAIT).remove(0).data
}

/// Checks that `message` (written to a file in `dir`) has no line over 998 octets and that
/// Python's `email` decodes its HTML part to `html` (line ends aside).
pub fn assert_html_within_998(dir: &std::path::Path, message: &[u8], html: &str) {
    let file = dir.join("arrived.eml");
    std::fs::write(&file, message).unwrap();
    let out = python(READ_HTML, &[file.to_str().unwrap()]);
    assert_success("python email", &out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (longest, decoded) = stdout.split_once('\n').unwrap();
    assert!(longest.parse::<usize>().unwrap() <= 998, "{longest}");
    assert_eq!(
        decoded.trim_end().replace("\r\n", "\n"),
        html.replace("\r\n", "\n")
    );
}

#[test]
fn minified_html_is_reencoded_on_the_way_through() {
    let dir = tempfile::tempdir().unwrap();
    let next_hop = RawSink::start();
    let relay = start_relay(
        dir.path(),
        &format!(
            "[relay]\nrelay_networks = [\"127.0.0.0/8\"]\n{}",
            route(&["*"], "127.0.0.1", next_hop.port())
        ),
    );
    let html = format!("<html><body>{}</body></html>", "<td>café</td>".repeat(400));
    let message = format!(
        "From: app@shop.test\r\nTo: user@x.test\r\nSubject: receipt\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n"
    );
    let arrived = send_to_next_hop(&relay, &next_hop, &message);
    assert_html_within_998(dir.path(), &arrived, &html);
}

#[test]
fn a_listener_may_refuse_them_instead() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &config(
            "127.0.0.1:0",
            "[relay]\nrelay_networks = [\"127.0.0.0/8\"]\n",
        )
        .replace(
            "allow_plaintext_auth = true",
            "allow_plaintext_auth = true\nlong_lines = \"refuse\"",
        ),
    );
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
try:
    s.sendmail("app@shop.test", ["user@x.test"], b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n")
    print("accepted")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
"#;
    let out = python(script, &[&relay.addr().port().to_string()]);
    assert_success("smtplib", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("550 5.6.0"), "{stdout}");
}
