use clap::Parser;

/// mimalloc instead of the C library's allocator: a relayed message makes about 170
/// short-lived allocations (commands, envelopes, replies, plugin calls), and glibc's
/// malloc and free were a fifth of the relay's instructions. BENCHMARKS.md has the trade:
/// fewer instructions and more throughput for a few KiB more per idle connection.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logging starts in `cli::main`: `serve` reads its `[log]` section first.
    let code = wasmrelay::cli::main(wasmrelay::cli::Cli::parse()).await?;
    std::process::exit(code);
}
