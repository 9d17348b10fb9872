//! The README's quickstart, for real: `wasmrelay sink` as the downstream, `wasmrelay serve` on
//! the quickstart config, a message sent with swaks arrives in the sink's directory byte for
//! byte; and the operator's `queue flush|bounce` reach the running relay.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wasmrelay_test_support::relay::write_config;
use wasmrelay_test_support::{
    assert_success, binary, queued_id, swaks, wait_for, ClosedPort, Downstream, Raw, Relay,
    WasmrelaySink,
};

/// The quickstart config with its listener on port 0, its route to `sink`, and
/// `extra_routes` before its own. Its spool is relative to the config file.
fn quickstart(sink: &WasmrelaySink, extra_routes: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/relay.toml"),
    )
    .unwrap();
    let moved = text
        .replace("127.0.0.1:2525", "127.0.0.1:0")
        .replace("listen = \"127.0.0.1:8025\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:8026\"", "listen = \"127.0.0.1:0\"")
        .replace("port = 2526", &format!("port = {}", sink.port()));
    assert_ne!(
        moved, text,
        "the quickstart still listens on 2525 and routes to 2526"
    );
    // Extra routes go first: the first matching route wins.
    moved.replace(
        "[[delivery.routes]]",
        &format!("{extra_routes}\n[[delivery.routes]]"),
    )
}

#[test]
fn swaks_to_relay_to_sink_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WasmrelaySink::start();
    let mut relay = Relay::start(dir.path(), &quickstart(&sink, ""));
    let body = "From: app@example.org\r\nTo: user@example.com\r\nSubject: quickstart\r\nMessage-ID: <q1@example.org>\r\n\r\nHello through the relay.\r\n.leading dot survives\r\n";
    let data_file = dir.path().join("msg.eml");
    // swaks dot-stuffs and ends the data with CRLF.CRLF itself.
    std::fs::write(&data_file, body.trim_end_matches("\r\n")).unwrap();
    let out = swaks(relay.addr())
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
    let mut got = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "{got:?}");
    let delivered = got.pop().unwrap();
    let envelope = &delivered.meta;
    let text = String::from_utf8(delivered.data.clone()).unwrap();
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
        relay.queue_is_empty()
    });
    relay.terminate();
}

#[test]
fn operator_bounce_and_flush_reach_the_running_relay() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WasmrelaySink::start();
    let dead_port = ClosedPort::new();
    let dead = format!(
        "[[delivery.routes]]\ndomains = [\"dead.example\"]\n\
         hosts = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n",
        dead_port.port()
    );
    let config = dir.path().join("relay.toml");
    write_config(&config, &quickstart(&sink, &dead));
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

    let mut relay = Relay::start_file(&config);
    let mut c = Raw::connect(relay.addr());
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
    let mut got = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "{got:?}");
    let delivered = got.pop().unwrap();
    let envelope = &delivered.meta;
    let text = delivered.text();
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
