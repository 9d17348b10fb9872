//! Plugin runtime benchmark: what a session pays for plugins.
//!
//! Run: `cargo bench --bench plugins -- --quick` (builds the test plugins for
//! wasm32-wasip2 first if needed). Without a release build of the dependencies at hand,
//! `CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo bench --bench plugins --profile dev -- --quick`
//! reuses the dev build (dependencies are optimized there already).
//! Targets: a new session's first hook (instantiate + `init` + call) ≤ 10 µs, a hook call
//! returning `continue` ≤ 1 µs, ≤ 2 MiB resident per live instance. The first-hook entries
//! time the session's start and its first hook, and print the session's end beside them.
//! The `part:` entries price the host-side pieces of a call and an instantiation, to tell
//! them from wasmtime's own cost. The `recipient copy`
//! entries price a delivery batch's copy with the bundled tracker: for a text message its
//! `wants` declaration (HTML only) spares the instance and the call. Per-language figures
//! are the `languages` bench.
//!
//! `BENCH_MAX_INSTANCES` sizes the instance pool (default 1,100). Each slot reserves address
//! space, more than valgrind has: to count instructions per call, which a busy machine does
//! not disturb, run the binary under callgrind with `BENCH_MAX_INSTANCES=4` and a filter,
//! e.g. `--bench continue --profile-time 3` (BENCHMARKS.md, "Instructions").

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wasmrelay::config::plugins::{InstancePolicy, PluginConfig};
use wasmrelay::plugins::test_plugins::component;
use wasmrelay::plugins::{
    bench_instantiate, ConnectionInfo, EnvelopeInfo, PluginHost, PluginHostOptions, RecipientInfo,
    TransactionInfo, Verdict,
};
use wasmrelay::spool::MessageBytes;

use common::{rss_bytes, runtime};

fn host(rt: &tokio::runtime::Runtime, max_instances: u32) -> Arc<PluginHost> {
    host_with(rt, max_instances, None)
}

fn host_with(
    rt: &tokio::runtime::Runtime,
    max_instances: u32,
    instances: Option<InstancePolicy>,
) -> Arc<PluginHost> {
    let config = PluginConfig {
        path: component("noop"),
        instances,
        ..PluginConfig::default()
    };
    let opts = PluginHostOptions {
        max_instances,
        ..PluginHostOptions::default()
    };
    rt.block_on(PluginHost::load(&[config], opts)).unwrap()
}

/// The instance pool's size: `BENCH_MAX_INSTANCES` (see above), else `default`.
fn max_instances(default: u32) -> u32 {
    std::env::var("BENCH_MAX_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn conn() -> Arc<ConnectionInfo> {
    Arc::new(ConnectionInfo::new(
        "bench",
        "192.0.2.1:40000".parse().unwrap(),
        "127.0.0.1:25".parse().unwrap(),
    ))
}

fn plugins(c: &mut Criterion) {
    let rt = runtime();
    let max = max_instances(1_100);
    let host = host(&rt, max);
    let conn = conn();
    let tx = TransactionInfo {
        mail_from: Some("a@example.org".into()),
        ..TransactionInfo::default()
    };

    c.bench_function("instantiate from pool", |b| {
        b.iter(|| rt.block_on(async { assert!(bench_instantiate(&host, 0, false).await) }))
    });
    c.bench_function("instantiate from pool + init", |b| {
        b.iter(|| rt.block_on(async { assert!(bench_instantiate(&host, 0, true).await) }))
    });
    // Each iteration is a new session whose first hook is a `rcpt`. The first entry times
    // the session's start and that hook; the second its end (the instance dropped and its
    // pool slot reset, or given back to the plugin's pool), which comes after the session's
    // last reply and so is not in any client's wait.
    let first_hook = |c: &mut Criterion, name: &str, host: &Arc<PluginHost>| {
        let mut tx = tx.clone();
        let mut session_end = Duration::ZERO;
        let mut sessions = 0u32;
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut took = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let mut s = host.session();
                        black_box(s.rcpt(&conn, &mut tx, "b@example.org").await);
                        let hooked = Instant::now();
                        drop(s);
                        took += hooked - start;
                        session_end += hooked.elapsed();
                        sessions += 1;
                    }
                    took
                })
            })
        });
        if sessions > 0 {
            println!(
                "{name}: the session's end after it, {:.2} µs on average ({sessions} sessions)",
                session_end.as_secs_f64() * 1e6 / f64::from(sessions)
            );
        }
    };
    first_hook(
        c,
        "new session, first hook (instantiate + init + call)",
        &host,
    );
    // What a session pays under `instances = "pooled"` (the bundled plugins' default): its
    // first hook takes a warm instance instead of instantiating and running `init`.
    let pooled = host_with(&rt, max, Some(InstancePolicy::Pooled));
    first_hook(c, "new session, first hook on a pooled instance", &pooled);
    c.bench_function("hook call returning continue (live instance)", |b| {
        let mut s = host.session();
        let mut tx = tx.clone();
        rt.block_on(s.connect(&conn));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let v = s.rcpt(&conn, &mut tx, "b@example.org").await;
                    debug_assert_eq!(v, Verdict::Continue);
                    black_box(v);
                }
                start.elapsed()
            })
        })
    });

    // Resident memory per live instance: open many sessions, each with its instance
    // created by a first hook, and divide the growth of the resident set.
    let live = 1_000;
    let warm: Vec<_> = (0..50)
        .map(|_| {
            let mut s = host.session();
            rt.block_on(s.connect(&conn));
            s
        })
        .collect();
    drop(warm);
    let before = rss_bytes();
    let sessions: Vec<_> = (0..live)
        .map(|_| {
            let mut s = host.session();
            rt.block_on(s.connect(&conn));
            s
        })
        .collect();
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / live as f64;
    println!(
        "resident memory per live instance: {:.1} KiB ({live} instances, RSS {:.1} -> {:.1} MiB)",
        per / 1024.0,
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64
    );
    drop(sessions);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = plugins
}
criterion_main!(benches, extra, copies);

fn parts(c: &mut Criterion) {
    c.bench_function("part: WasiCtx build", |b| {
        b.iter(|| black_box(wasmtime_wasi::WasiCtx::builder().build()))
    });
    c.bench_function("part: Instant::now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    c.bench_function("part: tokio Instant::now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    let (conn, tx) = (conn(), TransactionInfo::default());
    c.bench_function("part: clone connection + transaction into an Arc", |b| {
        b.iter(|| black_box(Arc::new((conn.clone(), tx.clone()))))
    });
    let rt = runtime();
    c.bench_function("part: block_on + timeout", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(tokio::time::timeout(Duration::from_secs(1), async { 1 }).await)
            })
        })
    });
}

criterion_group! {
    name = extra;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = parts
}

/// One delivery batch's recipient copy of `message` with the bundled tracker.
fn copy_bench(c: &mut Criterion, name: &str, message: &[u8], edited: bool) {
    let rt = runtime();
    let config: PluginConfig = toml::from_str(
        r#"
builtin = "tracker"
config = { secret = "bench-secret-not-for-production-0123456789", base_url = "https://t.example.com/" }
"#,
    )
    .unwrap();
    let defaults = PluginHostOptions::default();
    let opts = PluginHostOptions {
        max_instances: max_instances(defaults.max_instances),
        ..defaults
    };
    let host = rt.block_on(PluginHost::load(&[config], opts)).unwrap();
    let env = Arc::new(EnvelopeInfo {
        queue_id: "bench0001".into(),
        mail_from: "news@example.org".into(),
        attempt: 1,
        ..EnvelopeInfo::default()
    });
    let rcpt = RecipientInfo {
        address: "b@example.com".into(),
        ..RecipientInfo::default()
    };
    // Spooled messages reach a batch shared, as here: a copy nobody edits is never copied.
    let message = MessageBytes::from(message);
    c.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut batch = host.delivery();
                let (_, copy) = batch
                    .recipient_copy(|| env.clone(), || rcpt.clone(), &message)
                    .await;
                assert_eq!(copy.is_some(), edited);
                black_box(copy)
            })
        })
    });
}

fn recipient_copies(c: &mut Criterion) {
    let mut text = b"From: news@example.org\r\nSubject: figures\r\n\r\n".to_vec();
    let mut html = b"From: news@example.org\r\nSubject: figures\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>"
        .to_vec();
    while text.len() < 2048 {
        text.extend_from_slice(b"Figures at https://example.org/q3 as agreed last week.\r\n");
        html.extend_from_slice(b"<p>Figures at <a href=\"https://example.org/q3\">q3</a>.</p>\r\n");
    }
    html.extend_from_slice(b"</body></html>\r\n");
    copy_bench(
        c,
        "recipient copy, tracker, 2 KB text (skipped by wants)",
        &text,
        false,
    );
    copy_bench(
        c,
        "recipient copy, tracker, 2 KB HTML (fresh instance + call)",
        &html,
        true,
    );
}

criterion_group! {
    name = copies;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = recipient_copies
}
