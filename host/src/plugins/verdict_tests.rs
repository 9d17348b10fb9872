//! Verdict counters, the plugin that decided, and where `emit` events say they came from,
//! against the real `policy`, `trap` and `noop` test plugins.

use std::sync::Mutex;

use super::test_plugins::component;
use super::*;

fn plugin(name: &str, on_error: &str) -> PluginConfig {
    let text = format!(
        "path = {:?}\nname = {name:?}\non_error = {on_error:?}\n",
        component(name).display().to_string()
    );
    toml::from_str(&text).unwrap()
}

/// One emitted event: plugin, hook, queue id, recipient, then `name k=v,k=v`.
type Emitted = (String, Option<Hook>, Option<String>, Option<String>, String);

/// Keeps what plugins emit.
#[derive(Default)]
struct Captured(Mutex<Vec<Emitted>>);

impl EventSink for Captured {
    fn emit(&self, e: PluginEvent<'_>) {
        let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.0.lock().unwrap().push((
            e.plugin.to_string(),
            e.hook,
            e.queue_id.map(str::to_string),
            e.recipient.map(str::to_string),
            format!("{} {}", e.name, fields.join(",")),
        ));
    }
}

async fn load(configs: &[PluginConfig], events: Arc<Captured>) -> Arc<PluginHost> {
    let opts = PluginHostOptions {
        max_instances: 32,
        epoch_tick: Duration::from_millis(1),
        pools: vec!["routed".into()],
        events,
        ..PluginHostOptions::default()
    };
    PluginHost::load(configs, opts).await.unwrap()
}

fn conn() -> Arc<ConnectionInfo> {
    Arc::new(ConnectionInfo::new(
        "s1",
        "192.0.2.1:40000".parse().unwrap(),
        "127.0.0.1:25".parse().unwrap(),
    ))
}

fn tx(from: &str, rcpts: &[&str]) -> TransactionInfo {
    TransactionInfo {
        mail_from: Some(from.into()),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        ..TransactionInfo::default()
    }
}

#[tokio::test]
async fn every_call_is_counted_by_hook_and_verdict_and_the_decider_is_known() {
    let events = Arc::new(Captured::default());
    let host = load(
        &[plugin("noop", "tempfail"), plugin("policy", "tempfail")],
        events,
    )
    .await;
    let (c, mut s) = (conn(), host.session());
    let mut t = tx("a@example.org", &[]);
    assert_eq!(s.mail_from(&c, &mut t).await, Verdict::Continue);
    assert_eq!(s.decided_by(), None);
    assert!(matches!(
        s.rcpt(&c, &mut t, "blocked@example.com").await,
        Verdict::Reject(_)
    ));
    assert_eq!(s.decided_by(), Some(("policy", Hook::Rcpt)));
    assert_eq!(s.rcpt(&c, &mut t, "vip@example.com").await, Verdict::Accept);
    assert_eq!(s.rcpt(&c, &mut t, "x@example.com").await, Verdict::Continue);
    assert_eq!(s.decided_by(), None, "a run where everyone continued");
    let mut d = host.delivery();
    let env = Arc::new(EnvelopeInfo {
        queue_id: "q1".into(),
        ..EnvelopeInfo::default()
    });
    let hold = d.route(&env, "hold.test", &["h@hold.test".into()]).await;
    assert_eq!(hold, RouteDecision::Hold("quarantined".into()));
    assert_eq!(d.decided_by(), Some(("policy", Hook::Route)));
    assert_eq!(d.route(&env, "x.test", &[]).await, RouteDecision::Continue);
    assert_eq!(d.decided_by(), None);

    let policy = &host.metrics()[1];
    let count = |hook, kind| policy.verdicts_of(hook, kind);
    assert_eq!(count(Hook::MailFrom, VerdictKind::Continue), 1);
    assert_eq!(count(Hook::Rcpt, VerdictKind::Reject), 1);
    assert_eq!(count(Hook::Rcpt, VerdictKind::Accept), 1);
    assert_eq!(count(Hook::Rcpt, VerdictKind::Continue), 1);
    assert_eq!(count(Hook::Route, VerdictKind::Accept), 1);
    assert_eq!(count(Hook::Route, VerdictKind::Continue), 1);
    let total: u64 = policy.verdicts.iter().map(|v| v.count).sum();
    assert_eq!(total, policy.calls, "{:?}", policy.verdicts);
    // The plugin before it was asked about every session hook it declares, and continued.
    let noop = &host.metrics()[0];
    assert!(noop
        .verdicts
        .iter()
        .all(|v| v.verdict == VerdictKind::Continue));
}

#[tokio::test]
async fn a_failing_plugin_counts_as_error_and_decides_through_on_error() {
    let events = Arc::new(Captured::default());
    let host = load(&[plugin("trap", "reject")], events).await;
    let (c, mut s) = (conn(), host.session());
    let mut t = tx("a@example.org", &[]);
    assert_eq!(
        s.rcpt(&c, &mut t, "ok@example.com").await,
        Verdict::Continue
    );
    let verdict = s.rcpt(&c, &mut t, "bad@example.com").await;
    assert_eq!(verdict, Verdict::plugin_reject());
    assert_eq!(s.decided_by(), Some(("trap", Hook::Rcpt)));
    let hook = Hook::Rcpt;
    let m = &host.metrics()[0];
    assert_eq!(m.verdicts_of(hook, VerdictKind::Error), 1);
    assert_eq!(m.verdicts_of(hook, VerdictKind::Reject), 0);
    assert_eq!(m.verdicts_of(hook, VerdictKind::Continue), 1);
}

#[tokio::test]
async fn emitted_events_name_the_hook_message_and_recipient() {
    let events = Arc::new(Captured::default());
    let host = load(&[plugin("policy", "tempfail")], events.clone()).await;
    let (c, mut s) = (conn(), host.session());
    let mut t = tx("a@example.org", &["x@example.com", "y@example.com"]);
    t.message_id = Some("q7".into());
    let mut message = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
    assert_eq!(s.data(&c, &mut t, &mut message).await, Verdict::Continue);
    let got = events.0.lock().unwrap().clone();
    assert_eq!(
        got,
        [(
            "policy".to_string(),
            Some(Hook::Data),
            Some("q7".to_string()),
            None,
            "policy-checked recipients=2,listed=2".to_string()
        )]
    );
}
