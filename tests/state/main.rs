//! Shared state, end to end: a suppression list written by one plugin and read by another
//! in the real relay binary, managed with `wasmrelay list` (through the running relay and,
//! with none running, in its journal) and kept across restarts; a hostile plugin against
//! every cap, in the binary and in the plugin host; calendar quotas under a controlled clock.
//!
//! Run: `cargo test -p wasmrelay --test state_e2e`

#[path = "../common/mod.rs"]
mod common;
mod hostile;
mod library;
mod lists;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wasmrelay::plugins::test_plugins::component;

/// The relay's own catch-all sink (`wasmrelay sink`) as the downstream server.
struct Sink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Sink {
    fn start(dir: &Path) -> Sink {
        let port = free_port();
        let child = Command::new(binary())
            .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sink = Sink {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        wait_for("the sink to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        sink
    }

    /// The recipients of every message received so far.
    fn recipients(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let rcpts = meta["recipients"].as_array().cloned().unwrap_or_default();
                out.extend(
                    rcpts
                        .iter()
                        .map(|r| r["address"].as_str().unwrap().to_string()),
                );
            }
        }
        out.sort();
        out
    }
}

/// A relay config on `port` delivering everything to `sink_port`, with `extra` appended.
fn config_text(port: u16, sink_port: u16, extra: &str) -> String {
    format!(
        r#"hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:{port}"

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

{extra}"#
    )
}

/// One `[[plugins]]` entry for test plugin `name`.
fn plugin(name: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {:?}\nname = {name:?}\n{extra}\n",
        component(name).display().to_string()
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
    /// Writes `dir/relay.toml` for a free port and starts the relay on it. The port is ours
    /// only once the relay logs that it listens there; otherwise try another.
    fn start(dir: &Path, sink: &Sink, extra: &str) -> Relay {
        let path = dir.join("relay.toml");
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(&path, config_text(port, sink.port, extra)).unwrap();
            std::fs::remove_file(path.with_extension("log")).ok();
            let mut process = RelayProcess::start(&path, &[port]);
            let listening = format!("listening address=127.0.0.1:{port} ");
            let deadline = Instant::now() + Duration::from_secs(30);
            while process.child.try_wait().unwrap().is_none() {
                if process.log().contains(&listening) {
                    return Relay { process, port };
                }
                assert!(Instant::now() < deadline, "the relay does not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
            process.kill9();
        }
        panic!("no port for the relay in five tries");
    }

    fn stop(mut self) {
        assert!(self.process.terminate().success(), "a clean stop");
    }
}

/// `wasmrelay list --config DIR/relay.toml ARGS...`.
fn list_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("list")
        .arg("--config")
        .arg(dir.join("relay.toml"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
