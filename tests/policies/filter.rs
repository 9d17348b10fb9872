//! The `filter` plugin end to end: the relay binary with `builtin = "filter"`, Python smtplib
//! clients on chosen loopback addresses, aiosmtpd downstream, and a dnslib zone on loopback
//! serving the DNSBL and the SPF/DMARC records. Covers an executable inside a nested message
//! (refused, whatever the encoding of the nesting), quarantine held until `queue flush`, a
//! DNSBL-listed client refused at connect (and a list that refuses to answer us ignored),
//! DMARC failures from outside refused or tagged per policy; and the plugin's transcript,
//! plugins/filter/session.txt, through `wasmrelay plugin test`.
//!
//! Run: `cargo test -p wasmrelay --test policies filter`

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, binary, python, queued_id, wait_for, Aiosmtpd, DnsZone, Downstream, Relay,
};

const WAIT: Duration = Duration::from_secs(30);

/// One transaction from `source`; prints the final reply (`250 ... queued as ID`), the
/// first refusal (`550 5.7.1 ...`), or `connect CODE TEXT` when the greeting refuses.
const SEND: &str = r#"
import smtplib, sys
host, port, source, sender, rcpt, message = sys.argv[1:7]
options = sys.argv[7:]
try:
    s = smtplib.SMTP(host, int(port), timeout=60, source_address=(source, 0))
except smtplib.SMTPConnectError as e:
    print("connect", e.smtp_code, e.smtp_error.decode())
    sys.exit(0)
with s:
    s.ehlo("client.test")
    for code, text in (s.mail(sender, options), s.rcpt(rcpt)):
        if code >= 400:
            print(code, text.decode())
            sys.exit(0)
    code, text = s.data(message.encode())
    print(code, text.decode())
"#;

fn send(relay: &Relay, source: &str, sender: &str, message: &str) -> String {
    send_with(relay, source, sender, message, &[])
}

/// [`send`] with MAIL FROM parameters (`SIZE=1000`).
fn send_with(relay: &Relay, source: &str, sender: &str, message: &str, mail: &[&str]) -> String {
    let addr = relay.addr();
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut args = vec![&*host, &*port, source, sender, "user@example.com", message];
    args.extend_from_slice(mail);
    let out = python(SEND, &args);
    assert_success("smtplib", &out);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The message that arrived with `subject`, waiting for it.
fn arrived(sink: &Aiosmtpd, subject: &str) -> String {
    sink.wait_subject(subject, WAIT)
}

/// `loopback_config` with only `outside` trusted (every other loopback client is "from
/// outside": checked for SPF/DKIM/DMARC, subject to `clients = "outside"` rules) and the
/// relay's resolver at `dns`.
fn outside_config(sink: SocketAddr, dns: SocketAddr, trusted: &str, plugin: &str) -> String {
    let base = loopback_config(sink, plugin);
    let networks = "relay_networks = [\"127.0.0.0/8\"]";
    let resolver = format!("nameservers = [\"{}\"]", wasmrelay_test_support::NO_DNS);
    assert!(
        base.contains(networks) && base.contains(&resolver),
        "{base}"
    );
    base.replace(networks, &format!("relay_networks = [\"{trusted}/32\"]"))
        .replace(
            &resolver,
            &format!("nameservers = [\"{dns}\"]\ntimeout = \"5s\"\nattempts = 1"),
        )
}

const HEAD: &str = "From: app@example.org\r\nTo: user@example.com\r\n\
                    Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n";

/// A message forwarding another, which carries an attachment named `file`; the forwarded
/// message is written with `encoding` (`7bit`, or `base64` of the whole message).
fn forwarding(subject: &str, file: &str, encoding: &str) -> String {
    let inner = format!(
        "From: someone@example.net\r\nSubject: forwarded\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"in\"\r\n\r\n\
         --in\r\nContent-Type: text/plain\r\n\r\nthe tool, as asked\r\n\
         --in\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment;\r\n filename=\"{file}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--in--\r\n"
    );
    let inner = match encoding {
        "base64" => {
            let out = python(
                "import base64,sys; print(base64.encodebytes(sys.argv[1].encode()).decode().replace('\\n','\\r\\n'), end='')",
                &[&inner],
            );
            assert_success("base64", &out);
            String::from_utf8(out.stdout).unwrap()
        }
        _ => inner,
    };
    format!(
        "{HEAD}Subject: {subject}\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n\
         --out\r\nContent-Type: text/plain\r\n\r\nsee below\r\n\
         --out\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n\
         {inner}\r\n--out--\r\n"
    )
}

#[test]
fn nested_attachments_are_refused_and_quarantine_holds_until_flush() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let plugin = r#"
[[plugins]]
builtin = "filter"

[[plugins.config.rules]]
name = "executables"
attachment_extensions = ["exe", "scr"]
reply = "550 5.7.1 Executables are refused: {detail}"

[[plugins.config.rules]]
name = "invoices"
header = "Subject"
pattern = '(?i)\binvoice\b'
action = "quarantine"

[[plugins.config.rules]]
name = "size"
max_size = "100KB"
"#;
    let relay = Relay::start(dir.path(), &loopback_config(sink.addr(), plugin));
    let from = "app@example.org";

    // An executable two levels down: in a multipart inside a forwarded message.
    let refused = "550 5.7.1 Executables are refused: file setup.exe in a nested message";
    let nested = forwarding("nested exe", "setup.exe", "7bit");
    assert_eq!(send(&relay, "127.0.0.1", from, &nested), refused);
    // The same with the forwarded message base64-encoded (RFC 2046 forbids it; readers
    // decode it anyway).
    let encoded = forwarding("encoded exe", "setup.exe", "base64");
    assert_eq!(send(&relay, "127.0.0.1", from, &encoded), refused);
    // A harmless file in the same place goes through, untouched.
    let harmless = forwarding("nested txt", "notes.txt", "7bit");
    let reply = send(&relay, "127.0.0.1", from, &harmless);
    assert!(reply.starts_with("250 "), "{reply}");
    let got = arrived(&sink, "nested txt");
    assert!(got.ends_with(harmless.as_str()), "{got}");

    // A size cap refuses at MAIL FROM when the client declares SIZE.
    assert_eq!(
        send_with(&relay, "127.0.0.1", from, &harmless, &["SIZE=200000"]),
        "552 5.3.4 Message too large: 200000 bytes, the limit is 100000"
    );

    // Quarantine: accepted, held at delivery with the reason, released by `queue flush`.
    let invoice = format!("{HEAD}Subject: Your Invoice\r\n\r\nplease pay\r\n");
    let reply = send(&relay, "127.0.0.1", from, &invoice);
    assert!(reply.starts_with("250 "), "{reply}");
    let id = queued_id(&reply);
    let mut last_reply = String::new();
    wait_for("the quarantined message to be held", WAIT, || {
        let out = relay.queue(&["show", &id]);
        let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        last_reply = env["recipients"][0]["last_reply"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !last_reply.is_empty()
    });
    assert_eq!(last_reply, "held: quarantined: invoices: Subject header");
    assert_eq!(
        sink.messages().len(),
        1,
        "only the harmless message arrived"
    );
    let out = relay.queue(&["flush", &id]);
    assert_success("queue flush", &out);
    arrived(&sink, "Your Invoice");
    wait_for("the released message to leave the queue", WAIT, || {
        relay.queue_is_empty()
    });
}

#[test]
fn dnsbl_listed_client_is_refused_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let dns = DnsZone::start(json!({
        "2.0.0.127.bl.test": [["A", "127.0.0.2"]],
        // Spamhaus's "you may not query us" answer: never a reason to refuse the client.
        "3.0.0.127.bl.test": [["A", "127.255.255.254"]],
    }));
    let plugin = r#"
[[plugins]]
builtin = "filter"
dns_zones = ["bl.test"]

[[plugins.config.rules]]
name = "blocklist"
dnsbl = ["bl.test"]
"#;
    let config = outside_config(sink.addr(), dns.addr(), "127.0.0.9", plugin);
    let relay = Relay::start(dir.path(), &config);
    let message = |subject: &str| format!("{HEAD}Subject: {subject}\r\n\r\nhello\r\n");

    assert_eq!(
        send(&relay, "127.0.0.2", "a@example.org", &message("listed")),
        "connect 554 5.7.1 Client address listed: 127.0.0.2 is listed by bl.test (127.0.0.2)"
    );
    let reply = send(&relay, "127.0.0.1", "a@example.org", &message("not listed"));
    assert!(reply.starts_with("250 "), "{reply}");
    let reply = send(
        &relay,
        "127.0.0.3",
        "a@example.org",
        &message("list refuses us"),
    );
    assert!(reply.starts_with("250 "), "{reply}");
    arrived(&sink, "not listed");
    arrived(&sink, "list refuses us");
    relay.wait_log(
        "the list refuses to answer this relay (127.255.255.254)",
        WAIT,
    );
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn dmarc_failures_from_outside_are_refused_or_tagged_per_policy() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let dns = DnsZone::start(json!({
        "pass.test": [["TXT", "v=spf1 ip4:127.0.0.0/8 -all"]],
        "_dmarc.pass.test": [["TXT", "v=DMARC1; p=reject"]],
        "reject.test": [["TXT", "v=spf1 -all"]],
        "_dmarc.reject.test": [["TXT", "v=DMARC1; p=reject"]],
        "quarantine.test": [["TXT", "v=spf1 -all"]],
        "_dmarc.quarantine.test": [["TXT", "v=DMARC1; p=quarantine"]],
    }));
    let plugin = r#"
[[plugins]]
builtin = "filter"

[[plugins.config.rules]]
name = "dmarc-reject"
auth = "dmarc"
dmarc_policy = ["reject"]

[[plugins.config.rules]]
name = "dmarc-quarantine"
auth = "dmarc"
dmarc_policy = ["quarantine"]
action = "tag"
tag = "X-Filter-DMARC: {detail}"
"#;
    let config = outside_config(sink.addr(), dns.addr(), "127.0.0.2", plugin);
    let relay = Relay::start(dir.path(), &config);
    let message = |from: &str, subject: &str| {
        format!(
            "From: {from}\r\nTo: user@example.com\r\nSubject: {subject}\r\n\
             Message-ID: <{subject}@test>\r\n\r\nwire the money\r\n"
        )
    };

    // p=reject, SPF fails for the author's domain: refused.
    let spoof = message("ceo@reject.test", "spoof");
    assert_eq!(
        send(&relay, "127.0.0.1", "ceo@reject.test", &spoof),
        "550 5.7.1 Message fails sender authentication: dmarc=fail for reject.test (policy reject)"
    );
    // p=quarantine: delivered, tagged; the sender's own copy of the tag field is gone.
    let forged = "X-Filter-DMARC: pass\r\n";
    let doubtful = format!("{forged}{}", message("billing@quarantine.test", "doubtful"));
    let reply = send(&relay, "127.0.0.1", "billing@quarantine.test", &doubtful);
    assert!(reply.starts_with("250 "), "{reply}");
    let got = arrived(&sink, "doubtful");
    assert!(
        got.contains("\r\nX-Filter-DMARC: dmarc=fail for quarantine.test (policy quarantine)\r\n"),
        "{got}"
    );
    assert_eq!(got.matches("X-Filter-DMARC").count(), 1, "{got}");
    // Passing mail is left alone, but for a forged tag.
    let fine = format!("{forged}{}", message("a@pass.test", "fine"));
    let reply = send(&relay, "127.0.0.1", "a@pass.test", &fine);
    assert!(reply.starts_with("250 "), "{reply}");
    let got = arrived(&sink, "fine");
    assert!(!got.contains("X-Filter-DMARC"), "{got}");
    // A trusted client (relay_networks) is not held to the author domain's policy.
    let own = spoof.replace("Subject: spoof", "Subject: from inside");
    let reply = send(&relay, "127.0.0.2", "ceo@reject.test", &own);
    assert!(reply.starts_with("250 "), "{reply}");
    arrived(&sink, "from inside");
}

/// With the quickstart's rules (executables, DMARC `p=reject`), the filter declares the
/// message traits they can match (`host.want-messages-with`: an attachment, checked DMARC):
/// an application's text mail from a trusted client makes no `data` call, as the relay's
/// `/metrics` counts them, while an executable from the same client is refused as before.
#[test]
fn a_trusted_clients_text_mail_makes_no_filter_call() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let admin = wasmrelay_test_support::ports::ReservedPort::new();
    let plugin = format!(
        r#"
[[plugins]]
builtin = "filter"

[[plugins.config.rules]]
name = "executables"
attachment_extensions = ["exe", "scr", "com", "pif", "bat", "cmd", "vbs", "js", "jar", "msi"]
attachment_types = ["application/x-msdownload", "application/x-msi"]
reply = "550 5.7.1 Executable attachments are not accepted: {{detail}}"

[[plugins.config.rules]]
name = "dmarc-reject"
auth = "dmarc"
dmarc_policy = ["reject"]

[admin]
listen = "{}"
"#,
        admin.addr()
    );
    let relay = Relay::start(dir.path(), &loopback_config(sink.addr(), &plugin));
    let from = "app@example.org";
    for n in 0..3 {
        let text = format!("{HEAD}Subject: receipt {n}\r\n\r\nThank you for your order.\r\n");
        let reply = send(&relay, "127.0.0.1", from, &text);
        assert!(reply.starts_with("250 "), "{reply}");
        arrived(&sink, &format!("receipt {n}"));
    }
    let exe = format!(
        "{HEAD}Subject: installer\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nthe tool\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"setup.exe\"\r\n\r\nTVqQ\r\n--b--\r\n"
    );
    assert_eq!(
        send(&relay, "127.0.0.1", from, &exe),
        "550 5.7.1 Executable attachments are not accepted: file setup.exe"
    );

    let out = Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", admin.addr())])
        .output()
        .expect("run curl");
    assert_success("curl /metrics", &out);
    let metrics = wasmrelay_test_support::parse_metrics(&String::from_utf8(out.stdout).unwrap());
    let calls = |verdict| {
        let labels = [("plugin", "filter"), ("hook", "data"), ("verdict", verdict)];
        metrics
            .value("wasmrelay_plugin_calls_total", &labels)
            .unwrap_or(0.0)
    };
    assert_eq!(
        (calls("continue"), calls("reject")),
        (0.0, 1.0),
        "one data call: the executable's"
    );
}

/// The transcript in the plugin's folder, run as its header says, prints what it documents.
#[test]
fn session_transcript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(binary())
        .args(["plugin", "test", "builtin:filter", "--config"])
        .arg(root.join("plugins/filter/session.toml"))
        .arg("--transcript")
        .arg(root.join("plugins/filter/session.txt"))
        .output()
        .expect("run wasmrelay plugin test");
    assert_success("wasmrelay plugin test", &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = [
        "plugin filter handles: connect, mail-from, rcpt, data, route",
        "connect 192.0.2.66 -> reject 554 5.7.1 Client address listed: 192.0.2.66 is listed by bl.test (127.0.0.2)",
        "connect 2001:db8::1 -> reject 554 5.7.1 Client address listed: 2001:db8::1 is listed by bl.test (127.0.0.3)",
        "connect 192.0.2.7 -> continue",
        "connect 192.0.2.1 -> continue",
        "helo client.example.org -> continue",
        "mail <spammer@bad.test> -> reject 550 5.7.1 Sender refused by policy: spammer@bad.test",
        "mail <news@mail.bad.test> -> reject 550 5.7.1 Sender refused by policy: news@mail.bad.test",
        "mail <app@example.org> -> continue",
        "rcpt <user@example.com> -> continue",
        "data (79 bytes) -> reject 550 5.7.1 Message lacks a required header: no Date header",
        "data (561 bytes) -> reject 550 5.7.1 Executable attachments are refused: file setup.exe in a nested message",
        "data (153 bytes, edited) -> continue",
        "  = quarantine: invoices: Subject header",
        "  | From: app@example.org",
        "  | Date: Tue, 1 Dec 2026 10:00:00 +0000",
        "  | Message-ID: <3@example.org>",
        "  | Subject: Your invoice",
        "  | List-Id: <news.example.org>",
        "  | X-Filter: bulk mail (bulk)",
        "  | (9 body bytes)",
        "route example.com -> hold (quarantined: invoices: Subject header)",
        "route example.com -> continue (relay routing)",
        "mail <app@example.org> -> continue",
        "rcpt <postmaster@example.com> -> accept",
        "data (69 bytes) -> continue",
        "mail <app@example.org> -> continue",
        "rcpt <user@example.com> -> continue",
        "data (637 bytes) -> reject 552 5.3.4 Message too large: 637 bytes, the limit is 500",
        "auth reports -> continue",
        "mail <reports@example.org> -> continue",
        "rcpt <user@example.com> -> continue",
        "data (637 bytes) -> continue",
        "done: 24 hooks, 7 refusals, 0 plugin errors, 6 instances",
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, expected, "{text}");
}
