//! `wasmrelay list`: show, add and remove members of the lists declared under `[[lists]]`
//! (the suppression list is one).
//!
//! A running relay is asked through its control socket, so its live backend (and every
//! plugin) sees the change at once. With no relay running, the command reads or edits the
//! list journal under the spool itself: it takes the journal's lock, so a relay starting
//! meanwhile waits until the edit is durable, and it refuses if a relay holds the lock but
//! does not answer (starting up or shutting down: try again). With `[state] backend =
//! "redis"` the lists live in Redis, and a stopped relay's CLI edits them there.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Subcommand;

use crate::config::state::Backend;
use crate::config::Config;
use crate::control;
use crate::state::admin::{self, ListAnswer, ListRequest};
use crate::state::journal::{self, JournalError, LockMode};
use crate::state::{state_dir, InProcessBackend, ListMember, RedisBackend};
use humantime_serde::re::humantime;

#[derive(Subcommand, Debug)]
pub enum ListCommand {
    /// Every live member of a list, with its expiry.
    Show { name: String },
    /// Add a member, or refresh its expiry.
    Add {
        name: String,
        member: String,
        /// Keep it for this long (`30d`, `12h`, `90m`, seconds); default: until removed.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Remove a member.
    Remove { name: String, member: String },
}

pub async fn run(config: &Path, command: ListCommand) -> anyhow::Result<i32> {
    let config = Config::load(config)?;
    let req = request(command)?;
    admin::check(&config.lists, &req)?;
    let spool = &config.spool.dir;
    let json = serde_json::to_string(&req)?;
    let answer = match control::send(spool, &format!("list {json}")).await {
        Ok(line) => answer(&line)?,
        Err(e) if no_relay(&e) && config.state.backend == Backend::Redis => {
            eprintln!("no relay is running on {}: using Redis", spool.display());
            let backend = RedisBackend::new(&config.state.redis)?;
            admin::execute(&backend, &config.lists, &req).await?
        }
        Err(e) if no_relay(&e) => {
            let dir = state_dir(spool);
            eprintln!(
                "no relay is running on {}: using the list journal in {}",
                spool.display(),
                dir.display()
            );
            offline(&config, &dir, &req).await?
        }
        Err(e) => {
            return Err(e).with_context(|| format!("asking the relay on {}", spool.display()))
        }
    };
    print(&req, &answer);
    Ok(0)
}

fn request(command: ListCommand) -> anyhow::Result<ListRequest> {
    Ok(match command {
        ListCommand::Show { name } => ListRequest::Show { list: name },
        ListCommand::Add { name, member, ttl } => {
            let ttl = ttl
                .map(|t| {
                    humantime::parse_duration(&t).map_err(|e| anyhow::anyhow!("--ttl {t:?}: {e}"))
                })
                .transpose()?;
            if ttl.is_some_and(|t| t.is_zero()) {
                anyhow::bail!("--ttl must be more than zero");
            }
            ListRequest::Add {
                list: name,
                member: admin::list_member(&member),
                ttl_ms: ttl.map(|t| t.as_millis().min(u64::MAX as u128) as u64),
            }
        }
        ListCommand::Remove { name, member } => ListRequest::Remove {
            list: name,
            member: admin::list_member(&member),
        },
    })
}

/// Whether a failed connection means that no relay listens (no socket, or a stale one).
fn no_relay(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

fn answer(line: &str) -> anyhow::Result<ListAnswer> {
    if let Some(json) = line.strip_prefix("ok ") {
        return serde_json::from_str(json).context("the relay's answer");
    }
    let why = line.strip_prefix("error: ").unwrap_or(line);
    anyhow::bail!("the relay refused: {why}")
}

/// Answers `req` from the journal, the relay being stopped.
async fn offline(config: &Config, dir: &Path, req: &ListRequest) -> anyhow::Result<ListAnswer> {
    if let ListRequest::Show { list } = req {
        let mut lists = journal::read(dir, now_ms())?;
        let mut members: Vec<ListMember> = lists
            .remove(list)
            .unwrap_or_default()
            .into_iter()
            .map(|(member, expires_ms)| ListMember { member, expires_ms })
            .collect();
        members.sort_by(|a, b| a.member.cmp(&b.member));
        return Ok(ListAnswer::Members(members));
    }
    let opened = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || InProcessBackend::open(&dir, LockMode::Try)).await?
    };
    let backend = match opened {
        Ok((backend, _)) => backend,
        Err(JournalError::Busy { path }) => anyhow::bail!(
            "a relay holds {} but its control socket does not answer (starting or stopping?); \
             try again",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let answer = admin::execute(&backend, &config.lists, req).await?;
    tokio::task::spawn_blocking(move || drop(backend)).await?;
    Ok(answer)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn print(req: &ListRequest, answer: &ListAnswer) {
    match (req, answer) {
        (ListRequest::Show { list }, ListAnswer::Members(members)) => {
            for m in members {
                match m.expires_ms {
                    Some(ms) => println!("{}  expires {}", shown(&m.member), utc(ms)),
                    None => println!("{}", shown(&m.member)),
                }
            }
            println!("{} member(s) on {list}", members.len());
        }
        (ListRequest::Add { list, member, .. }, ListAnswer::Changed(new)) => {
            let member = shown(member);
            match new {
                true => println!("added {member} to {list}"),
                false => println!("{member} was already on {list} (expiry updated)"),
            }
        }
        (ListRequest::Remove { list, member }, ListAnswer::Changed(existed)) => {
            let member = shown(member);
            match existed {
                true => println!("removed {member} from {list}"),
                false => println!("{member} was not on {list}"),
            }
        }
        (_, answer) => println!("{answer:?}"),
    }
}

/// A member as printed: as is, or quoted and escaped when it holds control characters
/// (a plugin may add anything; a terminal should not interpret it).
fn shown(member: &str) -> String {
    if member.chars().any(char::is_control) {
        format!("{member:?}")
    } else {
        member.to_string()
    }
}

fn utc(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + Duration::from_millis(ms);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{ms} ms after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_answers() {
        let req = request(ListCommand::Add {
            name: "s".into(),
            member: "a@x.test".into(),
            ttl: Some("30d".into()),
        })
        .unwrap();
        assert!(matches!(
            req,
            ListRequest::Add {
                ttl_ms: Some(2_592_000_000),
                ..
            }
        ));
        assert!(request(ListCommand::Add {
            name: "s".into(),
            member: "a".into(),
            ttl: Some("soon".into()),
        })
        .is_err());
        assert_eq!(
            answer("ok {\"changed\":true}").unwrap(),
            ListAnswer::Changed(true)
        );
        let e = answer("error: no list named \"x\"")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "the relay refused: no list named \"x\"");
        assert_eq!(shown("a\u{1b}[2Jb"), "\"a\\u{1b}[2Jb\"");
        assert_eq!(utc(1_796_169_600_000), "2026-12-02T00:00:00Z");
    }
}
