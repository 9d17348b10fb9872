//! The in-process backend: a mutex over hash maps. GCRA, counters and TTLs use tokio's clock
//! (so tests can pause time); calendar quotas use the wall clock, which tests replace with
//! [`InProcessBackend::with_clock`]. All arithmetic saturates: no argument a plugin can pass
//! overflows a `Duration` or an `Instant`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    BoxFuture, QuotaDecision, QuotaWindow, RateDecision, StateBackend, StateError, StateResult,
};

/// Sweep expired entries every this many writes.
const SWEEP_EVERY: u64 = 4096;
/// Saturation point for instants: far enough to mean "never" without overflowing.
const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

#[derive(Debug)]
struct Window {
    start: Instant,
    length: Duration,
    total: i64,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
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
    kv: HashMap<String, Entry>,
    lists: HashMap<String, HashMap<String, Option<Instant>>>,
    writes: u64,
}

impl Tables {
    fn sweep(&mut self, now: Instant, wall_ms: u64) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.tat.retain(|_, t| *t > now);
            self.windows.retain(|_, w| later(w.start, w.length) > now);
            self.kv.retain(|_, e| e.live(now));
            self.quotas
                .retain(|(_, w), q| q.window_start + w.seconds() * 1000 > wall_ms);
            for members in self.lists.values_mut() {
                members.retain(|_, exp| exp.is_none_or(|e| e > now));
            }
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

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Single-process state for one relay.
pub struct InProcessBackend {
    tables: Mutex<Tables>,
    clock: Clock,
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

    /// A backend whose calendar quotas read `clock` instead of the system time.
    pub fn with_clock(clock: Clock) -> Self {
        InProcessBackend {
            tables: Mutex::new(Tables::default()),
            clock,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tables, Instant, u64) -> R) -> R {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let wall = wall_ms((self.clock)());
        t.sweep(Instant::now(), wall);
        f(&mut t, Instant::now(), wall)
    }

    /// The GCRA step, separate so it can be tested without futures.
    fn gcra(&self, key: &str, rate: u32, period: Duration, burst: u32, cost: u32) -> RateDecision {
        let interval = period / rate.max(1);
        let limit = interval.saturating_mul(burst.max(1)).min(FAR);
        let charge = interval.saturating_mul(cost).min(FAR);
        self.with(|t, now, _| {
            let tat = t.tat.get(key).copied().unwrap_or(now).max(now);
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
                t.tat.insert(key.to_string(), new_tat);
                RateDecision {
                    allowed: true,
                    remaining: remaining(limit - used, interval),
                    retry_after: Duration::ZERO,
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

fn remaining(left: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return u32::MAX;
    }
    (left.as_nanos() / interval.as_nanos()).min(u32::MAX as u128) as u32
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, StateResult<T>> {
    Box::pin(std::future::ready(Ok(v)))
}

impl StateBackend for InProcessBackend {
    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> BoxFuture<'a, StateResult<RateDecision>> {
        ready(self.gcra(key, rate, period, burst, cost))
    }

    fn counter_add<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        window: Duration,
    ) -> BoxFuture<'a, StateResult<i64>> {
        let total = self.with(|t, now, _| {
            let fresh = Window {
                start: now,
                length: window,
                total: 0,
            };
            let w = t.windows.entry(key.to_string()).or_insert(fresh);
            if later(w.start, w.length) <= now {
                *w = Window {
                    start: now,
                    length: window,
                    total: 0,
                };
            }
            w.total = w.total.saturating_add(delta);
            w.total
        });
        ready(total)
    }

    fn counter_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StateResult<i64>> {
        let total = self.with(|t, now, _| match t.windows.get(key) {
            Some(w) if later(w.start, w.length) > now => w.total,
            _ => 0,
        });
        ready(total)
    }

    fn quota_add<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> BoxFuture<'a, StateResult<QuotaDecision>> {
        ready(self.quota(key, window, Some((amount, limit))))
    }

    fn quota_get<'a>(
        &'a self,
        key: &'a str,
        window: QuotaWindow,
    ) -> BoxFuture<'a, StateResult<QuotaDecision>> {
        ready(self.quota(key, window, None))
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StateResult<Option<Vec<u8>>>> {
        let v = self.with(|t, now, _| {
            t.kv.get(key)
                .filter(|e| e.live(now))
                .map(|e| e.value.clone())
        });
        ready(v)
    }

    fn kv_set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, StateResult<()>> {
        self.with(|t, now, _| {
            let expires = expiry(now, ttl);
            t.kv.insert(key.to_string(), Entry { value, expires });
        });
        ready(())
    }

    fn kv_add<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, StateResult<bool>> {
        let set = self.with(|t, now, _| {
            if t.kv.get(key).is_some_and(|e| e.live(now)) {
                return false;
            }
            let expires = expiry(now, ttl);
            t.kv.insert(key.to_string(), Entry { value, expires });
            true
        });
        ready(set)
    }

    fn kv_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StateResult<bool>> {
        let existed = self.with(|t, now, _| t.kv.remove(key).is_some_and(|e| e.live(now)));
        ready(existed)
    }

    fn list_contains<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, StateResult<bool>> {
        let hit = self.with(|t, now, _| {
            t.lists
                .get(list)
                .and_then(|m| m.get(member))
                .is_some_and(|exp| exp.is_none_or(|e| e > now))
        });
        ready(hit)
    }

    fn list_add<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, StateResult<bool>> {
        let new = self.with(|t, now, _| {
            let members = t.lists.entry(list.to_string()).or_default();
            let old = members.insert(member.to_string(), expiry(now, ttl));
            !old.is_some_and(|exp| exp.is_none_or(|e| e > now))
        });
        ready(new)
    }

    fn list_remove<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, StateResult<bool>> {
        let existed = self.with(|t, now, _| {
            t.lists
                .get_mut(list)
                .and_then(|m| m.remove(member))
                .is_some_and(|exp| exp.is_none_or(|e| e > now))
        });
        ready(existed)
    }

    fn list_members<'a>(&'a self, list: &'a str) -> BoxFuture<'a, StateResult<Vec<String>>> {
        let mut members: Vec<String> = self.with(|t, now, _| {
            t.lists
                .get(list)
                .map(|m| {
                    m.iter()
                        .filter(|(_, exp)| exp.is_none_or(|e| e > now))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default()
        });
        members.sort();
        ready(members)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn gcra_allows_burst_then_paces() {
        let b = InProcessBackend::new();
        let minute = Duration::from_secs(60);
        let d1 = b.rate_limit("k", 2, minute, 2, 1).await.unwrap();
        let d2 = b.rate_limit("k", 2, minute, 2, 1).await.unwrap();
        let d3 = b.rate_limit("k", 2, minute, 2, 1).await.unwrap();
        assert!(d1.allowed && d2.allowed && !d3.allowed);
        assert_eq!((d1.remaining, d2.remaining), (1, 0));
        assert_eq!(d3.retry_after, Duration::from_secs(30));
        assert!(
            b.rate_limit("other", 2, minute, 2, 1)
                .await
                .unwrap()
                .allowed
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.rate_limit("k", 2, minute, 2, 1).await.unwrap().allowed);
        assert!(!b.rate_limit("k", 2, minute, 2, 1).await.unwrap().allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn gcra_extreme_arguments_saturate_instead_of_panicking() {
        let b = InProcessBackend::new();
        let huge = Duration::from_millis(u64::MAX);
        let d = b
            .rate_limit("x", 1, huge, u32::MAX, u32::MAX)
            .await
            .unwrap();
        assert!(d.allowed);
        let d = b
            .rate_limit("x", 1, huge, u32::MAX, u32::MAX)
            .await
            .unwrap();
        assert!(!d.allowed);
        let d = b
            .rate_limit("y", u32::MAX, Duration::from_nanos(1), 1, u32::MAX)
            .await;
        assert!(d.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn counter_window_resets_and_saturates() {
        let b = InProcessBackend::new();
        let w = Duration::from_secs(10);
        assert_eq!(b.counter_add("c", 3, w).await, Ok(3));
        assert_eq!(b.counter_add("c", 2, w).await, Ok(5));
        assert_eq!(b.counter_get("c").await, Ok(5));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.counter_get("c").await, Ok(0));
        assert_eq!(b.counter_add("c", 1, w).await, Ok(1));
        assert_eq!(b.counter_add("c", i64::MAX, w).await, Ok(i64::MAX));
        assert_eq!(
            b.counter_add("forever", 1, Duration::from_millis(u64::MAX))
                .await,
            Ok(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn kv_ttl_and_add() {
        let b = InProcessBackend::new();
        b.kv_set("a", b"1".to_vec(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(b.kv_add("a", b"2".to_vec(), None).await, Ok(false));
        assert_eq!(b.kv_get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.kv_get("a").await, Ok(None));
        assert_eq!(b.kv_add("a", b"2".to_vec(), None).await, Ok(true));
        assert_eq!(b.kv_delete("a").await, Ok(true));
        assert_eq!(b.kv_delete("a").await, Ok(false));
    }

    #[tokio::test]
    async fn quotas_follow_calendar_windows_in_utc() {
        // 2026-12-01 23:59:30 UTC
        let now = Arc::new(AtomicU64::new(1_796_169_570_000));
        let clock = now.clone();
        let b = InProcessBackend::with_clock(Arc::new(move || {
            SystemTime::UNIX_EPOCH + Duration::from_millis(clock.load(Ordering::SeqCst))
        }));
        let day_end = 1_796_169_600_000;
        let d = b.quota_add("u", 2, 3, QuotaWindow::Day).await.unwrap();
        assert_eq!((d.allowed, d.total, d.reset_ms), (true, 2, day_end));
        let d = b.quota_add("u", 2, 3, QuotaWindow::Day).await.unwrap();
        assert_eq!(
            (d.allowed, d.total),
            (false, 2),
            "over the limit adds nothing"
        );
        let d = b.quota_add("u", 1, 3, QuotaWindow::Day).await.unwrap();
        assert_eq!((d.allowed, d.total), (true, 3));
        // Another window size of the same key is independent.
        let m = b.quota_get("u", QuotaWindow::Minute).await.unwrap();
        assert_eq!((m.total, m.reset_ms), (0, day_end));
        // Midnight UTC starts a new day.
        now.store(day_end + 1, Ordering::SeqCst);
        let d = b.quota_get("u", QuotaWindow::Day).await.unwrap();
        assert_eq!((d.total, d.reset_ms), (0, day_end + 86_400_000));
        let d = b
            .quota_add("u", u64::MAX, u64::MAX, QuotaWindow::Day)
            .await
            .unwrap();
        assert!(d.allowed);
        let d = b
            .quota_add("u", 1, u64::MAX, QuotaWindow::Day)
            .await
            .unwrap();
        assert!(!d.allowed, "a total that would overflow is over any limit");
    }

    #[tokio::test(start_paused = true)]
    async fn lists_with_ttl() {
        let b = InProcessBackend::new();
        assert_eq!(b.list_add("suppression", "a@x.test", None).await, Ok(true));
        assert_eq!(b.list_add("suppression", "a@x.test", None).await, Ok(false));
        assert_eq!(
            b.list_add("suppression", "b@x.test", Some(Duration::from_secs(5)))
                .await,
            Ok(true)
        );
        assert_eq!(b.list_contains("suppression", "b@x.test").await, Ok(true));
        assert_eq!(b.list_contains("other", "a@x.test").await, Ok(false));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.list_contains("suppression", "b@x.test").await, Ok(false));
        assert_eq!(
            b.list_members("suppression").await,
            Ok(vec!["a@x.test".to_string()])
        );
        assert_eq!(b.list_remove("suppression", "a@x.test").await, Ok(true));
        assert_eq!(b.list_remove("suppression", "a@x.test").await, Ok(false));
    }
}
