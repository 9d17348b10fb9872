//! A plugin swapped by SIGHUP under load, a bad config refused, a reload during startup.

use super::*;

const CLIENTS: usize = 4;
const BLOCKED: &str = "stop@example.com";
const BLOCKED_REPLY: &str = "550 5.1.1 mailbox unavailable\r\n";

/// What one transaction saw.
#[derive(Debug)]
struct Sent {
    /// When its session's client started to connect: later than the reload means the
    /// relay accepted it with the new chain.
    connecting: Instant,
    /// When its session got the greeting: earlier than the SIGHUP means the relay accepted
    /// it with the old chain.
    greeted: Instant,
    session: String,
    /// The reply to `RCPT TO:<stop@...>`.
    blocked_reply: String,
    subject: String,
}

/// One transaction to `<tag>@example.com` and `stop@example.com` on an open session; the
/// reply to `stop@` is either `250` or the new chain's refusal, every other step succeeds.
fn load_transaction(c: &mut Raw, session: &str, tag: &str) -> Result<String, String> {
    let mut step = |line: String, expect: &str| -> Result<String, String> {
        c.send(format!("{line}\r\n").as_bytes());
        let reply = c.reply();
        if reply.starts_with(expect) {
            Ok(reply)
        } else {
            Err(format!(
                "{session} {line:?}: expected {expect}, got {reply:?}"
            ))
        }
    };
    step(format!("MAIL FROM:<{tag}@example.org>"), "250")?;
    step(format!("RCPT TO:<{tag}@example.com>"), "250")?;
    let blocked_reply = step(format!("RCPT TO:<{BLOCKED}>"), "")?;
    if !blocked_reply.starts_with("250 ") && blocked_reply != BLOCKED_REPLY {
        return Err(format!("{session} {tag}: unexpected {blocked_reply:?}"));
    }
    step("DATA".into(), "354")?;
    step(format!("Subject: {tag}\r\n\r\nload {tag}\r\n."), "250")?;
    Ok(blocked_reply)
}

/// One client: sessions of up to three transactions each, until `stop` or its bound. Any
/// unexpected reply ends it with an error.
fn load_client(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>) -> Result<Vec<Sent>, String> {
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    'sessions: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 2_000 {
        let connecting = Instant::now();
        let mut c = Raw::connect(addr);
        let greeted = Instant::now();
        let session = format!("c{id}-s{n}");
        c.cmd("EHLO load.test", "250");
        for _ in 0..3 {
            n += 1;
            let tag = format!("c{id}-{n}");
            let blocked_reply = load_transaction(&mut c, &session, &tag)?;
            sent.push(Sent {
                connecting,
                greeted,
                session: session.clone(),
                blocked_reply,
                subject: tag,
            });
            if stop.load(Ordering::Relaxed) {
                break 'sessions;
            }
        }
        c.cmd("QUIT", "221");
    }
    Ok(sent)
}

#[test]
fn sighup_swaps_a_plugin_under_load_without_failing_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let before = plugin("noop", "swapped", "tempfail", "");
    let after = plugin(
        "example",
        "swapped",
        "tempfail",
        &format!("config = {{ blocked = \"nobody@example.org, {BLOCKED}\" }}"),
    );
    let (mut relay, addr) = start_relay(dir.path(), &sink, &before);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let stop = stop.clone();
            std::thread::spawn(move || load_client(addr, id, stop))
        })
        .collect();
    // A session that stays open across the reload.
    let connecting = Instant::now();
    let mut in_flight = Raw::connect(addr);
    let greeted = Instant::now();
    in_flight.cmd("EHLO in-flight.test", "250");
    let mut sent = vec![Sent {
        connecting,
        greeted,
        session: "in-flight".into(),
        blocked_reply: load_transaction(&mut in_flight, "in-flight", "in-flight-1").unwrap(),
        subject: "in-flight-1".into(),
    }];

    std::thread::sleep(Duration::from_millis(700));
    relay.write_config(&config_text(sink.port(), &after));
    let hup = Instant::now();
    relay.sighup();
    relay.wait_log("configuration reloaded", Duration::from_secs(20));
    let reloaded = Instant::now();
    sent.push(Sent {
        connecting,
        greeted,
        session: "in-flight".into(),
        blocked_reply: load_transaction(&mut in_flight, "in-flight", "in-flight-2").unwrap(),
        subject: "in-flight-2".into(),
    });
    in_flight.cmd("QUIT", "221");
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);

    for (id, c) in clients.into_iter().enumerate() {
        match c.join().unwrap() {
            Ok(s) => sent.extend(s),
            Err(e) => panic!("client {id} failed: {e}"),
        }
    }
    let old: Vec<_> = sent.iter().filter(|s| s.greeted < hup).collect();
    let new: Vec<_> = sent.iter().filter(|s| s.connecting > reloaded).collect();
    assert!(
        !old.is_empty() && !new.is_empty(),
        "load before and after the reload ({} before, {} after)",
        old.len(),
        new.len()
    );
    for s in &old {
        assert!(
            s.blocked_reply.starts_with("250 "),
            "sessions from before the SIGHUP keep the old chain, also after the reload: {s:?}"
        );
    }
    for s in &new {
        assert_eq!(
            s.blocked_reply, BLOCKED_REPLY,
            "new sessions see the new chain: {s:?}"
        );
    }
    // A session never switches chains half way.
    let mut per_session: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for s in &sent {
        per_session
            .entry(&s.session)
            .or_default()
            .push(s.blocked_reply == BLOCKED_REPLY);
    }
    for (session, replies) in &per_session {
        assert!(
            replies.iter().all(|r| *r == replies[0]),
            "{session} changed chains mid-session: {replies:?}"
        );
    }

    // Every acknowledged message arrives; the new chain's data hook stamped the new ones.
    let got = sink.wait_for(sent.len(), WAIT);
    assert_eq!(
        got.len(),
        sent.len(),
        "as many delivered as acknowledged: {:?}",
        got.iter().map(|m| m.rcpt_tos.clone()).collect::<Vec<_>>()
    );
    let by_subject: BTreeMap<String, &Delivered> = got
        .iter()
        .map(|m| {
            let text = m.text();
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_string();
            (subject, m)
        })
        .collect();
    for s in &sent {
        let m = by_subject
            .get(&s.subject)
            .unwrap_or_else(|| panic!("{} was acknowledged but not delivered", s.subject));
        let refused = s.blocked_reply == BLOCKED_REPLY;
        assert_eq!(m.rcpt_tos.contains(&BLOCKED.to_string()), !refused, "{s:?}");
        assert_eq!(
            m.text()
                .contains("\r\nX-Example-Plugin: seen 1 recipients\r\n"),
            refused,
            "the data hook of the chain that refused stop@ stamped the message: {s:?}"
        );
    }
    assert!(!relay.log().contains("plugin failed"));
    relay.terminate();
}

#[test]
fn sighup_during_startup_reloads_instead_of_killing_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let path = dir.path().join("relay.toml");
    let chain = plugin(
        "example",
        "example",
        "tempfail",
        &format!("config = {{ blocked = \"{BLOCKED}\" }}"),
    );
    write_config(&path, &config_text(sink.port(), &chain));
    let mut relay = Relay::spawn(&path);
    // A supervisor may ask for a reload at any time, also while the relay still compiles
    // its plugins (an empty cache: that takes a while).
    relay.wait_log("spool open", Duration::from_secs(30));
    relay.sighup();
    // Panics if the relay died of the SIGHUP instead.
    relay.wait_listening();
    relay.wait_log("configuration reloaded", Duration::from_secs(30));
    let mut c = Raw::connect(relay.addr());
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<x@example.org>", "250");
    assert_eq!(c.cmd(&format!("RCPT TO:<{BLOCKED}>"), "550"), BLOCKED_REPLY);
    c.cmd("QUIT", "221");
    relay.terminate();
}

#[test]
fn a_bad_config_on_sighup_is_refused_and_the_running_chain_stays() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let chain = plugin(
        "example",
        "example",
        "tempfail",
        &format!("config = {{ blocked = \"{BLOCKED}\" }}"),
    );
    let (mut relay, addr) = start_relay(dir.path(), &sink, &chain);
    let bad = "[[plugins]]\npath = \"/nonexistent/plugin.wasm\"\nname = \"missing\"\n";
    relay.write_config(&config_text(sink.port(), bad));
    relay.sighup();
    relay.wait_log("reload refused", Duration::from_secs(20));
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    c.cmd("MAIL FROM:<x@example.org>", "250");
    assert_eq!(c.cmd(&format!("RCPT TO:<{BLOCKED}>"), "550"), BLOCKED_REPLY);
    c.cmd("RCPT TO:<ok@example.com>", "250");
    c.cmd("QUIT", "221");
    let log = relay.log();
    assert!(
        log.contains("plugins[0].path: no such file: /nonexistent/plugin.wasm"),
        "the refusal names the key:\n{log}"
    );
    relay.terminate();
}
