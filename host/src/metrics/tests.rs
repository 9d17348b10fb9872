//! The registry's text, parsed by Python's `prometheus_client` (Prometheus and OpenMetrics
//! parsers): every family, its type and the values fed to it.

use std::time::Duration;

use wasmrelay_test_support::parse_metrics;

use super::*;
use crate::events::{Event, Events};
use crate::plugins::{FailureKind, Hook, VerdictKind};
use crate::spool::{unix_now, Spool};
use crate::state::StateBackend;

#[tokio::test]
async fn every_family_parses_with_the_values_fed_to_it() {
    let m = Metrics::with_max_domains(3);
    m.connections.opened();
    m.connections.opened();
    m.connections.closed();
    m.connections.refused(true);

    let tap = m.tap();
    tap.event(&Event::new("received"));
    for (stage, code) in [
        ("rcpt", 550),
        ("mail-from", 451),
        ("rcpt", 550),
        ("data", 554),
    ] {
        tap.event(
            &Event::new("rejected")
                .field("stage", stage)
                .field("code", code),
        );
    }
    for name in ["open", "click", "click", "delivered"] {
        tap.event(&Event::new(name));
    }

    m.delivery("mx", "a@one.test", "delivered", 1);
    m.delivery("mx", "b@ONE.test", "deferred", 1);
    m.delivery("bulk", "c@two.test", "bounced", 1);
    // A domain no label may hold, then one past the cap of 3.
    m.delivery("mx", "e@\"}\nwasmrelay_forged 1", "delivered", 1);
    m.delivery("mx", "d@three.test", "delivered", 1);

    let p = m.plugin("policy");
    p.verdict(Hook::Rcpt, VerdictKind::Reject);
    p.verdict(Hook::Rcpt, VerdictKind::Continue);
    p.verdict(Hook::Rcpt, VerdictKind::Continue);
    p.failure(Hook::Data, &FailureKind::Cpu);
    p.verdict(Hook::Data, VerdictKind::Error);
    p.latency(Hook::Rcpt, Duration::from_micros(30));
    p.latency(Hook::Rcpt, Duration::from_millis(3));
    p.latency(Hook::Rcpt, Duration::from_secs(20));

    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let mut env = crate::delivery::test_envelope(&["x@one.test"]);
    env.id = spool.new_id();
    env.received_at = unix_now() - 100;
    spool
        .store(&env, b"Subject: x\r\n\r\nx\r\n".to_vec().into())
        .await
        .unwrap();
    // A Redis backend on a port nothing listens on: its calls fail and open the circuit.
    let redis = crate::config::state::RedisConfig {
        url: "redis://127.0.0.1:1".into(),
        ..Default::default()
    };
    let redis = Arc::new(crate::state::RedisBackend::new(&redis).unwrap());
    assert!(redis.kv_get("ns", "key").await.is_err());
    m.watch(spool.clone(), Events::off(), redis);

    let text = m.encode();
    assert!(!text.contains("forged"), "{text}");
    let f = parse_metrics(&text);
    let v = |sample: &str, labels: &[(&str, &str)]| {
        f.value(sample, labels)
            .unwrap_or_else(|| panic!("no {sample} {labels:?} in\n{text}"))
    };

    assert_eq!(f.kind("wasmrelay_connections"), Some("counter"));
    assert_eq!(f.kind("wasmrelay_connections_open"), Some("gauge"));
    assert_eq!(v("wasmrelay_connections_open", &[]), 1.0);
    assert_eq!(v("wasmrelay_connections_total", &[]), 2.0);
    let refused = "wasmrelay_connections_refused_total";
    assert_eq!(v(refused, &[("reason", "max_connections_per_ip")]), 1.0);
    assert_eq!(v(refused, &[("reason", "max_connections")]), 0.0);

    assert_eq!(v("wasmrelay_messages_accepted_total", &[]), 1.0);
    let rejected = "wasmrelay_messages_rejected_total";
    assert_eq!(v(rejected, &[("stage", "rcpt"), ("code", "550")]), 2.0);
    assert_eq!(v(rejected, &[("stage", "data"), ("code", "554")]), 1.0);
    let tempfailed = "wasmrelay_messages_tempfailed_total";
    assert_eq!(
        v(tempfailed, &[("stage", "mail-from"), ("code", "451")]),
        1.0
    );
    let tracking = "wasmrelay_tracking_events_total";
    assert_eq!(v(tracking, &[("event", "open")]), 1.0);
    assert_eq!(v(tracking, &[("event", "click")]), 2.0);
    assert_eq!(v(tracking, &[("event", "unsubscribe")]), 0.0);

    let attempts = "wasmrelay_delivery_attempts_total";
    assert_eq!(v(attempts, &[("domain", "one.test"), ("pool", "mx")]), 2.0);
    let outcomes = "wasmrelay_delivery_outcomes_total";
    let outcome = |domain, pool, outcome| {
        v(
            outcomes,
            &[("domain", domain), ("pool", pool), ("outcome", outcome)],
        )
    };
    assert_eq!(outcome("one.test", "mx", "delivered"), 1.0);
    assert_eq!(outcome("one.test", "mx", "deferred"), 1.0);
    assert_eq!(outcome("two.test", "bulk", "bounced"), 1.0);
    assert_eq!(outcome("invalid", "mx", "delivered"), 1.0);
    assert_eq!(outcome("other", "mx", "delivered"), 1.0);
    assert_eq!(
        f.samples(outcomes).count(),
        5,
        "three.test has no series of its own"
    );

    let calls = "wasmrelay_plugin_calls_total";
    let call = |hook, verdict| {
        v(
            calls,
            &[("plugin", "policy"), ("hook", hook), ("verdict", verdict)],
        )
    };
    assert_eq!(call("rcpt", "continue"), 2.0);
    assert_eq!(call("rcpt", "reject"), 1.0);
    assert_eq!(call("data", "error"), 1.0);
    assert_eq!(f.samples(calls).count(), 3, "only verdicts that happened");
    let errors = "wasmrelay_plugin_errors_total";
    assert_eq!(
        v(
            errors,
            &[("plugin", "policy"), ("hook", "data"), ("kind", "cpu")]
        ),
        1.0
    );

    let latency = "wasmrelay_plugin_call_duration_seconds";
    assert_eq!(f.kind(latency), Some("histogram"));
    let rcpt = [("plugin", "policy"), ("hook", "rcpt")];
    let bucket = |le| {
        let mut labels = rcpt.to_vec();
        labels.push(("le", le));
        v(&format!("{latency}_bucket"), &labels)
    };
    assert_eq!(bucket("0.001"), 1.0);
    assert_eq!(bucket("0.005"), 2.0);
    assert_eq!(bucket("10.0"), 2.0);
    assert_eq!(bucket("+Inf"), 3.0);
    assert_eq!(v(&format!("{latency}_count"), &rcpt), 3.0);
    let sum = v(&format!("{latency}_sum"), &rcpt);
    assert!((sum - 20.00303).abs() < 1e-6, "{sum}");

    assert_eq!(v("wasmrelay_queue_messages", &[]), 1.0);
    let age = v("wasmrelay_queue_oldest_age_seconds", &[]);
    assert!((100.0..200.0).contains(&age), "{age}");
    assert!(v("wasmrelay_spool_file_syncs_total", &[]) >= 1.0);
    assert!(v("wasmrelay_spool_commit_batches_total", &[]) >= 1.0);
    assert!(v("wasmrelay_spool_commit_operations_total", &[]) >= 1.0);
    assert_eq!(v("wasmrelay_events_lost_total", &[]), 0.0);
    assert_eq!(v("wasmrelay_state_redis_calls_total", &[]), 1.0);
    assert_eq!(v("wasmrelay_state_redis_failures_total", &[]), 1.0);
    assert_eq!(v("wasmrelay_state_redis_outages_total", &[]), 1.0);
    assert_eq!(v("wasmrelay_state_redis_circuit_open", &[]), 1.0);
    assert_eq!(f.kind("wasmrelay_state_redis_circuit_open"), Some("gauge"));
}

#[test]
fn label_values_keep_host_names_and_refuse_the_rest() {
    assert_eq!(label_value("mx-1.example.com"), "mx-1.example.com");
    assert_eq!(label_value("[IPv6:2001:db8::1]"), "[IPv6:2001:db8::1]");
    assert_eq!(label_value("a\"b"), "invalid");
    assert_eq!(label_value("a\nb"), "invalid");
    assert_eq!(label_value(""), "invalid");
    assert_eq!(label_value(&"a".repeat(256)), "invalid");
}
