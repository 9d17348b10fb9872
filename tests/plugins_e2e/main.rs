//! The plugin chain in the real relay binary, end to end: real SMTP clients on one side, a
//! real downstream server (aiosmtpd) on the other. A recipient refused by a plugin, headers
//! added by the data hook as delivered, a domain routed to a second server by the route hook,
//! misbehaving plugins (loop, memory bomb, trap, huge reply, capability spam) answered with
//! their `on_error` while the relay keeps serving, a plugin swapped by SIGHUP under load, and
//! the event log of a message's life.
//!
//! Run: `cargo test -p wasmrelay --test plugins_e2e`

mod events;
mod misbehaving;
mod policy;
mod reload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmrelay_test_support::relay::{loopback_config, write_config};
use wasmrelay_test_support::{
    smtplib_send, test_plugin, Aiosmtpd, Delivered, Downstream, Raw, Relay,
};

/// How long a test waits for messages at a downstream server.
const WAIT: Duration = Duration::from_secs(30);

/// One `[[plugins]]` entry for test plugin `component_name`.
fn plugin(component_name: &str, name: &str, on_error: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {path:?}\nname = {name:?}\non_error = {on_error:?}\n{extra}\n",
        path = test_plugin(component_name).display().to_string(),
    )
}

/// A relay config whose every domain goes to the sink on `sink_port`, retrying after a
/// second, with `plugins` appended.
fn config_text(sink_port: u16, plugins: &str) -> String {
    let sink = SocketAddr::from(([127, 0, 0, 1], sink_port));
    loopback_config(
        sink,
        &format!("[delivery.retry]\ninitial_interval = \"1s\"\n\n{plugins}"),
    )
}

/// A relay with `plugins`, delivering to `sink`; its listening address.
fn start_relay(dir: &Path, sink: &Aiosmtpd, plugins: &str) -> (Relay, SocketAddr) {
    let relay = Relay::start(dir, &config_text(sink.port(), plugins));
    let addr = relay.addr();
    (relay, addr)
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
