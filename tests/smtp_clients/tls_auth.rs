//! STARTTLS, implicit TLS and AUTH with Python's smtplib and swaks: AUTH only over TLS, a
//! wrong password refused, submission without AUTH refused, and the trace header saying so.

use wasmrelay_test_support::{assert_success, python, swaks};

use super::{setup, PASSWORD};

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
mode, host, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
msg = "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: via " + mode + "\r\n\r\nHello from smtplib.\r\n"
if mode == "plain":
    with smtplib.SMTP(host, port) as s:
        s.ehlo("client.test")
        refused = s.sendmail("alice@example.org", ["bob@example.com"], msg)
        assert refused == {}, refused
        try:
            s.sendmail("alice@example.org", ["victim@foreign.example"], msg)
            raise SystemExit("open relay!")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["victim@foreign.example"]
            assert code == 554 and b"5.7.1" in text, e.recipients
elif mode == "starttls":
    with smtplib.SMTP(host, port) as s:
        s.ehlo("client.test")
        assert not s.has_extn("auth"), "AUTH must not be offered before TLS"
        try:
            s.login("alice", "s3cret pass")
            raise SystemExit("login in the clear succeeded")
        except smtplib.SMTPNotSupportedError:
            pass
        s.starttls(context=ctx)
        s.ehlo("client.test")
        assert s.has_extn("auth")
        try:
            s.login("alice", "wrong")
            raise SystemExit("wrong password accepted")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535
        s.login("alice", "s3cret pass")
        s.sendmail("alice@example.org", ["carol@foreign.example"], msg)
elif mode == "smtps":
    with smtplib.SMTP_SSL(host, port, context=ctx) as s:
        s.login("alice", "s3cret pass")
        s.sendmail("alice@example.org", ["dave@foreign.example"], msg)
elif mode == "noauth":
    with smtplib.SMTP(host, port) as s:
        s.starttls(context=ctx)
        try:
            s.sendmail("alice@example.org", ["carol@foreign.example"], msg)
            raise SystemExit("submission without AUTH accepted")
        except smtplib.SMTPSenderRefused as e:
            assert e.smtp_code == 530, e
print("ok")
"#;

#[test]
fn python_smtplib_plain_starttls_smtps_and_auth() {
    let mut s = setup("");
    let cafile = s.cert.to_str().unwrap().to_string();
    for (mode, addr) in [
        ("plain", s.relay_addr()),
        ("starttls", s.submission_addr()),
        ("smtps", s.smtps_addr()),
        ("noauth", s.submission_addr()),
    ] {
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        let out = python(SMTPLIB, &[mode, &host, &port, &cafile]);
        assert_success(&format!("smtplib {mode}"), &out);
    }
    assert!(s.relay.terminate().success());
    let messages = s.spooled();
    let mut subjects: Vec<String> = messages
        .iter()
        .map(|(_, b)| {
            String::from_utf8_lossy(b)
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Subject: via plain",
            "Subject: via smtps",
            "Subject: via starttls"
        ]
    );
    let tls_msg = messages
        .iter()
        .find(|(_, b)| String::from_utf8_lossy(b).contains("via starttls"))
        .unwrap();
    assert_eq!(tls_msg.0.client.auth_user.as_deref(), Some("alice"));
    assert!(tls_msg.0.client.tls);
    assert!(
        String::from_utf8_lossy(&tls_msg.1).contains("with ESMTPSA (TLS"),
        "Received header records TLS and AUTH"
    );
}

#[test]
fn swaks_with_starttls_and_auth() {
    let mut s = setup("");
    let out = swaks(s.submission_addr())
        .args([
            "--from",
            "alice@example.org",
            "--to",
            "erin@foreign.example",
            "--helo",
            "swaks.test",
        ])
        .args([
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            PASSWORD,
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "Hello from swaks.",
        ])
        .output()
        .expect("swaks");
    assert_success("swaks", &out);
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        transcript.contains("250 2.0.0 OK: queued as"),
        "{transcript}"
    );
    // Pipelined swaks on the relay port, no TLS: a local recipient is fine, a foreign one is not.
    let out = swaks(s.relay_addr())
        .arg("--pipeline")
        .args(["--from", "x@example.org", "--to", "victim@foreign.example"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("554 5.7.1"));
    let messages = s.spooled();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.recipients[0].address, "erin@foreign.example");
}
