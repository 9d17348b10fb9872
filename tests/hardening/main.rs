//! Attacks on the relay binary from outside, one module per hole: each test plays the attacker
//! with a real client (Python smtplib or a raw socket) against `wasmrelay serve`, with a next
//! hop on the bare protocol (test-support's `RawSink`) where delivery matters.
//!
//! - `auth_guessing`: AUTH failures counted per client across connections.
//! - `backscatter`: the bounce of an outsider's mail carries its headers only.
//! - `dkim`: an outsider's forgery to a local domain is delivered unsigned.
//! - `long_lines`: lines over 998 octets re-encoded (or refused, per listener).
//! - `loops`: too many `Received:` hops; delivery to ourselves (address literal, hostname).
//! - `smarthost_tls`: smart-host passwords only over verified TLS; no pooled shortcut.
//! - `slow_clients`: a client that never reads; command floods; SIGTERM with stuck sessions.
//! - `spool_full`: a spool on a tmpfs that fills up.
//! - `idle`: memory per idle connection (2,000 sessions after EHLO), under 50 KiB each.
//! - `streaming`: 50 sessions each in the middle of a 25 MB message; the relay's own memory
//!   stays bounded.
//! - `edges`: IPv6 literals, ORCPT, a next hop's reply that splits a UTF-8 character, modes
//!   of the spool and control socket.
//!
//! Run: `cargo test -p wasmrelay --test hardening`

mod auth_guessing;
mod backscatter;
mod dkim;
mod edges;
mod idle;
mod long_lines;
mod loops;
mod slow_clients;
mod smarthost_tls;
mod spool_full;
mod streaming;

use std::net::SocketAddr;
use std::time::Duration;

use wasmrelay_test_support::{assert_success, python, ClosedPort, Relay, NO_DNS};

/// How long a test waits for mail to arrive or the relay to act.
const WAIT: Duration = Duration::from_secs(20);

/// The config of a relay for these tests: hostname `relay.test`, one relay listener on
/// `listen` (`127.0.0.1:0` unless the test needs the port in advance; plaintext AUTH allowed,
/// the clients are on loopback), user `alice` with password `alice-pw`, a spool in `spool`
/// beside the config, a resolver nobody answers, fast retries and short timeouts; then
/// `extra` (routes, relay policy, limits ...).
pub fn config(listen: &str, extra: &str) -> String {
    let hash = wasmrelay::smtp::session::hash_password("alice-pw").unwrap();
    format!(
        r#"
hostname = "relay.test"

[[listeners]]
address = "{listen}"
allow_plaintext_auth = true

[[users]]
name = "alice"
password_hash = "{hash}"

[spool]
dir = "spool"

[delivery.resolver]
nameservers = ["{NO_DNS}"]
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
    )
}

/// A relay on `127.0.0.1:0` with [`config`] in `dir`.
pub fn start_relay(dir: &std::path::Path, extra: &str) -> Relay {
    Relay::start(dir, &config("127.0.0.1:0", extra))
}

/// A `[[delivery.routes]]` entry: `domains` to the plaintext smart host `host:port`.
pub fn route(domains: &[&str], host: &str, port: u16) -> String {
    format!(
        "\n[[delivery.routes]]\ndomains = {domains:?}\n\
         hosts = [{{ host = \"{host}\", port = {port}, tls = \"none\" }}]\n"
    )
}

/// A route for every domain to `dead`, where nothing answers: accepted mail stays queued.
pub fn dead_route(dead: &ClosedPort) -> String {
    route(&["*"], "127.0.0.1", dead.port())
}

/// What [`send`] sends: one message with smtplib, as the fields say.
#[derive(Debug, Clone, Default)]
pub struct Mail<'a> {
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
s = smtplib.SMTP(a["host"], a["port"], source_address=(a["source"], 0), timeout=30)
s.ehlo("client.test")
if a["login"]:
    s.login("alice", "alice-pw")
s.sendmail(a["from"], a["to"], a["message"].encode())
s.quit()
"#;

/// Sends `mail` to `relay` and panics unless every recipient was accepted.
pub fn send(relay: SocketAddr, mail: &Mail<'_>) {
    let args = serde_json::json!({
        "host": relay.ip().to_string(),
        "port": relay.port(),
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

/// `wasmrelay queue flush` against the running relay.
pub fn flush(relay: &Relay) {
    assert_success("queue flush", &relay.queue(&["flush"]));
}
