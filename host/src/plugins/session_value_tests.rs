//! `context.session-value` (0.2.1) and `session-memory: none`: what a plugin keeps for a
//! session lives with the session, so its pooled instance can serve anyone between calls;
//! and a component built against 0.2.0 still runs on this host.

use super::pool_tests::instantiations;
use super::tests::{conn, load, plugin, tx};
use super::*;

/// What RCPT `count@...` answered: the session's hook count, as the plugin kept it.
async fn count(s: &mut SessionPlugins, c: &Arc<ConnectionInfo>, t: &mut TransactionInfo) -> String {
    match s.rcpt(c, t, "count@example.com").await {
        Verdict::Reject(r) => r.lines.join(" "),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn each_session_sees_only_its_own_value() {
    let host = load(&[plugin("session-value", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let (mut a, mut b) = (host.session(), host.session());
    a.connect(&c).await;
    a.helo(&c).await;
    b.connect(&c).await;
    let mut t = tx("x@example.org");
    // a: connect, helo and this rcpt; b: connect and this rcpt.
    assert_eq!(count(&mut a, &c, &mut t).await, "hooks: 3");
    assert_eq!(count(&mut b, &c, &mut t).await, "hooks: 2");
    assert_eq!(count(&mut a, &c, &mut t).await, "hooks: 4");
    // A new session starts with no value, even on an instance that served the others.
    let mut fresh = host.session();
    assert_eq!(count(&mut fresh, &c, &mut t).await, "hooks: 1");
}

#[tokio::test]
async fn a_call_that_fails_keeps_nothing_it_set_and_oversized_values_are_refused() {
    let host = load(&[plugin("session-value", "instances = \"pooled\"")]).await;
    let c = conn("192.0.2.1");
    let mut s = host.session();
    s.connect(&c).await;
    let mut t = tx("x@example.org");
    // The trapping call counted itself before it failed; the count it set is dropped.
    let trapped = s.rcpt(&c, &mut t, "trap@example.com").await;
    assert!(matches!(trapped, Verdict::Tempfail(_)), "{trapped:?}");
    assert_eq!(host.metrics()[0].errors(), 1);
    assert_eq!(count(&mut s, &c, &mut t).await, "hooks: 2");
    match s.rcpt(&c, &mut t, "big@example.com").await {
        Verdict::Reject(r) => assert_eq!(r.lines, ["session value of 4097 bytes (max 4096)"]),
        other => panic!("{other:?}"),
    }
    // The refused value left the one before it: the big call's own count (3).
    assert_eq!(count(&mut s, &c, &mut t).await, "hooks: 4");
}

#[tokio::test]
async fn without_session_memory_an_instance_goes_back_after_every_call() {
    let host = load(&[plugin("session-value", "instances = \"pooled\"")]).await;
    let made = instantiations(&host);
    let c = conn("192.0.2.1");
    // Three idle sessions, connected and greeted, hold no instance: one serves them all.
    let mut sessions: Vec<_> = (0..3).map(|_| host.session()).collect();
    for s in &mut sessions {
        s.connect(&c).await;
        assert_eq!(host.idle_instances(0), 1);
    }
    for s in &mut sessions {
        s.helo(&c).await;
    }
    assert_eq!(instantiations(&host) - made, 1);
    assert_eq!(host.idle_instances(0), 1);
    // A plugin that keeps session memory (the default) holds one per session instead.
    let host = load(&[plugin("noop", "instances = \"pooled\"")]).await;
    let made = instantiations(&host);
    let mut sessions: Vec<_> = (0..3).map(|_| host.session()).collect();
    for s in &mut sessions {
        s.connect(&c).await;
    }
    assert_eq!(instantiations(&host) - made, 3);
    assert_eq!(host.idle_instances(0), 0);
}

#[tokio::test]
async fn a_plugin_built_against_0_2_0_runs_unchanged() {
    let host = load(&[plugin("frozen-0-2-0", "")]).await;
    assert_eq!(host.hooks_of(0), [Hook::Connect, Hook::Rcpt, Hook::Data]);
    let c = conn("192.0.2.1");
    let mut s = host.session();
    assert_eq!(s.connect(&c).await, Verdict::Continue);
    let mut t = tx("a@example.org");
    match s.rcpt(&c, &mut t, "old@example.com").await {
        Verdict::Reject(r) => {
            assert_eq!(
                (r.code, r.lines[0].as_str()),
                (550, "refused by a 0.2.0 plugin")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.rcpt(&c, &mut t, "b@example.com").await, Verdict::Continue);
    t.recipients.push("b@example.com".into());
    let mut msg = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
    assert_eq!(s.data(&c, &mut t, &mut msg).await, Verdict::Continue);
    assert_eq!(
        String::from_utf8(msg).unwrap(),
        "Subject: hi\r\nX-Interface: 0.2.0, annotated 0.2.0\r\n\r\nbody\r\n"
    );
    assert_eq!(host.metrics()[0].errors(), 0);
}
