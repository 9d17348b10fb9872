//! Spool throughput with group commit: messages stored durably by 1 and by 20 concurrent
//! writers, as the SMTP sessions do before each `250`, and delivered beside them by as many
//! tasks (an envelope update and a removal each, as delivery records them).
//!
//! ```sh
//! cargo bench -p wasmrelay --bench spool
//! ```
//!
//! `SPOOL_BENCH_N` (default 2000) sets the messages per case, `SPOOL_BENCH_WRITERS` (default
//! `1,20`) the writer counts, `SPOOL_BENCH_SIZE` (default 2048) the message size in bytes,
//! `SPOOL_BENCH_DELAY_US` (default 0) the commit delay, and `SPOOL_BENCH_DIR` (default
//! `$TMPDIR`) where the throwaway spools live: put it on the file system the relay's spool
//! will use, since fsync cost is the whole story. Prints one line per case: msgs/s, fsyncs
//! per message (fdatasyncs + directory fsyncs, over the stores and the deliveries), messages
//! per group commit (mean and largest).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmrelay::spool::{Envelope, RecipientStatus, Spool, SpoolOptions};
use wasmrelay_test_support::envelope;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Stores `n` messages from `writers` tasks into a fresh spool under `base`; prints the figures.
async fn run(
    base: &Path,
    n: usize,
    writers: usize,
    size: usize,
    delay: Duration,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(base)?;
    let options = SpoolOptions {
        commit_delay: delay,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open_with(dir.path(), options).await?;
    let per_writer = n / writers;
    let n = per_writer * writers;
    let msg = vec![b'x'; size];
    let start = Instant::now();
    // Sessions store; delivery, beside them, records each attempt and finishes the message.
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    let done_rx = Arc::new(tokio::sync::Mutex::new(done_rx));
    let storers: Vec<_> = (0..writers)
        .map(|_| {
            let (spool, msg, done) = (spool.clone(), msg.clone(), done_tx.clone());
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let env =
                        envelope(&spool, Some("sender@example.org"), &["r@example.com"], &msg);
                    spool.store(&env, msg.clone().into()).await?;
                    done.send(env)?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    drop(done_tx);
    let deliverers: Vec<_> = (0..writers)
        .map(|_| {
            let (spool, queued) = (spool.clone(), done_rx.clone());
            tokio::spawn(async move {
                loop {
                    let next = queued.lock().await.recv().await;
                    let Some(mut env) = next else { break };
                    env.recipients[0].status = RecipientStatus::Delivered;
                    spool.update(&env).await?;
                    spool.remove(&env.id).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in storers.into_iter().chain(deliverers) {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = spool.stats();
    anyhow::ensure!(s.stored == n as u64, "spool lost messages: {s:?}");
    anyhow::ensure!(spool.list().await.is_empty(), "messages left queued");
    println!(
        "spool: {writers:>2} writer(s): {n} x {size} B in {secs:.2}s: {:.0} msgs/s, \
         fsyncs/msg {:.3} (file {:.3} + dir {:.3}), msgs/commit {:.1} (max {}), \
         {} segments reclaimed",
        n as f64 / secs,
        (s.file_syncs + s.dir_syncs) as f64 / n as f64,
        s.file_syncs as f64 / n as f64,
        s.dir_syncs as f64 / n as f64,
        s.stored as f64 / s.commits.max(1) as f64,
        s.max_commit,
        s.reclaimed,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing extra. In test
    // mode run a tiny case so the target is checked without spending a minute on fsyncs.
    let bench = std::env::args().any(|a| a == "--bench");
    let n = if bench {
        env_or("SPOOL_BENCH_N", 2000)
    } else {
        40
    };
    let writers: Vec<usize> = std::env::var("SPOOL_BENCH_WRITERS")
        .unwrap_or_else(|_| "1,20".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .filter(|&w| w > 0)
        .collect();
    let size = env_or("SPOOL_BENCH_SIZE", 2048);
    let delay = Duration::from_micros(env_or("SPOOL_BENCH_DELAY_US", 0));
    let base = std::env::var_os("SPOOL_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        for w in writers {
            run(&base, n, w, size, delay).await?;
        }
        Ok(())
    })
}
