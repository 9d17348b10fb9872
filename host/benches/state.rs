//! State backend benchmark: what a plugin's state call costs in process and through Redis.
//!
//! Run: `cargo bench --bench state -- --quick` (starts its own `redis-server` on loopback).
//! As with the plugins bench, `CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo bench --bench state
//! --profile dev -- --quick` reuses the dev build.
//!
//! - `check/<backend>/<call>`: one call at a time, the latency a hook sees per check.
//! - `throughput/<backend>`: 64 concurrent callers (sessions) doing a quota check each,
//!   as many as they can for a second: checks per second, printed after criterion's lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wasmrelay::config::state::RedisConfig;
use wasmrelay::state::{InProcessBackend, KvCap, QuotaWindow, RedisBackend, StateBackend};
use wasmrelay_test_support::RedisServer;

const CAP: KvCap<'static> = KvCap {
    namespace: "bench",
    max_keys: 1 << 40,
    max_bytes: 1 << 40,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn backends(
    redis: &RedisServer,
    rt: &tokio::runtime::Runtime,
) -> Vec<(&'static str, Arc<dyn StateBackend>)> {
    let _guard = rt.enter();
    let remote = RedisBackend::new(&RedisConfig {
        url: redis.url(),
        key_prefix: "bench:".into(),
        ..RedisConfig::default()
    })
    .unwrap();
    vec![
        ("memory", Arc::new(InProcessBackend::new())),
        ("redis", Arc::new(remote)),
    ]
}

fn checks(c: &mut Criterion) {
    let redis = RedisServer::start();
    let rt = runtime();
    let backends = backends(&redis, &rt);
    let minute = Duration::from_secs(60);
    for (name, b) in &backends {
        let mut n = 0u64;
        c.bench_function(&format!("check/{name}/rate_limit"), |i| {
            i.iter(|| rt.block_on(b.rate_limit("p\0sender", 1_000_000, minute, 1_000_000, 1)))
        });
        c.bench_function(&format!("check/{name}/quota_add"), |i| {
            i.iter(|| rt.block_on(b.quota_add("p\0user", 1, u64::MAX, QuotaWindow::Day)))
        });
        c.bench_function(&format!("check/{name}/kv_add"), |i| {
            i.iter(|| {
                n += 1;
                let key = format!("k{}", n % 10_000);
                rt.block_on(b.kv_add(CAP, &key, b"v".to_vec(), Some(minute)))
            })
        });
        rt.block_on(b.list_add("suppression", "someone@example.org", None, 10))
            .unwrap();
        c.bench_function(&format!("check/{name}/list_contains"), |i| {
            i.iter(|| rt.block_on(b.list_contains("suppression", "someone@example.org")))
        });
    }
    for (name, b) in &backends {
        let per_sec = rt.block_on(throughput(b.clone(), 64, Duration::from_secs(1)));
        println!("throughput/{name}: {per_sec:.0} quota checks/s from 64 concurrent callers");
    }
}

/// Quota checks per second from `callers` concurrent tasks over `span`.
async fn throughput(b: Arc<dyn StateBackend>, callers: usize, span: Duration) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let key = format!("p\0user{i}");
                let mut done = 0u64;
                while start.elapsed() < span {
                    b.quota_add(&key, 1, u64::MAX, QuotaWindow::Day)
                        .await
                        .expect("a quota check");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

criterion_group!(benches, checks);
criterion_main!(benches);
