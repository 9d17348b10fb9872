//! Crash durability: many clients push messages, the relay is killed with SIGKILL mid-load,
//! and after a restart every message that got a `250` is in the spool, whole, and nothing
//! half-written is.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

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
    port: u16,
    id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    out: Arc<Mutex<Vec<(String, String)>>>,
) {
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
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

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"relay.test\"\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
             [relay]\nlocal_domains = [\"example.com\"]\n[spool]\ndir = \"spool\"\n"
        ),
    )
    .unwrap();
    let mut relay = RelayProcess::start(&config, &[port]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, acked, ids) = (stop.clone(), acked.clone(), ids.clone());
            std::thread::spawn(move || client(port, i, stop, acked, ids))
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

    // The restarted relay recovers the spool itself; then we look at what it kept.
    let mut relay = RelayProcess::start(&config, &[port]);
    assert!(relay.terminate().success());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stored, report) = rt.block_on(async {
        let (spool, report) = wasmrelay::spool::Spool::open(&dir.path().join("spool"))
            .await
            .unwrap();
        let mut stored = std::collections::HashMap::new();
        for env in spool.list().await {
            let bytes = spool
                .message(&env.id)
                .await
                .expect("every listed message is readable");
            assert_eq!(bytes.len() as u64, env.size, "{} is whole", env.id);
            stored.insert(env.id.0.clone(), String::from_utf8(bytes).unwrap());
        }
        (stored, report)
    });
    assert_eq!(
        report.discarded_partial, 0,
        "the restarted relay already removed partial writes"
    );
    let mut missing = Vec::new();
    for (id, marker) in &acknowledged {
        match stored.get(id) {
            Some(text) => assert!(
                text.ends_with(&format!("END {marker}\r\n")),
                "{id} holds its own message"
            ),
            None => missing.push(id.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let unique: HashSet<_> = acknowledged.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), acknowledged.len(), "ids are unique");
    eprintln!(
        "acknowledged {} before SIGKILL, {} in spool after restart (the extra were in flight)",
        acknowledged.len(),
        stored.len()
    );
}
