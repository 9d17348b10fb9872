//! `wasmrelay queue`: inspect and edit the spool, safely while a relay is running.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::spool::{self, Envelope, MessageId, RecipientStatus};

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// One line per queued message: id, age, size, sender, pending/total recipients.
    List,
    /// The envelope of one message (and its headers with --headers).
    Show {
        id: String,
        /// Also print the message header section.
        #[arg(long)]
        headers: bool,
    },
    /// Remove a message from the queue without delivering or bouncing it.
    Delete { id: String },
}

pub async fn run(config: &Path, command: QueueCommand) -> anyhow::Result<i32> {
    let config = Config::load(config)?;
    let dir = &config.spool.dir;
    match command {
        QueueCommand::List => {
            let queue = spool::read_queue(dir)
                .await
                .with_context(|| format!("reading {}", dir.display()))?;
            let now = spool::unix_now();
            for env in &queue {
                println!("{}", list_line(env, now));
            }
            println!("{} message(s)", queue.len());
            Ok(0)
        }
        QueueCommand::Show { id, headers } => {
            let id = parse_id(&id)?;
            let env = spool::read_envelope(dir, &id).await?;
            println!("{}", serde_json::to_string_pretty(&env)?);
            if headers {
                let bytes = spool::read_message(dir, &id).await?;
                let end = bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 2)
                    .unwrap_or(bytes.len());
                print!("{}", String::from_utf8_lossy(&bytes[..end]));
            }
            Ok(0)
        }
        QueueCommand::Delete { id } => {
            let id = parse_id(&id)?;
            spool::delete_by_id(dir, &id).await?;
            println!("deleted {id}");
            Ok(0)
        }
    }
}

fn parse_id(id: &str) -> anyhow::Result<MessageId> {
    MessageId::parse(id).with_context(|| format!("not a message id: {id:?}"))
}

fn list_line(env: &Envelope, now: u64) -> String {
    let pending = env
        .recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .count();
    let age = now.saturating_sub(env.received_at);
    format!(
        "{}  {:>6}  {:>8}  {}  {}/{} pending",
        env.id,
        human_age(age),
        env.size,
        env.mail_from.as_deref().unwrap_or("<>"),
        pending,
        env.recipients.len()
    )
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
