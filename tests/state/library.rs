//! The plugins' shared state through the real plugin host (no sockets): calendar quotas
//! under a controlled clock, and a hostile plugin against every cap.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmrelay::config::lists::ListConfig;
use wasmrelay::config::plugins::PluginConfig;
use wasmrelay::plugins::test_plugins::component;
use wasmrelay::plugins::{
    ConnectionInfo, DnsType, PluginHost, PluginHostOptions, StaticDns, TransactionInfo, Verdict,
};
use wasmrelay::state::{InProcessBackend, StateBackend};

fn plugin(name: &str, extra: &str) -> PluginConfig {
    let text = format!("path = {:?}\nname = {name:?}\n{extra}", component(name));
    toml::from_str(&text).unwrap()
}

fn conn() -> Arc<ConnectionInfo> {
    let remote: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    Arc::new(ConnectionInfo::new(
        "s1",
        remote,
        "127.0.0.1:25".parse().unwrap(),
    ))
}

fn tx(from: &str) -> TransactionInfo {
    TransactionInfo {
        mail_from: Some(from.into()),
        ..TransactionInfo::default()
    }
}

/// The reply text of a tempfail, with its code and enhanced code.
fn tempfail(v: &Verdict) -> String {
    match v {
        Verdict::Tempfail(r) => r.to_string().trim_end().to_string(),
        other => panic!("expected a tempfail, got {other:?}"),
    }
}

#[tokio::test]
async fn a_daily_quota_per_user_answers_its_reset_time_and_the_next_day_admits() {
    // 2026-12-01 23:59:00 UTC; the day ends at 1796169600 (2026-12-02 00:00:00 UTC).
    let now = Arc::new(AtomicU64::new(1_796_169_540_000));
    let clock = now.clone();
    let backend = Arc::new(InProcessBackend::with_clock(Arc::new(move || {
        SystemTime::UNIX_EPOCH + Duration::from_millis(clock.load(Ordering::SeqCst))
    })));
    let options = PluginHostOptions {
        backend: backend.clone(),
        max_instances: 8,
        ..PluginHostOptions::default()
    };
    let host = PluginHost::load(&[plugin("quota", "config = { limit = 2 }")], options)
        .await
        .unwrap();
    let c = conn();
    let mut alice = conn();
    Arc::make_mut(&mut alice).auth_user = Some("alice".into());
    let mail = |c: &Arc<ConnectionInfo>, from: &str| {
        let (host, c, mut t) = (host.clone(), c.clone(), tx(from));
        async move { host.session().mail_from(&c, &mut t).await }
    };
    // Each message is charged to the authenticated user, whatever the sender says.
    assert_eq!(mail(&alice, "a1@example.org").await, Verdict::Continue);
    assert_eq!(mail(&alice, "a2@example.org").await, Verdict::Continue);
    let over = mail(&alice, "a3@example.org").await;
    assert_eq!(
        tempfail(&over),
        "451 4.7.1 daily quota of 2 messages reached, resets at 1796169600 (Unix time)"
    );
    // Refused messages are not charged; others have their own quota.
    assert_eq!(
        mail(&c, "Bob@Example.org").await,
        Verdict::Continue,
        "bob is not alice"
    );
    let q = backend
        .quota_get("quota\u{0}user:alice", wasmrelay::state::QuotaWindow::Day)
        .await
        .unwrap();
    assert_eq!((q.total, q.reset_ms), (2, 1_796_169_600_000));
    // Still the same day one second before midnight; the next day admits again.
    now.store(1_796_169_599_000, Ordering::SeqCst);
    assert!(matches!(
        mail(&alice, "a4@example.org").await,
        Verdict::Tempfail(_)
    ));
    now.store(1_796_169_600_000, Ordering::SeqCst);
    assert_eq!(mail(&alice, "a5@example.org").await, Verdict::Continue);
    assert_eq!(mail(&alice, "a6@example.org").await, Verdict::Continue);
    let over = mail(&alice, "a7@example.org").await;
    assert!(
        tempfail(&over).ends_with("resets at 1796256000 (Unix time)"),
        "{over:?}"
    );
}

/// The hostile plugin with room to try everything: each attempt gets the error it should,
/// and nothing reached the backend that a cap should have stopped.
#[tokio::test]
async fn a_greedy_plugin_is_refused_at_every_cap() {
    let backend = Arc::new(InProcessBackend::new());
    // A resolver that would answer: the zone check must refuse before asking it.
    let mut dns = StaticDns::new();
    dns.insert("exfiltrate.evil.test", DnsType::Txt, "\"answered\"");
    let lists = vec![ListConfig {
        name: "suppression".into(),
        readers: vec!["greedy".into()],
        ..ListConfig::default()
    }];
    let options = PluginHostOptions {
        backend: backend.clone(),
        dns: Some(Arc::new(dns)),
        lists,
        max_instances: 8,
        ..PluginHostOptions::default()
    };
    let extra = "dns_zones = [\"allowed.test\"]\n\
                 limits = { kv_keys = 10, kv_bytes = 4096, capability_calls = 2000 }";
    let host = PluginHost::load(&[plugin("greedy", extra)], options)
        .await
        .unwrap();
    let c = conn();
    let mut t = tx("a@example.org");
    let mut s = host.session();
    assert_eq!(s.mail_from(&c, &mut t).await, Verdict::Continue);
    let v = s.rcpt(&c, &mut t, "greedy@example.com").await;
    assert_eq!(
        tempfail(&v),
        "451 4.7.0 greedy: member=invalid undeclared=denied write=denied kv=denied@10 \
         kvbytes=denied kvvalue=invalid kvkey=invalid quota=allowed,refused,refused \
         rate=invalid,ok dns=denied annotations=32/1000"
    );
    assert_eq!(backend.kv_usage("greedy"), (10, 30));
    assert!(backend
        .list_members("suppression")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(host.metrics()[0].errors(), 0);
    // The session goes on.
    assert_eq!(
        s.rcpt(&c, &mut t, "someone@example.com").await,
        Verdict::Continue
    );
}

/// The same plugin within the default budget of capability calls: the thousand
/// annotations exhaust it, the instance traps, and the plugin's `on_error` answers.
#[tokio::test]
async fn a_greedy_plugin_over_its_call_budget_gets_its_on_error() {
    let options = PluginHostOptions {
        max_instances: 8,
        ..PluginHostOptions::default()
    };
    let host = PluginHost::load(&[plugin("greedy", "on_error = \"reject\"")], options)
        .await
        .unwrap();
    let c = conn();
    let mut t = tx("a@example.org");
    let mut s = host.session();
    s.mail_from(&c, &mut t).await;
    match s.rcpt(&c, &mut t, "greedy@example.com").await {
        Verdict::Reject(r) => assert_eq!(r.to_string().trim_end(), "550 5.7.0 Rejected by policy"),
        other => panic!("expected on_error reject, got {other:?}"),
    }
    assert_eq!(host.metrics()[0].errors(), 1);
    assert_eq!(
        s.rcpt(&c, &mut t, "next@example.com").await,
        Verdict::Continue,
        "a fresh instance serves the next call"
    );
}

/// A plugin that hands the host more in one call than the per-call budget allows traps
/// while its arguments are lifted (the host never allocates them) and gets its `on_error`.
#[tokio::test]
async fn one_oversized_capability_call_traps_before_the_host_allocates_it() {
    let options = PluginHostOptions {
        max_instances: 8,
        ..PluginHostOptions::default()
    };
    // Room in linear memory for the 16 MiB argument: only the call budget may stop it.
    let extra = "on_error = \"reject\"\nlimits = { memory_mb = 256 }";
    let host = PluginHost::load(&[plugin("greedy", extra)], options)
        .await
        .unwrap();
    let c = conn();
    let mut t = tx("a@example.org");
    let mut s = host.session();
    s.mail_from(&c, &mut t).await;
    match s.rcpt(&c, &mut t, "flood@example.com").await {
        Verdict::Reject(r) => assert_eq!(r.to_string().trim_end(), "550 5.7.0 Rejected by policy"),
        other => panic!("expected on_error reject, got {other:?}"),
    }
    let m = &host.metrics()[0];
    assert_eq!(m.errors(), 1);
    // A trap while lifting the arguments, not the memory limit.
    assert_eq!((m.traps, m.memory), (1, 0), "{m:?}");
    // A fresh instance serves the next recipient.
    assert_eq!(
        s.rcpt(&c, &mut t, "someone@example.com").await,
        Verdict::Continue
    );
}
