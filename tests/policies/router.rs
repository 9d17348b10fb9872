//! The `router` plugin end to end: the relay binary with `builtin = "router"`, Python's
//! smtplib in front, aiosmtpd servers behind, a dnslib zone on loopback for MX.
//!
//! - three streams (transactional by sender domain, newsletters by `X-Stream` or
//!   `Precedence: bulk`, everything else by MX) reach three different servers;
//! - a held message shows its reason in `queue show` and leaves on `queue flush` once the
//!   rule changed (config rewritten, SIGHUP);
//! - a suppressed recipient and one no rule can serve are refused at RCPT;
//! - `wasmrelay plugin test builtin:router` prints the transcript in plugins/router.
//!
//! Run: `cargo test -p wasmrelay --test policies router`

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, binary, smtplib_send, wait_for, Aiosmtpd, ClosedPort, Delivered, DnsZone,
    Downstream, Relay, NO_DNS,
};

/// How long a test waits for a message at a server or a state in the queue.
const WAIT: Duration = Duration::from_secs(30);

/// `[[delivery.pools]]` entry `name` delivering to `server`.
fn pool(name: &str, server: &Aiosmtpd, max_connections: usize) -> String {
    format!(
        "[[delivery.pools]]\nname = {name:?}\nmax_connections = {max_connections}\n\
         hosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n\n",
        server.port()
    )
}

/// The router in the chain with `config` (TOML lines of its `[plugins.config]` table).
fn router(config: &str) -> String {
    format!("[[plugins]]\nbuiltin = \"router\"\n[plugins.config]\n{config}\n")
}

/// The header fields of a delivered message, unfolded, as (lower-case name, value).
fn headers(m: &Delivered) -> Vec<(String, String)> {
    let text = m.text();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    head.replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn header(m: &Delivered, name: &str) -> Option<String> {
    headers(m)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// The subjects of what `server` received, sorted.
fn subjects(got: &[Delivered]) -> Vec<String> {
    let mut s: Vec<String> = got
        .iter()
        .map(|m| header(m, "subject").unwrap_or_default())
        .collect();
    s.sort();
    s
}

#[test]
fn three_streams_reach_three_servers() {
    let dir = tempfile::tempdir().unwrap();
    let transactional = Aiosmtpd::start();
    let newsletters = Aiosmtpd::start();
    let mx = Aiosmtpd::start();
    let zone = DnsZone::start(serde_json::json!({
        "example.net": [["MX", "10 mx.example.net"]],
        "mx.example.net": [["A", "127.0.0.1"]],
    }));
    // The relay's own route for every domain goes to a port that refuses: mail that did
    // not follow a rule would stay queued.
    let closed = ClosedPort::new();
    let config = loopback_config(
        closed.addr(),
        &format!(
            "[delivery]\nmx_port = {mx_port}\n\n{transactional}{newsletters}{router}",
            mx_port = mx.port(),
            transactional = pool("transactional", &transactional, 4),
            newsletters = pool("newsletters", &newsletters, 1),
            router = router(
                r#"remove_headers = ["X-Stream"]
classify = [
  { header = "X-Stream" },
  { header = "Precedence", equals = ["bulk", "list"], stream = "newsletter" },
]
routes = [
  { sender_domains = ["notify.example.com"], pool = "transactional" },
  { streams = ["newsletter"], pool = "newsletters" },
  { mx = "none" },
]"#
            ),
        ),
    )
    .replace(NO_DNS, &zone.addr().to_string());
    let relay = Relay::start(dir.path(), &config);
    let addr = relay.addr();
    let send = |from: &str, to: &str, message: &str| {
        assert_eq!(smtplib_send(addr, from, &[to], message), "[]");
    };
    // A password reset carries X-Stream too: the sender rule comes first.
    send(
        "no-reply@notify.example.com",
        "alice@example.net",
        "X-Stream: newsletter\r\nSubject: reset\r\n\r\nYour link.\r\n",
    );
    send(
        "news@example.org",
        "bob@example.net",
        "X-Stream: Newsletter\r\nSubject: december\r\n\r\nNews.\r\n",
    );
    send(
        "news@example.org",
        "carol@example.net",
        "Precedence: bulk\r\nSubject: digest\r\n\r\nDigest.\r\n",
    );
    send(
        "billing@example.org",
        "dave@example.net",
        "Subject: invoice\r\n\r\nInvoice.\r\n",
    );

    let got_transactional = transactional.wait_for(1, WAIT);
    let got_newsletters = newsletters.wait_for(2, WAIT);
    let got_mx = mx.wait_for(1, WAIT);
    assert_eq!(subjects(&got_transactional), ["reset"]);
    assert_eq!(subjects(&got_newsletters), ["december", "digest"]);
    assert_eq!(subjects(&got_mx), ["invoice"]);
    assert_eq!(got_transactional[0].rcpt_tos, ["alice@example.net"]);
    assert_eq!(got_mx[0].rcpt_tos, ["dave@example.net"]);
    // X-Stream is internal: removed from every message; Precedence is public and stays.
    for m in got_transactional.iter().chain(&got_newsletters) {
        assert_eq!(header(m, "x-stream"), None, "{}", m.text());
    }
    let digest = got_newsletters
        .iter()
        .find(|m| header(m, "subject").as_deref() == Some("digest"))
        .unwrap();
    assert_eq!(header(digest, "precedence").as_deref(), Some("bulk"));
    wait_for("an empty queue", WAIT, || relay.queue_is_empty());
}

/// The config of the hold test: every domain goes to `sink` unless a rule says otherwise.
fn hold_config(sink: &Aiosmtpd, reviewed: &Aiosmtpd, review_rule: &str) -> String {
    let sink = SocketAddr::from(([127, 0, 0, 1], sink.port()));
    loopback_config(
        sink,
        &format!(
            "{pool}{router}",
            pool = pool("reviewed", reviewed, 1),
            router = router(&format!(
                "routes = [\n  {review_rule},\n  {{ relay = true }},\n]"
            )),
        ),
    )
}

/// `queue show ID` as JSON.
fn show(relay: &Relay, id: &str) -> serde_json::Value {
    let out = relay.queue(&["show", id]);
    assert_success("queue show", &out);
    serde_json::from_slice(&out.stdout).expect("queue show prints JSON")
}

#[test]
fn a_held_message_leaves_on_flush_after_the_rule_changes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let reviewed = Aiosmtpd::start();
    let relay = Relay::start(
        dir.path(),
        &hold_config(
            &sink,
            &reviewed,
            r#"{ recipient_domains = ["review.example.net"], hold = "awaiting legal review" }"#,
        ),
    );
    let addr = relay.addr();
    assert_eq!(
        smtplib_send(
            addr,
            "ops@example.org",
            &["x@review.example.net"],
            "Subject: contract\r\n\r\nPlease review.\r\n"
        ),
        "[]"
    );
    let id = relay.queued()[0].id.to_string();
    let mut env = serde_json::Value::Null;
    wait_for("the hold reason in queue show", WAIT, || {
        env = show(&relay, &id);
        env["recipients"][0]["last_reply"] == "held: awaiting legal review"
    });
    assert_eq!(env["recipients"][0]["status"], "pending", "{env}");

    // Other mail still flows while the message is held.
    assert_eq!(
        smtplib_send(
            addr,
            "ops@example.org",
            &["y@example.net"],
            "Subject: other\r\n\r\n.\r\n"
        ),
        "[]"
    );
    assert_eq!(subjects(&sink.wait_for(1, WAIT)), ["other"]);

    // The rule changes: reviewed mail goes through its own pool. The reload alone does not
    // release the held recipient; `queue flush` does, and the new rule routes it.
    relay.write_config(&hold_config(
        &sink,
        &reviewed,
        r#"{ recipient_domains = ["review.example.net"], pool = "reviewed" }"#,
    ));
    relay.sighup();
    relay.wait_log("configuration reloaded", WAIT);
    assert_eq!(
        show(&relay, &id)["recipients"][0]["last_reply"],
        "held: awaiting legal review"
    );
    let out = relay.queue(&["flush", &id]);
    assert_success("queue flush", &out);
    let got = reviewed.wait_for(1, WAIT);
    assert_eq!(subjects(&got), ["contract"]);
    assert_eq!(got[0].rcpt_tos, ["x@review.example.net"]);
    wait_for("an empty queue", WAIT, || relay.queue_is_empty());
    assert_eq!(
        sink.messages().len(),
        1,
        "the held message went to the pool only"
    );
}

/// A relay whose router has `router_config`, with the list `suppression` declared for it
/// and `member` added to it as an operator does; the sink it delivers to. Bind the
/// directory too: the relay's spool lives in it.
fn suppression_relay(router_config: &str, member: &str) -> (tempfile::TempDir, Aiosmtpd, Relay) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let config = loopback_config(
        sink.addr(),
        &format!(
            "[[lists]]\nname = \"suppression\"\nreaders = [\"router\"]\n\n{}",
            router(router_config)
        ),
    );
    let relay = Relay::start(dir.path(), &config);
    let out = Command::new(binary())
        .args(["list", "--config"])
        .arg(relay.config_path())
        .args(["add", "suppression", member])
        .output()
        .expect("run wasmrelay list add");
    assert_success("list add", &out);
    (dir, sink, relay)
}

/// With suppression alone at RCPT the router declares its list (WIT 0.2.7), so the relay
/// calls it only for recipients on the list: those are still refused, in any case, and the
/// others still go.
#[test]
fn with_suppression_alone_listed_recipients_are_still_refused() {
    let (_dir, sink, relay) = suppression_relay(
        r#"suppression = { list = "suppression" }"#,
        "Gone@Example.net",
    );
    let refused = smtplib_send(
        relay.addr(),
        "news@example.org",
        &["<GONE@example.NET>", "reader@example.net"],
        "Subject: news\r\n\r\nNews.\r\n",
    );
    assert_eq!(
        refused,
        "[('<GONE@example.NET>', (550, b'5.7.1 Recipient is on the suppression list \
         (unsubscribed or repeatedly bounced)'))]"
    );
    let got = sink.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_tos, ["reader@example.net"]);
}

#[test]
fn suppressed_and_unroutable_recipients_are_refused_at_rcpt() {
    // The member as an operator pastes it: the CLI stores the form the plugin looks up.
    let (_dir, sink, relay) = suppression_relay(
        r#"unmatched = "refuse"
routes = [
  { sender_domains = ["example.org", "notify.example.com"], relay = true },
  { recipient_domains = ["example.com"], relay = true },
]
suppression = { list = "suppression", exempt_sender_domains = ["notify.example.com"] }"#,
        "<Gone@Example.net>",
    );
    let addr = relay.addr();

    // Suppressed, whatever the case of the address; the others on the message still go.
    let refused = smtplib_send(
        addr,
        "news@example.org",
        &["Gone@Example.NET", "reader@example.net"],
        "Subject: news\r\n\r\nNews.\r\n",
    );
    assert_eq!(
        refused,
        "[('Gone@Example.NET', (550, b'5.7.1 Recipient is on the suppression list \
         (unsubscribed or repeatedly bounced)'))]"
    );
    // A sender no rule serves may still write to the local domain, and nowhere else.
    let refused = smtplib_send(
        addr,
        "someone@stranger.test",
        &["user@example.com", "user@example.net"],
        "Subject: stranger\r\n\r\nHello.\r\n",
    );
    assert_eq!(
        refused,
        "[('user@example.net', (550, b'5.7.1 Recipient not served here: no routing rule \
         for this sender and recipient'))]"
    );
    // Transactional mail is exempt from suppression.
    assert_eq!(
        smtplib_send(
            addr,
            "no-reply@notify.example.com",
            &["gone@example.net"],
            "Subject: reset\r\n\r\nYour link.\r\n"
        ),
        "[]"
    );
    let got = sink.wait_for(3, WAIT);
    let mut delivered: Vec<(String, Vec<String>)> = got
        .iter()
        .map(|m| (header(m, "subject").unwrap_or_default(), m.rcpt_tos.clone()))
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            ("news".to_string(), vec!["reader@example.net".to_string()]),
            ("reset".to_string(), vec!["gone@example.net".to_string()]),
            ("stranger".to_string(), vec!["user@example.com".to_string()]),
        ]
    );
}

/// plugins/router/session.txt, run as its header says, prints this. Two instances: the one
/// that answered `hooks()` at load, and one pooled instance that served every call of both
/// sessions and the deliveries, since the router keeps no session memory.
const SESSION_OUTPUT: &str = "\
plugin router handles: rcpt, data, route
connect 192.0.2.10 -> continue
helo app.example.org -> continue
auth app -> continue
mail <news@example.org> -> continue
rcpt <reader@example.net> -> continue
rcpt <Gone@Example.NET> -> reject 550 5.7.1 Recipient is on the suppression list (unsubscribed or repeatedly bounced)
data (64 bytes, edited) -> continue
  = stream: newsletter
  | Subject: December news
  | (16 body bytes)
route example.net -> pool newsletters
mail <news@example.org> -> continue
rcpt <reader@example.net> -> continue
data (46 bytes) -> continue
  = stream: newsletter
route example.net -> pool newsletters
mail <billing@example.org> -> continue
rcpt <customer@example.net> -> continue
rcpt <someone@quarantine.example.net> -> continue
rcpt <x@trap.example.net> -> continue
data (30 bytes) -> continue
route example.net -> mx tls=Opportunistic
route quarantine.example.net -> hold (awaiting review)
route trap.example.net -> drop (spam trap)
mail <no-reply@notify.example.com> -> continue
rcpt <gone@example.net> -> continue
data (72 bytes, edited) -> continue
  = stream: newsletter
  | Subject: Reset your password
  | (18 body bytes)
route example.net -> pool transactional
closed -> done
connect 198.51.100.7 -> continue
helo mx.example.org -> continue
mail <someone@example.org> -> continue
rcpt <user@example.com> -> continue
rcpt <user@elsewhere.example> -> reject 550 5.7.1 Recipient not served here: no routing rule for this sender and recipient
rcpt <postmaster@elsewhere.example> -> continue
data (42 bytes, edited) -> continue
  | Subject: Hi
  | (5 body bytes)
route example.com -> continue (relay routing)
route elsewhere.example -> hold (no routing rule matches this message)
closed -> done
done: 35 hooks, 2 refusals, 0 plugin errors, 2 instances
";

#[test]
fn the_documented_transcript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(binary())
        .current_dir(root)
        .args(["plugin", "test", "builtin:router"])
        .args(["--config", "plugins/router/session.toml"])
        .args(["--transcript", "plugins/router/session.txt"])
        .output()
        .expect("run wasmrelay plugin test");
    assert_success("plugin test", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), SESSION_OUTPUT);
}
