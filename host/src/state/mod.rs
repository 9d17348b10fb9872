//! Shared state behind the plugins' capabilities: GCRA rates, windowed counters, calendar
//! quotas, kv with TTL and named lists.
//!
//! Layout: [`StateBackend`] is the seam every backend implements (one call = one atomic
//! operation, no check-then-set across calls); [`memory`] is the in-process default, with
//! [`kv`] (namespaced key-value with caps) and [`lists`] (named sets) as its tables and
//! [`journal`] making its lists durable. [`admin`] is what operators do to lists
//! (`wasmrelay list`), for the control socket and for a stopped relay alike.
//!
//! Keys of rates, counters and quotas arrive already namespaced per plugin; kv calls carry
//! the namespace (the plugin's name) separately, with the plugin's caps ([`KvCap`]), so the
//! backend can account per plugin. List names are global and checked against the config's
//! declarations before they get here. Every call can fail ([`StateError`]): a backend that
//! cannot answer says so, it never guesses.
//!
//! # Durability of the in-process backend
//! Lists survive a restart: every add and remove is appended to a journal under the spool
//! (`<spool>/state/lists.journal`) and fdatasynced before the call returns (see
//! [`journal`]). Rates, counters, quotas and kv live in memory only and start empty after a
//! restart, which is what their uses (rate windows, greylisting, dedup) tolerate.
//!
//! # A fleet: the Redis backend
//! With `[state] backend = "redis"` ([`redis`]) every call is one Lua script on a Redis that
//! several relays share, with the same answers as the in-process backend; caps are checked
//! in the same atomic step as the write, so concurrent sessions and relays cannot overshoot
//! them. Lists then live in Redis (and persist as Redis is configured to), not in the
//! journal. A Redis that does not answer makes calls fail with
//! [`StateError::Unavailable`] within `command_timeout`; each plugin decides whether that
//! lets mail through (fail open) or tempfails it (fail closed).

pub mod admin;
pub mod journal;
pub mod kv;
pub mod lists;
pub mod memory;
pub mod redis;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use memory::InProcessBackend;
pub use redis::RedisBackend;

/// Longest list member, in bytes (plugins and operators alike).
pub const MAX_LIST_MEMBER: usize = 1024;

/// Where the in-process backend keeps its list journal: `<spool>/state`. Inside the spool,
/// so the spool's owner is the journal's owner and one directory holds all durable state.
pub fn state_dir(spool_dir: &std::path::Path) -> std::path::PathBuf {
    spool_dir.join("state")
}

/// Why the configured backend cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("list journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    Redis(#[from] redis::RedisOpenError),
}

/// The backend `[state]` configures. In-process: its lists loaded from the journal under
/// `<spool>/state` (blocking work, done off the runtime), with what the replay found. Redis:
/// built without connecting (the relay starts and recovers by itself while Redis is down),
/// no journal touched.
pub async fn open(
    config: &crate::config::state::StateConfig,
    spool_dir: &std::path::Path,
    lock: journal::LockMode,
) -> Result<
    (
        std::sync::Arc<dyn StateBackend>,
        Option<journal::LoadReport>,
    ),
    OpenError,
> {
    use crate::config::state::Backend;
    match config.backend {
        Backend::Redis => {
            let backend = std::sync::Arc::new(RedisBackend::new(&config.redis)?);
            // Connects now rather than at the first plugin call; a failure is logged.
            tokio::spawn({
                let backend = backend.clone();
                async move { backend.ping().await }
            });
            Ok((backend, None))
        }
        Backend::Memory => {
            let dir = state_dir(spool_dir);
            let (backend, report) =
                tokio::task::spawn_blocking(move || InProcessBackend::open(&dir, lock))
                    .await
                    .expect("the journal replay does not panic")?;
            Ok((std::sync::Arc::new(backend), Some(report)))
        }
    }
}

/// A boxed future, so backends can be trait objects and still do network I/O.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend call's answer: there at once (the in-process backend never waits, and boxing
/// its answers cost an allocation per state call), or a boxed future for a backend that
/// does I/O.
pub enum StateFuture<'a, T> {
    Ready(std::future::Ready<T>),
    Pending(BoxFuture<'a, T>),
}

impl<'a, T> StateFuture<'a, T> {
    pub fn ready(answer: T) -> Self {
        StateFuture::Ready(std::future::ready(answer))
    }

    pub fn pending(f: impl Future<Output = T> + Send + 'a) -> Self {
        StateFuture::Pending(Box::pin(f))
    }
}

impl<T> Future for StateFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            StateFuture::Ready(answer) => Pin::new(answer).poll(cx),
            StateFuture::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

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

/// The caps of one kv namespace (a plugin: `[[plugins]] limits.kv_keys` and `kv_bytes`).
/// A key's size is the length of its key plus its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCap<'a> {
    pub namespace: &'a str,
    pub max_keys: u64,
    pub max_bytes: u64,
}

/// One live member of a list, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListMember {
    pub member: String,
    /// When it expires, ms since the epoch; none for a member kept until removed.
    pub expires_ms: Option<u64>,
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
    ) -> StateFuture<'a, StateResult<RateDecision>>;
    /// Gives back a charge [`StateBackend::rate_limit`] allowed with these arguments: the
    /// key's theoretical arrival time moves back by `cost` intervals (never before now).
    /// Charges made since by others stay; a key that expired has nothing to give back. GCRA
    /// keeps no history, so when the key drained completely between the charge and this
    /// call (a transaction open longer than the key's whole backlog), what comes off is
    /// others' usage: at most this one charge.
    fn rate_refund<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        cost: u32,
    ) -> StateFuture<'a, StateResult<()>>;
    /// Adds (saturating) to a fixed window of `window` starting at the first add; returns
    /// the new total.
    fn counter_add<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        window: Duration,
    ) -> StateFuture<'a, StateResult<i64>>;
    fn counter_get<'a>(&'a self, key: &'a str) -> StateFuture<'a, StateResult<i64>>;
    /// Adds `amount` to the key's total in the calendar window containing now, if the total
    /// stays at or under `limit`.
    fn quota_add<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> StateFuture<'a, StateResult<QuotaDecision>>;
    fn quota_get<'a>(
        &'a self,
        key: &'a str,
        window: QuotaWindow,
    ) -> StateFuture<'a, StateResult<QuotaDecision>>;
    /// Takes `amount` (saturating at 0) off the key's total in the window that started at
    /// `window_start_ms`, if that window is still the current one.
    fn quota_refund<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        window: QuotaWindow,
        window_start_ms: u64,
    ) -> StateFuture<'a, StateResult<()>>;
    fn kv_get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> StateFuture<'a, StateResult<Option<Vec<u8>>>>;
    /// Sets `key` in `cap.namespace`, refused with [`StateError::Denied`] when the
    /// namespace's live keys or bytes would pass a cap and grow (a write that shrinks usage
    /// is always allowed, so a plugin over a lowered cap can still clean up).
    fn kv_set<'a>(
        &'a self,
        cap: KvCap<'a>,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StateFuture<'a, StateResult<()>>;
    /// Sets only if absent or expired; returns whether it set. Caps as for `kv_set`.
    fn kv_add<'a>(
        &'a self,
        cap: KvCap<'a>,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StateFuture<'a, StateResult<bool>>;
    fn kv_delete<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> StateFuture<'a, StateResult<bool>>;
    fn list_contains<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> StateFuture<'a, StateResult<bool>>;
    /// Adds or refreshes a member; returns whether it was new. A new member that would make
    /// the list hold more than `max_members` live members is refused with
    /// [`StateError::Denied`]. Durable when the call returns (for backends that persist).
    fn list_add<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
        ttl: Option<Duration>,
        max_members: u64,
    ) -> StateFuture<'a, StateResult<bool>>;
    fn list_remove<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> StateFuture<'a, StateResult<bool>>;
    /// Every live member of a list, sorted, for operators (`wasmrelay list show`).
    fn list_members<'a>(&'a self, list: &'a str) -> StateFuture<'a, StateResult<Vec<ListMember>>>;
    /// The Redis backend's call and circuit counters, for the metrics; `None` elsewhere.
    fn redis_metrics(&self) -> Option<redis::RedisMetrics> {
        None
    }
}
