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

#[path = "../common/mod.rs"]
mod common;
mod copies;
mod routes;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wasmrelay::plugins::test_plugins::component;

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

fn support(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script)
}

/// A Python helper from `host/tests/support` that prints `PORT <n>` once it listens;
/// killed on drop.
struct Helper {
    child: Child,
    port: u16,
}

impl Helper {
    fn start(script: &str, args: &[&str]) -> Helper {
        let mut child = Command::new("python3")
            .arg(support(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
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
            panic!("{script} did not start: {line:?}");
        };
        Helper { child, port }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// One transaction as the downstream server received it.
#[derive(Debug)]
struct Delivered {
    rcpt_tos: Vec<String>,
    peer_port: u64,
    bytes: Vec<u8>,
}

impl Delivered {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The values of header `name` (unfolded).
    fn header(&self, name: &str) -> Vec<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let prefix = format!("{}:", name.to_ascii_lowercase());
        head.replace("\r\n ", " ")
            .replace("\r\n\t", " ")
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .collect()
    }
}

/// The aiosmtpd sink.
struct Sink {
    helper: Helper,
    dir: PathBuf,
}

impl Sink {
    fn start(dir: &Path, extra: &[&str]) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let mut args = vec![dir.to_str().unwrap(), "--host", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(extra);
        Sink {
            helper: Helper::start("smtp_sink.py", &args),
            dir: dir.to_path_buf(),
        }
    }

    fn port(&self) -> u16 {
        self.helper.port
    }

    /// Every transaction received so far, in arrival order.
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
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_string())
                        .collect(),
                    peer_port: meta["peer_port"].as_u64().unwrap(),
                    bytes: std::fs::read(json.with_extension("eml")).unwrap(),
                }
            })
            .collect()
    }

    fn wait_for(&self, n: usize) -> Vec<Delivered> {
        wait_for(
            &format!("{n} transaction(s) at the sink"),
            Duration::from_secs(30),
            || self.messages().len() >= n,
        );
        self.messages()
    }
}

/// What a relay under test is configured with.
struct Setup<'a> {
    sink: &'a Sink,
    /// `[[delivery.pools]]` named `bulk` goes here.
    bulk: Option<&'a Sink>,
    /// `retry.initial_interval`.
    retry: &'a str,
    /// Extra `[delivery]` tables (`[[delivery.dkim]]`).
    delivery: String,
}

fn config_text(port: u16, s: &Setup<'_>) -> String {
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
address = "127.0.0.1:{port}"
role = "relay"

[relay]
local_domains = ["example.com"]
relay_networks = ["127.0.0.0/8"]

[spool]
dir = "spool"

[plugin_runtime]
cache_dir = "cache"

[delivery.resolver]
nameservers = ["127.0.0.1:9"]

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
        plugin = component("tracker-lite").display().to_string(),
    )
}

/// The relay process; a failing test prints its log.
struct Relay {
    process: RelayProcess,
    port: u16,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- relay log ---\n{}--- end ---", self.process.log());
        }
    }
}

impl Relay {
    /// Starts the relay on a free port; only its own `listening` line proves the port is
    /// ours (another process may take a free port first), else it tries another.
    fn start(dir: &Path, setup: &Setup<'_>) -> Relay {
        let path = dir.join("relay.toml");
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(&path, config_text(port, setup)).unwrap();
            std::fs::remove_file(path.with_extension("log")).ok();
            let process = RelayProcess::start(&path, &[port]);
            let mut relay = Relay { process, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            let listening = format!("listening address=127.0.0.1:{port} ");
            while relay.process.child.try_wait().unwrap().is_none() {
                if relay.process.log().contains(&listening) {
                    return relay;
                }
                assert!(Instant::now() < deadline, "the relay does not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no port for the relay in five tries");
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
            &[&self.port.to_string(), sender, &rcpts.join(","), message],
        );
        assert_success("smtplib", &out);
        queued_id(&String::from_utf8(out.stdout).unwrap())
    }

    /// `wasmrelay queue --config relay.toml ARGS...`; its standard output.
    fn queue(&self, args: &[&str]) -> String {
        let out = Command::new(binary())
            .args(["queue", "--config"])
            .arg(&self.process.config)
            .args(args)
            .output()
            .unwrap();
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
        wait_for(
            &format!("{rcpt} of {id} with {needle:?}"),
            Duration::from_secs(30),
            || {
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
            },
        );
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
