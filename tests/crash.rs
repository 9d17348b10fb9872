//! Crash durability: 20 clients push 2 KB messages through the relay to Postfix's smtp-sink,
//! the relay is killed with SIGKILL mid-load, and after a restart every message that got a
//! `250` reaches the sink at least once, the queue drains, and nothing half-written is left.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmrelay_test_support::{queued_id, wait_for, Downstream, Relay, SmtpSink, NO_DNS};

const CLIENTS: usize = 20;
const KILL_AFTER: usize = 2000;

fn body(client: usize, n: usize) -> String {
    let mut body = format!("From: c{client}@example.org\r\nTo: sink@example.com\r\nSubject: crash {client}-{n}\r\n\r\n");
    while body.len() < 2000 {
        body.push_str("All work and no play makes a durable spool.\r\n");
    }
    body.push_str(&format!("END {client}-{n}\r\n"));
    body
}

/// One client: pipelined transactions until the relay dies; returns acknowledged ids.
fn client(
    addr: SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    out: Arc<Mutex<Vec<(String, String)>>>,
) {
    let Ok(stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut read_reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(all);
            }
        }
    };
    use std::io::Write;
    if read_reply().is_none()
        || writer.write_all(b"EHLO crash.test\r\n").is_err()
        || read_reply().is_none()
    {
        return;
    }
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let marker = format!("{id}-{n}");
        let txn =
            format!("MAIL FROM:<c{id}@example.org>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n");
        if writer.write_all(txn.as_bytes()).is_err() {
            return;
        }
        for _ in 0..3 {
            if read_reply().is_none() {
                return;
            }
        }
        if writer
            .write_all(format!("{}.\r\n", body(id, n)).as_bytes())
            .is_err()
        {
            return;
        }
        match read_reply() {
            Some(r) if r.starts_with("250") => {
                out.lock().unwrap().push((queued_id(&r), marker));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            _ => return,
        }
        n += 1;
    }
}

/// Every `END client-n` marker in what reached the sink (a message may arrive twice).
fn delivered_markers(sink: &SmtpSink) -> HashSet<String> {
    sink.messages()
        .iter()
        .flat_map(|m| {
            m.text()
                .lines()
                .filter_map(|line| line.strip_prefix("END ").map(|m| m.trim().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(256);
    let config = format!(
        "hostname = \"relay.test\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [relay]\nlocal_domains = [\"example.com\"]\n[spool]\ndir = \"spool\"\n\
         [[delivery.routes]]\ndomains = [\"*\"]\n\
         hosts = [{{ host = \"127.0.0.1\", port = {sink_port}, tls = \"none\" }}]\n\
         [delivery.resolver]\nnameservers = [\"{NO_DNS}\"]\n\
         [delivery.retry]\ninitial_interval = \"1s\"\n",
        sink_port = sink.port()
    );
    let mut relay = Relay::start(dir.path(), &config);
    let addr = relay.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, acked, ids) = (stop.clone(), acked.clone(), ids.clone());
            std::thread::spawn(move || client(addr, i, stop, acked, ids))
        })
        .collect();
    wait_for(
        "enough acknowledged messages",
        Duration::from_secs(600),
        || acked.load(Ordering::Relaxed) >= KILL_AFTER,
    );
    relay.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acknowledged = ids.lock().unwrap().clone();
    assert!(acknowledged.len() >= KILL_AFTER);
    let unique: HashSet<_> = acknowledged.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), acknowledged.len(), "ids are unique");
    let before_restart = delivered_markers(&sink).len();

    // The restarted relay recovers the spool and delivers what was still queued.
    let mut relay = Relay::start_file(relay.config_path());
    wait_for(
        "every acknowledged message at the sink",
        Duration::from_secs(600),
        || {
            let delivered = delivered_markers(&sink);
            acknowledged
                .iter()
                .all(|(_, marker)| delivered.contains(marker))
        },
    );
    wait_for("the queue to drain", Duration::from_secs(120), || {
        relay.queue_is_empty()
    });
    assert!(relay.terminate().success());
    let (_, report) = relay.spooled();
    assert_eq!(
        report.discarded_partial + report.corrupt,
        0,
        "nothing half-written is left"
    );
    eprintln!(
        "acknowledged {} before SIGKILL ({} already delivered then); all delivered after restart",
        acknowledged.len(),
        before_restart
    );
}
