use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WASMRELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log file or journald gets plain
        // `key=value` fields that grep and log shippers can match.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let code = wasmrelay::cli::main(wasmrelay::cli::Cli::parse()).await?;
    std::process::exit(code);
}
