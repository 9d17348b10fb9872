//! The checks against a nameserver that never answers (the time bound), and how findings
//! read for plugins. Answers from a real zone are tested end to end in
//! `tests/auth_results.rs`, with dkimpy signing and a dnslib server.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use super::*;
use crate::config::delivery::ResolverConfig;
use crate::delivery::MxResolver;

/// A nameserver address that takes queries over UDP and TCP and never answers them. The
/// sockets live as long as the returned value.
fn silent_nameserver() -> (SocketAddr, UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (addr, udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn authenticator(nameserver: SocketAddr) -> Authenticator {
    let config = ResolverConfig {
        nameservers: vec![nameserver.to_string()],
        timeout: Duration::from_secs(30),
        attempts: 1,
    };
    Authenticator::new(MxResolver::from_config(&config).unwrap().hickory().clone())
}

const SIGNED: &[u8] = b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n\
\ts=sel; h=from:subject; bh=Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=;\r\n\
\tb=dGVzdHNpZ25hdHVyZWJ5dGVz\r\n\
From: Alice <alice@example.org>\r\nSubject: hi\r\n\r\nbody\r\n";

#[tokio::test]
async fn a_silent_nameserver_costs_the_budget_and_gives_temperror() {
    let (ns, _udp, _tcp) = silent_nameserver();
    let auth = authenticator(ns);
    let input = CheckInput {
        ip: "192.0.2.1".parse().unwrap(),
        helo: "client.example.org",
        mail_from: "alice@example.org",
        hostname: "relay.test",
        message: SIGNED,
    };
    let started = Instant::now();
    let outcome = auth.check(&input, Duration::from_millis(900)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    let got: Vec<_> = outcome.findings.iter().map(Finding::resinfo).collect();
    assert_eq!(
        got,
        [
            "spf=temperror smtp.mailfrom=alice@example.org",
            "dkim=temperror (timed out) header.d=example.org header.s=sel header.b=dGVzdHNp",
            "dmarc=temperror (timed out) header.from=example.org",
        ]
    );
    assert_eq!(outcome.dmarc_reject, None);
}

#[tokio::test]
async fn unsigned_mail_without_from_has_nothing_to_align() {
    let (ns, _udp, _tcp) = silent_nameserver();
    let auth = authenticator(ns);
    let input = CheckInput {
        ip: "2001:db8::1".parse().unwrap(),
        helo: "[2001:db8::1]",
        mail_from: "",
        hostname: "relay.test",
        message: b"Subject: no author\r\n\r\nbody\r\n",
    };
    let outcome = auth.check(&input, Duration::from_millis(300)).await;
    let got: Vec<_> = outcome.findings.iter().map(Finding::resinfo).collect();
    // The address literal is no SPF identity: `none` without asking DNS.
    assert_eq!(
        got,
        [
            "spf=none smtp.helo=\"[2001:db8::1]\"",
            "dkim=none",
            "dmarc=none (no author domain)",
        ]
    );
}

#[tokio::test]
async fn many_signatures_are_capped() {
    let (ns, _udp, _tcp) = silent_nameserver();
    let auth = authenticator(ns);
    let one = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=from; \
               bh=Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=; b=dGVzdA==\r\n";
    let message = format!(
        "{}{}From: a@example.org\r\n\r\nbody\r\n",
        one.repeat(50),
        "DKIM-Signature: garbage\r\n".repeat(50)
    );
    let input = CheckInput {
        ip: "192.0.2.1".parse().unwrap(),
        helo: "client.example.org",
        mail_from: "a@example.org",
        hostname: "relay.test",
        message: message.as_bytes(),
    };
    let outcome = auth.check(&input, Duration::from_millis(300)).await;
    let dkim: Vec<_> = outcome
        .findings
        .iter()
        .filter(|f| f.method == "dkim")
        .collect();
    assert_eq!(dkim.len(), MAX_SIGNATURES);
    assert!(
        dkim.iter().all(|f| f.domain == "example.org"),
        "signatures that could be checked come before malformed ones: {dkim:?}"
    );
}

#[test]
fn plugins_see_the_header_result_split_into_fields() {
    let finding = Finding::new(
        "dmarc",
        "fail",
        "example.org",
        Some("not aligned"),
        vec![
            ("header.from", "example.org".into()),
            ("policy.dmarc", "reject".into()),
        ],
    );
    assert_eq!(
        finding.to_plugin(),
        AuthResult {
            method: "dmarc".into(),
            result: "fail".into(),
            domain: "example.org".into(),
            detail: "(not aligned) header.from=example.org policy.dmarc=reject".into(),
        }
    );
    let bare = Finding::new("dkim", "none", "", None, vec![]);
    assert_eq!(bare.to_plugin().detail, "");
}

/// Parsing a 25 MB message (its body hashed twice) runs off the async workers: a session
/// on another task keeps being served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn large_messages_are_parsed_without_stalling_other_tasks() {
    let sig = |c: &str| {
        format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c={c}; d=example.org; s=s; h=from; \
             bh=Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=; b=dGVzdA==\r\n"
        )
    };
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let message = format!(
        "{}{}From: a@example.org\r\n\r\n{}",
        sig("relaxed/relaxed"),
        sig("simple/simple"),
        line.repeat(25 * 1024 * 1024 / line.len())
    );
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
    // On the runtime's one worker, as a session's task would be.
    let (signatures, took) = tokio::spawn(async move {
        let started = Instant::now();
        let parsed = parse(message.as_bytes()).unwrap();
        (parsed.dkim_headers.len(), started.elapsed())
    })
    .await
    .unwrap();
    let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
    ticker.abort();
    assert_eq!(signatures, 2);
    // Stalled, it would not tick at all; served, about every 5 ms (a loaded machine may
    // delay some ticks, so only a few are required).
    assert!(
        during >= 2,
        "the other task ticked {during} times in {took:?}"
    );
}
