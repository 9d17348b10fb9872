//! Answers about the queue: the list, one message, and the dashboard's stats (which add
//! the queue and the plugin verdicts to what the event tap counted).

use hyper::StatusCode;
use serde_json::{json, Value};
use wasmrelay_codec::message::header_end;

use super::api::Reply;
use super::stats::QueueSummary;
use super::Context;
use crate::spool::{unix_now, Envelope, MessageId, RecipientStatus, SpoolError};

/// Most messages `/api/queue` lists (oldest first); the answer says when there are more.
const MAX_LISTED: usize = 10_000;
/// Most bytes of a message's header section `/api/queue/ID` shows.
const MAX_HEADERS: usize = 64 * 1024;

fn pending(env: &Envelope) -> impl Iterator<Item = &crate::spool::Recipient> {
    env.recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
}

fn summary(env: &Envelope, now: u64) -> Value {
    let next_attempt = pending(env).map(|r| r.next_attempt).min();
    let last_reply = pending(env).find_map(|r| r.last_reply.as_deref());
    json!({
        "id": env.id.0,
        "received_at": env.received_at,
        "age_secs": now.saturating_sub(env.received_at),
        "size": env.size,
        "from": env.mail_from.as_deref().unwrap_or(""),
        "recipients": env.recipients.len(),
        "pending": pending(env).count(),
        "held": env.held,
        "next_attempt": next_attempt,
        "last_reply": last_reply,
    })
}

pub async fn list(ctx: &Context) -> Reply {
    let queue = ctx.spool.list().await;
    let now = unix_now();
    let messages: Vec<Value> = queue
        .iter()
        .take(MAX_LISTED)
        .map(|e| summary(e, now))
        .collect();
    Reply::ok(json!({
        "count": queue.len(),
        "truncated": queue.len() > MAX_LISTED,
        "messages": messages,
    }))
}

pub async fn show(ctx: &Context, id: &MessageId) -> Reply {
    let envelope = match ctx.spool.envelope(id).await {
        Ok(env) => env,
        Err(SpoolError::NotFound(_)) => {
            return Reply::error(StatusCode::NOT_FOUND, format!("no queued message {id}"))
        }
        Err(e) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let headers = match ctx.spool.message(id).await {
        Ok(bytes) => {
            let end = header_end(&bytes).map_or(bytes.len(), |end| end.fields);
            let shown = end.min(MAX_HEADERS);
            Value::from(String::from_utf8_lossy(&bytes[..shown]).into_owned())
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "admin: cannot read a queued message");
            Value::Null
        }
    };
    Reply::ok(json!({
        "summary": summary(&envelope, unix_now()),
        "envelope": envelope,
        "headers": headers,
    }))
}

/// What the queue holds now. Walks every envelope: the dashboard reads the sample the
/// admin server takes every [`super::QUEUE_SAMPLE`] instead.
pub async fn queue_now(ctx: &Context) -> QueueSummary {
    let queue = ctx.spool.list().await;
    let now = unix_now();
    QueueSummary {
        messages: queue.len() as u64,
        held: queue.iter().filter(|e| e.held).count() as u64,
        pending_recipients: queue.iter().map(|e| pending(e).count() as u64).sum(),
        oldest_age_secs: queue
            .iter()
            .map(|e| now.saturating_sub(e.received_at))
            .max(),
        sampled_at: now,
    }
}

pub async fn stats(ctx: &Context) -> Reply {
    let snapshot = ctx.stats.snapshot();
    Reply::ok(json!({
        "now": unix_now(),
        "minutes": snapshot.minutes,
        "totals": snapshot.totals,
        "domains": snapshot.domains,
        "queue": snapshot.queue,
        "plugins": super::plugins::chain(ctx, false).await,
    }))
}
