//! Per-recipient copies and routing the plugins name, on the real binary: smtplib in front,
//! aiosmtpd behind, the `tracker-lite` test plugin in the chain, a dnslib zone on loopback
//! for the DKIM key that dkimpy checks.
//!
//! - copies: three tracked recipients arrive one per transaction, each with its own token
//!   and link, each DKIM signature verifies; the untracked recipients share a transaction
//!   and get the spooled bytes;
//! - routes: an annotated message goes to the pool's server; hold and drop reach
//!   `delivery-result` and `queue show`; a held recipient waits for `queue flush`;
//! - retries: after a 451 the copy is rendered again, with the same token.
//!
//! Run: `cargo test -p wasmrelay --test delivery_copies`

mod copies;
mod routes;

use std::path::Path;
use std::time::Duration;

use wasmrelay_test_support::{
    assert_success, python, queued_id, test_plugin, wait_for, Aiosmtpd, Delivered, Downstream,
    NO_DNS,
};

/// How long a test waits for a transaction at a server or a state in the queue.
const WAIT: Duration = Duration::from_secs(30);

/// The secret in the plugin's config; tokens depend on it.
const SECRET: &str = "s3cr3t";

/// The token `tracker-lite` renders for `rcpt` of message `queue_id` (FNV-1a 64).
fn token(queue_id: &str, rcpt: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [SECRET, "\0", queue_id, "\0", rcpt] {
        for &b in part.as_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The values of header `name` in what `m` received (unfolded).
fn header(m: &Delivered, name: &str) -> Vec<String> {
    let text = m.text();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .collect()
}

/// The client port of the connection that carried `m`, as aiosmtpd recorded it.
fn peer_port(m: &Delivered) -> u64 {
    m.meta["peer_port"]
        .as_u64()
        .expect("aiosmtpd records peer_port")
}

/// What a relay under test is configured with.
struct Setup<'a> {
    sink: &'a Aiosmtpd,
    /// `[[delivery.pools]]` named `bulk` goes here.
    bulk: Option<&'a Aiosmtpd>,
    /// `retry.initial_interval`.
    retry: &'a str,
    /// Extra `[delivery]` tables (`[[delivery.dkim]]`).
    delivery: String,
}

fn config_text(s: &Setup<'_>) -> String {
    let bulk = s.bulk.map_or(String::new(), |b| {
        format!(
            "[[delivery.pools]]\nname = \"bulk\"\nmax_connections = 1\n\
             hosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n",
            b.port()
        )
    });
    format!(
        r#"hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:0"
role = "relay"

[relay]
local_domains = ["example.com"]
relay_networks = ["127.0.0.0/8"]

[spool]
dir = "spool"

[plugin_runtime]
cache_dir = "cache"

[delivery.resolver]
nameservers = ["{no_dns}"]

{delivery}

[[delivery.routes]]
domains = ["*"]
hosts = [{{ host = "127.0.0.1", port = {sink}, tls = "none" }}]

{bulk}
[delivery.retry]
initial_interval = {retry:?}
max_interval = {retry:?}
jitter = 0.0

[[plugins]]
path = {plugin:?}
name = "tracker"
on_error = "tempfail"
config = {{ secret = {SECRET:?} }}
"#,
        delivery = s.delivery,
        sink = s.sink.port(),
        retry = s.retry,
        no_dns = NO_DNS,
        plugin = test_plugin("tracker-lite").display().to_string(),
    )
}

/// The relay binary under test, with the tracker plugin in its chain.
struct Relay(wasmrelay_test_support::Relay);

impl Relay {
    fn start(dir: &Path, setup: &Setup<'_>) -> Relay {
        Relay(wasmrelay_test_support::Relay::start(
            dir,
            &config_text(setup),
        ))
    }

    /// Sends `message` with smtplib; returns the queue id from the `250` reply.
    fn send(&self, sender: &str, rcpts: &[&str], message: &str) -> String {
        const SEND: &str = r#"
import smtplib, sys
port, sender, rcpts, msg = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    s.ehlo("client.test")
    s.mail(sender)
    for r in rcpts:
        code, text = s.rcpt(r)
        assert code == 250, (r, code, text)
    code, text = s.data(msg.encode())
    assert code == 250, (code, text)
    print(text.decode())
"#;
        let out = python(
            SEND,
            &[
                &self.0.addr().port().to_string(),
                sender,
                &rcpts.join(","),
                message,
            ],
        );
        assert_success("smtplib", &out);
        queued_id(&String::from_utf8(out.stdout).unwrap())
    }

    /// `wasmrelay queue --config relay.toml ARGS...`; its standard output.
    fn queue(&self, args: &[&str]) -> String {
        let out = self.0.queue(args);
        assert_success(&format!("queue {args:?}"), &out);
        String::from_utf8(out.stdout).unwrap()
    }

    /// The spooled envelope of `id`, as `queue show` prints it.
    fn show(&self, id: &str) -> serde_json::Value {
        let text = self.queue(&["show", id]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("queue show: {e}: {text}"))
    }

    /// Waits until recipient `rcpt` of `id` has a `last_reply` containing `needle`.
    fn wait_reply(&self, id: &str, rcpt: &str, needle: &str) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        wait_for(&format!("{rcpt} of {id} with {needle:?}"), WAIT, || {
            last = self.show(id);
            last["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["address"] == rcpt)
                .is_some_and(|r| {
                    r["last_reply"]
                        .as_str()
                        .is_some_and(|reply| reply.contains(needle))
                })
        });
        last
    }

    /// The reply text `tracker-lite` gives a probe to `stats.test`: its counters.
    fn stats(&self) -> String {
        let id = self.send(
            "probe@example.org",
            &["probe@stats.test"],
            "Subject: stats\r\n\r\nprobe\r\n",
        );
        let env = self.wait_reply(&id, "probe@stats.test", "stats ");
        env["recipients"][0]["last_reply"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The number after `name=` in a stats line.
fn stat(stats: &str, name: &str) -> i64 {
    let start = stats
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
        + name.len()
        + 1;
    let digits: String = stats[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().unwrap()
}
