//! The chain against real components: well-behaved and misbehaving test plugins.

use std::net::SocketAddr;

use wasmrelay_codec::reply::{Enhanced, Reply};

use super::test_plugins::component;
use super::*;

pub(super) fn plugin(name: &str, extra: &str) -> PluginConfig {
    let text = format!(
        "path = {:?}\n{extra}",
        component(name).display().to_string()
    );
    let mut c: PluginConfig = toml::from_str(&text).unwrap();
    c.name = Some(name.to_string());
    c
}

pub(super) fn opts() -> PluginHostOptions {
    PluginHostOptions {
        max_instances: 32,
        epoch_tick: Duration::from_millis(1),
        ..PluginHostOptions::default()
    }
}

pub(super) async fn load(configs: &[PluginConfig]) -> Arc<PluginHost> {
    PluginHost::load(configs, opts()).await.unwrap()
}

pub(super) fn conn(ip: &str) -> Arc<ConnectionInfo> {
    let remote: SocketAddr = format!("{ip}:40000").parse().unwrap();
    Arc::new(ConnectionInfo::new(
        "s1",
        remote,
        "127.0.0.1:25".parse().unwrap(),
    ))
}

pub(super) fn tx(from: &str) -> TransactionInfo {
    TransactionInfo {
        mail_from: Some(from.into()),
        ..TransactionInfo::default()
    }
}

fn reject(code: u16, e: (u8, u16, u16), text: &str) -> Verdict {
    Verdict::Reject(Reply::new(code, Enhanced(e.0, e.1, e.2), text))
}

#[tokio::test]
async fn policy_verdicts_in_order() {
    let host = load(&[plugin("policy", "config = { block_ip = \"192.0.2.66\" }")]).await;
    assert!(!host.hooks_of(0).contains(&Hook::Helo));
    let mut s = host.session();
    let blocked = s.connect(&conn("192.0.2.66")).await;
    assert_eq!(
        blocked,
        Verdict::Disconnect(Reply::new(
            554,
            Enhanced(5, 7, 1),
            "client blocked by policy"
        ))
    );
    let c = conn("192.0.2.1");
    let mut s = host.session();
    assert_eq!(s.connect(&c).await, Verdict::Continue);
    // helo is not among the plugin's hooks: the host does not call it.
    let calls = host.metrics()[0].calls;
    assert_eq!(s.helo(&c).await, Verdict::Continue);
    assert_eq!(host.metrics()[0].calls, calls);
    let mut t = tx("a@example.org");
    assert_eq!(s.mail_from(&c, &mut t).await, Verdict::Continue);
    assert_eq!(
        s.rcpt(&c, &mut t, "blocked@example.com").await,
        reject(550, (5, 1, 1), "mailbox unavailable")
    );
    assert_eq!(s.rcpt(&c, &mut t, "vip@example.com").await, Verdict::Accept);
    assert_eq!(
        s.rcpt(&c, &mut t, "someone@example.com").await,
        Verdict::Continue
    );
    // One instance served the whole session.
    assert_eq!(host.metrics()[0].instantiations, 1 + 2);
    assert_eq!(host.metrics()[0].errors(), 0);
}

#[tokio::test]
async fn dns_blocklist_through_the_lookup_capability() {
    let mut dns = StaticDns::new();
    dns.insert("1.2.0.192.bl.test", DnsType::A, "127.0.0.2");
    let options = PluginHostOptions {
        dns: Some(Arc::new(dns)),
        ..opts()
    };
    let zones = "dns_zones = [\"bl.test\"]";
    let host = PluginHost::load(&[plugin("policy", zones)], options)
        .await
        .unwrap();
    assert_eq!(
        host.session().connect(&conn("192.0.2.1")).await,
        reject(554, (5, 7, 1), "192.0.2.1 listed in bl.test (127.0.0.2)")
    );
    assert_eq!(
        host.session().connect(&conn("192.0.2.2")).await,
        Verdict::Continue
    );
    // Without `dns_zones` the same lookup is refused before it reaches the resolver: a
    // plugin cannot send data out in query names.
    let mut dns = StaticDns::new();
    dns.insert("1.2.0.192.bl.test", DnsType::A, "127.0.0.2");
    let options = PluginHostOptions {
        dns: Some(Arc::new(dns)),
        ..opts()
    };
    let host = PluginHost::load(&[plugin("policy", "")], options)
        .await
        .unwrap();
    assert_eq!(
        host.session().connect(&conn("192.0.2.1")).await,
        Verdict::Continue
    );
}

#[test]
fn session_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let host: Option<Arc<PluginHost>> = None;
    if let Some(host) = host {
        let mut s = host.session();
        let c = conn("192.0.2.1");
        let mut t = tx("");
        let mut m = Vec::new();
        send(&s.rcpt(&c, &mut t, "x"));
        send(&s.data(&c, &mut t, &mut m));
        let env = Arc::new(EnvelopeInfo::default());
        send(&host.delivery().route(&env, "x.test", &[]));
    }
}

#[tokio::test]
async fn rate_limit_through_the_backend() {
    let host = load(&[plugin("policy", "")]).await;
    let c = conn("192.0.2.1");
    let mut t = tx("<Fast@Example.org>");
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        // Separate sessions share the backend.
        verdicts.push(host.session().mail_from(&c, &mut t).await);
    }
    assert_eq!(verdicts[..2], [Verdict::Continue, Verdict::Continue]);
    assert!(
        matches!(&verdicts[2], Verdict::Tempfail(r) if r.code == 451 && r.enhanced == Some(Enhanced(4, 7, 1))),
        "{:?}",
        verdicts[2]
    );
}

#[tokio::test]
async fn data_hook_edits_the_message() {
    let host = load(&[plugin("policy", "")]).await;
    let c = conn("192.0.2.1");
    let mut t = tx("a@example.org");
    t.recipients.push("b@example.org".into());
    let mut msg = b"From: a@example.org\r\nX-Remove-Me: yes\r\nSubject: rewrite me\r\n\r\nplease REPLACE-BODY\r\n".to_vec();
    let v = host.session().data(&c, &mut t, &mut msg).await;
    assert_eq!(v, Verdict::Continue);
    assert_eq!(
        String::from_utf8(msg).unwrap(),
        "X-Seen-By: policy\r\nFrom: a@example.org\r\nSubject: rewritten\r\nX-Policy: checked\r\n\r\nreplaced body\r\n"
    );
    let mut untouched = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
    host.session().data(&c, &mut t, &mut untouched).await;
    assert_eq!(
        String::from_utf8(untouched).unwrap(),
        "X-Seen-By: policy\r\nSubject: hi\r\nX-Policy: checked\r\n\r\nbody\r\n"
    );
}

#[tokio::test]
async fn route_and_delivery_result() {
    let opts = PluginHostOptions {
        pools: vec!["routed".into()],
        ..opts()
    };
    let host = PluginHost::load(&[plugin("policy", "")], opts)
        .await
        .unwrap();
    let mut d = host.delivery();
    let env = Arc::new(EnvelopeInfo {
        queue_id: "q1".into(),
        mail_from: "a@example.org".into(),
        attempt: 1,
        size: 100,
        attributes: vec![("auth-user".into(), "alice".into())],
        ..EnvelopeInfo::default()
    });
    let route = |domain: &'static str| {
        let env = env.clone();
        let rcpts = vec![format!("x@{domain}")];
        (env, domain, rcpts)
    };
    let mut ask = async |domain: &'static str| {
        let (env, domain, rcpts) = route(domain);
        d.route(&env, domain, &rcpts).await
    };
    assert_eq!(
        ask("routed.test").await,
        RouteDecision::Pool("routed".into())
    );
    assert_eq!(
        ask("hold.test").await,
        RouteDecision::Hold("quarantined".into())
    );
    assert_eq!(
        ask("drop.test").await,
        RouteDecision::Drop("discarded".into())
    );
    assert_eq!(ask("mx.test").await, RouteDecision::Mx(TlsPolicy::Require));
    assert_eq!(ask("example.net").await, RouteDecision::Continue);
    let report = DeliveryReport {
        domain: "routed.test".into(),
        recipients: vec!["x@routed.test".into()],
        status: DeliveryStatus::Delivered,
        remote_host: Some("127.0.0.1".into()),
        reply: Some(Reply::new(250, Enhanced(2, 0, 0), "ok")),
    };
    d.delivery_result(&env, &report).await;
    d.delivery_result(&env, &report).await;
    let m = &host.metrics()[0];
    assert_eq!((m.calls, m.errors()), (7, 0));
}

/// Loads one misbehaving plugin, makes it misbehave, then checks the verdict, the counter,
/// and that a fresh instance (same session) and a new session work.
async fn misbehaves(name: &str, extra: &str, expect: fn(&PluginMetrics) -> u64) {
    let host = load(&[plugin(name, extra)]).await;
    let c = conn("192.0.2.1");
    let mut t = tx("a@example.org");
    let mut s = host.session();
    assert_eq!(
        s.rcpt(&c, &mut t, "good@example.org").await,
        Verdict::Continue,
        "{name}"
    );
    assert_eq!(
        s.rcpt(&c, &mut t, "bad@example.org").await,
        Verdict::plugin_tempfail(),
        "{name}"
    );
    let m = host.metrics().remove(0);
    assert_eq!((expect(&m), m.errors()), (1, 1), "{name}: {m:?}");
    assert_eq!(
        s.rcpt(&c, &mut t, "good@example.org").await,
        Verdict::Continue,
        "{name}"
    );
    assert_eq!(
        host.session().rcpt(&c, &mut t, "good2@example.org").await,
        Verdict::Continue
    );
    let m = host.metrics().remove(0);
    // A malformed return completed as a call, and is counted as an error too.
    assert_eq!((m.calls - m.malformed, m.errors()), (3, 1), "{name}: {m:?}");
    // probe + first instance + replacement + new session
    assert_eq!(m.instantiations, 4, "{name}");
}

#[tokio::test]
async fn infinite_loop_hits_the_cpu_budget() {
    misbehaves("loop", "limits = { cpu = \"20ms\" }", |m| m.cpu).await;
}

#[tokio::test]
async fn infinite_loop_hits_the_wall_time() {
    // Not a valid config (wall < cpu), but it isolates the wall-clock limit.
    misbehaves(
        "loop",
        "limits = { cpu = \"60s\", wall = \"300ms\" }",
        |m| m.wall_time,
    )
    .await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    misbehaves("membomb", "limits = { memory_mb = 8 }", |m| m.memory).await;
}

#[tokio::test]
async fn trap_is_contained() {
    misbehaves("trap", "", |m| m.traps).await;
}

#[tokio::test]
async fn enormous_return_is_malformed() {
    misbehaves("huge", "", |m| m.malformed).await;
}

#[tokio::test]
async fn wrong_reply_code_is_malformed() {
    misbehaves("badreply", "", |m| m.malformed).await;
}

#[tokio::test]
async fn capability_flood_hits_the_call_budget() {
    misbehaves("capspam", "", |m| m.capabilities).await;
}

#[tokio::test]
async fn on_error_accept_and_reject() {
    let c = conn("192.0.2.1");
    let mut t = tx("a@example.org");
    let host = load(&[
        plugin("trap", "on_error = \"accept\""),
        plugin("policy", ""),
    ])
    .await;
    // The trap is skipped and the next plugin decides.
    assert_eq!(
        host.session().rcpt(&c, &mut t, "bad@example.org").await,
        Verdict::Continue
    );
    let host = load(&[plugin("trap", "on_error = \"reject\"")]).await;
    assert_eq!(
        host.session().rcpt(&c, &mut t, "bad@example.org").await,
        reject(550, (5, 7, 0), "Rejected by policy")
    );
}

/// A reload builds a new host; sessions already running keep the chain they started with.
#[tokio::test]
async fn sessions_keep_their_chain_across_a_reload() {
    let c = conn("192.0.2.1");
    let mut t = tx("a@example.org");
    let old = load(&[plugin("policy", "")]).await;
    let mut in_flight = old.session();
    assert_eq!(
        in_flight.rcpt(&c, &mut t, "vip@example.org").await,
        Verdict::Accept
    );
    let new = load(&[plugin("trap", "on_error = \"reject\"")]).await;
    drop(old);
    assert_eq!(
        in_flight.rcpt(&c, &mut t, "bad@example.org").await,
        Verdict::Continue
    );
    assert_eq!(
        new.session().rcpt(&c, &mut t, "bad@example.org").await,
        Verdict::plugin_reject()
    );
}

#[tokio::test]
async fn first_final_verdict_wins() {
    let c = conn("192.0.2.1");
    let mut t = tx("a@example.org");
    // policy accepts vip@ before trap gets to run.
    let host = load(&[plugin("policy", ""), plugin("trap", "")]).await;
    let mut s = host.session();
    assert_eq!(s.rcpt(&c, &mut t, "vip@example.org").await, Verdict::Accept);
    assert_eq!(host.metrics()[1].calls, 0);
    assert_eq!(
        s.rcpt(&c, &mut t, "bad@example.org").await,
        Verdict::plugin_tempfail()
    );
}

fn load_error(name: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let configs = [plugin(name, "")];
    match rt.block_on(PluginHost::load(&configs, opts())) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn init_refusal_fails_the_load() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let configs = [plugin("policy", "config = { fail_init = true }")];
    let e = match rt.block_on(PluginHost::load(&configs, opts())) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    let expected = "plugin policy: cannot instantiate: init refused its config: refusing config {\"fail_init\":true}";
    assert_eq!(e, expected);
}

#[test]
fn foreign_component_is_refused() {
    let e = load_error("wrong-world");
    assert!(
        e.contains("not a wasmrelay plugin") && e.contains("run"),
        "{e}"
    );
}

#[test]
fn unknown_major_is_refused() {
    let e = load_error("wrong-version");
    assert!(
        e.contains("wasmrelay:plugin/hooks@0.1.0")
            && e.contains("0.2.x only")
            && e.contains("rebuild the plugin"),
        "{e}"
    );
}

/// Hooks are type-checked once per plugin, on the load-time probe's instance, and later
/// instances are called without a check of their own: a plugin whose exports have the right
/// names but the wrong types must never get past that first check.
#[test]
fn exports_with_the_wrong_types_are_refused_at_load() {
    let e = load_error("wrong-signature");
    assert!(
        e.contains("plugin wrong-signature") && e.contains("type-checking export `init`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let options = PluginHostOptions {
        cache_dir: Some(cache.clone()),
        ..opts()
    };
    let host = PluginHost::load(&[plugin("noop", "")], options)
        .await
        .unwrap();
    assert_eq!(host.cache_outcomes(), [CacheOutcome::Disabled]);
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing written"
    );

    // A missing directory is created for the relay alone, and then used.
    let fresh = dir.path().join("new/cache");
    let options = PluginHostOptions {
        cache_dir: Some(fresh.clone()),
        ..opts()
    };
    let host = PluginHost::load(&[plugin("noop", "")], options)
        .await
        .unwrap();
    assert_eq!(host.cache_outcomes(), [CacheOutcome::Miss]);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    for entry in std::fs::read_dir(&fresh).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn compiled_components_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let with_cache = || PluginHostOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..opts()
    };
    let configs = [plugin("noop", ""), plugin("policy", "")];
    let first = PluginHost::load(&configs, with_cache()).await.unwrap();
    assert_eq!(
        first.cache_outcomes(),
        [CacheOutcome::Miss, CacheOutcome::Miss]
    );
    let second = PluginHost::load(&configs, with_cache()).await.unwrap();
    let verdict = second
        .session()
        .rcpt(&conn("192.0.2.1"), &mut tx(""), "blocked@x.org")
        .await;
    assert!(verdict.is_final());
    // A corrupt cache entry is recompiled, not trusted. (Entries are replaced by rename,
    // never rewritten in place: live hosts map them.)
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
    }
    let third = PluginHost::load(&configs, with_cache()).await.unwrap();
    assert_eq!(
        third.cache_outcomes(),
        [CacheOutcome::Miss, CacheOutcome::Miss]
    );
}
