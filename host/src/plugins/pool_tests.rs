//! `instances = "pooled"`: warm instances are reused across sessions, bounded, and an
//! instance that failed or was abandoned mid-call is dropped alone.

use super::tests::{conn, load, plugin, tx};
use super::*;
use crate::config::plugins::InstancePolicy;

/// Test plugin `name`, pooled with room for two idle instances.
fn pooled(name: &str, extra: &str) -> PluginConfig {
    plugin(
        name,
        &format!("instances = \"pooled\"\npool_size = 2\n{extra}"),
    )
}

pub(super) fn instantiations(host: &PluginHost) -> u64 {
    host.metrics()[0].instantiations
}

#[tokio::test]
async fn sessions_reuse_one_warm_instance_and_fresh_ones_do_not() {
    for (instances, made) in [("pooled", 1), ("fresh", 3)] {
        let mut config = pooled("noop", "");
        if instances == "fresh" {
            config.instances = Some(InstancePolicy::Fresh);
            config.pool_size = None;
        }
        let host = load(&[config]).await;
        let probe = instantiations(&host);
        for _ in 0..3 {
            let mut s = host.session();
            assert_eq!(
                s.rcpt(
                    &conn("192.0.2.1"),
                    &mut tx("a@example.org"),
                    "b@example.com"
                )
                .await,
                Verdict::Continue
            );
        }
        assert_eq!(instantiations(&host) - probe, made, "{instances}");
        let idle = if instances == "pooled" { 1 } else { 0 };
        assert_eq!(host.idle_instances(0), idle, "{instances}");
    }
}

#[tokio::test]
async fn the_pool_is_bounded() {
    let host = load(&[pooled("noop", "")]).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut s = host.session();
        s.rcpt(
            &conn("192.0.2.1"),
            &mut tx("a@example.org"),
            "b@example.com",
        )
        .await;
        sessions.push(s);
    }
    assert_eq!(host.idle_instances(0), 0, "all three are busy");
    drop(sessions);
    assert_eq!(
        host.idle_instances(0),
        2,
        "pool_size = 2 kept, the third dropped"
    );
}

#[tokio::test]
async fn a_trap_discards_that_instance_only() {
    let host = load(&[pooled("trap", "")]).await;
    let (mut healthy, mut failing) = (host.session(), host.session());
    let c = conn("192.0.2.1");
    assert_eq!(
        healthy
            .rcpt(&c, &mut tx("a@example.org"), "good@example.org")
            .await,
        Verdict::Continue
    );
    assert_eq!(
        failing
            .rcpt(&c, &mut tx("a@example.org"), "bad@example.org")
            .await,
        Verdict::plugin_tempfail()
    );
    drop(failing);
    assert_eq!(
        host.idle_instances(0),
        0,
        "the trapped instance is not pooled"
    );
    drop(healthy);
    assert_eq!(host.idle_instances(0), 1, "the healthy one is");
    let before = instantiations(&host);
    let mut next = host.session();
    assert_eq!(
        next.rcpt(&c, &mut tx("a@example.org"), "good@example.org")
            .await,
        Verdict::Continue
    );
    assert_eq!(
        instantiations(&host),
        before,
        "the next session got the warm instance"
    );
}

#[tokio::test]
async fn an_abandoned_call_is_never_reused() {
    // The loop plugin spins at `bad@`; the session gives up on the call (a client that went
    // away drops the session's future the same way).
    let host = load(&[pooled("loop", "limits = { cpu = \"60s\", wall = \"60s\" }")]).await;
    let mut s = host.session();
    let c = conn("192.0.2.1");
    let mut t = tx("a@example.org");
    let call = s.rcpt(&c, &mut t, "bad@example.org");
    let gave_up = tokio::time::timeout(Duration::from_millis(200), call).await;
    assert!(gave_up.is_err(), "the loop was still running");
    drop(s);
    assert_eq!(
        host.idle_instances(0),
        0,
        "the interrupted instance is gone"
    );
}

#[tokio::test]
async fn an_instance_lost_mid_session_is_replaced_fresh_not_from_the_pool() {
    let host = load(&[pooled("trap", "")]).await;
    let c = conn("192.0.2.1");
    // One warm instance waits in the pool.
    let mut earlier = host.session();
    earlier
        .rcpt(&c, &mut tx("a@example.org"), "good@example.org")
        .await;
    drop(earlier);
    assert_eq!(host.idle_instances(0), 1);
    let mut s = host.session();
    // The session's first hook takes the warm one, which then traps.
    assert_eq!(
        s.rcpt(&c, &mut tx("a@example.org"), "bad@example.org")
            .await,
        Verdict::plugin_tempfail()
    );
    let before = instantiations(&host);
    // The pool is empty now, so refill it from another session first: the replacement must
    // still be a new instance, whose memory holds nothing of another session.
    let mut other = host.session();
    other
        .rcpt(&c, &mut tx("a@example.org"), "good@example.org")
        .await;
    drop(other);
    assert_eq!(host.idle_instances(0), 1);
    let made = instantiations(&host) - before;
    assert_eq!(
        s.rcpt(&c, &mut tx("a@example.org"), "good@example.org")
            .await,
        Verdict::Continue
    );
    assert_eq!(
        instantiations(&host) - before,
        made + 1,
        "the replacement was instantiated"
    );
    assert_eq!(host.idle_instances(0), 1, "and the pooled one stayed idle");
}

#[tokio::test]
async fn idle_pooled_instances_give_way_when_the_engine_pool_is_full() {
    // Room for two instances in all: the pooled plugin's two idle ones take both.
    let opts = PluginHostOptions {
        max_instances: 2,
        epoch_tick: Duration::from_millis(1),
        ..PluginHostOptions::default()
    };
    let configs = [pooled("noop", ""), plugin("trap", "")];
    let host = PluginHost::load(&configs, opts).await.unwrap();
    let c = conn("192.0.2.1");
    let (mut a, mut b) = (host.session(), host.session());
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.mail_from(&c, &mut tx("a@example.org")).await,
            Verdict::Continue
        );
    }
    drop((a, b));
    assert_eq!(host.idle_instances(0), 2);
    // The fresh plugin (the second one; `good@` passes both) needs a slot: the idle pooled
    // instances are dropped for it rather than the session refused.
    let mut s = host.session();
    assert_eq!(
        s.rcpt(&c, &mut tx("a@example.org"), "good@example.org")
            .await,
        Verdict::Continue
    );
}
