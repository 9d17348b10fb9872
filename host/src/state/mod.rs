//! Shared state behind the plugins' capabilities: GCRA rates, windowed counters, calendar
//! quotas, kv with TTL and named lists.
//!
//! Layout: [`StateBackend`] is the seam every backend implements (one call = one atomic
//! operation, no check-then-set across calls); [`memory`] is the in-process default. Keys
//! arrive already namespaced per plugin; list names are global and checked against the
//! config's declarations before they get here. Every call can fail ([`StateError`]): a
//! backend that cannot answer says so, it never guesses.

pub mod memory;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use memory::InProcessBackend;

/// A boxed future, so backends can be trait objects and still do network I/O.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a state call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The backend is unreachable or timed out; transient.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// Refused by policy (caps, permissions).
    #[error("denied: {0}")]
    Denied(String),
    /// An argument out of range.
    #[error("invalid: {0}")]
    Invalid(String),
}

pub type StateResult<T> = Result<T, StateError>;

/// Result of a GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests left in the burst right now.
    pub remaining: u32,
    /// When not allowed: time until the request would be.
    pub retry_after: Duration,
}

/// Calendar windows of quotas, aligned in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaWindow {
    Minute,
    Hour,
    Day,
}

impl QuotaWindow {
    pub fn seconds(self) -> u64 {
        match self {
            QuotaWindow::Minute => 60,
            QuotaWindow::Hour => 3_600,
            QuotaWindow::Day => 86_400,
        }
    }

    /// The window containing `now`: its start and end, in ms since the epoch. UTC days are
    /// 86,400 s long (Unix time has no leap seconds), so alignment is a division.
    pub fn bounds(self, now: SystemTime) -> (u64, u64) {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let len = self.seconds();
        let start = secs - secs % len;
        (start * 1000, (start + len) * 1000)
    }

    pub fn name(self) -> &'static str {
        match self {
            QuotaWindow::Minute => "minute",
            QuotaWindow::Hour => "hour",
            QuotaWindow::Day => "day",
        }
    }
}

/// Result of a quota call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    /// The window's total after the call.
    pub total: u64,
    /// End of the current window, ms since the epoch.
    pub reset_ms: u64,
}

/// Shared state for plugins. Every call is one atomic operation on the backend.
pub trait StateBackend: Send + Sync + 'static {
    /// GCRA: `rate` per `period`, bursts of `burst`, charging `cost` only when allowed.
    /// Callers guarantee `rate >= 1`, `burst >= 1` and a non-zero `period`.
    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> BoxFuture<'a, StateResult<RateDecision>>;
    /// Adds (saturating) to a fixed window of `window` starting at the first add; returns
    /// the new total.
    fn counter_add<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        window: Duration,
    ) -> BoxFuture<'a, StateResult<i64>>;
    fn counter_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StateResult<i64>>;
    /// Adds `amount` to the key's total in the calendar window containing now, if the total
    /// stays at or under `limit`.
    fn quota_add<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> BoxFuture<'a, StateResult<QuotaDecision>>;
    fn quota_get<'a>(
        &'a self,
        key: &'a str,
        window: QuotaWindow,
    ) -> BoxFuture<'a, StateResult<QuotaDecision>>;
    fn kv_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StateResult<Option<Vec<u8>>>>;
    fn kv_set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, StateResult<()>>;
    /// Sets only if absent or expired; returns whether it set.
    fn kv_add<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, StateResult<bool>>;
    fn kv_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StateResult<bool>>;
    fn list_contains<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, StateResult<bool>>;
    /// Adds or refreshes a member; returns whether it was new.
    fn list_add<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, StateResult<bool>>;
    fn list_remove<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, StateResult<bool>>;
    /// Every live member of a list, for operators (`wasmrelay list show`).
    fn list_members<'a>(&'a self, list: &'a str) -> BoxFuture<'a, StateResult<Vec<String>>>;
}
