//! What the session writes to the event log: refusals by the relay at each stage, the
//! message accepted, and nothing for commands out of sequence.

use serde_json::Value;
use tokio::sync::mpsc;

use super::*;
use crate::events::{Events, Msg};

fn with_events() -> (Options, mpsc::Receiver<Msg>) {
    let (events, rx) = Events::channel(64, 1 << 20);
    let opts = Options {
        events,
        ..Options::default()
    };
    (opts, rx)
}

/// Every event queued so far, as its JSON line minus the time.
fn drain(rx: &mut mpsc::Receiver<Msg>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Msg::Event(e, _)) = rx.try_recv() {
        let mut line = Vec::new();
        e.write_line(&mut line);
        let mut v: Value = serde_json::from_slice(&line).unwrap();
        v.as_object_mut().unwrap().remove("time");
        out.push(v);
    }
    out
}

#[tokio::test]
async fn refusals_by_the_relay_are_rejected_events_without_a_plugin() {
    let (opts, mut rx) = with_events();
    let mut c = start(opts).ehlo().await;
    c.cmd("RCPT TO:<a@example.com>", "503").await;
    c.cmd("MAIL FROM:<s@example.org> SIZE=999999999999", "552")
        .await;
    assert_eq!(
        drain(&mut rx),
        [
            serde_json::json!({"event": "rejected", "stage": "mail-from", "code": 552,
            "status": "5.3.4", "reply": "Message size exceeds fixed maximum of 26214400 octets",
            "client_ip": "192.0.2.10", "listener": "relay-25"})
        ],
        "a command out of sequence is no rejection; a sender over the size limit is"
    );
    c.cmd("MAIL FROM:<s@example.org>", "250").await;
    c.cmd("RCPT TO:<x@elsewhere.example>", "554").await;
    c.cmd("RCPT TO:<u@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.cmd("Subject: bare\n\nlf\r\n.", "550").await;
    let got = drain(&mut rx);
    assert_eq!(
        got[0],
        serde_json::json!({"event": "rejected", "recipient": "x@elsewhere.example",
            "stage": "rcpt", "code": 554, "status": "5.7.1", "reply": "Relay access denied",
            "client_ip": "192.0.2.10", "listener": "relay-25", "from": "s@example.org"})
    );
    assert_eq!(
        (
            &got[1]["stage"],
            &got[1]["code"],
            &got[1]["queue_id"],
            &got[1]["from"]
        ),
        (
            &Value::from("data"),
            &Value::from(550),
            &Value::from("M0"),
            &Value::from("s@example.org")
        ),
        "{got:?}"
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(c.messages().is_empty());
}

#[tokio::test]
async fn an_accepted_message_is_received_then_queued() {
    let (opts, mut rx) = with_events();
    let mut c = start(opts).ehlo().await;
    c.cmd("MAIL FROM:<>", "250").await;
    c.cmd("RCPT TO:<u@example.com>", "250").await;
    c.cmd("RCPT TO:<v@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    let reply = c.cmd("Subject: ok\r\n\r\nbody\r\n.", "250").await;
    let id = reply.trim().rsplit(' ').next().unwrap().to_string();
    let got = drain(&mut rx);
    let names: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["received", "queued"]);
    assert_eq!(got[0]["queue_id"], id.as_str());
    assert_eq!(
        (&got[0]["from"], &got[0]["rcpts"]),
        (&Value::from(""), &Value::from(2))
    );
    assert_eq!(got[0]["size"], c.messages()[0].1.len());
    assert_eq!(
        got[1]["recipients"],
        serde_json::json!(["u@example.com", "v@example.com"])
    );
}
