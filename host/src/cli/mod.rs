//! Command line: `serve`, `check-config`, `queue`, `list`, `sink`, `hash-password`.

mod list;
mod queue;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::delivery::DkimAlgorithm;
use crate::config::server::AuthCheck;
use crate::config::{Config, ListenerConfig, RelayConfig};
use crate::relay::{Relay, Reloader};
use crate::smtp::server::{self, ConnectionLimits, Listener};
use crate::smtp::session::{SessionEnv, Users};

#[derive(Parser, Debug)]
#[command(
    name = "wasmrelay",
    version,
    about = "An SMTP relay whose policy lives in WebAssembly plugins"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print every error with its key; then load every plugin
    /// and run its `init` on its config, as `serve` would.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// Check the file only: do not compile the plugins or run their `init`.
        #[arg(long)]
        no_plugins: bool,
    },
    /// Inspect or edit the queue (safe while the relay runs).
    Queue {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: queue::QueueCommand,
    },
    /// Show or edit the shared lists declared under `[[lists]]` (the suppression list):
    /// through the running relay, or in the list journal when no relay runs.
    List {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: list::ListCommand,
    },
    /// DKIM keys: `dkim keygen --domain D --selector S` writes a key and prints the DNS records.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// Plugin tools: `plugin test PLUGIN.wasm --transcript FILE` (or `builtin:NAME` for a
    /// bundled plugin) runs a scripted session against one plugin in the real host and
    /// prints each hook's verdict.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Read a password on standard input and print an argon2id hash for `[[users]]`.
    HashPassword,
    /// A catch-all SMTP server that writes every message it receives to a directory.
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:2526")]
        listen: SocketAddr,
        /// Directory for `<id>.eml` and `<id>.json` files.
        #[arg(long, default_value = "sink")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Run a transcript (connect/helo/mail/rcpt/data/route... lines) against PLUGIN.
    Test {
        /// The component (`.wasm`).
        plugin: PathBuf,
        /// The plugin's config: a TOML file, or TOML text such as `limit = 5`.
        #[arg(long, default_value = "")]
        config: String,
        /// The scripted session.
        #[arg(long)]
        transcript: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DkimCommand {
    /// Generate a signing key, write it as PEM, and print the TXT record to publish (and the
    /// SPF and DMARC records to consider).
    Keygen {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        /// The key type; RSA keys are 2048-bit.
        #[arg(long, value_enum, default_value_t = DkimAlgorithm::RsaSha256)]
        algorithm: DkimAlgorithm,
        /// Where to write the private key; default `<selector>._domainkey.<domain>.pem`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs one command. Installs the log first: `serve` as its config's `[log]` says, every
/// other command as text at `info` (or `WASMRELAY_LOG`).
pub async fn main(cli: Cli) -> anyhow::Result<i32> {
    if !matches!(cli.command, Command::Serve { .. }) {
        crate::logging::init(&Default::default());
    }
    match cli.command {
        Command::Serve { config } => serve(&config).await.map(|_| 0),
        Command::CheckConfig { config, no_plugins } => Ok(check_config(&config, !no_plugins).await),
        Command::Queue { config, command } => queue::run(&config, command).await,
        Command::List { config, command } => list::run(&config, command).await,
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    config,
                    transcript,
                },
        } => {
            use crate::plugins::transcript;
            let table = transcript::parse_config_arg(&config)?;
            let mut out = std::io::stdout();
            let summary =
                transcript::run_transcript(&plugin, &table, &transcript, &mut out).await?;
            eprintln!(
                "{} hook call(s), {} refusal(s), {} plugin error(s)",
                summary.hooks, summary.refusals, summary.plugin_errors
            );
            Ok(if summary.plugin_errors > 0 { 1 } else { 0 })
        }
        Command::Dkim {
            command:
                DkimCommand::Keygen {
                    domain,
                    selector,
                    algorithm,
                    out,
                },
        } => {
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("{selector}._domainkey.{domain}.pem")));
            let records = crate::delivery::keygen(&domain, &selector, algorithm, &out)?;
            eprintln!("private key written to {}", out.display());
            println!("{records}");
            Ok(0)
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "empty password");
            println!(
                "{}",
                crate::smtp::session::hash_password(password)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            );
            Ok(0)
        }
        Command::Sink { listen, dir } => sink(listen, &dir).await.map(|_| 0),
    }
}

async fn check_config(path: &Path, load_plugins: bool) -> i32 {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    for w in config.warnings() {
        eprintln!("warning: {w}");
    }
    // A plugin's own keys are checked by its `init`: a typo there is a config error too.
    if load_plugins && !config.plugins.is_empty() {
        let opts = crate::relay::plugin_options(&config);
        if let Err(e) = crate::plugins::PluginHost::load(&config.plugins, opts).await {
            eprintln!("plugins: {e}");
            return 1;
        }
    }
    println!("{}: OK", path.display());
    0
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // SIGHUP's default action ends the process. Claim it before the slow part of startup
    // (spool recovery, plugin compilation), so a reload asked for meanwhile is applied once
    // the relay runs instead of killing it.
    let hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let config = Config::load(path)?;
    let traces = crate::logging::init_with_telemetry(&config.log, &config.telemetry);
    for w in config.warnings() {
        tracing::warn!(key = %w.key, "{}", w.message);
    }
    let relay = Relay::start(&config).await?.with_config_file(path);
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone())?);
    tokio::spawn(reload_on_sighup(hup, path.to_path_buf(), relay.reloader()));
    relay.run(shutdown).await?;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    Ok(())
}

/// SIGHUP re-reads the config file; a config that fails validation is refused and the
/// running one stays.
async fn reload_on_sighup(mut hup: tokio::signal::unix::Signal, path: PathBuf, reloader: Reloader) {
    while hup.recv().await.is_some() {
        info!(config = %path.display(), "SIGHUP: reloading");
        if let Err(e) = reloader.reload_file(&path).await {
            error!(error = %e, "reload refused; keeping the running configuration");
        }
    }
}

async fn sink(listen: SocketAddr, dir: &Path) -> anyhow::Result<()> {
    let store =
        crate::sink::DirStore::new(dir).with_context(|| format!("creating {}", dir.display()))?;
    let listener_config = ListenerConfig {
        address: listen,
        role: Default::default(),
        name: Some("sink".into()),
        tls_cert: None,
        tls_key: None,
        require_auth: Some(false),
        allow_plaintext_auth: false,
        normalize_line_endings: false,
        // A sink keeps what arrives byte for byte: it neither repairs nor widens.
        long_lines: crate::config::LongLines::Refuse,
        check_auth: Some(AuthCheck::Off),
        dmarc_reject: false,
    };
    let env = SessionEnv {
        hostname: "sink.localhost".into(),
        listener: listener_config,
        relay: RelayConfig {
            local_domains: vec![],
            relay_networks: vec!["0.0.0.0/0".parse()?, "::/0".parse()?],
        },
        limits: Default::default(),
        users: Users::default(),
        tls: None,
        store,
        plugins: None,
        authenticator: None,
        events: Default::default(),
    };
    let listener = Listener::bind(env)
        .await
        .with_context(|| format!("binding {listen}"))?;
    info!(address = %listener.local_addr(), dir = %dir.display(), "sink listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone())?);
    let grace = crate::config::LimitsConfig::default().shutdown_grace;
    server::serve(
        vec![listener],
        ConnectionLimits::new(1000, 1000),
        shutdown,
        grace,
    )
    .await;
    Ok(())
}

/// SIGINT or SIGTERM starts a graceful shutdown. The handlers are installed here, before the
/// returned future is spawned: a signal that arrives before its first poll is kept, not left
/// to the default action, and a handler that cannot be installed is an error at startup
/// rather than a relay that ignores SIGTERM.
fn stop_on_signal(
    shutdown: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("shutting down");
        shutdown.cancel();
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn keygen_algorithm(extra: &[&str]) -> Result<DkimAlgorithm, clap::Error> {
        let args = [
            "wasmrelay",
            "dkim",
            "keygen",
            "--domain",
            "d.test",
            "--selector",
            "s1",
        ];
        let cli = Cli::try_parse_from(args.iter().chain(extra))?;
        match cli.command {
            Command::Dkim {
                command: DkimCommand::Keygen { algorithm, .. },
            } => Ok(algorithm),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn keygen_algorithm_names_and_aliases() {
        Cli::command().debug_assert();
        use DkimAlgorithm::*;
        assert_eq!(keygen_algorithm(&[]).unwrap(), RsaSha256);
        for (name, algorithm) in [
            ("rsa-sha256", RsaSha256),
            ("rsa", RsaSha256),
            ("ed25519-sha256", Ed25519Sha256),
            ("ed25519", Ed25519Sha256),
        ] {
            assert_eq!(keygen_algorithm(&["--algorithm", name]).unwrap(), algorithm);
        }
        let e = keygen_algorithm(&["--algorithm", "dsa"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(e.to_string().contains("rsa-sha256, ed25519-sha256"), "{e}");
    }
}
