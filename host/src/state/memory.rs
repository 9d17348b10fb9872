//! The in-process backend: a mutex over hash maps. GCRA, counters and kv TTLs use tokio's
//! clock (so tests can pause time); calendar quotas and list TTLs use the wall clock, which
//! tests replace with [`InProcessBackend::with_clock`]. All arithmetic saturates: no
//! argument a plugin can pass overflows a `Duration` or an `Instant`.
//!
//! [`InProcessBackend::open`] adds the list journal: lists are loaded from it and every list
//! change is durable before its call returns. Without it (tests, `plugin test`) nothing is
//! persisted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::journal::{Journal, JournalError, LoadReport, LockMode};
use super::kv::KvTable;
use super::lists::{Change, ListTable};
use super::{
    KvCap, ListMember, QuotaDecision, QuotaWindow, RateDecision, StateBackend, StateError,
    StateFuture, StateResult,
};

/// Sweep expired entries every this many writes.
const SWEEP_EVERY: u64 = 4096;
/// Saturation point for instants: far enough to mean "never" without overflowing.
pub(super) const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    length: Duration,
    total: i64,
}

#[derive(Debug)]
struct Quota {
    /// Start of the window this total belongs to, ms since the epoch.
    window_start: u64,
    total: u64,
}

#[derive(Debug, Default)]
struct Tables {
    /// Theoretical arrival time per GCRA key.
    tat: HashMap<String, Instant>,
    windows: HashMap<String, Window>,
    quotas: HashMap<(String, QuotaWindow), Quota>,
    kv: KvTable,
    lists: ListTable,
    writes: u64,
}

impl Tables {
    fn sweep(&mut self, now: Instant, wall_ms: u64) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.tat.retain(|_, t| *t > now);
            self.windows.retain(|_, w| later(w.start, w.length) > now);
            self.kv.sweep(now);
            self.quotas
                .retain(|(_, w), q| q.window_start + w.seconds() * 1000 > wall_ms);
            self.lists.sweep(wall_ms);
        }
    }
}

fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(FAR))
        .unwrap_or_else(|| t + Duration::from_secs(1))
}

fn expiry(now: Instant, ttl: Option<Duration>) -> Option<Instant> {
    ttl.map(|d| later(now, d))
}

/// A TTL as an expiry on the wall clock (ms since the epoch).
fn wall_expiry(wall_ms: u64, ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|d| wall_ms.saturating_add(d.as_millis().min(u64::MAX as u128) as u64))
}

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Single-process state for one relay.
pub struct InProcessBackend {
    tables: Arc<Mutex<Tables>>,
    clock: Clock,
    journal: Option<Journal>,
}

impl Default for InProcessBackend {
    fn default() -> Self {
        InProcessBackend::with_clock(Arc::new(SystemTime::now))
    }
}

impl std::fmt::Debug for InProcessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBackend").finish_non_exhaustive()
    }
}

impl InProcessBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose calendar quotas and list TTLs read `clock` instead of the system
    /// time.
    pub fn with_clock(clock: Clock) -> Self {
        InProcessBackend {
            tables: Arc::default(),
            clock,
            journal: None,
        }
    }

    /// A backend whose lists live in the journal under `dir` (`<spool>/state`): loaded now,
    /// and every change durable before its call returns. Blocking (it replays the journal).
    pub fn open(dir: &Path, lock: LockMode) -> Result<(Self, LoadReport), JournalError> {
        Self::open_with_clock(dir, lock, Arc::new(SystemTime::now))
    }

    pub fn open_with_clock(
        dir: &Path,
        lock: LockMode,
        clock: Clock,
    ) -> Result<(Self, LoadReport), JournalError> {
        let (journal, lists, report) = Journal::open(dir, lock, wall_ms(clock()))?;
        let tables = Tables {
            lists: ListTable::new(lists),
            ..Tables::default()
        };
        let backend = InProcessBackend {
            tables: Arc::new(Mutex::new(tables)),
            clock,
            journal: Some(journal),
        };
        Ok((backend, report))
    }

    #[cfg(test)]
    pub(crate) fn stop_journal_writer(&mut self) {
        if let Some(journal) = &mut self.journal {
            journal.stop_writer();
        }
    }

    /// Live kv keys and bytes of one namespace (a plugin).
    pub fn kv_usage(&self, namespace: &str) -> (u64, u64) {
        self.with(|t, now, _| t.kv.usage(namespace, now))
    }

    /// Queues a list change in the journal (under the tables lock, so the journal's order
    /// is memory's) and, when the journal has grown enough, a compaction after it. `None`
    /// without a journal. A journal whose writer has stopped takes nothing: the change is
    /// undone here, under the lock already held, and the answer is the error.
    fn journal(
        &self,
        t: &mut Tables,
        change: Change,
    ) -> Option<oneshot::Receiver<StateResult<()>>> {
        let journal = self.journal.as_ref()?;
        let tables = Arc::downgrade(&self.tables);
        let record = change.record.clone();
        let undone = change.clone();
        let undo = Box::new(move || {
            if let Some(tables) = tables.upgrade() {
                let mut t = tables.lock().unwrap_or_else(|p| p.into_inner());
                t.lists.undo(&undone);
            }
        });
        match journal.append(&record, undo) {
            Ok(durable) => {
                if journal.wants_compaction() {
                    journal.compact(t.lists.lists());
                }
                Some(durable)
            }
            Err(e) => {
                t.lists.undo(&change);
                let (failed, answer) = oneshot::channel();
                let _ = failed.send(Err(e));
                Some(answer)
            }
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tables, Instant, u64) -> R) -> R {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let (now, wall) = (Instant::now(), wall_ms((self.clock)()));
        t.sweep(now, wall);
        f(&mut t, now, wall)
    }

    /// The GCRA step, separate so it can be tested without futures.
    fn gcra(&self, key: &str, rate: u32, period: Duration, burst: u32, cost: u32) -> RateDecision {
        let interval = period / rate.max(1);
        let limit = interval.saturating_mul(burst.max(1)).min(FAR);
        let charge = interval.saturating_mul(cost).min(FAR);
        self.with(|t, now, _| {
            let stored = t.tat.get_mut(key);
            let tat = stored.as_deref().copied().unwrap_or(now).max(now);
            let new_tat = later(tat, charge);
            let used = new_tat - now;
            if used > limit {
                let left = limit.saturating_sub(tat - now);
                RateDecision {
                    allowed: false,
                    remaining: remaining(left, interval),
                    retry_after: used - limit,
                }
            } else {
                // A known key is charged in place: one lookup, no copy of the key.
                match stored {
                    Some(stored) => *stored = new_tat,
                    None => {
                        t.tat.insert(key.to_string(), new_tat);
                    }
                }
                RateDecision {
                    allowed: true,
                    remaining: remaining(limit - used, interval),
                    retry_after: Duration::ZERO,
                }
            }
        })
    }

    /// The GCRA step backwards: `cost` intervals off the key's arrival time.
    fn gcra_refund(&self, key: &str, rate: u32, period: Duration, cost: u32) {
        let charge = (period / rate.max(1)).saturating_mul(cost).min(FAR);
        self.with(|t, now, _| {
            let Some(tat) = t.tat.get_mut(key) else {
                return;
            };
            match tat.checked_sub(charge) {
                Some(back) if back > now => *tat = back,
                // At or before now: the same as no entry.
                _ => {
                    t.tat.remove(key);
                }
            }
        })
    }

    fn quota(&self, key: &str, window: QuotaWindow, add: Option<(u64, u64)>) -> QuotaDecision {
        self.with(|t, _, wall| {
            let now = SystemTime::UNIX_EPOCH + Duration::from_millis(wall);
            let (start, end) = window.bounds(now);
            let q = t.quotas.entry((key.to_string(), window)).or_insert(Quota {
                window_start: start,
                total: 0,
            });
            if q.window_start != start {
                *q = Quota {
                    window_start: start,
                    total: 0,
                };
            }
            let allowed = match add {
                None => true,
                Some((amount, limit)) => match q.total.checked_add(amount) {
                    Some(total) if total <= limit => {
                        q.total = total;
                        true
                    }
                    _ => false,
                },
            };
            QuotaDecision {
                allowed,
                total: q.total,
                reset_ms: end,
            }
        })
    }
}

pub(super) fn remaining(left: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return u32::MAX;
    }
    (left.as_nanos() / interval.as_nanos()).min(u32::MAX as u128) as u32
}

fn ready<'a, T: Send + 'a>(v: T) -> StateFuture<'a, StateResult<T>> {
    StateFuture::ready(Ok(v))
}

/// A list call's answer once its journal record (if any) is durable.
fn durable<'a, T: Send + 'a>(
    answer: StateResult<(T, Option<oneshot::Receiver<StateResult<()>>>)>,
) -> StateFuture<'a, StateResult<T>> {
    StateFuture::pending(async move {
        let (value, pending) = answer?;
        if let Some(pending) = pending {
            pending
                .await
                .map_err(|_| StateError::Unavailable("list journal writer stopped".into()))??;
        }
        Ok(value)
    })
}

impl StateBackend for InProcessBackend {
    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> StateFuture<'a, StateResult<RateDecision>> {
        ready(self.gcra(key, rate, period, burst, cost))
    }

    fn counter_add<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        window: Duration,
    ) -> StateFuture<'a, StateResult<i64>> {
        let total = self.with(|t, now, _| {
            let fresh = Window {
                start: now,
                length: window,
                total: 0,
            };
            let add = |w: &mut Window| {
                if later(w.start, w.length) <= now {
                    *w = fresh;
                }
                w.total = w.total.saturating_add(delta);
                w.total
            };
            // A known key is counted in place: one lookup, no copy of the key.
            if let Some(w) = t.windows.get_mut(key) {
                return add(w);
            }
            add(t.windows.entry(key.to_string()).or_insert(fresh))
        });
        ready(total)
    }

    fn counter_get<'a>(&'a self, key: &'a str) -> StateFuture<'a, StateResult<i64>> {
        let total = self.with(|t, now, _| match t.windows.get(key) {
            Some(w) if later(w.start, w.length) > now => w.total,
            _ => 0,
        });
        ready(total)
    }

    fn rate_refund<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        cost: u32,
    ) -> StateFuture<'a, StateResult<()>> {
        self.gcra_refund(key, rate, period, cost);
        ready(())
    }

    fn quota_add<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> StateFuture<'a, StateResult<QuotaDecision>> {
        ready(self.quota(key, window, Some((amount, limit))))
    }

    fn quota_refund<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        window: QuotaWindow,
        window_start_ms: u64,
    ) -> StateFuture<'a, StateResult<()>> {
        self.with(|t, _, _| {
            if let Some(q) = t.quotas.get_mut(&(key.to_string(), window)) {
                if q.window_start == window_start_ms {
                    q.total = q.total.saturating_sub(amount);
                }
            }
        });
        ready(())
    }

    fn quota_get<'a>(
        &'a self,
        key: &'a str,
        window: QuotaWindow,
    ) -> StateFuture<'a, StateResult<QuotaDecision>> {
        ready(self.quota(key, window, None))
    }

    fn kv_get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> StateFuture<'a, StateResult<Option<Vec<u8>>>> {
        ready(self.with(|t, now, _| t.kv.get(namespace, key, now)))
    }

    fn kv_set<'a>(
        &'a self,
        cap: KvCap<'a>,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StateFuture<'a, StateResult<()>> {
        let set = self.with(|t, now, _| t.kv.set(&cap, key, value, expiry(now, ttl), false, now));
        StateFuture::ready(set.map(|_| ()))
    }

    fn kv_add<'a>(
        &'a self,
        cap: KvCap<'a>,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StateFuture<'a, StateResult<bool>> {
        let set = self.with(|t, now, _| t.kv.set(&cap, key, value, expiry(now, ttl), true, now));
        StateFuture::ready(set)
    }

    fn kv_delete<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> StateFuture<'a, StateResult<bool>> {
        ready(self.with(|t, now, _| t.kv.delete(namespace, key, now)))
    }

    fn list_contains<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> StateFuture<'a, StateResult<bool>> {
        ready(self.with(|t, _, wall| t.lists.contains(list, member, wall)))
    }

    fn list_add<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
        ttl: Option<Duration>,
        max_members: u64,
    ) -> StateFuture<'a, StateResult<bool>> {
        durable(self.with(|t, _, wall| {
            let expires = wall_expiry(wall, ttl);
            let (new, change) = t.lists.add(list, member, expires, max_members, wall)?;
            Ok((new, change.and_then(|c| self.journal(t, c))))
        }))
    }

    fn list_remove<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> StateFuture<'a, StateResult<bool>> {
        durable(self.with(|t, _, wall| {
            let (existed, change) = t.lists.remove(list, member, wall);
            Ok((existed, change.and_then(|c| self.journal(t, c))))
        }))
    }

    fn list_members<'a>(&'a self, list: &'a str) -> StateFuture<'a, StateResult<Vec<ListMember>>> {
        ready(self.with(|t, _, wall| t.lists.members(list, wall)))
    }
}

/// Refuses calls whose arguments no backend should see; shared by every backend's caller.
pub(crate) fn check_rate(rate: u32, period: Duration, burst: u32) -> StateResult<()> {
    if rate == 0 || burst == 0 || period.is_zero() {
        return Err(StateError::Invalid(
            "rate, burst and period must be positive".into(),
        ));
    }
    Ok(())
}
