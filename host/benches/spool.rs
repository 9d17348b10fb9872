//! Spool throughput with group commit: 2 KB messages stored durably by 1 and by 20 concurrent
//! writers, as the SMTP sessions do before each `250`.
//!
//! ```sh
//! cargo bench -p wasmrelay --bench spool
//! ```
//!
//! `SPOOL_BENCH_N` (default 2000) sets the messages per case, `SPOOL_BENCH_WRITERS` (default
//! `1,20`) the writer counts, and `SPOOL_BENCH_DIR` (default `$TMPDIR`) where the throwaway
//! spools live: put it on the file system the relay's spool will use, since fsync cost is
//! the whole story. Prints one line per case: msgs/s, fsyncs per message, messages per batch.

use std::path::Path;
use std::time::Instant;

use wasmrelay::spool::Spool;
use wasmrelay_test_support::envelope;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Stores `n` messages from `writers` tasks into a fresh spool under `base`; prints the figures.
async fn run(base: &Path, n: usize, writers: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(base)?;
    let (spool, _) = Spool::open(dir.path()).await?;
    let per_writer = n / writers;
    let n = per_writer * writers;
    let msg = vec![b'x'; 2048];
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (spool, msg) = (spool.clone(), msg.clone());
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let env =
                        envelope(&spool, Some("sender@example.org"), &["r@example.com"], &msg);
                    spool.store(&env, msg.clone().into()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = spool.stats();
    anyhow::ensure!(spool.list().await.len() == n, "spool lost messages");
    println!(
        "spool: {writers:>2} writer(s): {n} x 2 KB in {secs:.2}s: {:.0} msgs/s, \
         fsyncs/msg {:.3} (file {:.3} + dir {:.3}), {:.1} msgs/batch",
        n as f64 / secs,
        (s.file_syncs + s.dir_syncs) as f64 / n as f64,
        s.file_syncs as f64 / n as f64,
        s.dir_syncs as f64 / n as f64,
        n as f64 / s.batches.max(1) as f64,
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
    let base = std::env::var_os("SPOOL_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        for w in writers {
            run(&base, n, w).await?;
        }
        Ok(())
    })
}
