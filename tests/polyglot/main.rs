//! Plugins written in Python, JavaScript and C, built from source with their own toolchains
//! (componentize-py, componentize-js, wit-bindgen c + clang + wasm-tools), loaded into the real
//! relay binary and driven by real SMTP clients: greylisting (Python) refuses then accepts after
//! its delay, the content policy (JavaScript) tags and rejects by decoded content, the sender
//! allowlist (C) refuses an unlisted domain, the JavaScript starter works as copied, and a
//! Python exception gets the plugin's `on_error` while the relay keeps serving. A restart loads
//! the compiled Python component from the compile cache instead of compiling it again. A
//! missing toolchain fails the build step with its name: `.ci/run` installs them all.
//!
//! Run: `cargo test -p wasmrelay --test polyglot`

mod allowlist;
mod build;
mod compile_cache;
mod content_policy;
mod greylisting;
mod python_instances;
mod starters;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{swaks, Aiosmtpd, Downstream, Relay};

/// How long a test waits for a condition (messages at the sink, a greylisting retry).
const WAIT: Duration = Duration::from_secs(60);

/// Interpreted plugins start larger and slower than Rust ones: room for the Python and
/// JavaScript runtimes on a loaded machine.
const LIMITS: &str = r#"limits = { memory_mb = 128, cpu = "2s", wall = "10s" }"#;

/// One `[[plugins]]` entry for the component at `path`.
fn plugin(path: &Path, name: &str, on_error: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {path:?}\nname = {name:?}\non_error = {on_error:?}\n{LIMITS}\n{extra}\n",
        path = path.display().to_string(),
    )
}

/// A relay with `plugins` delivering every domain to `sink`; its listening address.
fn start_relay(dir: &Path, sink: &Aiosmtpd, plugins: &str) -> (Relay, SocketAddr) {
    let sink_addr = SocketAddr::from(([127, 0, 0, 1], sink.port()));
    let config = loopback_config(sink_addr, plugins);
    let cache = format!(
        "cache_dir = {:?}",
        build::compile_cache().display().to_string()
    );
    assert!(config.contains("cache_dir = \"cache\""), "{config}");
    let relay = Relay::start(dir, &config.replace("cache_dir = \"cache\"", &cache));
    let addr = relay.addr();
    (relay, addr)
}

/// One swaks transaction from `from` to `to` with `extra` arguments; its output, stdout and
/// stderr together (swaks shows the whole dialogue), and whether it succeeded.
fn swaks_send(addr: SocketAddr, from: &str, to: &str, extra: &[&str]) -> (bool, String) {
    let out: Output = swaks(addr)
        .args(["--helo", "client.test", "--from", from, "--to", to])
        .args(extra)
        .output()
        .expect("swaks runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Loads `component` with `config` through `wasmrelay plugin test` on a one-line session and
/// expects `init` to refuse it; returns what the relay said.
fn refused_config(component: &Path, config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("session.txt");
    std::fs::write(&transcript, "connect 192.0.2.1\n").unwrap();
    let out = std::process::Command::new(wasmrelay_test_support::binary())
        .args(["plugin", "test"])
        .arg(component)
        .args(["--config", config, "--transcript"])
        .arg(&transcript)
        .output()
        .expect("the relay binary runs");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{config} is refused: {text}");
    text
}
