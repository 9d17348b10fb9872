//! The record step of an attempt: every recipient's outcome goes into the envelope, DSNs
//! are spooled, the envelope is written (or the message removed once nobody is pending), and
//! only then is the batch's `delivery-result` hook told.
//!
//! Order of durable steps: DSNs are spooled before the envelope records the bounce, so a crash
//! in between repeats a notice rather than losing it. A bounce that cannot be stored leaves
//! its recipient pending (the sender must hear about it), and a state the spool refuses to
//! record is kept in memory and written before the message is attempted again, so that a
//! full disk never delivers twice.

use wasmrelay_codec::reply::Enhanced;

use super::copies::Batch;
use super::dsn::{self, Action, DsnRecipient};
use super::plan::recipient_attempt;
use super::retry;
use super::route::DeliveryResult;
use super::runner::{now_ms, Shared};
use super::{domain_of, next_due_ms, Failure, Outcome};
use crate::spool::{Envelope, MessageBytes, MessageId, Recipient, RecipientStatus, SpoolError};

/// Notices owed to the sender after an attempt.
#[derive(Default)]
struct Notices {
    /// Recipient index and its notice: a bounce not stored puts the recipient back.
    bounced: Vec<(usize, DsnRecipient)>,
    delayed: Vec<DsnRecipient>,
}

/// Records `outcomes` (recipient index, outcome) in `env` and on disk, then reports them to
/// `batch`. Returns when the message is next due, if ever.
pub(crate) async fn record(
    shared: &Shared,
    env: &mut Envelope,
    outcomes: Vec<(usize, Outcome)>,
    batch: Option<&Batch>,
) -> Option<u64> {
    let now = now_ms();
    let expires = env.received_at + shared.config.retry.max_age.as_secs();
    let mut notices = Notices::default();
    let mut reported = Vec::new();
    for (i, outcome) in outcomes {
        let attempt = recipient_attempt(env, i);
        let settled = apply(
            shared,
            &env.id,
            (i, &mut env.recipients[i]),
            outcome,
            now,
            expires,
            &mut notices,
        );
        log_outcome(&env.id, env.received_at, &env.recipients[i], &settled, now);
        reported.push((i, settled, attempt));
    }
    let now_s = now / 1000;
    if !notices.bounced.is_empty() || !notices.delayed.is_empty() {
        let original = message_for_dsn(shared, env).await;
        let bounces: Vec<DsnRecipient> = notices.bounced.iter().map(|(_, d)| d.clone()).collect();
        let stored = send_dsn(
            shared,
            env,
            &original,
            &bounces,
            Action::Failed,
            now_s,
            expires,
        )
        .await;
        if !stored {
            for (i, _) in &notices.bounced {
                let outcome = unbounce(shared, &mut env.recipients[*i], now);
                if let Some(r) = reported.iter_mut().find(|r| r.0 == *i) {
                    r.1 = outcome;
                }
            }
        }
        // Delay notices are a courtesy: one that cannot be stored is not retried.
        let delays = &notices.delayed;
        send_dsn(
            shared,
            env,
            &original,
            delays,
            Action::Delayed,
            now_s,
            expires,
        )
        .await;
    }
    let next = finish(shared, env).await;
    if let Some(batch) = batch {
        let mut hooks = batch.lock().await;
        if hooks.wants_results() {
            for (domain, outcome, attempt, recipients) in report_groups(env, &reported) {
                let result = DeliveryResult {
                    envelope: env,
                    domain: &domain,
                    recipients: &recipients,
                    outcome: &outcome,
                    attempt,
                };
                hooks.delivery_result(result).await;
            }
        }
    }
    next
}

/// Applies one outcome to recipient `r`; returns the outcome as recorded (an expired
/// deferral or hold is reported as the permanent failure it became).
fn apply(
    shared: &Shared,
    id: &MessageId,
    (i, r): (usize, &mut Recipient),
    outcome: Outcome,
    now: u64,
    expires: u64,
    notices: &mut Notices,
) -> Outcome {
    let now_s = now / 1000;
    let bounce = |r: &mut Recipient, status, f: Failure, notices: &mut Notices| {
        r.status = status;
        r.last_reply = Some(f.summary());
        shared.events.bounced(id, r, &f);
        if dsn::wants(r, Action::Failed) {
            notices.bounced.push((i, dsn_rcpt(r, f.clone(), now_s)));
        }
        Outcome::Permanent(f)
    };
    match outcome {
        Outcome::Delivered { remote, reply } => {
            r.status = RecipientStatus::Delivered;
            r.last_reply = Some(format!("{remote}: {reply}"));
            shared.events.delivered(id, r, &remote, &reply);
            Outcome::Delivered { remote, reply }
        }
        Outcome::Permanent(f) => bounce(r, RecipientStatus::Bounced, f, notices),
        Outcome::Transient(f) => {
            r.attempts += 1;
            if now_s >= expires {
                return bounce(r, RecipientStatus::Expired, f.expired(), notices);
            }
            r.last_reply = Some(f.summary());
            let wait = retry::next_delay(&shared.config.retry, r.attempts);
            let next = (now + wait.as_millis() as u64).min(expires * 1000);
            r.next_attempt = next.div_ceil(1000);
            shared.events.deferred(id, r, &f);
            if shared.config.retry.delay_notice_after.is_some()
                && retry::delay_notice_due(&shared.config.retry, r.attempts)
                && dsn::wants(r, Action::Delayed)
            {
                notices.delayed.push(dsn_rcpt(r, f.clone(), now_s));
            }
            Outcome::Transient(f)
        }
        Outcome::Held(reason) => {
            if now_s >= expires {
                let f = Failure::local(
                    Enhanced(4, 4, 7),
                    format!("delivery time expired while held: {reason}"),
                );
                return bounce(r, RecipientStatus::Expired, f, notices);
            }
            // Not an attempt: the recipient waits, untried, for `queue flush` or expiry.
            r.next_attempt = expires;
            r.last_reply = Some(format!("held: {reason}"));
            Outcome::Held(reason)
        }
        Outcome::Dropped(reason) => {
            r.status = RecipientStatus::Dropped;
            r.last_reply = Some(format!("dropped: {reason}"));
            Outcome::Dropped(reason)
        }
    }
}

/// The recipient's outcome as one line on the log's mail target (`crate::logging`):
/// `QUEUEID: to=<...>, relay=..., delay=S, status=sent (reply)`, `delay` in whole seconds
/// since the message was received. Nothing is formatted unless the level lets it through.
fn log_outcome(id: &MessageId, received_at: u64, r: &Recipient, outcome: &Outcome, now: u64) {
    use crate::logging::MAIL;
    let delay = (now / 1000).saturating_sub(received_at);
    let to = r.address.as_str();
    match outcome {
        Outcome::Delivered { remote, reply } => tracing::info!(target: MAIL, queue_id = %id,
            to, relay = remote.as_str(), delay, attempts = r.attempts + 1, status = "sent",
            detail = %reply),
        Outcome::Transient(f) => tracing::info!(target: MAIL, queue_id = %id, to,
            relay = f.remote.as_deref(), delay, attempts = r.attempts, dsn = %f.status,
            status = "deferred", detail = %f.reason),
        Outcome::Permanent(f) => {
            let status = match r.status {
                RecipientStatus::Expired => "expired",
                _ => "bounced",
            };
            tracing::info!(target: MAIL, queue_id = %id, to, relay = f.remote.as_deref(),
                delay, dsn = %f.status, status, detail = %f.reason)
        }
        Outcome::Held(reason) => tracing::info!(target: MAIL, queue_id = %id, to, delay,
            status = "held", detail = %reason),
        Outcome::Dropped(reason) => tracing::info!(target: MAIL, queue_id = %id, to, delay,
            status = "dropped", detail = %reason),
    }
}

/// Puts back recipient `r`, whose bounce could not be stored: the sender must hear about
/// it, so it stays pending with the normal retry delay, to fail (and bounce) again on a
/// later attempt. Returns the outcome to report for it: a deferral.
fn unbounce(shared: &Shared, r: &mut Recipient, now: u64) -> Outcome {
    tracing::warn!(rcpt = %r.address, "bounce not stored; the recipient stays queued");
    r.status = RecipientStatus::Pending;
    let wait = retry::next_delay(&shared.config.retry, r.attempts.max(1));
    r.next_attempt = (now + wait.as_millis() as u64).div_ceil(1000);
    let why = r.last_reply.as_deref().unwrap_or("failed");
    Outcome::Transient(Failure::local(
        Enhanced(4, 3, 1),
        format!("bounce not stored (spool full); {why}"),
    ))
}

/// Recipients with the same domain, outcome and attempt, reported together.
fn report_groups(
    env: &Envelope,
    reported: &[(usize, Outcome, u32)],
) -> Vec<(String, Outcome, u32, Vec<String>)> {
    let mut groups: Vec<(String, Outcome, u32, Vec<String>)> = Vec::new();
    for (i, outcome, attempt) in reported {
        let address = &env.recipients[*i].address;
        let domain = domain_of(address);
        let same = |g: &&mut (String, Outcome, u32, Vec<String>)| {
            g.0 == domain && g.1 == *outcome && g.2 == *attempt
        };
        match groups.iter_mut().find(same) {
            Some(g) => g.3.push(address.clone()),
            None => groups.push((domain, outcome.clone(), *attempt, vec![address.clone()])),
        }
    }
    groups
}

/// `queue bounce ID`: every pending recipient fails now, and the sender hears about it.
pub(crate) async fn bounce_all(shared: &Shared, id: &MessageId) -> Option<u64> {
    if let Some(env) = shared.take_unsaved(id) {
        // Record the last attempt first (see `attempt::process`); the operator can bounce
        // again.
        return finish(shared, &env).await;
    }
    let mut env = shared.spool.envelope(id).await.ok()?;
    let before = next_due_ms(&env);
    let now_s = now_ms() / 1000;
    let mut bounced = Vec::new();
    for r in env
        .recipients
        .iter_mut()
        .filter(|r| r.status == RecipientStatus::Pending)
    {
        let f = Failure::local(Enhanced(5, 0, 0), "bounced by the relay operator");
        r.status = RecipientStatus::Bounced;
        r.last_reply = Some(f.summary());
        shared.events.bounced(&env.id, r, &f);
        if dsn::wants(r, Action::Failed) {
            bounced.push(dsn_rcpt(r, f, now_s));
        }
    }
    let message = message_for_dsn(shared, &env).await;
    if !send_dsn(shared, &env, &message, &bounced, Action::Failed, now_s, 0).await {
        tracing::error!(%id, "bounce not stored; the message stays queued as it was");
        return before;
    }
    finish(shared, &env).await
}

fn dsn_rcpt(r: &Recipient, failure: Failure, now_s: u64) -> DsnRecipient {
    DsnRecipient {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        failure,
        last_attempt: now_s,
    }
}

async fn message_for_dsn(shared: &Shared, env: &Envelope) -> MessageBytes {
    shared.spool.message(&env.id).await.unwrap_or_default()
}

/// Spools a DSN (from `<>`) for `recipients` and wakes the runner for it. `false` when the
/// notice is owed but could not be stored.
async fn send_dsn(
    shared: &Shared,
    env: &Envelope,
    message: &[u8],
    recipients: &[DsnRecipient],
    action: Action,
    now_s: u64,
    expires: u64,
) -> bool {
    if recipients.is_empty() {
        return true;
    }
    let id = shared.spool.new_id();
    let Some((dsn_env, bytes)) = dsn::build(
        &shared.config.hostname,
        id.clone(),
        env,
        message,
        recipients,
        action,
        now_s,
        expires,
        shared.config.outsider_bounces == crate::config::delivery::OutsiderBounces::Full,
    ) else {
        tracing::info!(id = %env.id, "no DSN for a null sender");
        return true;
    };
    match shared.spool.store(&dsn_env, bytes.into()).await {
        Ok(()) => {
            let action = match action {
                Action::Failed => "failed",
                Action::Delayed => "delayed",
            };
            tracing::info!(target: crate::logging::MAIL, queue_id = %env.id, dsn = %id,
                action, status = "notice queued");
            shared.events.queued(&dsn_env, Some(&env.id));
            shared.handle.wake(id);
            true
        }
        Err(e) => {
            tracing::error!(id = %env.id, error = %e, "cannot spool DSN");
            false
        }
    }
}

/// Persists the envelope, or removes the message when no recipient is pending. If that
/// fails (disk full), the new state is kept in memory and the write retried before the
/// message is attempted again, so that nobody gets it twice because of a full disk.
pub(crate) async fn finish(shared: &Shared, env: &Envelope) -> Option<u64> {
    let next = next_due_ms(env);
    let result = if next.is_none() {
        shared.spool.remove(&env.id).await
    } else {
        shared.spool.update(env).await
    };
    match result {
        Ok(()) => next,
        // Deleted behind our back (`queue delete`): nothing left to record.
        Err(SpoolError::NotFound(_)) => None,
        Err(e) => {
            tracing::error!(id = %env.id, error = %e, "cannot record delivery state; keeping it in memory");
            shared.keep_unsaved(env.clone());
            Some(now_ms() + UNSAVED_RETRY_MS)
        }
    }
}

/// How soon a delivery state that could not be written is written again.
const UNSAVED_RETRY_MS: u64 = 30_000;
