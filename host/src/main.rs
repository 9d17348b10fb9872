use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logging starts in `cli::main`: `serve` reads its `[log]` section first.
    let code = wasmrelay::cli::main(wasmrelay::cli::Cli::parse()).await?;
    std::process::exit(code);
}
