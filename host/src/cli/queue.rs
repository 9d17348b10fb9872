//! `wasmrelay queue`: inspect and edit the spool, safely while a relay is running.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use wasmrelay_codec::message::header_end;

use crate::config::Config;
use crate::delivery::QueueOp;
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
    /// Keep a message queued but attempt none of its recipients until `release`.
    Hold { id: String },
    /// Let a held message be attempted again (at once if its retry time passed).
    Release { id: String },
    /// Attempt delivery now, ignoring the retry schedule: one message, or all of them.
    Flush { id: Option<String> },
    /// Give up on a message's pending recipients and send the sender a bounce (DSN).
    Bounce { id: String },
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
                let end = header_end(&bytes).map_or(bytes.len(), |end| end.fields);
                print!("{}", String::from_utf8_lossy(&bytes[..end]));
            }
            Ok(0)
        }
        QueueCommand::Flush { id } => {
            let command = match id {
                Some(id) => format!("flush {}", parse_id(&id)?),
                None => "flush".to_string(),
            };
            control(dir, &command).await
        }
        QueueCommand::Bounce { id } => control(dir, &format!("bounce {}", parse_id(&id)?)).await,
        QueueCommand::Delete { id } => message_op(dir, QueueOp::Delete, &id).await,
        QueueCommand::Hold { id } => message_op(dir, QueueOp::Hold, &id).await,
        QueueCommand::Release { id } => message_op(dir, QueueOp::Release, &id).await,
    }
}

/// Hold, release or delete: through the running relay (another process must not edit a
/// spool the relay is delivering from), or on the spool itself when no relay runs.
async fn message_op(dir: &Path, op: QueueOp, id: &str) -> anyhow::Result<i32> {
    let id = parse_id(id)?;
    match crate::control::send(dir, &format!("{} {id}", op.name())).await {
        Ok(answer) => return Ok(print_answer(&answer)),
        Err(e) if !no_relay(&e) => return Err(control_error(dir, e)),
        Err(_) => {}
    }
    if op == QueueOp::Delete {
        spool::delete_by_id(dir, &id).await?;
    } else {
        // Opening the spool takes its owner lock: this fails if a relay started meanwhile.
        let (spool, _) = spool::Spool::open(dir)
            .await
            .with_context(|| format!("opening the spool {}", dir.display()))?;
        let mut env = spool.envelope(&id).await?;
        env.held = op == QueueOp::Hold;
        spool.update(&env).await?;
    }
    println!("{} {id}", op.name());
    Ok(0)
}

/// Whether a failed connection to the control socket means that no relay runs.
fn no_relay(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// Flush and bounce act on the running relay's queue, through its control socket.
async fn control(dir: &Path, command: &str) -> anyhow::Result<i32> {
    match crate::control::send(dir, command).await {
        Ok(answer) => Ok(print_answer(&answer)),
        Err(e) => Err(control_error(dir, e)),
    }
}

fn control_error(dir: &Path, e: std::io::Error) -> anyhow::Error {
    let context = if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "permission denied on the control socket in {}: run `queue` as the relay's user (or root)",
            dir.display()
        )
    } else {
        format!(
            "no relay is running on the spool {} (its control socket did not answer)",
            dir.display()
        )
    };
    anyhow::Error::new(e).context(context)
}

/// Prints the relay's answer; the exit code.
fn print_answer(answer: &str) -> i32 {
    if answer.starts_with("error: permission denied") {
        eprintln!("{answer}: run `queue` as the relay's user (or root)");
        return 1;
    }
    println!("{answer}");
    if answer == "ok" {
        0
    } else {
        1
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
        "{}  {:>6}  {:>8}  {}  {}/{} pending{}",
        env.id,
        human_age(age),
        env.size,
        env.mail_from.as_deref().unwrap_or("<>"),
        pending,
        env.recipients.len(),
        if env.held { ", held" } else { "" }
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
