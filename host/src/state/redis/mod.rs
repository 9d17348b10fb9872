//! The Redis backend: the same calls as the in-process backend, shared by every relay that
//! names the same Redis and key prefix (`[state] backend = "redis"`).
//!
//! Each call is one round trip: a Lua script (`lua/`) that reads and writes in one atomic
//! step on the server, with the server's clock (`TIME`), so relays with drifting clocks
//! still agree on windows and expiries. [`circuit`] stands between the calls and Redis: a
//! call gets `unavailable` after `command_timeout` at most, and at once while Redis is known
//! to be down; no call ever waits for a reconnect.
//!
//! # Keys (`P` = `key_prefix`)
//! | what | key | type |
//! |---|---|---|
//! | GCRA | `P rate: <plugin>\0<key>` | string: theoretical arrival time, µs since the epoch |
//! | counter | `P ctr: <plugin>\0<key>` | integer, expiring with its window |
//! | quota | `P quota:<minute/hour/day>: <plugin>\0<key>` | hash `start`, `total`, expiring at the window's end |
//! | kv value | `P kv:<len(plugin)>:<plugin>:<key>` | string with `PXAT` |
//! | kv usage | `P kvsize:<plugin>` · `P kvexp:<plugin>` · `P kvuse:<plugin>` | hash key → size · sorted set key → expiry · hash `bytes` |
//! | list | `P list:<name>` | sorted set member → expiry ms (2^53 for none) |
//!
//! kv caps (`limits.kv_keys`, `kv_bytes`) hold across the fleet: usage is kept in Redis
//! beside the values and checked in the script that writes. Scripts touch keys they compute
//! (the kv values of expired keys), so the backend needs one Redis server (with replicas or
//! Sentinel for failover), not a sharded Redis Cluster. Redis must not evict keys
//! (`maxmemory-policy noeviction`): an evicted key would leave usage counted for a value
//! that is gone.

mod circuit;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};

use super::memory::{remaining, FAR};
use super::{
    KvCap, ListMember, QuotaDecision, QuotaWindow, RateDecision, StateBackend, StateError,
    StateFuture, StateResult,
};
use crate::config::state::{redacted, redis_url, RedisConfig};
use circuit::Circuit;
pub use circuit::RedisMetrics;

/// Longest TTL or window handed to Redis, in ms: as far as the in-process backend goes.
const FAR_MS: u64 = FAR.as_millis() as u64;
/// The score of a list member kept until removed (2^53: exact as a double).
const NEVER: f64 = 9_007_199_254_740_992.0;

macro_rules! lua {
    ($($file:literal),+) => {
        Script::new(concat!($(include_str!(concat!("lua/", $file))),+))
    };
}

struct Scripts {
    gcra: Script,
    gcra_refund: Script,
    counter: Script,
    quota: Script,
    quota_refund: Script,
    kv_set: Script,
    kv_delete: Script,
    list_contains: Script,
    list_add: Script,
    list_remove: Script,
    list_members: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    gcra: lua!("now.lua", "gcra.lua"),
    gcra_refund: lua!("now.lua", "gcra_refund.lua"),
    counter: lua!("counter.lua"),
    quota: lua!("now.lua", "decimal.lua", "quota.lua"),
    quota_refund: lua!("decimal.lua", "quota_refund.lua"),
    kv_set: lua!("now.lua", "kv.lua", "kv_set.lua"),
    kv_delete: lua!("now.lua", "kv.lua", "kv_delete.lua"),
    list_contains: lua!("now.lua", "list.lua", "list_contains.lua"),
    list_add: lua!("now.lua", "list.lua", "list_add.lua"),
    list_remove: lua!("now.lua", "list.lua", "list_remove.lua"),
    list_members: lua!("now.lua", "list.lua", "list_members.lua"),
});

/// State shared through one Redis.
pub struct RedisBackend {
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    command_timeout: Duration,
    circuit: Circuit,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why the backend could not be built (a URL the client refuses).
#[derive(Debug, thiserror::Error)]
#[error("state.redis.url: {0}")]
pub struct RedisOpenError(String);

impl RedisBackend {
    /// Builds the backend without connecting: connections are made by the first calls, so
    /// a relay starts (and serves, its plugins getting `unavailable`) while Redis is down.
    /// Needs a tokio runtime.
    pub fn new(config: &RedisConfig) -> Result<RedisBackend, RedisOpenError> {
        let info = redis_url(&config.url).map_err(RedisOpenError)?;
        let client = redis::Client::open(info).map_err(|e| RedisOpenError(e.to_string()))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            // Ours (`command_timeout`, in `exec`) ends the call first; this one drops the
            // request from the connection's pipeline.
            .set_response_timeout(Some(config.command_timeout * 2))
            // The circuit paces the attempts; a retry loop inside would stall calls.
            .set_number_of_retries(0);
        let pool = (0..config.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), manager.clone()))
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|e| RedisOpenError(e.to_string()))?;
        tracing::info!(
            url = %redacted(&config.url),
            prefix = %config.key_prefix,
            pool = pool.len(),
            "state backend: Redis"
        );
        Ok(RedisBackend {
            pool,
            next: AtomicUsize::new(0),
            prefix: config.key_prefix.clone(),
            command_timeout: config.command_timeout,
            circuit: Circuit::new(config.retry_interval),
        })
    }

    /// Counters for metrics: calls, failures, outages, recoveries.
    pub fn metrics(&self) -> RedisMetrics {
        self.circuit.metrics()
    }

    /// Asks Redis for `PING`: whether it answers now (through the circuit).
    pub async fn ping(&self) -> StateResult<()> {
        self.exec(move |mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    fn key(&self, kind: &str, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + kind.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(kind.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// The kv keys of `namespace`: sizes, expiries, usage, and the prefix of its values.
    fn kv_keys(&self, namespace: &str) -> [Vec<u8>; 4] {
        [
            self.key("kvsize:", namespace),
            self.key("kvexp:", namespace),
            self.key("kvuse:", namespace),
            self.key(
                &format!("kv:{}:", namespace.len()),
                &format!("{namespace}:"),
            ),
        ]
    }

    /// Runs one call against Redis through the circuit, within `command_timeout`.
    async fn exec<T, F, Fut>(&self, call: F) -> StateResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let pass = self.circuit.enter().map_err(|retry| {
            StateError::Unavailable(format!(
                "redis unavailable (next attempt in {}ms)",
                retry.as_millis()
            ))
        })?;
        let i = self.next.fetch_add(1, Relaxed) % self.pool.len();
        let conn = self.pool[i].clone();
        match tokio::time::timeout(self.command_timeout, call(conn)).await {
            Ok(Ok(v)) => {
                pass.answered();
                Ok(v)
            }
            Ok(Err(e)) if !is_outage(&e) => {
                pass.answered();
                self.circuit.counters.errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "state backend: Redis refused a call");
                Err(StateError::Unavailable(format!("redis: {e}")))
            }
            Ok(Err(e)) => {
                pass.failed(&e.to_string());
                Err(StateError::Unavailable(format!("redis: {e}")))
            }
            Err(_) => {
                self.circuit.counters.timeouts.fetch_add(1, Relaxed);
                let why = format!("no answer within {}ms", self.command_timeout.as_millis());
                pass.failed(&why);
                Err(StateError::Unavailable(format!("redis: {why}")))
            }
        }
    }

    async fn gcra(
        &self,
        key: &str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> StateResult<RateDecision> {
        let interval = period / rate.max(1);
        let limit = interval.saturating_mul(burst.max(1)).min(FAR);
        let charge = interval.saturating_mul(cost).min(FAR);
        let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
        let key = self.key("rate:", key);
        let (allowed, left, retry): (i64, f64, f64) = self
            .exec(move |mut c| async move {
                SCRIPTS
                    .gcra
                    .key(key)
                    .arg(us(limit))
                    .arg(us(charge))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let from_us = |v: f64| Duration::from_nanos((v.max(0.0) * 1000.0) as u64);
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining: remaining(from_us(left), interval),
            retry_after: if allowed == 1 {
                Duration::ZERO
            } else {
                from_us(retry)
            },
        })
    }

    async fn quota(
        &self,
        key: &str,
        window: QuotaWindow,
        add: Option<(u64, u64)>,
    ) -> StateResult<QuotaDecision> {
        let key = self.key(&format!("quota:{}:", window.name()), key);
        let (amount, limit) = match add {
            Some((a, l)) => (a.to_string(), l.to_string()),
            None => (String::new(), String::new()),
        };
        let (allowed, total, reset_ms): (i64, u64, u64) = self
            .exec(move |mut c| async move {
                SCRIPTS
                    .quota
                    .key(key)
                    .arg(window.seconds())
                    .arg(amount)
                    .arg(limit)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(QuotaDecision {
            allowed: allowed == 1,
            total,
            reset_ms,
        })
    }

    async fn kv_write(
        &self,
        cap: KvCap<'_>,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        only_if_absent: bool,
    ) -> StateResult<bool> {
        let [sizes, expiries, usage, values] = self.kv_keys(cap.namespace);
        let mut value_key = values.clone();
        value_key.extend_from_slice(key.as_bytes());
        let ttl = ttl.map_or(String::new(), |t| ms(t).max(1).to_string());
        let answer: i64 = self
            .exec(move |mut c| async move {
                SCRIPTS
                    .kv_set
                    .key(sizes)
                    .key(expiries)
                    .key(usage)
                    .key(value_key)
                    .arg(values)
                    .arg(key)
                    .arg(value)
                    .arg(ttl)
                    .arg(if only_if_absent { "1" } else { "0" })
                    .arg(cap.max_keys)
                    .arg(cap.max_bytes)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match answer {
            1 => Ok(true),
            0 => Ok(false),
            -1 => Err(StateError::Denied(format!(
                "kv key cap of {} reached (limits.kv_keys)",
                cap.max_keys
            ))),
            _ => Err(StateError::Denied(format!(
                "kv byte cap of {} reached (limits.kv_bytes)",
                cap.max_bytes
            ))),
        }
    }

    /// Runs one of the list scripts (a member and its arguments in, an integer out).
    async fn list_call(
        &self,
        script: &'static Script,
        list: &str,
        args: &[&str],
    ) -> StateResult<i64> {
        let key = self.key("list:", list);
        self.exec(move |mut c| async move {
            let mut call = script.key(key);
            for a in args {
                call.arg(*a);
            }
            call.invoke_async(&mut c).await
        })
        .await
    }
}

/// Whether an error means Redis is not there to answer (as opposed to answering with an
/// error): those open the circuit.
fn is_outage(e: &RedisError) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::ResponseError)
            | ErrorKind::Server(ServerErrorKind::NoScript)
            | ErrorKind::Server(ServerErrorKind::ExecAbort)
            | ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
    )
}

fn ms(d: Duration) -> u64 {
    (d.as_millis().min(u128::from(FAR_MS))) as u64
}

fn boxed<'a, T: Send + 'a>(
    f: impl Future<Output = StateResult<T>> + Send + 'a,
) -> StateFuture<'a, StateResult<T>> {
    StateFuture::pending(f)
}

impl StateBackend for RedisBackend {
    fn redis_metrics(&self) -> Option<RedisMetrics> {
        Some(self.metrics())
    }

    fn rate_limit<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        burst: u32,
        cost: u32,
    ) -> StateFuture<'a, StateResult<RateDecision>> {
        boxed(self.gcra(key, rate, period, burst, cost))
    }

    fn rate_refund<'a>(
        &'a self,
        key: &'a str,
        rate: u32,
        period: Duration,
        cost: u32,
    ) -> StateFuture<'a, StateResult<()>> {
        let charge = (period / rate.max(1)).saturating_mul(cost).min(FAR);
        let key = self.key("rate:", key);
        boxed(async move {
            let _: i64 = self
                .exec(move |mut c| async move {
                    SCRIPTS
                        .gcra_refund
                        .key(key)
                        .arg(charge.as_nanos() as f64 / 1000.0)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(())
        })
    }

    fn counter_add<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        window: Duration,
    ) -> StateFuture<'a, StateResult<i64>> {
        let key = self.key("ctr:", key);
        let window = ms(window).max(1);
        boxed(self.exec(move |mut c| async move {
            SCRIPTS
                .counter
                .key(key)
                .arg(delta)
                .arg(window)
                .invoke_async(&mut c)
                .await
        }))
    }

    fn counter_get<'a>(&'a self, key: &'a str) -> StateFuture<'a, StateResult<i64>> {
        let key = self.key("ctr:", key);
        boxed(async move {
            let v: Option<i64> =
                self.exec(move |mut c| async move {
                    redis::cmd("GET").arg(key).query_async(&mut c).await
                })
                .await?;
            Ok(v.unwrap_or(0))
        })
    }

    fn quota_add<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> StateFuture<'a, StateResult<QuotaDecision>> {
        boxed(self.quota(key, window, Some((amount, limit))))
    }

    fn quota_get<'a>(
        &'a self,
        key: &'a str,
        window: QuotaWindow,
    ) -> StateFuture<'a, StateResult<QuotaDecision>> {
        boxed(self.quota(key, window, None))
    }

    fn quota_refund<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        window: QuotaWindow,
        window_start_ms: u64,
    ) -> StateFuture<'a, StateResult<()>> {
        let key = self.key(&format!("quota:{}:", window.name()), key);
        boxed(async move {
            let _: i64 = self
                .exec(move |mut c| async move {
                    SCRIPTS
                        .quota_refund
                        .key(key)
                        .arg(window_start_ms)
                        .arg(amount.to_string())
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(())
        })
    }

    fn kv_get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> StateFuture<'a, StateResult<Option<Vec<u8>>>> {
        let [.., mut value_key] = self.kv_keys(namespace);
        value_key.extend_from_slice(key.as_bytes());
        boxed(self.exec(move |mut c| async move {
            redis::cmd("GET").arg(value_key).query_async(&mut c).await
        }))
    }

    fn kv_set<'a>(
        &'a self,
        cap: KvCap<'a>,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StateFuture<'a, StateResult<()>> {
        boxed(async move { self.kv_write(cap, key, value, ttl, false).await.map(|_| ()) })
    }

    fn kv_add<'a>(
        &'a self,
        cap: KvCap<'a>,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StateFuture<'a, StateResult<bool>> {
        boxed(self.kv_write(cap, key, value, ttl, true))
    }

    fn kv_delete<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> StateFuture<'a, StateResult<bool>> {
        let [sizes, expiries, usage, values] = self.kv_keys(namespace);
        boxed(async move {
            let gone: i64 = self
                .exec(move |mut c| async move {
                    SCRIPTS
                        .kv_delete
                        .key(sizes)
                        .key(expiries)
                        .key(usage)
                        .arg(values)
                        .arg(key)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(gone == 1)
        })
    }

    fn list_contains<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> StateFuture<'a, StateResult<bool>> {
        boxed(async move {
            let hit = self
                .list_call(&SCRIPTS.list_contains, list, &[member])
                .await?;
            Ok(hit == 1)
        })
    }

    fn list_add<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
        ttl: Option<Duration>,
        max_members: u64,
    ) -> StateFuture<'a, StateResult<bool>> {
        boxed(async move {
            let ttl = ttl.map_or(String::new(), |t| ms(t).max(1).to_string());
            let max = max_members.to_string();
            match self
                .list_call(&SCRIPTS.list_add, list, &[member, &ttl, &max])
                .await?
            {
                -1 => Err(StateError::Denied(format!(
                    "list {list:?} is full ({max_members} members, lists.max_members)"
                ))),
                new => Ok(new == 1),
            }
        })
    }

    fn list_remove<'a>(
        &'a self,
        list: &'a str,
        member: &'a str,
    ) -> StateFuture<'a, StateResult<bool>> {
        boxed(async move {
            let gone = self
                .list_call(&SCRIPTS.list_remove, list, &[member])
                .await?;
            Ok(gone == 1)
        })
    }

    fn list_members<'a>(&'a self, list: &'a str) -> StateFuture<'a, StateResult<Vec<ListMember>>> {
        let key = self.key("list:", list);
        boxed(async move {
            let flat: Vec<(String, f64)> = self
                .exec(move |mut c| async move {
                    SCRIPTS.list_members.key(key).invoke_async(&mut c).await
                })
                .await?;
            let mut out: Vec<ListMember> = flat
                .into_iter()
                .map(|(member, at)| ListMember {
                    member,
                    expires_ms: (at < NEVER).then_some(at as u64),
                })
                .collect();
            out.sort_by(|a, b| a.member.cmp(&b.member));
            Ok(out)
        })
    }
}
