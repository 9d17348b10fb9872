//! One delivery attempt of one message, in its steps: load the envelope and the due
//! recipients, route them ([`super::plan`]), render what each is sent ([`super::copies`]),
//! send per destination in parallel ([`super::send`]), record every outcome
//! ([`super::record`]). All hook calls of the attempt go to one batch from the [`Router`].
//!
//! A recipient is marked delivered only after the next hop's `250`, so a crash may deliver
//! twice but never zero times.
//!
//! [`Router`]: super::Router

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tracing::Instrument;
use wasmrelay_codec::reply::Enhanced;

use super::copies::{Batch, Content};
use super::plan::{self, Plan, Target};
use super::runner::{now_ms, Shared};
use super::{record, send, Failure, Outcome};
use crate::spool::{Envelope, MessageId, RecipientStatus};

/// When the earliest pending recipient of `env` is due (ms since the epoch).
pub(crate) fn next_due_ms(env: &Envelope) -> Option<u64> {
    env.recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .map(|r| r.next_attempt.saturating_mul(1000))
        .min()
}

/// Attempts every due recipient of message `id`; returns when it is next due, if ever.
/// Runs in a `delivery` span whose parent is the span that received the message.
pub(crate) async fn process(shared: &Arc<Shared>, id: &MessageId, force: bool) -> Option<u64> {
    let span = tracing::info_span!("delivery", queue_id = %id);
    if let Some(env) = shared.take_unsaved(id) {
        // The last attempt's outcome never reached the disk. Record it before anything else:
        // what the spool still says would deliver again to recipients that already have it.
        return record::finish(shared, &env).instrument(span).await;
    }
    // Load.
    let env = match shared.spool.envelope(id).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%id, error = %e, "cannot read envelope");
            return None;
        }
    };
    if env.held {
        // Held by an operator: the release schedules it again.
        return None;
    }
    crate::telemetry::continue_trace(&span, env.trace.as_deref());
    attempt(shared, id, env, force).instrument(span).await
}

async fn attempt(
    shared: &Arc<Shared>,
    id: &MessageId,
    mut env: Envelope,
    force: bool,
) -> Option<u64> {
    let started = now_ms();
    let due = due(&env, force, started);
    if due.is_empty() {
        // Woken early: nothing changed, so nothing to write unless nobody is pending.
        return match next_due_ms(&env) {
            Some(next) => Some(next),
            None => record::finish(shared, &env).await,
        };
    }
    let message = match shared.spool.message(id).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot read message; retrying later");
            return Some(started + 60_000);
        }
    };
    let batch: Option<Batch> = shared
        .router
        .as_ref()
        .and_then(|r| r.batch())
        .map(|hooks| Arc::new(Mutex::new(hooks)));

    // Route.
    let Plan {
        destinations,
        settled,
    } = match &batch {
        Some(b) => {
            let mut hooks = b.lock().await;
            plan::route(&shared.config, Some(&mut **hooks), &env, &due).await
        }
        None => plan::route(&shared.config, None, &env, &due).await,
    };
    let mut outcomes = settled;

    // Render and send, one task per destination.
    if !destinations.is_empty() {
        let copies = match &batch {
            Some(b) if b.lock().await.renders_copies() => Some(b.clone()),
            _ => None,
        };
        let content = Arc::new(Content::new(shared, &env, message, copies));
        let env = Arc::new(env.clone());
        let mut set = JoinSet::new();
        for d in destinations {
            let (shared, env, content) = (shared.clone(), env.clone(), content.clone());
            let span = tracing::debug_span!("send", destination = %d.target);
            // Boxed, as the attempt's own future: spawning then copies a pointer, not the
            // SMTP client's state.
            set.spawn(
                async move {
                    let out = Box::pin(send::deliver(
                        &shared,
                        &d.target,
                        &env,
                        &content,
                        d.recipients,
                    ))
                    .await;
                    count(&shared, &d.target, &env, &out);
                    out
                }
                .instrument(span),
            );
        }
        while let Some(res) = set.join_next().await {
            match res {
                Ok(v) => outcomes.extend(v),
                Err(e) => tracing::error!(%id, error = %e, "destination task failed"),
            }
        }
    }
    // A recipient left without an outcome (a failed task) waits like a deferral instead of
    // being retried in a tight loop.
    let mut settled = vec![false; env.recipients.len()];
    for (i, _) in &outcomes {
        settled[*i] = true;
    }
    for i in due.into_iter().filter(|&i| !settled[i]) {
        let f = Failure::local(Enhanced(4, 3, 0), "internal error during delivery");
        outcomes.push((i, Outcome::Transient(f)));
    }

    // Record.
    record::record(shared, &mut env, outcomes, batch.as_ref()).await
}

/// Counts one destination's recipient outcomes by domain and pool.
fn count(shared: &Shared, target: &Target, env: &Envelope, outcomes: &[(usize, Outcome)]) {
    let pool = match target {
        Target::Pool(name) => name.as_str(),
        Target::Hosts(_) => "smarthost",
        Target::Mx { .. } => "mx",
    };
    for (address, outcome, n) in outcome_runs(env, outcomes) {
        shared.metrics.delivery(pool, address, outcome, n);
    }
}

/// The outcomes as runs of recipients with the same domain and outcome: (the run's first
/// address, the outcome's name, how many). One destination's recipients share a domain and
/// mostly an outcome, so a run is usually all of them: a label lookup per recipient was a
/// fifth of what a 100-recipient message cost the delivery side.
fn outcome_runs<'e>(
    env: &'e Envelope,
    outcomes: &[(usize, Outcome)],
) -> Vec<(&'e str, &'static str, u64)> {
    let mut runs: Vec<(&str, &str, u64)> = Vec::new();
    for (i, outcome) in outcomes {
        let outcome = match outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Transient(_) => "deferred",
            Outcome::Permanent(_) => "bounced",
            Outcome::Held(_) => "held",
            Outcome::Dropped(_) => "dropped",
        };
        let address = env.recipients.get(*i).map_or("", |r| r.address.as_str());
        match runs.last_mut() {
            Some((first, o, n)) if *o == outcome && same_domain(first, address) => *n += 1,
            _ => runs.push((address, outcome, 1)),
        }
    }
    runs
}

/// Whether two addresses have the same domain as [`crate::delivery::domain_of`] reads it.
fn same_domain(a: &str, b: &str) -> bool {
    fn part(address: &str) -> &str {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        domain.trim_end_matches('.')
    }
    part(a).eq_ignore_ascii_case(part(b))
}

/// The recipients to attempt now: pending, and due unless `force` (a flush, which also
/// releases held recipients).
fn due(env: &Envelope, force: bool, now_ms: u64) -> Vec<usize> {
    (0..env.recipients.len())
        .filter(|&i| {
            let r = &env.recipients[i];
            r.status == RecipientStatus::Pending
                && (force || r.next_attempt.saturating_mul(1000) <= now_ms)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_in_runs_of_one_domain_and_outcome() {
        let env = crate::delivery::test_envelope(&[
            "a@one.test",
            "b@ONE.test.",
            "c@one.test",
            "d@two.test",
            "e@two.test",
        ]);
        let held = || Outcome::Held("later".into());
        let outcomes = [
            (0, held()),
            (1, held()),
            (2, Outcome::Dropped("no".into())),
            (3, held()),
            (4, held()),
        ];
        assert_eq!(
            outcome_runs(&env, &outcomes),
            [
                ("a@one.test", "held", 2),
                ("c@one.test", "dropped", 1),
                ("d@two.test", "held", 2),
            ]
        );
        assert_eq!(outcome_runs(&env, &[]), []);
    }
}
