//! Shared state, end to end: a suppression list written by one plugin and read by another
//! in the real relay binary, managed with `wasmrelay list` (through the running relay and,
//! with none running, in its journal) and kept across restarts; a hostile plugin against
//! every cap, in the binary and in the plugin host; calendar quotas under a controlled clock.
//!
//! Run: `cargo test -p wasmrelay --test state_e2e`

mod hostile;
mod library;
mod lists;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, binary, smtplib_send, test_plugin, wait_for, Downstream, Raw, Relay,
    WasmrelaySink,
};

/// The recipients of every message `sink` received so far, sorted.
fn recipients(sink: &WasmrelaySink) -> Vec<String> {
    let mut out: Vec<String> = sink
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_tos)
        .collect();
    out.sort();
    out
}

/// Writes `dir/relay.toml` (a listener on `127.0.0.1:0`, everything delivered to `sink`,
/// `extra` appended) and starts the relay on it.
fn start_relay(dir: &Path, sink: &WasmrelaySink, extra: &str) -> Relay {
    Relay::start(dir, &loopback_config(sink.addr(), extra))
}

/// SIGTERM, and the relay must exit cleanly.
fn stop(mut relay: Relay) {
    assert!(relay.terminate().success(), "a clean stop");
}

/// One `[[plugins]]` entry for test plugin `name`.
fn plugin(name: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {:?}\nname = {name:?}\n{extra}\n",
        test_plugin(name).display().to_string()
    )
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
