//! Attacks on the relay binary from outside, one module per hole: each test plays the attacker
//! with a real client (Python smtplib or a raw socket) against `wasmrelay serve`, with a
//! scripted next hop (`downstream.py`) where delivery matters.
//!
//! - `dkim`: an outsider's forgery to a local domain is delivered unsigned.
//! - `loops`: too many `Received:` hops; delivery to ourselves (address literal, hostname).
//! - `smarthost_tls`: smart-host passwords only over verified TLS; no pooled shortcut.
//! - `slow_clients`: a client that never reads; command floods; SIGTERM with stuck sessions.
//! - `spool_full`: a spool on a tmpfs that fills up.
//! - `edges`: IPv6 literals, ORCPT, a next hop's reply that splits a UTF-8 character, modes
//!   of the spool and control socket.
//!
//! Run: `cargo test -p wasmrelay --test hardening`

#[path = "../common/mod.rs"]
mod common;
mod dkim;
mod edges;
mod loops;
mod slow_clients;
mod smarthost_tls;
mod spool_full;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `downstream.py` on loopback, killed on drop.
pub struct Downstream {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// One message as the next hop received it.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub meta: serde_json::Value,
    pub data: Vec<u8>,
}

impl Arrived {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    pub fn rcpts(&self) -> Vec<String> {
        self.meta["rcpts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

impl Downstream {
    /// Starts on `host`, port 0 unless `args` say `--port`.
    pub fn start(host: &str, args: &[&str]) -> Downstream {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hardening/downstream.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path())
            .args(["--host", host])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("downstream.py did not start: {line:?}")
            });
        Downstream { child, port, dir }
    }

    pub fn messages(&self) -> Vec<Arrived> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            // `downstream.py` writes `.<n>.json` and renames it: skip the half-written one.
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| Arrived {
                meta: serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
                data: std::fs::read(json.with_extension("eml")).unwrap(),
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived.
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<Arrived> {
        let mut got = Vec::new();
        wait_for(
            &format!("{n} message(s) downstream"),
            Duration::from_secs(secs),
            || {
                got = self.messages();
                got.len() >= n
            },
        );
        got
    }

    /// Every AUTH attempt the server saw.
    pub fn auth_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("auth.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `relay.toml` in `dir`: hostname `relay.test`, one relay listener on 127.0.0.1:`port`
/// (plaintext AUTH allowed: the clients are on loopback), user `alice` with password
/// `alice-pw`, a spool in `dir/spool`, a resolver nobody answers on, fast retries and short
/// timeouts; then `extra` (routes, relay policy, limits ...).
pub fn write_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let hash = wasmrelay::smtp::session::hash_password("alice-pw").unwrap();
    let config = format!(
        r#"
hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:{port}"
allow_plaintext_auth = true

[[users]]
name = "alice"
password_hash = "{hash}"

[spool]
dir = "spool"

[delivery.resolver]
nameservers = ["127.0.0.1:9"]
timeout = "1s"
attempts = 1

[delivery.retry]
initial_interval = "1s"
max_interval = "2s"
jitter = 0.0

[delivery.timeouts]
connect = "2s"
greeting = "5s"
command = "5s"
data_final = "5s"

{extra}
"#
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A `[[delivery.routes]]` entry: `domains` to the plaintext smart host `host:port`.
pub fn route(domains: &[&str], host: &str, port: u16) -> String {
    format!(
        "\n[[delivery.routes]]\ndomains = {domains:?}\n\
         hosts = [{{ host = \"{host}\", port = {port}, tls = \"none\" }}]\n"
    )
}

/// A route for every domain to a port nobody listens on: accepted mail stays queued.
pub fn dead_route() -> String {
    route(&["*"], "127.0.0.1", free_port())
}

/// What `SEND` does: one message with smtplib, as the fields say.
#[derive(Debug, Clone, Default)]
pub struct Mail<'a> {
    pub port: u16,
    pub from: &'a str,
    pub to: &'a [&'a str],
    pub message: &'a str,
    /// Connect from this loopback address (default 127.0.0.1).
    pub source: Option<&'a str>,
    /// AUTH as alice.
    pub login: bool,
}

const SEND: &str = r#"
import json, smtplib, sys
a = json.load(open(sys.argv[1]))
s = smtplib.SMTP("127.0.0.1", a["port"], source_address=(a["source"], 0), timeout=30)
s.ehlo("client.test")
if a["login"]:
    s.login("alice", "alice-pw")
s.sendmail(a["from"], a["to"], a["message"].encode())
s.quit()
"#;

/// Sends `mail` and panics unless every recipient was accepted.
pub fn send(mail: &Mail<'_>) {
    let args = serde_json::json!({
        "port": mail.port,
        "from": mail.from,
        "to": mail.to,
        "message": mail.message,
        "source": mail.source.unwrap_or("127.0.0.1"),
        "login": mail.login,
    });
    // In a file: a large message does not fit on a command line.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), args.to_string()).unwrap();
    let out = python(SEND, &[file.path().to_str().unwrap()]);
    assert_success("smtplib send", &out);
}

/// The queue of the spool in `dir/spool`, read as `wasmrelay queue` does (safe while the
/// relay runs).
pub fn queued(dir: &Path) -> Vec<wasmrelay::spool::Envelope> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wasmrelay::spool::read_queue(&dir.join("spool")))
        .unwrap()
}

/// `wasmrelay queue flush` against the running relay.
pub fn flush(config: &Path) {
    let out = Command::new(binary())
        .args(["queue", "--config"])
        .arg(config)
        .arg("flush")
        .output()
        .unwrap();
    assert_success("queue flush", &out);
}

/// Whether the tests run as root (mounting a tmpfs, becoming another user).
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Waits until `log` contains `needle` (the relay's stderr).
pub fn wait_log(relay: &RelayProcess, needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !relay.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
