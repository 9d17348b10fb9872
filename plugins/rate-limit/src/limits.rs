//! Checking and charging limits against the host's shared state.
//!
//! GCRA rates and calendar quotas both charge only when they allow, atomically. When one
//! stage checks several limits, [`admit`] makes sure a refusal by one of them does not leave
//! the others charged (the client will retry, and would pay twice): it first *peeks* at every
//! limit but the last, then charges the last, then the others. Only a race with another
//! session between the peek and the charge can leave an earlier limit charged, and not for
//! charges made for a message ([`Charge::ForMessage`]): the host gives those back when the
//! transaction is refused.
//!
//! Peeking a GCRA uses the WIT contract of `rate-limit`: a cost above the burst is never
//! allowed and charges nothing, and its `remaining` says how many requests the burst holds
//! right now.

use std::time::Duration;

use wasmrelay_plugin_sdk::host::{self, StateError};

use crate::config::{OnStateError, Quota, Rate};

/// One limit of one rule, with its key.
#[derive(Debug)]
pub struct Check<'c> {
    pub rule: usize,
    pub key: String,
    pub limit: Limit<'c>,
    pub on_state_error: OnStateError,
}

#[derive(Debug, Clone, Copy)]
pub enum Limit<'c> {
    Rate(&'c Rate),
    Quota(&'c Quota),
}

/// Why a client is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over a rate; allowed again after this long.
    Rate { rule: usize, retry_after: Duration },
    /// Over a quota; the window ends at `reset_ms` (ms since the epoch).
    Quota {
        rule: usize,
        limit: u64,
        window: &'static str,
        reset_ms: u64,
    },
    /// Over a cap that needs no state (`max`, `per_message`).
    Cap { rule: usize, cap: u64 },
    /// The state backend did not answer and the rule fails closed.
    State { rule: usize },
}

impl Refusal {
    /// The index of the rule that refused.
    pub fn rule(&self) -> usize {
        match self {
            Refusal::Rate { rule, .. }
            | Refusal::Quota { rule, .. }
            | Refusal::Cap { rule, .. }
            | Refusal::State { rule } => *rule,
        }
    }
}

/// How a charge is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// For good.
    Now,
    /// For the transaction's message: the host gives it back unless the message is queued
    /// (which also gives back what an earlier check charged before a later one refused).
    ForMessage,
}

/// Checks `checks` in order and charges `cost` to all of them, or to none when one refuses.
pub fn admit(checks: &[Check<'_>], cost: u32, how: Charge) -> Result<(), Refusal> {
    let Some((last, first)) = checks.split_last() else {
        return Ok(());
    };
    for c in first {
        peek(c, cost)?;
    }
    charge(last, cost, how)?;
    for c in first {
        charge(c, cost, how)?;
    }
    Ok(())
}

fn peek(c: &Check<'_>, cost: u32) -> Result<(), Refusal> {
    match c.limit {
        Limit::Rate(r) => {
            // Never allowed (cost > burst), so never charged; `remaining` is what the
            // burst holds now and `retry_after` is `tat - now + interval`.
            let probe = r.burst.saturating_add(1);
            match host::rate_limit(&c.key, r.count, r.period, r.burst, probe) {
                Ok(d) if d.allowed => {
                    host::warn("rate-limit: a peek was charged; the backend breaks the contract");
                    Ok(())
                }
                Ok(d) if d.remaining >= cost => Ok(()),
                Ok(d) => {
                    let full = r.period.saturating_mul(r.burst) / r.count;
                    let retry = Duration::from_millis(d.retry_after_ms).saturating_sub(full);
                    Err(Refusal::Rate {
                        rule: c.rule,
                        retry_after: retry,
                    })
                }
                Err(e) => state_error(c, e),
            }
        }
        Limit::Quota(q) => match host::quota_get(&c.key, q.window) {
            Ok(d) if d.total.saturating_add(u64::from(cost)) <= q.limit => Ok(()),
            Ok(d) => Err(quota_refusal(c.rule, q, d.reset_ms)),
            Err(e) => state_error(c, e),
        },
    }
}

fn charge(c: &Check<'_>, cost: u32, how: Charge) -> Result<(), Refusal> {
    let rate = match how {
        Charge::Now => host::rate_limit,
        Charge::ForMessage => host::rate_limit_for_message,
    };
    let quota = match how {
        Charge::Now => host::quota_add,
        Charge::ForMessage => host::quota_add_for_message,
    };
    match c.limit {
        Limit::Rate(r) => match rate(&c.key, r.count, r.period, r.burst, cost) {
            Ok(d) if d.allowed => Ok(()),
            Ok(d) => Err(Refusal::Rate {
                rule: c.rule,
                retry_after: Duration::from_millis(d.retry_after_ms),
            }),
            Err(e) => state_error(c, e),
        },
        Limit::Quota(q) => match quota(&c.key, u64::from(cost), q.limit, q.window) {
            Ok(d) if d.allowed => Ok(()),
            Ok(d) => Err(quota_refusal(c.rule, q, d.reset_ms)),
            Err(e) => state_error(c, e),
        },
    }
}

fn quota_refusal(rule: usize, q: &Quota, reset_ms: u64) -> Refusal {
    Refusal::Quota {
        rule,
        limit: q.limit,
        window: match q.tag {
            "qm" => "minute",
            "qh" => "hour",
            _ => "day",
        },
        reset_ms,
    }
}

/// A backend failure: logged, then the rule's `on_state_error` decides.
pub fn state_error<T: Default>(c: &Check<'_>, e: StateError) -> Result<T, Refusal> {
    failed(c.rule, c.on_state_error, &e)
}

pub fn failed<T: Default>(rule: usize, on: OnStateError, e: &StateError) -> Result<T, Refusal> {
    host::warn(&format!("rate-limit: state unavailable ({e:?}); {on:?}"));
    match on {
        OnStateError::Allow => Ok(T::default()),
        OnStateError::Tempfail => Err(Refusal::State { rule }),
    }
}
