//! Host capabilities behind plugins' imports: the shared-state backend (rate, counter, kv),
//! DNS and the event sink. The in-process backend is the default; a Redis backend plugs in
//! through [`StateBackend`] when several relays share limits.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A boxed future, so backends can be trait objects and still do network I/O.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result of a GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests left in the burst right now.
    pub remaining: u32,
    /// When not allowed: time until the request would be.
    pub retry_after: Duration,
}

/// Shared state for plugins: atomic rate/counter primitives and a kv store with TTL.
/// Keys arrive already namespaced per plugin.
pub trait StateBackend: Send + Sync + 'static {
    /// GCRA: `rate` per `period`, bursts of `burst`, charging `cost` only when allowed.
    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> BoxFuture<'a, RateDecision>;
    /// Adds to a fixed window of `window` starting at the first add; returns the new total.
    fn counter_add<'a>(&'a self, key: &'a str, delta: i64, window: Duration) -> BoxFuture<'a, i64>;
    fn counter_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, i64>;
    fn kv_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    fn kv_set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, ()>;
    /// Sets only if absent or expired; returns whether it set.
    fn kv_add<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, bool>;
    fn kv_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool>;
}

/// DNS record types plugins may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsType {
    A,
    Aaaa,
    Txt,
    Mx,
}

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    NotFound,
    Timeout,
    Failed(String),
}

/// DNS for `dns-lookup`: the relay's hickory resolver, or a fixed table in tests and
/// `wasmrelay plugin test`. Answers are textual as the WIT documents (MX: `"pref host"`).
pub trait DnsLookup: Send + Sync + 'static {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: DnsType,
    ) -> BoxFuture<'a, Result<Vec<String>, DnsFailure>>;
}

impl DnsLookup for hickory_resolver::TokioResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: DnsType,
    ) -> BoxFuture<'a, Result<Vec<String>, DnsFailure>> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let qtype = match rtype {
            DnsType::A => RecordType::A,
            DnsType::Aaaa => RecordType::AAAA,
            DnsType::Txt => RecordType::TXT,
            DnsType::Mx => RecordType::MX,
        };
        Box::pin(async move {
            let lookup = match hickory_resolver::TokioResolver::lookup(self, name, qtype).await {
                Ok(l) => l,
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                    return Err(DnsFailure::NotFound)
                }
                Err(e) => return Err(DnsFailure::Failed(e.to_string())),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) if qtype == RecordType::A => Some(a.to_string()),
                    RData::AAAA(a) if qtype == RecordType::AAAA => Some(a.to_string()),
                    RData::TXT(t) if qtype == RecordType::TXT => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect(),
                    ),
                    RData::MX(mx) if qtype == RecordType::MX => {
                        Some(format!("{} {}", mx.preference, mx.exchange))
                    }
                    _ => None,
                })
                .collect())
        })
    }
}

/// A fixed table of answers: names not in it are `NotFound`.
#[derive(Debug, Clone, Default)]
pub struct StaticDns {
    answers: HashMap<(String, DnsType), Vec<String>>,
}

impl StaticDns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an answer (names compare case-insensitively, trailing dot ignored).
    pub fn insert(&mut self, name: &str, rtype: DnsType, answer: impl Into<String>) {
        let key = (normalize(name), rtype);
        self.answers.entry(key).or_default().push(answer.into());
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsLookup for StaticDns {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: DnsType,
    ) -> BoxFuture<'a, Result<Vec<String>, DnsFailure>> {
        let answer = self
            .answers
            .get(&(normalize(name), rtype))
            .cloned()
            .ok_or(DnsFailure::NotFound);
        Box::pin(std::future::ready(answer))
    }
}

/// Receives plugin events (`host.emit`).
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, plugin: &str, name: &str, fields: &[(String, String)]);
}

/// The default sink: a structured `tracing` event on target `wasmrelay::events`.
#[derive(Debug, Default)]
pub struct TracingEvents;

impl EventSink for TracingEvents {
    fn emit(&self, plugin: &str, name: &str, fields: &[(String, String)]) {
        tracing::info!(target: "wasmrelay::events", plugin, event = name, ?fields, "plugin event");
    }
}

/// Everything kept for a key of the in-process backend.
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

/// Sweep expired entries every this many writes.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Default)]
struct Tables {
    /// Theoretical arrival time per GCRA key.
    tat: HashMap<String, Instant>,
    windows: HashMap<String, Window>,
    kv: HashMap<String, Entry>,
    writes: u64,
}

impl Tables {
    fn sweep(&mut self, now: Instant) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.tat.retain(|_, t| *t > now);
            self.windows.retain(|_, w| w.start + w.length > now);
            self.kv.retain(|_, e| e.live(now));
        }
    }
}

/// Single-process state: a mutex over hash maps. Uses tokio's clock so tests can pause time.
#[derive(Debug, Default)]
pub struct InProcessBackend {
    tables: Mutex<Tables>,
}

impl InProcessBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tables, Instant) -> R) -> R {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t, Instant::now())
    }

    /// The GCRA step, separate so it can be tested without futures.
    fn gcra(&self, key: &str, rate: u32, period: Duration, burst: u32, cost: u32) -> RateDecision {
        let rate = rate.max(1);
        let burst = burst.max(1);
        let interval = period / rate;
        let limit = interval * burst;
        self.with(|t, now| {
            t.sweep(now);
            let tat = t.tat.get(key).copied().unwrap_or(now).max(now);
            let new_tat = tat + interval * cost;
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
}

fn remaining(left: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return u32::MAX;
    }
    (left.as_nanos() / interval.as_nanos()).min(u32::MAX as u128) as u32
}

impl StateBackend for InProcessBackend {
    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> BoxFuture<'a, RateDecision> {
        let d = self.gcra(key, rate, period, burst, cost);
        Box::pin(std::future::ready(d))
    }

    fn counter_add<'a>(&'a self, key: &'a str, delta: i64, window: Duration) -> BoxFuture<'a, i64> {
        let total = self.with(|t, now| {
            t.sweep(now);
            let w = t.windows.entry(key.to_string()).or_insert(Window {
                start: now,
                length: window,
                total: 0,
            });
            if w.start + w.length <= now {
                *w = Window {
                    start: now,
                    length: window,
                    total: 0,
                };
            }
            w.total = w.total.saturating_add(delta);
            w.total
        });
        Box::pin(std::future::ready(total))
    }

    fn counter_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, i64> {
        let total = self.with(|t, now| match t.windows.get(key) {
            Some(w) if w.start + w.length > now => w.total,
            _ => 0,
        });
        Box::pin(std::future::ready(total))
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let v = self.with(|t, now| {
            t.kv.get(key)
                .filter(|e| e.live(now))
                .map(|e| e.value.clone())
        });
        Box::pin(std::future::ready(v))
    }

    fn kv_set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, ()> {
        self.with(|t, now| {
            t.sweep(now);
            let expires = ttl.map(|d| now + d);
            t.kv.insert(key.to_string(), Entry { value, expires });
        });
        Box::pin(std::future::ready(()))
    }

    fn kv_add<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, bool> {
        let set = self.with(|t, now| {
            t.sweep(now);
            if t.kv.get(key).is_some_and(|e| e.live(now)) {
                return false;
            }
            let expires = ttl.map(|d| now + d);
            t.kv.insert(key.to_string(), Entry { value, expires });
            true
        });
        Box::pin(std::future::ready(set))
    }

    fn kv_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool> {
        let existed = self.with(|t, now| t.kv.remove(key).is_some_and(|e| e.live(now)));
        Box::pin(std::future::ready(existed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gcra_allows_burst_then_paces() {
        let b = InProcessBackend::new();
        let minute = Duration::from_secs(60);
        let d1 = b.rate_limit("k", 2, minute, 2, 1).await;
        let d2 = b.rate_limit("k", 2, minute, 2, 1).await;
        let d3 = b.rate_limit("k", 2, minute, 2, 1).await;
        assert!(d1.allowed && d2.allowed && !d3.allowed);
        assert_eq!((d1.remaining, d2.remaining), (1, 0));
        assert_eq!(d3.retry_after, Duration::from_secs(30));
        // Another key is independent.
        assert!(b.rate_limit("other", 2, minute, 2, 1).await.allowed);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.rate_limit("k", 2, minute, 2, 1).await.allowed);
        assert!(!b.rate_limit("k", 2, minute, 2, 1).await.allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn counter_window_resets() {
        let b = InProcessBackend::new();
        let w = Duration::from_secs(10);
        assert_eq!(b.counter_add("c", 3, w).await, 3);
        assert_eq!(b.counter_add("c", 2, w).await, 5);
        assert_eq!(b.counter_get("c").await, 5);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.counter_get("c").await, 0);
        assert_eq!(b.counter_add("c", 1, w).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn kv_ttl_and_add() {
        let b = InProcessBackend::new();
        b.kv_set("a", b"1".to_vec(), Some(Duration::from_secs(5)))
            .await;
        assert!(!b.kv_add("a", b"2".to_vec(), None).await);
        assert_eq!(b.kv_get("a").await.as_deref(), Some(&b"1"[..]));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.kv_get("a").await, None);
        assert!(b.kv_add("a", b"2".to_vec(), None).await);
        assert!(b.kv_delete("a").await);
        assert!(!b.kv_delete("a").await);
    }
}
