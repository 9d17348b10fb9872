//! The admin server end to end: the relay binary with `[admin]` on a reserved loopback
//! port, Python's smtplib sending, aiosmtpd receiving (and refusing one recipient), a
//! closed port for mail that must stay queued.
//!
//! - `api`: the JSON API through Python's urllib: the token, queue list/show/hold/release/
//!   flush/bounce/delete, the suppression list, plugin status, reload, `/metrics`, bounds
//!   and errors; `wasmrelay queue hold|release|delete` through the running relay.
//! - `dashboard`: the page in headless Chromium (Debian's `chromium`, driven over the
//!   DevTools protocol by `tests/admin/cdp.py` with `websocket-client`): it asks for the
//!   token, draws the messages the test sent, and a screenshot is saved under `target/`.

mod api;
mod dashboard;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    assert_success, python, queued_id, smtplib_send, Aiosmtpd, ClosedPort, Downstream, Raw, Relay,
    ReservedPort,
};

/// The admin token of the test configs.
const TOKEN: &str = "test-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(60);

/// The harness's loopback config with the admin server on `admin`, a suppression list, and
/// a first route that delivers `slow.test` to `closed` (so that mail stays queued); `extra`
/// is appended.
fn config(sink: SocketAddr, closed: &ClosedPort, admin: &ReservedPort, extra: &str) -> String {
    let slow = format!(
        "[[delivery.routes]]\ndomains = [\"slow.test\"]\n\
         hosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n\n",
        closed.port()
    );
    let extra = format!(
        "[[lists]]\nname = \"suppression\"\n\n[admin]\nlisten = \"{}\"\ntoken = \"{TOKEN}\"\n\n{extra}",
        admin.addr()
    );
    loopback_config(sink, &extra).replacen(
        "[[delivery.routes]]",
        &(slow + "[[delivery.routes]]"),
        1,
    )
}

/// The parts of one test: kept alive together.
struct Setup {
    _tmp: tempfile::TempDir,
    sink: Aiosmtpd,
    _closed: ClosedPort,
    admin: ReservedPort,
    relay: Relay,
}

/// A relay on [`config`] whose downstream refuses recipients containing `nobody`.
fn start(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::builder().reject_rcpt("nobody").start();
    let closed = ClosedPort::new();
    let admin = ReservedPort::new();
    let relay = Relay::start(tmp.path(), &config(sink.addr(), &closed, &admin, extra));
    relay.wait_log("admin server up", WAIT);
    Setup {
        _tmp: tmp,
        sink,
        _closed: closed,
        admin,
        relay,
    }
}

impl Setup {
    /// Sends one message; returns its queue id from the `250` reply.
    fn send(&self, from: &str, to: &str, subject: &str) -> String {
        let mut c = Raw::connect(self.relay.addr());
        c.cmd("EHLO client.test", "250");
        c.cmd(&format!("MAIL FROM:<{from}>"), "250");
        c.cmd(&format!("RCPT TO:<{to}>"), "250");
        c.cmd("DATA", "354");
        let reply = c.cmd(
            &format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello.\r\n."),
            "250",
        );
        c.cmd("QUIT", "221");
        queued_id(&reply)
    }

    /// Sends one message with Python's smtplib.
    fn smtplib(&self, from: &str, to: &str, subject: &str) {
        let message = format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello from the admin test.\r\n"
        );
        assert_eq!(smtplib_send(self.relay.addr(), from, &[to], &message), "[]");
    }

    fn http(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Http {
        http(self.admin.addr(), method, path, body, token)
    }

    /// A request with the token that must succeed; its JSON.
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let r = self.http(method, path, body, Some(TOKEN));
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.json()
    }
}

/// One HTTP answer.
#[derive(Debug)]
struct Http {
    status: u16,
    content_type: String,
    body: String,
}

impl Http {
    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "{}: {}",
            self.content_type,
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request with Python's urllib: prints the status, the content type and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Http {
    const REQUEST: &str = r#"
import sys, json, urllib.request, urllib.error
url, method, body, token = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
if body:
    req.add_header("Content-Type", "application/json")
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        status, ctype, text = r.status, r.headers.get("Content-Type", ""), r.read().decode()
except urllib.error.HTTPError as e:
    status, ctype, text = e.code, e.headers.get("Content-Type", ""), e.read().decode()
print(json.dumps({"status": status, "content_type": ctype, "body": text}))
"#;
    let url = format!("http://{addr}{path}");
    let out = python(
        REQUEST,
        &[&url, method, body.unwrap_or(""), token.unwrap_or("")],
    );
    assert_success(&format!("{method} {path}"), &out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Http {
        status: v["status"].as_u64().unwrap() as u16,
        content_type: v["content_type"].as_str().unwrap().to_string(),
        body: v["body"].as_str().unwrap().to_string(),
    }
}

/// Cargo's target directory (`CARGO_TARGET_DIR` when set, else the repository's `target/`).
fn target_dir() -> std::path::PathBuf {
    wasmrelay::plugins::test_plugins::target_dir()
}
