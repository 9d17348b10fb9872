//! `host.counter-hold` (0.2.2): a count held for a session is given back when it ends,
//! however it ends, by a plugin with no `closed` hook and no memory of the session.

use super::tests::{conn, load, plugin, tx};
use super::*;

/// What every session's hold added up to, asked from a session of its own.
async fn open(host: &Arc<PluginHost>) -> String {
    let c = conn("192.0.2.9");
    let mut t = tx("x@example.org");
    let mut s = host.session();
    match s.rcpt(&c, &mut t, "open@example.com").await {
        Verdict::Reject(r) => r.lines.join(" "),
        other => panic!("{other:?}"),
    }
}

/// Polls [`open`] until it says `want` (a dropped session gives back from a task of its own).
async fn open_becomes(host: &Arc<PluginHost>, want: &str) {
    for _ in 0..200 {
        if open(host).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(open(host).await, want);
}

#[tokio::test]
async fn held_counts_are_given_back_when_the_session_ends_however_it_ends() {
    let host = load(&[plugin("counter-hold", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let (mut a, mut b, mut trapped) = (host.session(), host.session(), host.session());
    for s in [&mut a, &mut b, &mut trapped] {
        assert_eq!(s.connect(&c).await, Verdict::Continue);
    }
    assert_eq!(open(&host).await, "open: 3");
    // A call that holds one more and then traps: its hold is the session's all the same.
    let mut t = tx("x@example.org");
    let failed = trapped.rcpt(&c, &mut t, "trap@example.com").await;
    assert!(matches!(failed, Verdict::Tempfail(_)), "{failed:?}");
    assert_eq!(open(&host).await, "open: 4");
    // Closed normally; the plugin has no `closed` hook.
    a.closed(&c).await;
    assert_eq!(open(&host).await, "open: 3");
    trapped.closed(&c).await;
    assert_eq!(open(&host).await, "open: 1");
    // Dropped without `closed` (a session task that was cancelled).
    drop(b);
    open_becomes(&host, "open: 0").await;
}

#[tokio::test]
async fn holds_are_capped_per_session_and_refused_outside_sessions() {
    let host = load(&[plugin("counter-hold", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let mut s = host.session();
    s.connect(&c).await;
    let mut t = tx("x@example.org");
    match s.rcpt(&c, &mut t, "many@example.com").await {
        Verdict::Reject(r) => assert_eq!(
            r.lines,
            ["held 31; then at most 32 held counts per session"],
            "one was held at connect"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(open(&host).await, "open: 32");
    // A new session has room of its own; the full one gives all 32 back at its end.
    let mut other = host.session();
    other.connect(&c).await;
    s.closed(&c).await;
    assert_eq!(open(&host).await, "open: 1");
    // A delivery batch is not a session: nothing is held or counted.
    let env = Arc::new(EnvelopeInfo {
        queue_id: "q1".into(),
        mail_from: "a@example.org".into(),
        ..EnvelopeInfo::default()
    });
    let decision = host
        .delivery()
        .route(&env, "example.com", &["x@example.com".into()])
        .await;
    assert_eq!(
        decision,
        RouteDecision::Hold("counter-hold is only available in a session's hooks".into())
    );
    assert_eq!(open(&host).await, "open: 1");
}
