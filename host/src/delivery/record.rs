//! The record step of an attempt: every recipient's outcome goes into the envelope, DSNs
//! are spooled, the envelope is written (or the message removed once nobody is pending), and
//! only then is the batch's `delivery-result` hook told.
//!
//! Order of durable steps: DSNs are spooled before the envelope records the bounce, so a crash
//! in between repeats a notice rather than losing it.

use wasmrelay_codec::reply::Enhanced;

use super::copies::Batch;
use super::dsn::{self, Action, DsnRecipient};
use super::plan::recipient_attempt;
use super::retry;
use super::route::DeliveryResult;
use super::runner::{now_ms, Shared};
use super::{domain_of, next_due_ms, Failure, Outcome};
use crate::spool::{Envelope, MessageId, Recipient, RecipientStatus};

/// Notices owed to the sender after an attempt.
#[derive(Default)]
struct Notices {
    bounced: Vec<DsnRecipient>,
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
    let expires = env.received_at + shared.config.retry.max_age.0.as_secs();
    let mut notices = Notices::default();
    let mut reported = Vec::new();
    for (i, outcome) in outcomes {
        let attempt = recipient_attempt(env, i);
        let settled = apply(
            shared,
            &env.id,
            &mut env.recipients[i],
            outcome,
            now,
            expires,
            &mut notices,
        );
        reported.push((i, settled, attempt));
    }
    let now_s = now / 1000;
    if !notices.bounced.is_empty() || !notices.delayed.is_empty() {
        let original = message_for_dsn(shared, env).await;
        for (list, action) in [
            (&notices.bounced, Action::Failed),
            (&notices.delayed, Action::Delayed),
        ] {
            send_dsn(shared, env, &original, list, action, now_s, expires).await;
        }
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
    r: &mut Recipient,
    outcome: Outcome,
    now: u64,
    expires: u64,
    notices: &mut Notices,
) -> Outcome {
    let now_s = now / 1000;
    let bounce = |r: &mut Recipient, status, f: Failure, notices: &mut Notices| {
        r.status = status;
        r.last_reply = Some(f.summary());
        if dsn::wants(r, Action::Failed) {
            notices.bounced.push(dsn_rcpt(r, f.clone(), now_s));
        }
        Outcome::Permanent(f)
    };
    match outcome {
        Outcome::Delivered { remote, reply } => {
            tracing::info!(%id, rcpt = %r.address, %remote, %reply, "delivered");
            r.status = RecipientStatus::Delivered;
            r.last_reply = Some(format!("{remote}: {reply}"));
            Outcome::Delivered { remote, reply }
        }
        Outcome::Permanent(f) => {
            tracing::info!(%id, rcpt = %r.address, reply = %f.summary(), "bounced");
            bounce(r, RecipientStatus::Bounced, f, notices)
        }
        Outcome::Transient(f) => {
            r.attempts += 1;
            if now_s >= expires {
                tracing::info!(%id, rcpt = %r.address, reply = %f.summary(), "expired");
                return bounce(r, RecipientStatus::Expired, f.expired(), notices);
            }
            r.last_reply = Some(f.summary());
            let wait = retry::next_delay(&shared.config.retry, r.attempts);
            let next = (now + wait.as_millis() as u64).min(expires * 1000);
            r.next_attempt = next.div_ceil(1000);
            tracing::info!(%id, rcpt = %r.address, reply = %f.summary(), retry_in = ?wait, "deferred");
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
                tracing::info!(%id, rcpt = %r.address, %reason, "expired while held");
                let f = Failure::local(
                    Enhanced(4, 4, 7),
                    format!("delivery time expired while held: {reason}"),
                );
                return bounce(r, RecipientStatus::Expired, f, notices);
            }
            // Not an attempt: the recipient waits, untried, for `queue flush` or expiry.
            tracing::info!(%id, rcpt = %r.address, %reason, "held by route");
            r.next_attempt = expires;
            r.last_reply = Some(format!("held: {reason}"));
            Outcome::Held(reason)
        }
        Outcome::Dropped(reason) => {
            tracing::info!(%id, rcpt = %r.address, %reason, "dropped by route");
            r.status = RecipientStatus::Dropped;
            r.last_reply = Some(format!("dropped: {reason}"));
            Outcome::Dropped(reason)
        }
    }
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
    let mut env = shared.spool.envelope(id).await.ok()?;
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
        if dsn::wants(r, Action::Failed) {
            bounced.push(dsn_rcpt(r, f, now_s));
        }
    }
    let message = message_for_dsn(shared, &env).await;
    send_dsn(shared, &env, &message, &bounced, Action::Failed, now_s, 0).await;
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

async fn message_for_dsn(shared: &Shared, env: &Envelope) -> Vec<u8> {
    shared.spool.message(&env.id).await.unwrap_or_default()
}

/// Spools a DSN (from `<>`) for `recipients` and wakes the runner for it.
async fn send_dsn(
    shared: &Shared,
    env: &Envelope,
    message: &[u8],
    recipients: &[DsnRecipient],
    action: Action,
    now_s: u64,
    expires: u64,
) {
    if recipients.is_empty() {
        return;
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
    ) else {
        tracing::info!(id = %env.id, "no DSN for a null sender");
        return;
    };
    match shared.spool.store(&dsn_env, &bytes).await {
        Ok(()) => {
            tracing::info!(id = %env.id, dsn = %id, ?action, "DSN queued");
            shared.handle.wake(id);
        }
        Err(e) => tracing::error!(id = %env.id, error = %e, "cannot spool DSN"),
    }
}

/// Persists the envelope, or removes the message when no recipient is pending.
pub(crate) async fn finish(shared: &Shared, env: &Envelope) -> Option<u64> {
    let next = next_due_ms(env);
    let result = if next.is_none() {
        shared.spool.remove(&env.id).await
    } else {
        shared.spool.update(env).await
    };
    if let Err(e) = result {
        tracing::error!(id = %env.id, error = %e, "cannot record delivery state");
        return Some(now_ms() + 60_000);
    }
    next
}
