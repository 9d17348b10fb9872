//! One delivery attempt of one message: route each due recipient, deliver per destination
//! in parallel, record every recipient's outcome in the spool, send DSNs, remove the message
//! once nobody is pending.
//!
//! Order of durable steps: DSNs are spooled before the envelope records the bounce, so a crash
//! in between repeats a notice rather than losing it; a recipient is marked delivered only
//! after the next hop's `250`, so a crash may deliver twice but never zero times.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use wasmrelay_codec::data::is_eight_bit;
use wasmrelay_codec::reply::Enhanced;

use super::client::{ClientError, ClientOptions, SmtpClient, Transaction, TxRecipient};
use super::dsn::{self, Action, DsnRecipient};
use super::retry;
use super::route::{config_route, DeliveryResult, Route};
use super::runner::{now_ms, Shared};
use super::{domain_of, Failure, Outcome};
use crate::config::delivery::{SmartHostConfig, TlsPolicy};
use crate::spool::{Envelope, MessageId, RecipientStatus, SpoolError};

/// An idle connection kept for the next message to the same next hop.
pub(crate) struct Idle {
    client: SmtpClient,
    since: Instant,
}

/// When the earliest pending recipient of `env` is due (ms since the epoch).
pub(crate) fn next_due_ms(env: &Envelope) -> Option<u64> {
    env.recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .map(|r| r.next_attempt.saturating_mul(1000))
        .min()
}

/// Attempts every due recipient of message `id`; returns when it is next due, if ever.
pub(crate) async fn process(shared: &Arc<Shared>, id: &MessageId, force: bool) -> Option<u64> {
    if let Some(env) = shared.take_unsaved(id) {
        // The last attempt's outcome never reached the disk. Record it before anything else:
        // what the spool still says would deliver again to recipients that already have it.
        return finish(shared, &env).await;
    }
    let mut env = match shared.spool.envelope(id).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%id, error = %e, "cannot read envelope");
            return None;
        }
    };
    let started = now_ms();
    let due: Vec<usize> = (0..env.recipients.len())
        .filter(|&i| {
            let r = &env.recipients[i];
            r.status == RecipientStatus::Pending
                && (force || r.next_attempt.saturating_mul(1000) <= started)
        })
        .collect();
    if due.is_empty() {
        // Woken early: nothing changed, so nothing to write unless nobody is pending.
        return match next_due_ms(&env) {
            Some(next) => Some(next),
            None => finish(shared, &env).await,
        };
    }
    let message = match shared.spool.message(id).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot read message; retrying later");
            return Some(started + 60_000);
        }
    };
    // Our signature vouches for the author: never for what an outsider claims in `From:`.
    let signed = if env.client.may_sign() {
        shared.dkim.sign(&message, env.mail_from.as_deref())
    } else {
        Ok(None)
    };
    let message = match signed {
        Ok(Some(signed)) => signed,
        Ok(None) => message,
        Err(e) => {
            tracing::warn!(%id, error = %e, "DKIM signing failed; sending unsigned");
            message
        }
    };
    // Route each recipient domain, then group by destination.
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in &due {
        by_domain
            .entry(domain_of(&env.recipients[i].address))
            .or_default()
            .push(i);
    }
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    let mut held: Vec<usize> = Vec::new();
    let mut destinations: BTreeMap<String, (Route, String, Vec<usize>)> = BTreeMap::new();
    for (domain, idx) in by_domain {
        let hooked = match &shared.router {
            Some(r) => r.route(&env, &domain).await,
            None => None,
        };
        let route = hooked.unwrap_or_else(|| config_route(&shared.config, &domain));
        let key = match &route {
            Route::Hold => {
                held.extend(idx);
                continue;
            }
            Route::Drop => {
                for i in idx {
                    outcomes.push((
                        i,
                        Outcome::Delivered {
                            remote: "-".into(),
                            reply: "dropped by route".into(),
                        },
                    ));
                }
                continue;
            }
            Route::Defer(status, text) | Route::Bounce(status, text) => {
                let failure = Failure::local(*status, text.clone());
                for i in idx {
                    let outcome = match route {
                        Route::Bounce(..) => Outcome::Permanent(failure.clone()),
                        _ => Outcome::Transient(failure.clone()),
                    };
                    outcomes.push((i, outcome));
                }
                continue;
            }
            Route::SmartHosts(hosts) => format!(
                "relay:{}",
                hosts
                    .iter()
                    .map(|h| format!("{}:{}", h.host, h.port))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Route::Mx { .. } => format!("mx:{domain}"),
        };
        destinations
            .entry(key)
            .or_insert_with(|| (route, domain, Vec::new()))
            .2
            .extend(idx);
    }

    let env_arc = Arc::new(env.clone());
    let message = Arc::new(message);
    let mut set = JoinSet::new();
    for (key, (route, domain, idx)) in destinations {
        let (shared, env, message) = (shared.clone(), env_arc.clone(), message.clone());
        set.spawn(async move {
            deliver_destination(&shared, &key, route, &domain, &env, &message, idx).await
        });
    }
    while let Some(res) = set.join_next().await {
        match res {
            Ok(v) => outcomes.extend(v),
            Err(e) => tracing::error!(%id, error = %e, "destination task failed"),
        }
    }
    // A recipient left without an outcome (a failed task) waits like a deferral instead of
    // being retried in a tight loop.
    let mut settled = vec![false; env.recipients.len()];
    for (i, _) in &outcomes {
        settled[*i] = true;
    }
    for &i in &held {
        settled[i] = true;
    }
    for i in due.iter().copied().filter(|&i| !settled[i]) {
        let f = Failure::local(Enhanced(4, 3, 0), "internal error during delivery");
        outcomes.push((i, Outcome::Transient(f)));
    }

    let now = now_ms();
    let now_s = now / 1000;
    let expires = env.received_at + shared.config.retry.max_age.as_secs();
    let mut bounced = Vec::new();
    let mut delayed = Vec::new();
    // Kept for the delivery-result hook, told once the new state is durable.
    let reported: Vec<(usize, Outcome)> = match &shared.router {
        Some(router) if router.wants_results() => outcomes.clone(),
        _ => Vec::new(),
    };
    for (i, outcome) in outcomes {
        let r = &mut env.recipients[i];
        match outcome {
            Outcome::Delivered { remote, reply } => {
                tracing::info!(%id, rcpt = %r.address, %remote, %reply, "delivered");
                r.status = RecipientStatus::Delivered;
                r.last_reply = Some(format!("{remote}: {reply}"));
                // A drop (remote `-`) has its own event from the route decision.
                if remote != "-" {
                    shared.events.delivered(id, r, &remote, &reply);
                }
            }
            Outcome::Permanent(f) => {
                tracing::info!(%id, rcpt = %r.address, reply = %f.summary(), "bounced");
                r.status = RecipientStatus::Bounced;
                r.last_reply = Some(f.summary());
                shared.events.bounced(id, r, &f);
                if dsn::wants(r, Action::Failed) {
                    bounced.push((i, dsn_rcpt(r, f, now_s)));
                }
            }
            Outcome::Transient(f) => {
                r.attempts += 1;
                r.last_reply = Some(f.summary());
                if now_s >= expires {
                    tracing::info!(%id, rcpt = %r.address, reply = %f.summary(), "expired");
                    r.status = RecipientStatus::Expired;
                    let f = Failure {
                        status: Enhanced(4, 4, 7),
                        diagnostic: format!("delivery time expired; last error: {}", f.diagnostic),
                        ..f
                    };
                    shared.events.bounced(id, r, &f);
                    if dsn::wants(r, Action::Failed) {
                        bounced.push((i, dsn_rcpt(r, f, now_s)));
                    }
                } else {
                    let wait = retry::next_delay(&shared.config.retry, r.attempts);
                    let next = (now + wait.as_millis() as u64).min(expires * 1000);
                    r.next_attempt = next.div_ceil(1000);
                    tracing::info!(%id, rcpt = %r.address, reply = %f.summary(), retry_in = ?wait, "deferred");
                    shared.events.deferred(id, r, &f);
                    if retry::delay_notice_due(&shared.config.retry, r.attempts)
                        && dsn::wants(r, Action::Delayed)
                        && shared.config.retry.delay_notice_after.is_some()
                    {
                        delayed.push(dsn_rcpt(r, f, now_s));
                    }
                }
            }
        }
    }
    for i in held {
        let r = &mut env.recipients[i];
        if now_s >= expires {
            // Held past the max age: expire like any recipient that never got through.
            r.status = RecipientStatus::Expired;
            let f = Failure::local(Enhanced(4, 4, 7), "delivery time expired while held");
            r.last_reply = Some(f.summary());
            shared.events.bounced(&env.id, r, &f);
            if dsn::wants(r, Action::Failed) {
                bounced.push((i, dsn_rcpt(r, f, now_s)));
            }
            continue;
        }
        let wait = shared.config.retry.initial_interval.as_millis() as u64;
        r.next_attempt = (now + wait).min(expires * 1000).div_ceil(1000);
        r.last_reply = Some("held by route".into());
    }
    if !bounced.is_empty() || !delayed.is_empty() {
        let original = message_for_dsn(shared, &env).await;
        let notices: Vec<DsnRecipient> = bounced.iter().map(|(_, d)| d.clone()).collect();
        let stored = send_dsn(
            shared,
            &env,
            &original,
            &notices,
            Action::Failed,
            now_s,
            expires,
        )
        .await;
        if !stored {
            // The sender must hear about it: a recipient whose bounce is not on disk stays
            // pending, to fail (and bounce) again on a later attempt.
            for (i, _) in &bounced {
                let r = &mut env.recipients[*i];
                r.status = RecipientStatus::Pending;
                let wait = retry::next_delay(&shared.config.retry, r.attempts.max(1));
                r.next_attempt = (now + wait.as_millis() as u64).div_ceil(1000);
            }
        }
        // Delay notices are a courtesy: one that cannot be stored is not retried.
        send_dsn(
            shared,
            &env,
            &original,
            &delayed,
            Action::Delayed,
            now_s,
            expires,
        )
        .await;
    }
    let next = finish(shared, &env).await;
    if let Some(router) = &shared.router {
        for (i, outcome) in &reported {
            let r = &env.recipients[*i];
            let result = DeliveryResult {
                envelope: &env,
                recipient: &r.address,
                outcome,
                attempt: r.attempts.max(1),
            };
            router.delivery_result(result).await;
        }
    }
    next
}

/// `queue bounce ID`: every pending recipient fails now, and the sender hears about it.
pub(crate) async fn bounce_all(shared: &Arc<Shared>, id: &MessageId) -> Option<u64> {
    if let Some(env) = shared.take_unsaved(id) {
        // Record the last attempt first (see `process`); the operator can bounce again.
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

fn dsn_rcpt(r: &crate::spool::Recipient, failure: Failure, now_s: u64) -> DsnRecipient {
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
    ) else {
        tracing::info!(id = %env.id, "no DSN for a null sender");
        return true;
    };
    match shared.spool.store(&dsn_env, &bytes).await {
        Ok(()) => {
            tracing::info!(id = %env.id, dsn = %id, ?action, "DSN queued");
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
async fn finish(shared: &Shared, env: &Envelope) -> Option<u64> {
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

/// One next hop to try.
struct Hop {
    name: String,
    port: u16,
    options: ClientOptions,
}

/// Delivers the recipients `idx` of one destination: hops in order, each hop's addresses in
/// order, until one of them runs the transaction.
async fn deliver_destination(
    shared: &Arc<Shared>,
    key: &str,
    route: Route,
    domain: &str,
    env: &Envelope,
    message: &[u8],
    idx: Vec<usize>,
) -> Vec<(usize, Outcome)> {
    let all = |f: Failure| {
        idx.iter()
            .map(|&i| (i, Outcome::failed(f.clone())))
            .collect::<Vec<_>>()
    };
    let limit = shared.destination(key);
    let Ok(_permit) = limit.acquire_owned().await else {
        return all(Failure::local(Enhanced(4, 3, 0), "shutting down"));
    };
    let base = ClientOptions {
        helo_name: shared.config.hostname.clone(),
        tls: TlsPolicy::Opportunistic,
        tls_verify: true,
        auth: None,
        timeouts: shared.config.timeouts.clone(),
    };
    let is_mx = matches!(route, Route::Mx { .. });
    let hops: Vec<Hop> = match route {
        Route::SmartHosts(hosts) => hosts.iter().map(|h| smart_hop(h, &base)).collect(),
        Route::Mx { tls } => match shared.resolver.mx(domain).await {
            Ok(mx) => mx
                .into_iter()
                .map(|m| Hop {
                    name: m.name,
                    port: shared.config.mx_port,
                    options: ClientOptions {
                        tls,
                        ..base.clone()
                    },
                })
                .collect(),
            Err(f) => return all(f),
        },
        Route::Hold | Route::Drop | Route::Defer(..) | Route::Bounce(..) => Vec::new(),
    };
    let recipients: Vec<TxRecipient<'_>> = idx
        .iter()
        .map(|&i| {
            let r = &env.recipients[i];
            TxRecipient {
                address: &r.address,
                notify: &r.notify,
                orcpt: r.orcpt.as_deref(),
            }
        })
        .collect();
    let tx = Transaction {
        mail_from: env.mail_from.as_deref().unwrap_or(""),
        recipients,
        message,
        eight_bit: env.eight_bit || is_eight_bit(message),
        smtputf8: env.smtputf8,
        ret_headers_only: env.ret_headers_only,
        envid: env.envid.as_deref(),
    };
    // What to report if every hop fails: a hop that answered (TLS, AUTH, a reply) says more
    // than one that refused the connection, whichever came last.
    let mut last = Failure::local(Enhanced(4, 4, 4), format!("no route to {domain}"));
    let mut last_answered = false;
    let mut note = |f: Failure, answered: bool| {
        if answered || !last_answered {
            last = f;
            last_answered |= answered;
        }
    };
    // A next hop that is this relay would hand the message back to us. Among MX hosts
    // (best first) it ends the list: RFC 5321 §5.1 forbids the less preferred ones too.
    let mut looped: Option<String> = None;
    let mut tried_another = false;
    for hop in hops {
        let me = &shared.identity;
        if me.is_self_name(&hop.name, hop.port) {
            looped = Some(format!(
                "{}:{} is this relay's own name",
                hop.name, hop.port
            ));
            if is_mx {
                break;
            }
            continue;
        }
        let addrs = match shared.resolver.addrs(&hop.name).await {
            Ok(a) => a,
            Err(f) => {
                tried_another = true;
                note(f, false);
                continue;
            }
        };
        let ours = addrs
            .iter()
            .map(|&ip| SocketAddr::new(ip, hop.port))
            .find(|&a| me.is_self_addr(a));
        if let Some(addr) = ours {
            looped = Some(format!("{} ({addr}) is this relay", hop.name));
            if is_mx {
                break;
            }
            continue;
        }
        tried_another = true;
        for ip in addrs {
            let addr = SocketAddr::new(ip, hop.port);
            let pool_key = pool_key(addr, &hop);
            let mut client = match checkout(shared, &pool_key).await {
                Some(c) => c,
                None => match SmtpClient::connect(addr, &hop.name, &hop.options).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(%addr, error = %e, "next hop unavailable");
                        note(e.to_failure(), !matches!(e, ClientError::Connect { .. }));
                        continue;
                    }
                },
            };
            match client.send(&tx).await {
                Ok(outcomes) => {
                    checkin(shared, pool_key, client).await;
                    return idx.iter().copied().zip(outcomes).collect();
                }
                Err(e) => {
                    tracing::info!(%addr, error = %e, "session failed");
                    note(e.to_failure(), true);
                }
            }
        }
    }
    match looped {
        Some(why) if !tried_another => {
            tracing::warn!(%domain, %why, "mail loop: next hop is this relay");
            all(Failure::local(
                Enhanced(5, 4, 6),
                format!("mail for {domain} loops back to myself: {why}"),
            ))
        }
        _ => all(last),
    }
}

/// A pooled connection is reused only by a hop that would have opened it the same way: same
/// TLS policy, same certificate verification, same credentials (by digest: a key is no place
/// for a password). A connection opened without verification never serves a route that
/// needs it.
fn pool_key(addr: SocketAddr, hop: &Hop) -> String {
    use sha2::Digest;
    let o = &hop.options;
    let auth = o
        .auth
        .as_ref()
        .map(|a| {
            let digest = sha2::Sha256::digest(format!("{}\0{}", a.user, a.password));
            format!("{:x}|plain={}", digest, a.allow_plaintext)
        })
        .unwrap_or_default();
    format!(
        "{addr}|{}|{:?}|verify={}|{auth}",
        hop.name, o.tls, o.tls_verify
    )
}

fn smart_hop(h: &SmartHostConfig, base: &ClientOptions) -> Hop {
    Hop {
        name: h.host.clone(),
        port: h.port,
        options: ClientOptions {
            tls: h.tls,
            tls_verify: h.tls_verify,
            auth: h.auth.clone(),
            ..base.clone()
        },
    }
}

/// A pooled connection to `key` that still answers RSET.
async fn checkout(shared: &Shared, key: &str) -> Option<SmtpClient> {
    loop {
        let idle = {
            let mut pool = shared.pool.lock().await;
            let list = pool.get_mut(key)?;
            let idle = list.pop();
            if list.is_empty() {
                pool.remove(key);
            }
            idle?
        };
        if idle.since.elapsed() >= shared.config.idle_timeout {
            tokio::spawn(idle.client.quit());
            continue;
        }
        let mut client = idle.client;
        if client.rset().await.is_ok() {
            return Some(client);
        }
    }
}

async fn checkin(shared: &Shared, key: String, client: SmtpClient) {
    if client.transactions() >= shared.config.max_messages_per_connection {
        tokio::spawn(client.quit());
        return;
    }
    let mut pool = shared.pool.lock().await;
    pool.entry(key).or_default().push(Idle {
        client,
        since: Instant::now(),
    });
}

/// Closes connections idle longer than `idle_timeout`, and forgets the concurrency limits of
/// destinations nobody is delivering to.
pub(crate) async fn reap_idle(shared: &Shared) {
    shared
        .destinations
        .lock()
        .unwrap()
        .retain(|_, limit| Arc::strong_count(limit) > 1);
    let mut stale = Vec::new();
    {
        let mut pool = shared.pool.lock().await;
        for list in pool.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = list
                .drain(..)
                .partition(|i| i.since.elapsed() >= shared.config.idle_timeout);
            *list = fresh;
            stale.extend(old);
        }
        pool.retain(|_, l| !l.is_empty());
    }
    for idle in stale {
        tokio::spawn(idle.client.quit());
    }
}

/// Closes every pooled connection (QUIT), at shutdown.
pub(crate) async fn close_all(shared: &Shared) {
    let all: Vec<Idle> = shared
        .pool
        .lock()
        .await
        .drain()
        .flat_map(|(_, v)| v)
        .collect();
    let mut set = JoinSet::new();
    for idle in all {
        set.spawn(idle.client.quit());
    }
    while set.join_next().await.is_some() {}
}
