//! The plugin chain in the real relay binary, end to end: real SMTP clients on one side, a
//! real downstream server (aiosmtpd) on the other. A recipient refused by a plugin, headers
//! added by the data hook as delivered, a domain routed to a second server by the route hook,
//! misbehaving plugins (loop, memory bomb, trap, huge reply, capability spam) answered with
//! their `on_error` while the relay keeps serving, a plugin swapped by SIGHUP under load, and
//! the event log of a message's life.
//!
//! Run: `cargo test -p wasmrelay --test plugins_e2e`

#[path = "../common/mod.rs"]
mod common;
mod events;
mod misbehaving;
mod policy;
mod reload;

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
    /// Starts the sink on a port of its choosing (the script binds port 0 and says which it
    /// got, so no other process can take it in between) and waits until it listens.
    fn start(dir: &Path) -> Sink {
        Sink::start_with(dir, &[])
    }

    /// [`Sink::start`] with the script's failure options (`--tempfail-rcpt-once slow@` ...).
    fn start_with(dir: &Path, args: &[&str]) -> Sink {
        let port = 0;
        std::fs::create_dir_all(dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
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
