//! What a plugin costs in each language: the table of docs/plugins.md#cost-per-language.
//!
//! Run: `cargo bench -p wasmrelay --bench languages` (`-- --quick` for a first look: fewer
//! rounds, one cold compile). The Python, JavaScript and C examples are the components
//! `cargo test -p wasmrelay --test polyglot` builds into `target/polyglot/`; a missing one is
//! reported with that command and skipped. The Rust row is the bundled `rate-limit` with one
//! per-recipient rule (a rate-limit capability call per `rcpt`, like greylisting's kv calls).
//! The JavaScript starter (one string check at `mail-from`) shows what the JavaScript runtime
//! itself costs per call, beside the content policy's own work.
//!
//! Per language: component size; load time with an empty compile cache (compile, write the
//! cache, one instantiation + `init` to probe it) and with the cache filled (what a restart
//! pays); instantiation alone and with `init`; one call of the plugin's hook on a live
//! instance; one message (a whole session's hooks: connect, helo, mail-from, rcpt, data,
//! queued, closed, as many as the plugin handles) with `instances = "fresh"` and
//! `"pooled"`; resident memory per live instance. Times are medians of the rounds. Take
//! figures on a quiet machine: beside a compiler they mean little.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmrelay::config::plugins::PluginConfig;
use wasmrelay::plugins::test_plugins::target_dir;
use wasmrelay::plugins::{
    bench_instantiate, CacheOutcome, ConnectionInfo, PluginHost, PluginHostOptions, SessionPlugins,
    TransactionInfo,
};

use common::{rss_bytes, runtime};

/// One language's example and the hook its per-call figure times.
struct Subject {
    language: &'static str,
    /// `builtin = "..."` or `path = "..."`, and the plugin's config.
    source: Source,
    config: &'static str,
    hook: HookCall,
}

enum Source {
    Builtin(&'static str),
    Built(&'static str),
}

#[derive(Clone, Copy)]
enum HookCall {
    MailFrom,
    Rcpt,
    Data,
}

fn subjects() -> Vec<Subject> {
    vec![
        Subject {
            language: "Rust (bundled rate-limit)",
            source: Source::Builtin("rate-limit"),
            config: r#"config = { rules = [{ name = "r", count = "recipients", key = "ip", rate = "1000000/min" }] }"#,
            hook: HookCall::Rcpt,
        },
        Subject {
            language: "Python (greylisting)",
            source: Source::Built("greylisting.wasm"),
            config: r#"config = { delay = "5m" }"#,
            hook: HookCall::Rcpt,
        },
        Subject {
            language: "JavaScript (content policy)",
            source: Source::Built("content-policy.wasm"),
            config: r#"config = { reject_phrases = ["wire the money today"], spam_subject_words = ["lottery"] }"#,
            hook: HookCall::Data,
        },
        Subject {
            language: "JavaScript (starter: one string check)",
            source: Source::Built("js-starter.wasm"),
            config: "config = {}",
            hook: HookCall::MailFrom,
        },
        Subject {
            language: "C (allowlist)",
            source: Source::Built("allowlist-c/allowlist.wasm"),
            config: r#"config = { domains = ["example.org"] }"#,
            hook: HookCall::MailFrom,
        },
    ]
}

/// How many rounds each figure takes its median from.
struct Rounds {
    cold: usize,
    cached: usize,
    instantiate: usize,
    calls: usize,
    messages: usize,
    live: usize,
}

fn rounds(quick: bool) -> Rounds {
    if quick {
        Rounds {
            cold: 1,
            cached: 3,
            instantiate: 50,
            calls: 500,
            messages: 100,
            live: 20,
        }
    } else {
        Rounds {
            cold: 3,
            cached: 10,
            instantiate: 500,
            calls: 5_000,
            messages: 1_000,
            live: 100,
        }
    }
}

fn plugin_config(subject: &Subject, instances: &str) -> PluginConfig {
    let source = match subject.source {
        Source::Builtin(name) => format!("builtin = {name:?}"),
        Source::Built(file) => {
            format!("path = {:?}", polyglot(file).display().to_string())
        }
    };
    // The limits the polyglot tests give interpreted plugins.
    let text = format!(
        "{source}\ninstances = {instances:?}\n\
         limits = {{ memory_mb = 128, cpu = \"2s\", wall = \"10s\" }}\n{}\n",
        subject.config
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", subject.language))
}

fn polyglot(file: &str) -> PathBuf {
    target_dir().join("polyglot").join(file)
}

fn component_size(subject: &Subject) -> Option<u64> {
    match subject.source {
        Source::Builtin(name) => wasmrelay_bundled::component(name).map(|c| c.len() as u64),
        Source::Built(file) => std::fs::metadata(polyglot(file)).ok().map(|m| m.len()),
    }
}

async fn load(config: &PluginConfig, cache: Option<&Path>, live: usize) -> Arc<PluginHost> {
    let opts = PluginHostOptions {
        cache_dir: cache.map(Path::to_path_buf),
        // Room for the live instances of the memory figure, and a few more.
        max_instances: (live + 16) as u32,
        ..PluginHostOptions::default()
    };
    PluginHost::load(std::slice::from_ref(config), opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn conn() -> Arc<ConnectionInfo> {
    let mut c = ConnectionInfo::new(
        "bench",
        "192.0.2.1:40000".parse().unwrap(),
        "127.0.0.1:25".parse().unwrap(),
    );
    c.helo = Some("client.example.org".into());
    Arc::new(c)
}

fn tx() -> TransactionInfo {
    TransactionInfo {
        mail_from: Some("a@example.org".into()),
        recipients: vec!["b@example.com".into()],
        ..TransactionInfo::default()
    }
}

/// A 2 KB text message.
fn message() -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: quarterly figures\r\n\
        Message-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    while m.len() < 2048 {
        m.extend_from_slice(b"The figures for the quarter are attached as agreed last week.\r\n");
    }
    m
}

/// One call of the subject's hook on the session's (live) instance.
async fn call(s: &mut SessionPlugins, hook: HookCall, c: &Arc<ConnectionInfo>, msg: &[u8]) {
    let mut t = tx();
    match hook {
        HookCall::MailFrom => drop(s.mail_from(c, &mut t).await),
        HookCall::Rcpt => drop(s.rcpt(c, &mut t, "b@example.com").await),
        HookCall::Data => drop(s.data(c, &mut t, &mut msg.to_vec()).await),
    }
}

/// A whole session for one message, every hook the plugin handles.
async fn session(host: &Arc<PluginHost>, c: &Arc<ConnectionInfo>, msg: &[u8]) {
    let mut s = host.session();
    let mut t = tx();
    s.connect(c).await;
    s.helo(c).await;
    s.mail_from(c, &mut t).await;
    s.rcpt(c, &mut t, "b@example.com").await;
    s.data(c, &mut t, &mut msg.to_vec()).await;
    t.queue_id = Some("bench0001".into());
    s.queued(c, &t, "bench0001").await;
    s.closed(c).await;
}

/// Times `n` runs of `f`, one sample each.
async fn samples<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f().await;
        all.push(start.elapsed());
    }
    median(all)
}

struct Row {
    language: &'static str,
    size: u64,
    cold: Duration,
    cached: Duration,
    instantiate: Duration,
    instantiate_init: Duration,
    call: Duration,
    message_fresh: Duration,
    message_pooled: Duration,
    rss_per_instance: f64,
}

async fn measure(subject: &Subject, r: &Rounds) -> Row {
    let fresh = plugin_config(subject, "fresh");
    let pooled = plugin_config(subject, "pooled");
    let (c, msg) = (conn(), message());

    let mut cold = Vec::new();
    for _ in 0..r.cold {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let host = load(&fresh, Some(dir.path()), 0).await;
        cold.push(start.elapsed());
        assert_eq!(host.cache_outcomes(), [CacheOutcome::Miss]);
    }
    let cache = tempfile::tempdir().unwrap();
    load(&fresh, Some(cache.path()), 0).await;
    let mut cached = Vec::new();
    for _ in 0..r.cached {
        let start = Instant::now();
        let host = load(&fresh, Some(cache.path()), 0).await;
        cached.push(start.elapsed());
        assert_eq!(
            host.cache_outcomes(),
            [CacheOutcome::Hit],
            "the cache is used"
        );
    }

    let host = load(&fresh, Some(cache.path()), r.live).await;
    let instantiate = samples(r.instantiate, || async {
        assert!(bench_instantiate(&host, 0, false).await)
    })
    .await;
    let instantiate_init = samples(r.instantiate, || async {
        assert!(bench_instantiate(&host, 0, true).await)
    })
    .await;
    let mut live = host.session();
    call(&mut live, subject.hook, &c, &msg).await;
    let mut calls = Vec::with_capacity(r.calls);
    for _ in 0..r.calls {
        let start = Instant::now();
        call(&mut live, subject.hook, &c, &msg).await;
        calls.push(start.elapsed());
    }
    let call_time = median(calls);
    drop(live);
    let message_fresh = samples(r.messages, || session(&host, &c, &msg)).await;

    // Resident memory per live instance: sessions that each hold one, on slots of the
    // pooling allocator that no instance used before (a reused slot keeps its pages
    // resident, so a second round would show nothing).
    let open = |n: usize| {
        let host = host.clone();
        let (c, msg) = (c.clone(), msg.clone());
        async move {
            let mut all = Vec::with_capacity(n);
            for _ in 0..n {
                let mut s = host.session();
                call(&mut s, subject.hook, &c, &msg).await;
                all.push(s);
            }
            all
        }
    };
    let before = rss_bytes();
    let sessions = open(r.live).await;
    let after = rss_bytes();
    drop(sessions);
    let rss_per_instance = after.saturating_sub(before) as f64 / r.live as f64;
    drop(host);

    let host = load(&pooled, Some(cache.path()), 0).await;
    session(&host, &c, &msg).await;
    let message_pooled = samples(r.messages, || session(&host, &c, &msg)).await;

    Row {
        language: subject.language,
        size: component_size(subject).unwrap_or(0),
        cold: median(cold),
        cached: median(cached),
        instantiate,
        instantiate_init,
        call: call_time,
        message_fresh,
        message_pooled,
        rss_per_instance,
    }
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100_000.0 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

fn show_bytes(b: f64) -> String {
    if b >= 1_048_576.0 {
        format!("{:.1} MiB", b / 1_048_576.0)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs bench targets with `--test`: nothing to measure then.
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let r = rounds(quick);
    let rt = runtime();
    let mut rows = Vec::new();
    for subject in subjects() {
        if component_size(&subject).is_none() {
            println!(
                "{}: no component at {}; build it with `cargo test -p wasmrelay --test polyglot` \
                 (toolchains: .ci/run). Skipped.",
                subject.language,
                match subject.source {
                    Source::Built(file) => polyglot(file).display().to_string(),
                    Source::Builtin(name) => format!("builtin:{name}"),
                }
            );
            continue;
        }
        eprintln!("measuring {} ...", subject.language);
        rows.push(rt.block_on(measure(&subject, &r)));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average during the run: {} ({} rounds)\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if quick { "quick" } else { "full" }
    );
    println!(
        "| language | component | load, cold cache | load, cached | instantiate | instantiate + init | hook call | message, fresh | message, pooled | memory per instance |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.language,
            show_bytes(row.size as f64),
            show(row.cold),
            show(row.cached),
            show(row.instantiate),
            show(row.instantiate_init),
            show(row.call),
            show(row.message_fresh),
            show(row.message_pooled),
            show_bytes(row.rss_per_instance),
        );
    }
}
