//! The relay binary on loopback, driven by real SMTP clients: Python smtplib (plain,
//! STARTTLS, implicit TLS, AUTH), swaks and curl; plus the smuggling matrix and open-relay
//! probes over the wire, connection caps and graceful shutdown.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const PASSWORD_HASH_CMD: &str = "s3cret pass";

struct Setup {
    dir: tempfile::TempDir,
    relay_port: u16,
    submission_port: u16,
    smtps_port: u16,
    cert: std::path::PathBuf,
}

fn hash(password: &str) -> String {
    wasmrelay::smtp::session::hash_password(password).unwrap()
}

/// A relay with three listeners (relay, submission with STARTTLS, smtps) and one user.
fn setup(extra: &str) -> (Setup, RelayProcess) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_certificate(dir.path());
    let (relay_port, submission_port, smtps_port) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:{relay_port}"
role = "relay"
tls_cert = "{cert}"
tls_key = "{key}"
# No DNS here (see below): SPF/DKIM/DMARC checks would wait for their timeout on every message.
check_auth = "off"

[[listeners]]
address = "127.0.0.1:{submission_port}"
role = "submission"
tls_cert = "{cert}"
tls_key = "{key}"

[[listeners]]
address = "127.0.0.1:{smtps_port}"
role = "smtps"
tls_cert = "{cert}"
tls_key = "{key}"

[relay]
local_domains = ["example.com"]

[[users]]
name = "alice"
password_hash = "{hash}"

[spool]
dir = "spool"

# Delivery goes nowhere: a closed loopback port, and a loopback resolver, so accepted
# messages stay queued for inspection and nothing leaves this machine.
[[delivery.routes]]
domains = ["*"]
hosts = [{{ host = "127.0.0.1", port = {dead_port}, tls = "none" }}]

[delivery.resolver]
nameservers = ["127.0.0.1:9"]
{extra}
"#,
        dead_port = free_port(),
        cert = cert.display(),
        key = key.display(),
        hash = hash(PASSWORD_HASH_CMD),
    );
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, config).unwrap();
    let relay = RelayProcess::start(&path, &[relay_port, submission_port, smtps_port]);
    (
        Setup {
            dir,
            relay_port,
            submission_port,
            smtps_port,
            cert,
        },
        relay,
    )
}

/// The spooled messages (envelope, bytes), read through the library after the relay stopped.
fn spooled(dir: &Path) -> Vec<(wasmrelay::spool::Envelope, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (spool, _) = wasmrelay::spool::Spool::open(&dir.join("spool"))
            .await
            .unwrap();
        let mut out = Vec::new();
        for env in spool.list().await {
            let bytes = spool.message(&env.id).await.unwrap();
            out.push((env, bytes));
        }
        out
    })
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
mode, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
msg = "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: via " + mode + "\r\n\r\nHello from smtplib.\r\n"
if mode == "plain":
    with smtplib.SMTP("127.0.0.1", port) as s:
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
    with smtplib.SMTP("127.0.0.1", port) as s:
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
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx) as s:
        s.login("alice", "s3cret pass")
        s.sendmail("alice@example.org", ["dave@foreign.example"], msg)
elif mode == "noauth":
    with smtplib.SMTP("127.0.0.1", port) as s:
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
    let (s, mut relay) = setup("");
    let cafile = s.cert.to_str().unwrap();
    for (mode, port) in [
        ("plain", s.relay_port),
        ("starttls", s.submission_port),
        ("smtps", s.smtps_port),
        ("noauth", s.submission_port),
    ] {
        let out = python(SMTPLIB, &[mode, &port.to_string(), cafile]);
        assert_success(&format!("smtplib {mode}"), &out);
    }
    assert!(relay.terminate().success());
    let messages = spooled(s.dir.path());
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
    let (s, mut relay) = setup("");
    let out = std::process::Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &s.submission_port.to_string(),
        ])
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
            PASSWORD_HASH_CMD,
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
    let out = std::process::Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &s.relay_port.to_string(),
            "--pipeline",
        ])
        .args(["--from", "x@example.org", "--to", "victim@foreign.example"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("554 5.7.1"));
    relay.terminate();
    let messages = spooled(s.dir.path());
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.recipients[0].address, "erin@foreign.example");
}

#[test]
fn curl_mail_rcpt() {
    let (s, mut relay) = setup("");
    let mail = s.dir.path().join("mail.txt");
    std::fs::write(&mail, "From: app@example.org\r\nTo: frank@example.com\r\nSubject: via curl\r\n\r\nHello from curl.\r\n")
        .unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--url",
            &format!("smtp://127.0.0.1:{}/client.test", s.relay_port),
        ])
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
    relay.terminate();
    let messages = spooled(s.dir.path());
    assert_eq!(messages.len(), 1);
    assert!(messages[0]
        .1
        .ends_with(b"Subject: via curl\r\n\r\nHello from curl.\r\n"));
}

/// Each sequence inside DATA must neither end the message nor let a second message in.
#[test]
fn smuggling_matrix() {
    let (s, mut relay) = setup("");
    let cases: [&[u8]; 9] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\n",
        b"\r.\r",
        b"\n.\r",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r\n\x00.\r\n",
    ];
    let mut accepted = 0;
    for seq in cases {
        let mut c = Raw::connect(s.relay_port);
        c.cmd("EHLO attacker.test", "250");
        c.cmd("MAIL FROM:<a@example.org>", "250");
        c.cmd("RCPT TO:<bob@example.com>", "250");
        c.cmd("DATA", "354");
        let mut payload = b"Subject: outer\r\n\r\nbefore".to_vec();
        payload.extend_from_slice(seq);
        payload.extend_from_slice(b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n");
        c.send(&payload);
        let reply = c.reply();
        if seq == b"\r\n\x00.\r\n" {
            assert!(reply.starts_with("250"), "{seq:?}: {reply}");
            accepted += 1;
        } else {
            assert!(reply.starts_with("550 5.6.0"), "{seq:?}: {reply}");
        }
        // Exactly one reply: the smuggled commands were message content, and we are in sync.
        c.cmd("NOOP", "250");
        c.cmd("QUIT", "221");
    }
    relay.terminate();
    let messages = spooled(s.dir.path());
    assert_eq!(messages.len(), accepted);
    for (env, bytes) in messages {
        assert_eq!(env.mail_from.as_deref(), Some("a@example.org"));
        assert!(String::from_utf8_lossy(&bytes).contains("Subject: outer"));
    }
}

#[test]
fn open_relay_probes_are_refused() {
    let (s, mut relay) = setup("");
    let mut c = Raw::connect(s.relay_port);
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
    relay.terminate();
    assert!(spooled(s.dir.path()).is_empty());
}

#[test]
fn per_ip_connection_cap() {
    let (s, _relay) = setup("\n[limits]\nmax_connections_per_ip = 2\n");
    let _a = Raw::connect(s.relay_port);
    let _b = Raw::connect(s.relay_port);
    let stream = std::net::TcpStream::connect(("127.0.0.1", s.relay_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut reply).unwrap();
    assert!(reply.starts_with("421 4.7.0"), "{reply}");
    drop(_a);
    wait_for("a slot to free up", Duration::from_secs(10), || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", s.relay_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reply = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut reply).ok();
        reply.starts_with("220")
    });
}

#[test]
fn sigterm_lets_the_transaction_finish_then_421() {
    let (s, mut relay) = setup("");
    let mut c = Raw::connect(s.relay_port);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    let mut idle = Raw::connect(s.relay_port);
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(relay.child.id().to_string())
        .status()
        .unwrap();
    assert!(idle.reply().starts_with("421 4.3.2"));
    c.cmd("RCPT TO:<bob@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: last one\r\n\r\nbody\r\n.", "250 2.0.0");
    assert!(c.reply().starts_with("421 4.3.2"));
    let status = relay.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(spooled(s.dir.path()).len(), 1);
}

#[test]
fn check_config_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[listeners]]
address = "127.0.0.1:2525"
role = "submission"

[[listeners]]
address = "127.0.0.1:2525"
tls_cert = "missing.pem"

[relay]
local_domains = ["ok.example", "bad domain"]

[limits]
max_recipients = 10
max_command_line = 100

[[users]]
name = "bob"
password_hash = "plaintext"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listeners[0].tls_cert",
        "listeners[1].tls_key",
        "listeners[1].tls_cert",
        "listeners[1].address",
        "relay.local_domains[1]",
        "limits.max_recipients",
        "limits.max_command_line",
        "users[0].password_hash",
    ] {
        assert!(
            text.contains(&format!("{key}:")),
            "{key} missing from:\n{text}"
        );
    }

    std::fs::write(
        &path,
        "[[listeners]]\naddress = \"127.0.0.1:2525\"\nbogus = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("listeners[0].bogus") && text.contains("unknown field"),
        "{text}"
    );

    let out = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/relay.toml"))
        .output()
        .unwrap();
    assert_success("check-config on the quickstart", &out);
}

#[test]
fn queue_list_show_delete_while_running() {
    let (s, mut relay) = setup("");
    let mut c = Raw::connect(s.relay_port);
    c.cmd("EHLO client.test", "250");
    let mut ids = Vec::new();
    for n in 0..2 {
        c.cmd("MAIL FROM:<app@example.org>", "250");
        c.cmd("RCPT TO:<bob@example.com>", "250");
        c.cmd("DATA", "354");
        ids.push(queued_id(
            &c.cmd(&format!("Subject: queued {n}\r\n\r\nbody\r\n."), "250"),
        ));
    }
    let queue = |args: &[&str]| {
        let out = std::process::Command::new(binary())
            .args(["queue", "--config"])
            .arg(&relay.config)
            .args(args)
            .output()
            .unwrap();
        assert_success(&format!("queue {args:?}"), &out);
        String::from_utf8(out.stdout).unwrap()
    };
    let list = queue(&["list"]);
    assert!(
        list.contains(&ids[0]) && list.contains(&ids[1]) && list.contains("2 message(s)"),
        "{list}"
    );
    assert!(
        list.contains("app@example.org") && list.contains("1/1 pending"),
        "{list}"
    );
    let show = queue(&["show", &ids[0], "--headers"]);
    assert!(
        show.contains("\"bob@example.com\"") && show.contains("Subject: queued 0"),
        "{show}"
    );
    queue(&["delete", &ids[0]]);
    let list = queue(&["list"]);
    assert!(!list.contains(&ids[0]) && list.contains(&ids[1]), "{list}");
    relay.terminate();
    let left: Vec<_> = spooled(s.dir.path())
        .into_iter()
        .map(|(e, _)| e.id.0)
        .collect();
    assert_eq!(left, [ids[1].clone()]);
}

#[test]
fn sighup_reloads_config_and_refuses_a_bad_one() {
    let (s, relay) = setup("");
    let config_path = relay.config.clone();
    let original = std::fs::read_to_string(&config_path).unwrap();
    let hup = |relay: &RelayProcess| {
        std::process::Command::new("kill")
            .arg("-HUP")
            .arg(relay.child.id().to_string())
            .status()
            .unwrap();
    };
    let mut old = Raw::connect(s.relay_port);
    old.cmd("EHLO old.test", "250");
    old.cmd("MAIL FROM:<a@example.org>", "250");
    old.cmd("RCPT TO:<x@example.net>", "554 5.7.1");

    std::fs::write(
        &config_path,
        original.replace(
            "local_domains = [\"example.com\"]",
            "local_domains = [\"example.net\"]",
        ),
    )
    .unwrap();
    hup(&relay);
    wait_for("the reload", Duration::from_secs(30), || {
        relay.log().contains("configuration reloaded")
    });
    let mut new = Raw::connect(s.relay_port);
    new.cmd("EHLO new.test", "250");
    new.cmd("MAIL FROM:<a@example.org>", "250");
    new.cmd("RCPT TO:<x@example.net>", "250");
    new.cmd("RCPT TO:<x@example.com>", "554 5.7.1");
    // The session that started before the reload keeps its configuration.
    old.cmd("RCPT TO:<y@example.com>", "250");
    old.cmd("RCPT TO:<y@example.net>", "554 5.7.1");

    std::fs::write(
        &config_path,
        original.replace("[relay]", "[relay]\nbogus = true"),
    )
    .unwrap();
    hup(&relay);
    wait_for("the refusal", Duration::from_secs(30), || {
        relay.log().contains("reload refused")
    });
    let mut after = Raw::connect(s.relay_port);
    after.cmd("EHLO after.test", "250");
    after.cmd("MAIL FROM:<a@example.org>", "250");
    after.cmd("RCPT TO:<x@example.net>", "250");
}
