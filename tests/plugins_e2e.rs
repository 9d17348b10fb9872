//! The plugin chain in the real relay binary, end to end: real SMTP clients on one side, a
//! real downstream server (aiosmtpd) on the other. A recipient refused by a plugin, headers
//! added by the data hook as delivered, a domain routed to a second server by the route hook,
//! misbehaving plugins (loop, memory bomb, trap, huge reply, capability spam) answered with
//! their `on_error` while the relay keeps serving, and a plugin swapped by SIGHUP under load.
//!
//! Run: `cargo test -p wasmrelay --test plugins_e2e`

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use wasmrelay::plugins::test_plugins::component;

/// The aiosmtpd sink (`host/tests/support/smtp_sink.py`) on loopback, killed on drop.
struct Sink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// One message as the downstream server received it.
#[derive(Debug)]
struct Delivered {
    mail_from: String,
    rcpt_tos: Vec<String>,
    bytes: Vec<u8>,
}

impl Delivered {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Sink {
    /// Starts the sink on a port of its choosing.
    fn start(dir: &Path) -> Sink {
        Sink::start_on(dir, 0)
    }

    /// Starts the sink on `127.0.0.1:port` (0: any free port) and waits until it listens.
    fn start_on(dir: &Path, port: u16) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
        else {
            child.kill().ok();
            child.wait().ok();
            panic!("the sink did not start on 127.0.0.1:{port}: {line:?}");
        };
        Sink {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Every message received so far, in arrival order.
    fn messages(&self) -> Vec<Delivered> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
                Delivered {
                    mail_from: meta["mail_from"].as_str().unwrap().to_string(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_string())
                        .collect(),
                    bytes: std::fs::read(json.with_extension("eml")).unwrap(),
                }
            })
            .collect()
    }

    /// Waits until `n` messages have arrived and returns them.
    fn wait_for(&self, n: usize) -> Vec<Delivered> {
        wait_for(
            &format!("{n} message(s) at the sink"),
            Duration::from_secs(30),
            || self.messages().len() >= n,
        );
        self.messages()
    }
}

/// One `[[plugins]]` entry for test plugin `component_name`.
fn plugin(component_name: &str, name: &str, on_error: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {path:?}\nname = {name:?}\non_error = {on_error:?}\n{extra}\n",
        path = component(component_name).display().to_string(),
    )
}

/// A relay config on `port` whose every domain goes to the sink on `sink_port`, with
/// `plugins` appended. Loopback only: the catch-all route and the resolver both point here.
fn config_text(port: u16, sink_port: u16, plugins: &str) -> String {
    format!(
        r#"hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:{port}"
role = "relay"

[relay]
local_domains = ["example.com"]
relay_networks = ["127.0.0.0/8"]

[spool]
dir = "spool"

[plugin_runtime]
cache_dir = "cache"

[[delivery.routes]]
domains = ["*"]
hosts = [{{ host = "127.0.0.1", port = {sink_port}, tls = "none" }}]

[delivery.resolver]
nameservers = ["127.0.0.1:9"]

[delivery.retry]
initial_interval = "1s"

{plugins}"#
    )
}

/// Writes the config the way an operator should: a complete file renamed into place, so the
/// relay never reads half of it.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The relay process; a failing test prints its log, which says what the relay saw.
struct Relay(RelayProcess);

impl std::ops::Deref for Relay {
    type Target = RelayProcess;
    fn deref(&self) -> &RelayProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Relay {
    fn deref_mut(&mut self) -> &mut RelayProcess {
        &mut self.0
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- relay log ---\n{}--- end of relay log ---",
                self.0.log()
            );
        }
    }
}

/// The line a relay logs once it serves `port`.
fn listening(port: u16) -> String {
    format!("listening address=127.0.0.1:{port} ")
}

/// A relay on a free port with `plugins`, delivering to `sink`. `free_port` lets its socket
/// go, and another process may take the port before the relay binds it; then the port answers
/// without our relay. Only the relay's own `listening` line proves the port is ours, else it
/// tries another one.
fn start_relay(dir: &Path, sink: &Sink, plugins: &str) -> (Relay, u16) {
    let path = dir.join("relay.toml");
    for _ in 0..5 {
        let port = free_port();
        write_config(&path, &config_text(port, sink.port, plugins));
        std::fs::remove_file(path.with_extension("log")).ok();
        let mut relay = Relay(RelayProcess::start(&path, &[port]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while relay.child.try_wait().unwrap().is_none() {
            if relay.log().contains(&listening(port)) {
                return (relay, port);
            }
            assert!(Instant::now() < deadline, "the relay does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no port for the relay in five tries");
}

fn signal(relay: &RelayProcess, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(relay.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig}");
}

/// Sends `message` with Python's smtplib; prints what `sendmail` returns (the refused
/// recipients) as a sorted list.
const SMTPLIB_SEND: &str = r#"
import smtplib, sys
port, sender, rcpts, msg = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    s.ehlo("client.test")
    refused = s.sendmail(sender, rcpts, msg)
    print(sorted(refused.items()))
"#;

fn smtplib_send(port: u16, sender: &str, rcpts: &[&str], message: &str) -> String {
    let out = python(
        SMTPLIB_SEND,
        &[&port.to_string(), sender, &rcpts.join(","), message],
    );
    assert_success("smtplib sendmail", &out);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The message without our `Received:` header (which carries an id and a date), and that
/// header's first line. Panics unless there is exactly one.
fn without_received(text: &str) -> (String, String) {
    let (head, body) = text.split_once("\r\n\r\n").expect("a header/body split");
    let mut kept = String::new();
    let mut received = Vec::new();
    let mut in_received = false;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) && in_received {
            continue;
        }
        in_received = line.starts_with("Received:");
        if in_received {
            received.push(line.to_string());
        } else {
            kept.push_str(line);
            kept.push_str("\r\n");
        }
    }
    assert_eq!(received.len(), 1, "one Received header in:\n{text}");
    (format!("{kept}\r\n{body}"), received.pop().unwrap())
}

// ---------------------------------------------------------------------------------------
// 1. A recipient refused by a plugin.

#[test]
fn a_plugin_refuses_one_recipient_with_its_exact_reply() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"));
    let (mut relay, port) = start_relay(
        dir.path(),
        &sink,
        &plugin("policy", "policy", "tempfail", ""),
    );

    // Byte for byte on the wire: the plugin's code, enhanced code and text, nothing else.
    let mut c = Raw::connect(port);
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
        port,
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

    let mut got = sink.wait_for(2);
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
    let sink = Sink::start(&dir.path().join("sink"));
    let (mut relay, port) = start_relay(
        dir.path(),
        &sink,
        &plugin("policy", "policy", "tempfail", ""),
    );

    let message = "From: a@example.org\r\nTo: user@example.com\r\nSubject: rewrite me\r\n\
                   X-Remove-Me: secret\r\nMessage-ID: <e1@example.org>\r\n\r\n\
                   Hello.\r\n.a line that starts with a dot\r\n";
    assert_eq!(
        smtplib_send(port, "a@example.org", &["user@example.com"], message),
        "[]"
    );
    let replaced =
        "Subject: keep me\r\nMessage-ID: <e2@example.org>\r\n\r\nplease REPLACE-BODY\r\n";
    assert_eq!(
        smtplib_send(port, "b@example.org", &["user@example.com"], replaced),
        "[]"
    );

    let mut got = sink.wait_for(2);
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

/// Where the policy plugin routes `routed.test` (fixed in the plugin).
const ROUTED_PORT: u16 = 2526;

#[test]
fn route_hook_sends_one_domain_to_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let first = Sink::start(&dir.path().join("first"));
    let second = Sink::start_on(&dir.path().join("second"), ROUTED_PORT);
    let (mut relay, port) = start_relay(
        dir.path(),
        &first,
        &plugin("policy", "policy", "tempfail", ""),
    );
    let message =
        "Subject: split\r\nMessage-ID: <r1@example.org>\r\n\r\none message, two servers\r\n";
    assert_eq!(
        smtplib_send(
            port,
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
    second.wait_for(1);
    first.wait_for(1);
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

// ---------------------------------------------------------------------------------------
// 4. Misbehaving plugins: the `on_error` reply, and the relay keeps serving.

const TEMPFAIL: &str = "451 4.3.0 Temporary policy failure, try again later\r\n";
const REJECT: &str = "550 5.7.0 Rejected by policy\r\n";

/// One full transaction on a fresh connection; every step must succeed.
fn good_transaction(port: u16, tag: &str) -> Result<(), String> {
    let mut c = Raw::connect(port);
    for (line, expect) in [
        ("EHLO other.test".to_string(), "250"),
        (format!("MAIL FROM:<{tag}@example.org>"), "250"),
        (format!("RCPT TO:<{tag}@example.com>"), "250"),
        ("DATA".to_string(), "354"),
        (format!("Subject: {tag}\r\n\r\n{tag}\r\n."), "250"),
        ("QUIT".to_string(), "221"),
    ] {
        c.send(format!("{line}\r\n").as_bytes());
        let reply = c.reply();
        if !reply.starts_with(expect) {
            return Err(format!("{line:?}: expected {expect}, got {reply:?}"));
        }
    }
    Ok(())
}

/// Test plugin `kind` fails its `rcpt` hook for `bad@...`. The client sees the `on_error`
/// reply and goes on; a session running meanwhile and one after it never take the bad path
/// and see nothing; the failure is logged with the plugin's name and kind. With `spins`, the
/// failing call must take at least that long and the session beside it must finish first:
/// a plugin burning its CPU budget does not hold up other sessions.
fn misbehaving(kind: &str, on_error: &str, limits: &str, logged: &str, spins: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"));
    let name = format!("misbehaving-{kind}");
    let (mut relay, port) = start_relay(
        dir.path(),
        &sink,
        &plugin(kind, &name, on_error, &format!("limits = {limits}")),
    );

    let mut c = Raw::connect(port);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<client@example.org>", "250");
    c.cmd("RCPT TO:<good@example.com>", "250");
    c.send(b"RCPT TO:<bad@example.com>\r\n");
    let started = Instant::now();
    let meanwhile =
        std::thread::spawn(move || good_transaction(port, "meanwhile").map(|()| Instant::now()));
    let reply = c.reply();
    let replied = Instant::now();
    let took = replied - started;
    match on_error {
        "tempfail" => assert_eq!(reply, TEMPFAIL),
        "reject" => assert_eq!(reply, REJECT),
        "accept" => assert!(reply.starts_with("250 "), "{reply:?}"),
        other => panic!("on_error {other}"),
    }
    assert!(took < Duration::from_secs(10), "the reply took {took:?}");
    let meanwhile_done = meanwhile
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("a session beside the failing plugin: {e}"));
    if let Some(spins) = spins {
        assert!(took >= spins, "the plugin spun for {took:?}");
        assert!(
            meanwhile_done < replied,
            "the session beside the spinning plugin finished first"
        );
    }

    // The session goes on with a fresh instance of the plugin.
    c.cmd("RCPT TO:<good2@example.com>", "250");
    c.cmd("DATA", "354");
    c.cmd("Subject: after a failure\r\n\r\nstill here\r\n.", "250");
    c.cmd("QUIT", "221");
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay is still running"
    );
    good_transaction(port, "after").unwrap_or_else(|e| panic!("the next session: {e}"));

    let mut got = sink.wait_for(3);
    got.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    let rcpts: Vec<_> = got.iter().map(|m| m.rcpt_tos.join(",")).collect();
    let failed_path = if on_error == "accept" {
        "good@example.com,bad@example.com,good2@example.com"
    } else {
        "good@example.com,good2@example.com"
    };
    assert_eq!(
        rcpts,
        ["after@example.com", failed_path, "meanwhile@example.com"]
    );

    wait_for("the failure in the log", Duration::from_secs(10), || {
        relay.log().contains("plugin failed")
    });
    let log = relay.log();
    let line = log
        .lines()
        .find(|l| l.contains("plugin failed"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&format!("plugin={name}")) && line.contains("hook=rcpt"),
        "{line}"
    );
    assert!(line.contains(logged), "expected {logged:?} in {line}");
    assert_eq!(
        log.matches("plugin failed").count(),
        1,
        "one failure, one log line:\n{log}"
    );
    assert!(relay.terminate().success(), "a clean shutdown after it");
}

/// Tight limits, so a failure is quick.
const TIGHT: &str = "{ cpu_ms = 50, wall_ms = 1000, memory_mb = 16, capability_calls = 100 }";

#[test]
fn infinite_loop_tempfails() {
    // A long CPU budget: the session beside it runs while the plugin spins.
    misbehaving(
        "loop",
        "tempfail",
        "{ cpu_ms = 1000, wall_ms = 5000 }",
        "CPU budget exhausted",
        Some(Duration::from_millis(800)),
    );
}

#[test]
fn infinite_loop_with_on_error_accept_lets_the_mail_through() {
    misbehaving("loop", "accept", TIGHT, "CPU budget exhausted", None);
}

#[test]
fn memory_bomb_tempfails() {
    misbehaving("membomb", "tempfail", TIGHT, "memory limit exceeded", None);
}

#[test]
fn memory_bomb_with_on_error_reject_is_refused() {
    misbehaving("membomb", "reject", TIGHT, "memory limit exceeded", None);
}

#[test]
fn trap_tempfails() {
    misbehaving("trap", "tempfail", TIGHT, "trap:", None);
}

#[test]
fn trap_with_on_error_reject_is_refused() {
    misbehaving("trap", "reject", TIGHT, "trap:", None);
}

#[test]
fn enormous_reply_tempfails() {
    misbehaving("huge", "tempfail", TIGHT, "malformed return", None);
}

#[test]
fn enormous_reply_with_on_error_accept_lets_the_mail_through() {
    misbehaving("huge", "accept", TIGHT, "malformed return", None);
}

#[test]
fn capability_spam_tempfails() {
    misbehaving(
        "capspam",
        "tempfail",
        TIGHT,
        "capability call budget exhausted",
        None,
    );
}

#[test]
fn capability_spam_with_on_error_reject_is_refused() {
    misbehaving(
        "capspam",
        "reject",
        TIGHT,
        "capability call budget exhausted",
        None,
    );
}

// ---------------------------------------------------------------------------------------
// 5. A plugin swapped by SIGHUP under load.

const CLIENTS: usize = 4;
const BLOCKED: &str = "stop@example.com";
const BLOCKED_REPLY: &str = "550 5.1.1 mailbox unavailable\r\n";

/// What one transaction saw.
#[derive(Debug)]
struct Sent {
    /// When its session's client started to connect: later than the reload means the
    /// relay accepted it with the new chain.
    connecting: Instant,
    /// When its session got the greeting: earlier than the SIGHUP means the relay accepted
    /// it with the old chain.
    greeted: Instant,
    session: String,
    /// The reply to `RCPT TO:<stop@...>`.
    blocked_reply: String,
    subject: String,
}

/// One transaction to `<tag>@example.com` and `stop@example.com` on an open session; the
/// reply to `stop@` is either `250` or the new chain's refusal, every other step succeeds.
fn load_transaction(c: &mut Raw, session: &str, tag: &str) -> Result<String, String> {
    let mut step = |line: String, expect: &str| -> Result<String, String> {
        c.send(format!("{line}\r\n").as_bytes());
        let reply = c.reply();
        if reply.starts_with(expect) {
            Ok(reply)
        } else {
            Err(format!(
                "{session} {line:?}: expected {expect}, got {reply:?}"
            ))
        }
    };
    step(format!("MAIL FROM:<{tag}@example.org>"), "250")?;
    step(format!("RCPT TO:<{tag}@example.com>"), "250")?;
    let blocked_reply = step(format!("RCPT TO:<{BLOCKED}>"), "")?;
    if !blocked_reply.starts_with("250 ") && blocked_reply != BLOCKED_REPLY {
        return Err(format!("{session} {tag}: unexpected {blocked_reply:?}"));
    }
    step("DATA".into(), "354")?;
    step(format!("Subject: {tag}\r\n\r\nload {tag}\r\n."), "250")?;
    Ok(blocked_reply)
}

/// One client: sessions of up to three transactions each, until `stop` or its bound. Any
/// unexpected reply ends it with an error.
fn load_client(port: u16, id: usize, stop: Arc<AtomicBool>) -> Result<Vec<Sent>, String> {
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    'sessions: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 2_000 {
        let connecting = Instant::now();
        let mut c = Raw::connect(port);
        let greeted = Instant::now();
        let session = format!("c{id}-s{n}");
        c.cmd("EHLO load.test", "250");
        for _ in 0..3 {
            n += 1;
            let tag = format!("c{id}-{n}");
            let blocked_reply = load_transaction(&mut c, &session, &tag)?;
            sent.push(Sent {
                connecting,
                greeted,
                session: session.clone(),
                blocked_reply,
                subject: tag,
            });
            if stop.load(Ordering::Relaxed) {
                break 'sessions;
            }
        }
        c.cmd("QUIT", "221");
    }
    Ok(sent)
}

#[test]
fn sighup_swaps_a_plugin_under_load_without_failing_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"));
    let before = plugin("noop", "swapped", "tempfail", "");
    let after = plugin(
        "example",
        "swapped",
        "tempfail",
        &format!("config = {{ blocked = \"nobody@example.org, {BLOCKED}\" }}"),
    );
    let (mut relay, port) = start_relay(dir.path(), &sink, &before);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let stop = stop.clone();
            std::thread::spawn(move || load_client(port, id, stop))
        })
        .collect();
    // A session that stays open across the reload.
    let connecting = Instant::now();
    let mut in_flight = Raw::connect(port);
    let greeted = Instant::now();
    in_flight.cmd("EHLO in-flight.test", "250");
    let mut sent = vec![Sent {
        connecting,
        greeted,
        session: "in-flight".into(),
        blocked_reply: load_transaction(&mut in_flight, "in-flight", "in-flight-1").unwrap(),
        subject: "in-flight-1".into(),
    }];

    std::thread::sleep(Duration::from_millis(700));
    write_config(&relay.config, &config_text(port, sink.port, &after));
    let hup = Instant::now();
    signal(&relay, "HUP");
    wait_for("the reload", Duration::from_secs(20), || {
        relay.log().contains("configuration reloaded")
    });
    let reloaded = Instant::now();
    sent.push(Sent {
        connecting,
        greeted,
        session: "in-flight".into(),
        blocked_reply: load_transaction(&mut in_flight, "in-flight", "in-flight-2").unwrap(),
        subject: "in-flight-2".into(),
    });
    in_flight.cmd("QUIT", "221");
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);

    for (id, c) in clients.into_iter().enumerate() {
        match c.join().unwrap() {
            Ok(s) => sent.extend(s),
            Err(e) => panic!("client {id} failed: {e}"),
        }
    }
    let old: Vec<_> = sent.iter().filter(|s| s.greeted < hup).collect();
    let new: Vec<_> = sent.iter().filter(|s| s.connecting > reloaded).collect();
    assert!(
        !old.is_empty() && !new.is_empty(),
        "load before and after the reload ({} before, {} after)",
        old.len(),
        new.len()
    );
    for s in &old {
        assert!(
            s.blocked_reply.starts_with("250 "),
            "sessions from before the SIGHUP keep the old chain, also after the reload: {s:?}"
        );
    }
    for s in &new {
        assert_eq!(
            s.blocked_reply, BLOCKED_REPLY,
            "new sessions see the new chain: {s:?}"
        );
    }
    // A session never switches chains half way.
    let mut per_session: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for s in &sent {
        per_session
            .entry(&s.session)
            .or_default()
            .push(s.blocked_reply == BLOCKED_REPLY);
    }
    for (session, replies) in &per_session {
        assert!(
            replies.iter().all(|r| *r == replies[0]),
            "{session} changed chains mid-session: {replies:?}"
        );
    }

    // Every acknowledged message arrives; the new chain's data hook stamped the new ones.
    let got = sink.wait_for(sent.len());
    assert_eq!(
        got.len(),
        sent.len(),
        "as many delivered as acknowledged: {:?}",
        got.iter().map(|m| m.rcpt_tos.clone()).collect::<Vec<_>>()
    );
    let by_subject: BTreeMap<String, &Delivered> = got
        .iter()
        .map(|m| {
            let text = m.text();
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_string();
            (subject, m)
        })
        .collect();
    for s in &sent {
        let m = by_subject
            .get(&s.subject)
            .unwrap_or_else(|| panic!("{} was acknowledged but not delivered", s.subject));
        let refused = s.blocked_reply == BLOCKED_REPLY;
        assert_eq!(m.rcpt_tos.contains(&BLOCKED.to_string()), !refused, "{s:?}");
        assert_eq!(
            m.text()
                .contains("\r\nX-Example-Plugin: seen 1 recipients\r\n"),
            refused,
            "the data hook of the chain that refused stop@ stamped the message: {s:?}"
        );
    }
    assert!(!relay.log().contains("plugin failed"));
    relay.terminate();
}

#[test]
fn sighup_during_startup_reloads_instead_of_killing_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"));
    let port = free_port();
    let path = dir.path().join("relay.toml");
    let chain = plugin(
        "example",
        "example",
        "tempfail",
        &format!("config = {{ blocked = \"{BLOCKED}\" }}"),
    );
    write_config(&path, &config_text(port, sink.port, &chain));
    let stderr_log = path.with_extension("log");
    let child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .env("WASMRELAY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_log).unwrap())
        .spawn()
        .unwrap();
    let mut relay = Relay(RelayProcess {
        child,
        config: path,
        stderr_log,
    });
    // A supervisor may ask for a reload at any time, also while the relay still compiles
    // its plugins (an empty cache: that takes a while).
    wait_for("the spool to open", Duration::from_secs(30), || {
        relay.log().contains("spool open")
    });
    signal(&relay, "HUP");
    wait_for("the relay to listen", Duration::from_secs(30), || {
        if let Some(status) = relay.child.try_wait().unwrap() {
            panic!("the relay died of a SIGHUP during startup: {status}");
        }
        relay.log().contains(&listening(port))
    });
    wait_for("the reload", Duration::from_secs(30), || {
        relay.log().contains("configuration reloaded")
    });
    let mut c = Raw::connect(port);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<x@example.org>", "250");
    assert_eq!(c.cmd(&format!("RCPT TO:<{BLOCKED}>"), "550"), BLOCKED_REPLY);
    c.cmd("QUIT", "221");
    relay.terminate();
}

#[test]
fn a_bad_config_on_sighup_is_refused_and_the_running_chain_stays() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"));
    let chain = plugin(
        "example",
        "example",
        "tempfail",
        &format!("config = {{ blocked = \"{BLOCKED}\" }}"),
    );
    let (mut relay, port) = start_relay(dir.path(), &sink, &chain);
    let bad = "[[plugins]]\npath = \"/nonexistent/plugin.wasm\"\nname = \"missing\"\n";
    write_config(&relay.config, &config_text(port, sink.port, bad));
    signal(&relay, "HUP");
    wait_for("the refusal", Duration::from_secs(20), || {
        relay.log().contains("reload refused")
    });
    let mut c = Raw::connect(port);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<x@example.org>", "250");
    assert_eq!(c.cmd(&format!("RCPT TO:<{BLOCKED}>"), "550"), BLOCKED_REPLY);
    c.cmd("RCPT TO:<ok@example.com>", "250");
    c.cmd("QUIT", "221");
    let log = relay.log();
    assert!(
        log.contains("plugins[0].path: no such file: /nonexistent/plugin.wasm"),
        "the refusal names the key:\n{log}"
    );
    relay.terminate();
}
