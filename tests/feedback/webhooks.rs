//! Webhooks across a receiver outage and a `kill -9` of the relay: the events of messages
//! sent while the receiver is down wait in the outbox, survive the crash, and all reach the
//! receiver once it comes up, with signatures it verifies itself.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{smtplib_send, wait_for, Aiosmtpd, Downstream, Relay, ReservedPort};

use super::*;

const SECRET: &str = "webhook-secret-0123456789";

/// The receiver: verifies `X-Wasmrelay-Signature` over `timestamp.body` with the secret,
/// answers 204 (or 401 for a bad signature), and appends each event with its verdict to a
/// file as one JSON line.
const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, socketserver, sys, time
port, secret, out = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ts = self.headers.get("X-Wasmrelay-Timestamp", "")
        sig = self.headers.get("X-Wasmrelay-Signature", "")
        want = "v1=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(sig, want) and abs(time.time() - int(ts or 0)) < 300
        with open(out, "a") as f:
            for e in json.loads(body)["events"]:
                f.write(json.dumps({"valid": ok, "event": e}) + "\n")
        self.send_response(204 if ok else 401)
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(http.server.HTTPServer):
    allow_reuse_address = True
Server(("127.0.0.1", port), Handler).serve_forever()
"#;

/// The receiver process, killed when dropped.
struct Receiver(Child);

impl Receiver {
    fn start(port: u16, out: &Path) -> Receiver {
        let child = Command::new("python3")
            .args(["-c", RECEIVER, &port.to_string(), SECRET])
            .arg(out)
            .spawn()
            .expect("start the webhook receiver");
        Receiver(child)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn send(addr: SocketAddr, n: usize) {
    let rcpts = [format!("a{n}@example.net"), format!("b{n}@example.org")];
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let msg = format!("From: news@example.com\r\nSubject: m{n}\r\n\r\nHello {n}.\r\n");
    assert_eq!(smtplib_send(addr, "news@example.com", &rcpts, &msg), "[]");
}

/// Lines in the outbox file (the events written and not yet acknowledged).
fn outbox_lines(spool: &Path) -> usize {
    let dir = spool.join("webhooks").join("hook");
    std::fs::read_to_string(dir.join("outbox"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn events_survive_a_receiver_outage_and_a_kill_9_and_arrive_signed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let port = ReservedPort::new();
    let config = loopback_config(
        sink.addr(),
        &format!(
            r#"
[events]
path = "events.jsonl"

[[webhooks]]
name = "hook"
url = "http://127.0.0.1:{}/hooks/wasmrelay"
secret = "{SECRET}"
events = ["delivered", "bounced"]
batch_max = 2
batch_wait = "50ms"
timeout = "5s"
"#,
            port.port()
        ),
    );
    let mut relay = Relay::start(dir.path(), &config);
    let spool = relay.spool_dir();

    // The receiver is down (the port refuses): three messages, six deliveries.
    for n in 0..3 {
        send(relay.addr(), n);
    }
    sink.wait_for(3, WAIT);
    wait_for("six events in the outbox", WAIT, || {
        outbox_lines(&spool) == 6
    });
    let log = event_log(&dir.path().join("events.jsonl"));
    let expected: BTreeSet<(String, String)> = log
        .iter()
        .filter(|e| e["event"] == "delivered")
        .map(|e| {
            (
                e["queue_id"].as_str().unwrap().into(),
                e["recipient"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 6);

    // A crash, and a restart on the same spool.
    relay.kill9();
    let relay = Relay::start_file(relay.config_path());
    assert_eq!(outbox_lines(&spool), 6, "the outbox survived the crash");

    // The receiver comes up: every event arrives, correctly signed, at least once.
    let out = dir.path().join("received.jsonl");
    let _receiver = Receiver::start(port.port(), &out);
    let mut got = Vec::new();
    wait_for("every event at the receiver", WAIT, || {
        got = event_log(&out);
        let ids: BTreeSet<&str> = got
            .iter()
            .filter_map(|r| r["event"]["id"].as_str())
            .collect();
        ids.len() >= 6
    });
    assert!(
        got.iter().all(|r| r["valid"] == true),
        "bad signatures: {got:?}"
    );
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for r in &got {
        let e = &r["event"];
        let id = e["id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "{e}");
        if let Some(earlier) = by_id.insert(id, e) {
            assert_eq!(earlier, e, "a resent event changed");
        }
    }
    let delivered: BTreeSet<(String, String)> = by_id
        .values()
        .map(|e| {
            assert_eq!(e["event"], "delivered", "{e}");
            (
                e["queue_id"].as_str().unwrap().into(),
                e["recipient"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(delivered, expected);

    // Everything acknowledged: the outbox is emptied, and new events keep flowing.
    wait_for("an empty outbox", WAIT, || outbox_lines(&spool) == 0);
    send(relay.addr(), 9);
    wait_for("the new message's events", WAIT, || {
        event_log(&out)
            .iter()
            .filter(|r| {
                r["event"]["recipient"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("a9@") || r.starts_with("b9@"))
            })
            .count()
            >= 2
    });
    drop(port);
}
