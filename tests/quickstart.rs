//! The README's quickstart, for real: `wasmrelay sink` as the downstream, `wasmrelay serve` on
//! the quickstart config, a message sent with swaks arrives in the sink's directory byte for
//! byte; and the operator's `queue flush|bounce` reach the running relay.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Sink {
    child: Child,
    dir: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Sink {
    fn start(dir: &Path, port: u16) -> Sink {
        let child = Command::new(binary())
            .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the sink to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sink {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The messages received so far: (envelope JSON, bytes).
    fn messages(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                out.push((json, std::fs::read(path.with_extension("eml")).unwrap()));
            }
        }
        out
    }
}

/// The quickstart config with its ports moved to free ones and its spool in `dir`.
fn quickstart(dir: &Path, relay_port: u16, sink_port: u16, extra_routes: &str) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/relay.toml"),
    )
    .unwrap();
    let text = text
        .replace("127.0.0.1:2525", &format!("127.0.0.1:{relay_port}"))
        .replace("port = 2526", &format!("port = {sink_port}"));
    // Extra routes go first: the first matching route wins.
    let text = text.replace(
        "[[delivery.routes]]",
        &format!("{extra_routes}\n[[delivery.routes]]"),
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn swaks_to_relay_to_sink_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (relay_port, sink_port) = (free_port(), free_port());
    let sink = Sink::start(&dir.path().join("sink"), sink_port);
    let config = quickstart(dir.path(), relay_port, sink_port, "");
    let mut relay = RelayProcess::start(&config, &[relay_port]);
    let body = "From: app@example.org\r\nTo: user@example.com\r\nSubject: quickstart\r\nMessage-ID: <q1@example.org>\r\n\r\nHello through the relay.\r\n.leading dot survives\r\n";
    let data_file = dir.path().join("msg.eml");
    // swaks dot-stuffs and ends the data with CRLF.CRLF itself.
    std::fs::write(&data_file, body.trim_end_matches("\r\n")).unwrap();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &relay_port.to_string()])
        .args([
            "--from",
            "app@example.org",
            "--to",
            "user@example.com,other@foreign.example",
        ])
        .arg("--data")
        .arg(&data_file)
        .output()
        .expect("swaks");
    assert_success("swaks", &out);
    wait_for("delivery to the sink", Duration::from_secs(60), || {
        sink.messages().len() == 1
    });
    let (envelope, bytes) = sink.messages().pop().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.ends_with(body),
        "the message arrives unchanged after our trace header:\n{text}"
    );
    assert!(text.starts_with("Received: from "), "{text}");
    assert_eq!(envelope["mail_from"], "app@example.org");
    let rcpts: Vec<_> = envelope["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        rcpts,
        ["user@example.com", "other@foreign.example"],
        "one connection, both recipients"
    );
    // Delivered means gone from the queue.
    wait_for("the queue to empty", Duration::from_secs(30), || {
        let out = Command::new(binary())
            .args(["queue", "--config"])
            .arg(&config)
            .arg("list")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("0 message(s)")
    });
    relay.terminate();
}

#[test]
fn operator_bounce_and_flush_reach_the_running_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (relay_port, sink_port, dead_port) = (free_port(), free_port(), free_port());
    let sink = Sink::start(&dir.path().join("sink"), sink_port);
    let dead = format!("[[delivery.routes]]\ndomains = [\"dead.example\"]\nhosts = [{{ host = \"127.0.0.1\", port = {dead_port}, tls = \"none\" }}]\n");
    let config = quickstart(dir.path(), relay_port, sink_port, &dead);
    let queue = |args: &[&str]| {
        Command::new(binary())
            .args(["queue", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };

    // No relay yet: flush says so instead of pretending.
    let out = queue(&["flush"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no relay is running"));

    let mut relay = RelayProcess::start(&config, &[relay_port]);
    let mut c = Raw::connect(relay_port);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<sender@example.org>", "250");
    c.cmd("RCPT TO:<user@dead.example>", "250");
    c.cmd("DATA", "354");
    let id = queued_id(&c.cmd(
        "Subject: to a dead host\r\nMessage-ID: <dead@example.org>\r\n\r\nbody\r\n.",
        "250",
    ));
    wait_for("a failed first attempt", Duration::from_secs(60), || {
        let out = queue(&["show", &id]);
        String::from_utf8_lossy(&out.stdout).contains("\"attempts\": 1")
    });
    assert!(sink.messages().is_empty());

    let out = queue(&["flush", &id]);
    assert_success("queue flush ID", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    wait_for("the flushed retry", Duration::from_secs(60), || {
        String::from_utf8_lossy(&queue(&["show", &id]).stdout).contains("\"attempts\": 2")
    });

    assert_success("queue bounce", &queue(&["bounce", &id]));
    wait_for("the DSN at the sink", Duration::from_secs(60), || {
        sink.messages().len() == 1
    });
    let (envelope, bytes) = sink.messages().pop().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(
        envelope["mail_from"],
        serde_json::Value::Null,
        "a DSN has the null sender"
    );
    assert_eq!(envelope["recipients"][0]["address"], "sender@example.org");
    assert!(
        text.contains("multipart/report") && text.contains("message/delivery-status"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822;user@dead.example")
            || text.contains("Final-Recipient: rfc822; user@dead.example"),
        "{text}"
    );
    wait_for(
        "the bounced message to leave the queue",
        Duration::from_secs(30),
        || String::from_utf8_lossy(&queue(&["list"]).stdout).contains("0 message(s)"),
    );
    relay.terminate();
}
