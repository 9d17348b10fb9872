//! SPF, DKIM and DMARC of inbound mail, end to end: the real relay binary, Python smtplib
//! clients, messages signed by dkimpy, a dnslib zone on loopback serving SPF, DKIM key and
//! DMARC records, and aiosmtpd downstream. Checks the `Authentication-Results` header that
//! arrives and, through the `auth-echo` test plugin, what plugins see at `data`: pass, a
//! tampered body, an unsigned message without records, the null sender's HELO identity, a
//! DMARC `p=reject` failure (delivered on one listener, refused on one with `dmarc_reject`),
//! forged headers removed, and no checks for trusted or authenticated clients.
//!
//! Run: `cargo test -p wasmrelay --test auth_results`

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use wasmrelay::config::delivery::DkimAlgorithm;
use wasmrelay::delivery::dkim::keygen;
use wasmrelay_test_support::{
    assert_success, python, test_plugin, Aiosmtpd, DnsZone, Downstream, Relay,
};

/// The delivered message whose Subject is `subject`, waiting for it to arrive.
fn arrived(sink: &Aiosmtpd, subject: &str) -> String {
    sink.wait_subject(subject, Duration::from_secs(30))
}

/// The first header field of `text` when it is an `Authentication-Results`, unfolded lines
/// kept, with the signature-specific `header.b` value masked.
fn our_field(text: &str) -> Option<String> {
    if !text.starts_with("Authentication-Results:") {
        return None;
    }
    let mut end = 0;
    for line in text.split_inclusive("\r\n") {
        if end > 0 && !line.starts_with(['\t', ' ']) {
            break;
        }
        end += line.len();
    }
    Some(mask_b(&text[..end]))
}

/// `header.b=XXXXXXXX` (eight base64 characters, maybe quoted) becomes `header.b=*`.
fn mask_b(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("header.b=") {
        out.push_str(&rest[..i + 9]);
        out.push('*');
        rest = &rest[i + 9..];
        let len = if rest.starts_with('"') { 10 } else { 8 };
        rest = &rest[len.min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// The `X-Auth-Count` and `X-Auth-Echo` lines the test plugin added, in order.
fn echoed(text: &str) -> Vec<String> {
    let head = text.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .filter(|l| l.starts_with("X-Auth-Count: ") || l.starts_with("X-Auth-Echo: "))
        .map(mask_b)
        .collect()
}

/// The `Authentication-Results` fields of a message's header, in order.
fn all_fields(text: &str) -> Vec<String> {
    let head = text.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("authentication-results"))
        .map(str::to_string)
        .collect()
}

/// Signs `message` for `pass.test` (selector `sel`) with dkimpy.
const DKIM_SIGN: &str = r#"
import dkim, sys
key, message = open(sys.argv[1], "rb").read(), sys.argv[2].encode()
sig = dkim.sign(message, b"sel", b"pass.test", key,
                include_headers=[b"from", b"to", b"subject", b"message-id"])
sys.stdout.write((sig + message).decode())
"#;

/// Sends one message with smtplib from `source` (an address on loopback), optionally after
/// AUTH; prints `250` or the code and text of the refusal.
const SEND: &str = r#"
import smtplib, sys
host, port, source, helo, sender, rcpt, user, message = sys.argv[1:9]
with smtplib.SMTP(host, int(port), timeout=60, source_address=(source, 0)) as s:
    s.ehlo(helo)
    if user:
        s.login(*user.split(":"))
    try:
        s.sendmail(sender, [rcpt], message.encode())
        print(250)
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
"#;

struct Client<'a> {
    addr: SocketAddr,
    source: &'a str,
    helo: &'a str,
    user: &'a str,
    /// The server everything is delivered to.
    sink: &'a Aiosmtpd,
}

impl Client<'_> {
    fn send(&self, sender: &str, rcpt: &str, message: &str) -> String {
        let (host, port) = (self.addr.ip().to_string(), self.addr.port().to_string());
        let out = python(
            SEND,
            &[
                &host,
                &port,
                self.source,
                self.helo,
                sender,
                rcpt,
                self.user,
                message,
            ],
        );
        assert_success("smtplib", &out);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Sends `message` from `sender` to user@example.com and returns it as delivered.
    fn deliver(&self, sender: &str, message: &str) -> String {
        assert_eq!(self.send(sender, "user@example.com", message), "250");
        let subject = message
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap();
        arrived(self.sink, subject)
    }
}

/// Our field as expected: one result per folded line.
fn results(lines: &[&str]) -> Option<String> {
    Some(format!(
        "Authentication-Results: relay.test;\r\n\t{}\r\n",
        lines.join(";\r\n\t")
    ))
}

/// The relay: three listeners, each on port 0 of its own loopback address (the config refuses
/// two listeners with one address): `inbound` with the default checks, `strict` with
/// `dmarc_reject`, and `submission`; the auth-echo plugin, delivery of everything to the
/// sink, the zone's server as resolver.
fn config(sink: SocketAddr, dns: SocketAddr, password_hash: &str) -> String {
    format!(
        r#"hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:0"
name = "inbound"

[[listeners]]
address = "127.0.0.3:0"
name = "strict"
check_auth = "inbound"
dmarc_reject = true

[[listeners]]
address = "127.0.0.4:0"
name = "submission"
role = "submission"
allow_plaintext_auth = true

[[users]]
name = "alice"
password_hash = "{password_hash}"

[relay]
local_domains = ["example.com"]
relay_networks = ["127.0.0.2/32"]

[spool]
dir = "spool"

[plugin_runtime]
cache_dir = "cache"

[[delivery.routes]]
domains = ["*"]
hosts = [{{ host = "{sink_ip}", port = {sink_port}, tls = "none" }}]

[delivery.resolver]
nameservers = ["{dns}"]
timeout = "2s"
attempts = 1

[[plugins]]
path = {plugin:?}
name = "auth-echo"
"#,
        sink_ip = sink.ip(),
        sink_port = sink.port(),
        plugin = test_plugin("auth-echo").display().to_string(),
    )
}

/// A signed message of `from` with `extra` header lines and `body`.
fn message(from: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "{extra}From: {from}\r\nTo: user@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{}@pass.test>\r\n\r\n{body}",
        subject.replace(' ', "-")
    )
}

#[test]
fn inbound_mail_is_checked_and_the_results_reach_header_and_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.pem");
    let records = keygen("pass.test", "sel", DkimAlgorithm::RsaSha256, &key).unwrap();
    // The TXT value exactly as published: the quoted strings of keygen's first line, joined.
    let first = records.lines().next().unwrap();
    let dkim_txt: String = first[first.find('"').unwrap()..]
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    let zone = json!({
        "pass.test": [["TXT", "v=spf1 ip4:127.0.0.1 -all"]],
        "sel._domainkey.pass.test": [["TXT", dkim_txt]],
        "_dmarc.pass.test": [["TXT", "v=DMARC1; p=reject"]],
        "reject.test": [["TXT", "v=spf1 -all"]],
        "_dmarc.reject.test": [["TXT", "v=DMARC1; p=reject"]],
        "helo.test": [["TXT", "v=spf1 ip4:127.0.0.1 -all"]],
    });
    let dns = DnsZone::start(zone);
    let sink = Aiosmtpd::start();
    let hash = wasmrelay::smtp::session::hash_password("secret").unwrap();
    let mut relay = Relay::start(dir.path(), &config(sink.addr(), dns.addr(), &hash));
    let outside = Client {
        addr: relay.listener("inbound"),
        source: "127.0.0.1",
        helo: "client.pass.test",
        user: "",
        sink: &sink,
    };
    let sign = |text: &str| -> String {
        let out = python(DKIM_SIGN, &[key.to_str().unwrap(), text]);
        assert_success("dkimpy sign", &out);
        String::from_utf8(out.stdout).unwrap()
    };

    // 1. Signed, SPF and DMARC pass; a forged field with our authserv-id goes, another
    //    server's stays.
    let forged = "Authentication-Results: relay.test; dkim=pass header.d=bank.example\r\n\
                  Authentication-Results: mx.elsewhere.example; spf=fail\r\n";
    let signed = sign(&message(
        "Alice <alice@pass.test>",
        "pass",
        "",
        "Hello,\r\nsee you.\r\n",
    ));
    let with_forged = signed.replacen("From: ", &format!("{forged}From: "), 1);
    let got = outside.deliver("alice@pass.test", &with_forged);
    assert_eq!(
        our_field(&got),
        results(&[
            "spf=pass smtp.mailfrom=alice@pass.test",
            "dkim=pass header.d=pass.test header.s=sel header.b=*",
            "dmarc=pass header.from=pass.test policy.dmarc=reject",
        ]),
        "{got}"
    );
    assert_eq!(
        all_fields(&got)[1..],
        ["Authentication-Results: mx.elsewhere.example; spf=fail"],
        "the forged field is gone, the other server's kept: {got}"
    );
    assert_eq!(
        echoed(&got),
        [
            "X-Auth-Count: 3",
            "X-Auth-Echo: spf=pass domain=pass.test detail=smtp.mailfrom=alice@pass.test",
            "X-Auth-Echo: dkim=pass domain=pass.test detail=header.d=pass.test header.s=sel header.b=*",
            "X-Auth-Echo: dmarc=pass domain=pass.test detail=header.from=pass.test policy.dmarc=reject",
        ]
    );
    // What arrives still verifies with dkimpy: our edits did not touch what was signed.
    if let Err(e) = dns.verify_dkim(got.as_bytes()) {
        panic!("dkimpy verify failed: {e}\n{got}");
    }

    // 2. The body changed after signing: DKIM fails, DMARC still passes on aligned SPF.
    let tampered = sign(&message(
        "alice@pass.test",
        "tampered",
        "",
        "Pay 100 EUR.\r\n",
    ))
    .replace("Pay 100 EUR.", "Pay 900 EUR.");
    let got = outside.deliver("alice@pass.test", &tampered);
    assert_eq!(
        echoed(&got),
        [
            "X-Auth-Count: 3",
            "X-Auth-Echo: spf=pass domain=pass.test detail=smtp.mailfrom=alice@pass.test",
            "X-Auth-Echo: dkim=fail domain=pass.test detail=(body hash did not verify) header.d=pass.test header.s=sel header.b=*",
            "X-Auth-Echo: dmarc=pass domain=pass.test detail=header.from=pass.test policy.dmarc=reject",
        ]
    );
    assert!(our_field(&got).unwrap().contains(
        "\tdkim=fail (body hash did not verify) header.d=pass.test header.s=sel header.b=*;\r\n"
    ));

    // 3. Unsigned, from a domain without any record.
    let unsigned = message("bob@none.test", "none", "", "plain\r\n");
    let got = outside.deliver("bob@none.test", &unsigned);
    assert_eq!(
        our_field(&got),
        results(&[
            "spf=none smtp.mailfrom=bob@none.test",
            "dkim=none",
            "dmarc=none header.from=none.test",
        ]),
        "{got}"
    );
    assert_eq!(
        echoed(&got),
        [
            "X-Auth-Count: 3",
            "X-Auth-Echo: spf=none domain=none.test detail=smtp.mailfrom=bob@none.test",
            "X-Auth-Echo: dkim=none domain= detail=",
            "X-Auth-Echo: dmarc=none domain=none.test detail=header.from=none.test",
        ]
    );

    // 4. The null sender: SPF checks the HELO name.
    let helo_client = Client {
        helo: "helo.test",
        ..outside
    };
    let bounce = message("mailer-daemon@helo.test", "bounce", "", "undeliverable\r\n");
    let got = helo_client.deliver("", &bounce);
    assert_eq!(
        our_field(&got),
        results(&[
            "spf=pass smtp.helo=helo.test",
            "dkim=none",
            "dmarc=none header.from=helo.test",
        ]),
        "{got}"
    );

    // 5. DMARC p=reject fails (SPF passes for another domain, nothing aligns): recorded on the
    //    default listener, refused where `dmarc_reject` is set.
    let spoof = sign(&message(
        "CEO <ceo@reject.test>",
        "spoof",
        "",
        "wire money\r\n",
    ));
    let got = outside.deliver("alice@pass.test", &spoof);
    assert_eq!(
        our_field(&got),
        results(&[
            "spf=pass smtp.mailfrom=alice@pass.test",
            "dkim=pass header.d=pass.test header.s=sel header.b=*",
            "dmarc=fail (not aligned) header.from=reject.test policy.dmarc=reject",
        ]),
        "{got}"
    );
    assert_eq!(
        echoed(&got)[3],
        "X-Auth-Echo: dmarc=fail domain=reject.test detail=(not aligned) header.from=reject.test policy.dmarc=reject"
    );
    let strict_client = Client {
        addr: relay.listener("strict"),
        ..outside
    };
    let refused = spoof.replace("Subject: spoof", "Subject: spoof refused");
    assert_eq!(
        strict_client.send("alice@pass.test", "user@example.com", &refused),
        "550 5.7.1 Message fails the DMARC policy of reject.test, which asks to reject it"
    );
    // The strict listener still takes what passes.
    let fine = signed.replace("Subject: pass", "Subject: strict pass");
    strict_client.deliver("alice@pass.test", &fine);

    // 6. Not checked: a client in relay_networks keeps its fields (a filter of ours may have
    //    written them); an authenticated one is not checked, and loses forged ones.
    let trusted = Client {
        source: "127.0.0.2",
        ..outside
    };
    let ours = "Authentication-Results: relay.test; dkim=pass header.d=pass.test\r\n";
    let from_filter = message("alice@pass.test", "trusted", ours, "rescanned\r\n");
    let got = trusted.deliver("alice@pass.test", &from_filter);
    assert!(got.starts_with("Received: "), "{got}");
    assert_eq!(all_fields(&got), [ours.trim_end()]);
    assert_eq!(echoed(&got), ["X-Auth-Count: 0"]);

    let user = Client {
        addr: relay.listener("submission"),
        user: "alice:secret",
        ..outside
    };
    let submitted = message("alice@pass.test", "submitted", ours, "from a user\r\n");
    assert_eq!(
        user.send("alice@pass.test", "friend@far.example", &submitted),
        "250"
    );
    let got = arrived(&sink, "submitted");
    assert!(got.starts_with("Received: "), "{got}");
    assert!(all_fields(&got).is_empty(), "{got}");
    assert_eq!(echoed(&got), ["X-Auth-Count: 0"]);

    assert!(
        relay.log().contains("message refused: DMARC policy reject"),
        "{}",
        relay.log()
    );
    relay.terminate();
}
