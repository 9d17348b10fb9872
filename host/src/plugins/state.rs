//! Per-store state: the deny-all WASI context (built on first use), the resource table, the per-hook budgets
//! (CPU ticks, capability calls, memory) and the `host` capability imports.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wasmrelay::plugin::host::{
    self as wit, DnsError, LogLevel, QuotaWindow, RecordType,
};
use super::bindings::{quota_decision, quota_window, rate_decision, relay_limit};
use super::caps::{DnsFailure, DnsLookup, DnsType, EventSink, PluginEvent};
use super::holds::{self, Charge, SessionHolds};
use super::scope::{CallScope, Scope};
use super::types::Hook;
use super::wants::Declared;
use super::PluginMeta;
use crate::state::{self, KvCap, StateBackend, StateError, MAX_LIST_MEMBER};

/// Longest key a plugin may use for rate, counter and kv; largest kv value.
pub(crate) const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 64 * 1024;
/// Log lines, event fields and DNS answers are cut rather than refused.
const MAX_LOG: usize = 4 * 1024;
const MAX_EVENT_FIELDS: usize = 32;
const MAX_EVENT_NAME: usize = 64;
const MAX_EVENT_VALUE: usize = 1024;
const MAX_DNS_ANSWERS: usize = 64;
/// Unwraps a capability precondition, or returns its error to the plugin.
macro_rules! or_state_error {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        }
    };
}

/// What every store of a host shares: state backend, resolver, event sink.
pub(crate) struct Capabilities {
    pub backend: Arc<dyn StateBackend>,
    pub dns: Option<Arc<dyn DnsLookup>>,
    pub events: Arc<dyn EventSink>,
    pub dns_timeout: Duration,
}

/// The data of one plugin instance's `Store`.
pub struct StoreState {
    pub(crate) table: ResourceTable,
    /// Built the first time the plugin calls into WASI: a Rust plugin that never prints or
    /// reads the clock never pays for it (its random-number generators are seeded from the
    /// OS, the costliest part of a fresh instance's host-side setup).
    wasi: Option<WasiCtx>,
    pub(crate) meta: Arc<PluginMeta>,
    caps: Arc<Capabilities>,
    memory_limit: usize,
    pub(crate) memory_exceeded: bool,
    calls_left: u32,
    pub(crate) calls_exceeded: bool,
    pub(crate) cpu_left: u64,
    pub(crate) cpu_exceeded: bool,
    deadline: Option<Instant>,
    /// What the current call is about, for the events the plugin emits.
    scope: CallScope,
    /// The counts the current call's session holds (`counter-hold`); none outside a
    /// session's calls, and cleared after each, so a pooled instance never reaches another
    /// session's.
    pub(crate) holds: Option<Arc<SessionHolds>>,
    /// The last state key in its plugin-private form ([`StoreState::keyed`]), kept so that
    /// a state call allocates nothing for it.
    key_buf: String,
    /// Set only while the load-time probe asks `hooks()`: what `host.want-headers` and
    /// `host.want-recipient-count` declare lands here.
    pub(crate) declaring: Option<Declared>,
}

impl StoreState {
    pub(crate) fn new(meta: Arc<PluginMeta>, caps: Arc<Capabilities>) -> StoreState {
        StoreState {
            table: ResourceTable::new(),
            wasi: None,
            memory_limit: (meta.limits.memory_mb as usize) << 20,
            meta,
            caps,
            memory_exceeded: false,
            calls_left: 0,
            calls_exceeded: false,
            cpu_left: 0,
            cpu_exceeded: false,
            deadline: None,
            scope: CallScope::default(),
            holds: None,
            key_buf: String::new(),
            declaring: None,
        }
    }

    /// Refills the budgets for one hook call and says what it is about.
    pub(crate) fn arm_call(&mut self, scope: Scope<'_>, deadline: Instant) {
        self.scope.set(scope);
        self.arm_until(deadline);
    }

    /// Refills the budgets for one hook call (or an instantiation).
    pub(crate) fn arm(&mut self) {
        self.arm_until(Instant::now() + self.meta.limits.wall);
    }

    fn arm_until(&mut self, deadline: Instant) {
        self.calls_left = self.meta.limits.capability_calls;
        self.cpu_left = self.meta.cpu_ticks;
        self.deadline = Some(deadline);
    }

    /// Counts one capability call; traps once the hook's budget is spent.
    pub(crate) fn charge(&mut self) -> wasmtime::Result<()> {
        if self.calls_left == 0 {
            self.calls_exceeded = true;
            wasmtime::bail!(
                "capability budget of {} calls per hook exhausted",
                self.meta.limits.capability_calls
            );
        }
        self.calls_left -= 1;
        Ok(())
    }

    /// Counts a `want-*` call and adds what `declare` makes of it to the plugin's
    /// declarations, which it may make only while the host asks `hooks()` at load (`what`
    /// names the call in the refusal).
    fn declare(
        &mut self,
        what: &str,
        declare: impl FnOnce(&mut Declared) -> Result<(), String>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.charge()?;
        Ok(match self.declaring.as_mut() {
            Some(declared) => declare(declared),
            None => Err(format!(
                "{what} counts only while the host asks hooks() at load"
            )),
        })
    }

    /// Counts the call and checks a key the plugin passed.
    fn check_key(&mut self, key: &str) -> wasmtime::Result<Result<(), StateError>> {
        self.charge()?;
        if key.len() > MAX_KEY {
            return Ok(Err(StateError::Invalid(format!(
                "key of {} bytes (max {MAX_KEY})",
                key.len()
            ))));
        }
        Ok(Ok(()))
    }

    /// [`Self::keyed`] for a charge to the transaction's message, with the session's record
    /// of charges: only in a transaction's hook, and while the plugin has room for one more.
    #[allow(clippy::type_complexity)]
    fn for_message(
        &mut self,
        key: &str,
    ) -> wasmtime::Result<Result<(Arc<SessionHolds>, &str, &dyn StateBackend), StateError>> {
        let in_transaction = matches!(
            self.scope.hook(),
            Some(Hook::MailFrom | Hook::Rcpt | Hook::Data)
        );
        let session = self.holds.clone().filter(|_| in_transaction);
        let name_len = self.meta.name.len();
        // Counted against the call budget like any state call, refused or not.
        let (key, backend) = match self.keyed(key)? {
            Ok(keyed) => keyed,
            Err(e) => return Ok(Err(e)),
        };
        let Some(session) = session else {
            return Ok(Err(StateError::Denied(
                "charges for a message are only available in mail-from, rcpt and data".into(),
            )));
        };
        // The key starts with the plugin's name and a NUL: its charges are those keys.
        if !session.has_room_for_charges(&key[..=name_len], 1) {
            return Ok(Err(StateError::Denied(format!(
                "at most {} charges per message",
                holds::MAX_PER_PLUGIN
            ))));
        }
        Ok(Ok((session, key, backend)))
    }

    /// [`Self::check_key`], then the plugin-private form of `key` (the plugin's name, a NUL,
    /// the key) with the backend to ask. The key is written into the store's buffer, by
    /// hand: through `format!`, then into a new `String` per call, it cost over a thousand
    /// instructions and an allocation.
    fn keyed(
        &mut self,
        key: &str,
    ) -> wasmtime::Result<Result<(&str, &dyn StateBackend), StateError>> {
        if let Err(e) = self.check_key(key)? {
            return Ok(Err(e));
        }
        self.key_buf.clear();
        self.key_buf.push_str(&self.meta.name);
        self.key_buf.push('\0');
        self.key_buf.push_str(key);
        Ok(Ok((&self.key_buf, &*self.caps.backend)))
    }

    /// Checks a list call against the `[[lists]]` declarations; returns the list's
    /// `max_members`.
    fn list_access(
        &mut self,
        list: &str,
        member: &str,
        write: bool,
    ) -> wasmtime::Result<Result<u64, StateError>> {
        self.charge()?;
        let Some(decl) = self.meta.lists.iter().find(|l| l.name == list) else {
            return Ok(Err(StateError::Denied(format!(
                "no list named {:?}",
                cut(list, 64)
            ))));
        };
        let name = &self.meta.name;
        let allowed = if write {
            decl.may_write(name)
        } else {
            decl.may_read(name)
        };
        if !allowed {
            let what = if write { "write" } else { "read" };
            return Ok(Err(StateError::Denied(format!(
                "may not {what} list {list:?}"
            ))));
        }
        if member.is_empty() || member.len() > MAX_LIST_MEMBER {
            return Ok(Err(StateError::Invalid(format!(
                "list members are 1..={MAX_LIST_MEMBER} bytes"
            ))));
        }
        Ok(Ok(decl.max_members))
    }

    /// Whether `name` is at or under one of the plugin's `dns_zones`.
    fn dns_allowed(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.meta.dns_zones.iter().any(|zone| {
            let zone = zone.trim_end_matches('.').to_ascii_lowercase();
            name == zone
                || name
                    .strip_suffix(&zone)
                    .is_some_and(|head| head.ends_with('.'))
        })
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            // Deny-all: no preopens, environment, arguments or network; stdio is
            // closed/discarded.
            ctx: self.wasi.get_or_insert_with(|| WasiCtx::builder().build()),
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            wasmtime::bail!(
                "memory limit of {} MiB exceeded",
                self.meta.limits.memory_mb
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A counter's window, which must not be empty.
fn counter_window(ms: u64) -> Result<Duration, StateError> {
    if ms == 0 {
        return Err(StateError::Invalid("window must be positive".into()));
    }
    Ok(Duration::from_millis(ms))
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl wit::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.charge()?;
        let plugin = self.meta.name.as_str();
        let message = cut(&message, MAX_LOG);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn want_headers(
        &mut self,
        hook: wit::Hook,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.declare("want-headers", |d| {
            d.declare_headers(Hook::from(hook), &names)
        })
    }

    fn want_recipient_count(
        &mut self,
        hook: wit::Hook,
        at_least: u32,
    ) -> wasmtime::Result<Result<(), String>> {
        self.declare("want-recipient-count", |d| {
            d.declare_recipients(Hook::from(hook), at_least)
        })
    }

    fn want_listed_recipients(&mut self, name: String) -> wasmtime::Result<Result<(), String>> {
        let readable =
            (self.meta.lists.iter()).any(|l| l.name == name && l.may_read(&self.meta.name));
        self.declare("want-listed-recipients", |d| {
            if !readable {
                return Err(format!("no list {:?} this plugin may read", cut(&name, 64)));
            }
            d.declare_listed(&name)
        })
    }

    fn want_messages_with(
        &mut self,
        hook: wit::Hook,
        traits: Vec<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.declare("want-messages-with", |d| {
            d.declare_traits(Hook::from(hook), &traits)
        })
    }

    fn want_calls_over_limits(
        &mut self,
        hook: wit::Hook,
        limits: Vec<wit::RelayLimit>,
    ) -> wasmtime::Result<Result<(), String>> {
        let hook = Hook::from(hook);
        self.declare("want-calls-over-limits", |d| {
            d.limits
                .declare(hook, limits.into_iter().map(|l| relay_limit(hook, l)))
        })
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        self.charge()?;
        Ok(self.meta.config_json.clone())
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.charge()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(now.as_millis() as u64)
    }

    fn emit(&mut self, name: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.charge()?;
        let fields: Vec<(String, String)> = fields
            .iter()
            .take(MAX_EVENT_FIELDS)
            .map(|(k, v)| {
                (
                    cut(k, MAX_EVENT_NAME).to_string(),
                    cut(v, MAX_EVENT_VALUE).to_string(),
                )
            })
            .collect();
        self.caps.events.emit(PluginEvent {
            plugin: &self.meta.name,
            hook: self.scope.hook(),
            queue_id: self.scope.queue_id(),
            recipient: self.scope.recipient(),
            name: cut(&name, MAX_EVENT_NAME),
            fields: &fields,
        });
        Ok(())
    }

    async fn rate_limit(
        &mut self,
        key: String,
        rate: u32,
        period_ms: u64,
        burst: u32,
        cost: u32,
    ) -> wasmtime::Result<Result<wit::RateDecision, wit::StateError>> {
        let (key, backend) = or_state_error!(self.keyed(&key)?);
        let period = Duration::from_millis(period_ms);
        or_state_error!(state::memory::check_rate(rate, period, burst));
        let d = backend.rate_limit(key, rate, period, burst, cost).await;
        Ok(d.map(rate_decision).map_err(Into::into))
    }

    async fn counter_add(
        &mut self,
        key: String,
        delta: i64,
        window_ms: u64,
    ) -> wasmtime::Result<Result<i64, wit::StateError>> {
        let (key, backend) = or_state_error!(self.keyed(&key)?);
        let window = or_state_error!(counter_window(window_ms));
        Ok(backend
            .counter_add(key, delta, window)
            .await
            .map_err(Into::into))
    }

    async fn counter_hold(
        &mut self,
        key: String,
        window_ms: u64,
    ) -> wasmtime::Result<Result<i64, wit::StateError>> {
        let (holds, name_len) = (self.holds.clone(), self.meta.name.len());
        let (key, backend) = or_state_error!(self.keyed(&key)?);
        let window = or_state_error!(counter_window(window_ms));
        let Some(session) = holds else {
            return Ok(Err(wit::StateError::Denied(
                "counter-hold is only available in a session's hooks".into(),
            )));
        };
        // The key starts with the plugin's name and a NUL: its holds are those keys.
        let prefix = &key[..=name_len];
        if !session.has_room(prefix) {
            return Ok(Err(wit::StateError::Denied(format!(
                "at most {} held counts per session",
                holds::MAX_PER_PLUGIN
            ))));
        }
        let total = or_state_error!(backend.counter_add(key, 1, window).await);
        session.add(key.to_owned(), window);
        Ok(Ok(total))
    }

    async fn rate_limit_for_message(
        &mut self,
        key: String,
        rate: u32,
        period_ms: u64,
        burst: u32,
        cost: u32,
    ) -> wasmtime::Result<Result<wit::RateDecision, wit::StateError>> {
        let (session, key, backend) = or_state_error!(self.for_message(&key)?);
        let period = Duration::from_millis(period_ms);
        or_state_error!(state::memory::check_rate(rate, period, burst));
        let d = or_state_error!(backend.rate_limit(key, rate, period, burst, cost).await);
        if d.allowed && cost > 0 {
            session.charge(Charge::Rate {
                key: key.to_owned(),
                rate,
                period,
                cost,
            });
        }
        Ok(Ok(rate_decision(d)))
    }

    async fn counter_get(&mut self, key: String) -> wasmtime::Result<Result<i64, wit::StateError>> {
        let (key, backend) = or_state_error!(self.keyed(&key)?);
        Ok(backend.counter_get(key).await.map_err(Into::into))
    }

    async fn quota_add(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> wasmtime::Result<Result<wit::QuotaDecision, wit::StateError>> {
        let (key, backend) = or_state_error!(self.keyed(&key)?);
        let d = backend
            .quota_add(key, amount, limit, quota_window(window))
            .await;
        Ok(d.map(quota_decision).map_err(Into::into))
    }

    async fn quota_add_for_message(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        window: QuotaWindow,
    ) -> wasmtime::Result<Result<wit::QuotaDecision, wit::StateError>> {
        let (session, key, backend) = or_state_error!(self.for_message(&key)?);
        let window = quota_window(window);
        let d = or_state_error!(backend.quota_add(key, amount, limit, window).await);
        if d.allowed && amount > 0 {
            session.charge(Charge::Quota {
                key: key.to_owned(),
                amount,
                window,
                window_start_ms: d.reset_ms.saturating_sub(window.seconds() * 1000),
            });
        }
        Ok(Ok(quota_decision(d)))
    }

    async fn quota_get(
        &mut self,
        key: String,
        window: QuotaWindow,
    ) -> wasmtime::Result<Result<wit::QuotaDecision, wit::StateError>> {
        let (key, backend) = or_state_error!(self.keyed(&key)?);
        let d = backend.quota_get(key, quota_window(window)).await;
        Ok(d.map(quota_decision).map_err(Into::into))
    }

    async fn kv_get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::StateError>> {
        or_state_error!(self.check_key(&key)?);
        let got = self.caps.backend.kv_get(&self.meta.name, &key).await;
        Ok(got.map_err(Into::into))
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), wit::StateError>> {
        or_state_error!(self.check_key(&key)?);
        if value.len() > MAX_VALUE {
            return Ok(Err(oversized(value.len())));
        }
        let set = self
            .caps
            .backend
            .kv_set(kv_cap(&self.meta), &key, value, ttl(ttl_ms))
            .await;
        Ok(set.map_err(Into::into))
    }

    async fn kv_add(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, wit::StateError>> {
        or_state_error!(self.check_key(&key)?);
        if value.len() > MAX_VALUE {
            return Ok(Err(oversized(value.len())));
        }
        let set = self
            .caps
            .backend
            .kv_add(kv_cap(&self.meta), &key, value, ttl(ttl_ms))
            .await;
        Ok(set.map_err(Into::into))
    }

    async fn kv_delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit::StateError>> {
        or_state_error!(self.check_key(&key)?);
        let gone = self.caps.backend.kv_delete(&self.meta.name, &key).await;
        Ok(gone.map_err(Into::into))
    }

    async fn list_contains(
        &mut self,
        name: String,
        member: String,
    ) -> wasmtime::Result<Result<bool, wit::StateError>> {
        or_state_error!(self.list_access(&name, &member, false)?);
        let hit = self.caps.backend.list_contains(&name, &member).await;
        Ok(hit.map_err(Into::into))
    }

    async fn list_add(
        &mut self,
        name: String,
        member: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, wit::StateError>> {
        let max_members = or_state_error!(self.list_access(&name, &member, true)?);
        let new = self
            .caps
            .backend
            .list_add(&name, &member, ttl(ttl_ms), max_members)
            .await;
        Ok(new.map_err(Into::into))
    }

    async fn list_remove(
        &mut self,
        name: String,
        member: String,
    ) -> wasmtime::Result<Result<bool, wit::StateError>> {
        or_state_error!(self.list_access(&name, &member, true)?);
        let gone = self.caps.backend.list_remove(&name, &member).await;
        Ok(gone.map_err(Into::into))
    }

    async fn dns_lookup(
        &mut self,
        name: String,
        rtype: RecordType,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<String>, DnsError>> {
        self.charge()?;
        if name.is_empty() || name.len() > 255 {
            return Ok(Err(DnsError::Failed(format!("invalid name {name:?}"))));
        }
        if !self.dns_allowed(&name) {
            return Ok(Err(DnsError::Denied));
        }
        let Some(dns) = self.caps.dns.clone() else {
            return Ok(Err(DnsError::Failed("no resolver configured".into())));
        };
        let mut timeout = Duration::from_millis(timeout_ms.into()).min(self.caps.dns_timeout);
        if let Some(deadline) = self.deadline {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }
        let rtype = match rtype {
            RecordType::A => DnsType::A,
            RecordType::Aaaa => DnsType::Aaaa,
            RecordType::Txt => DnsType::Txt,
            RecordType::Mx => DnsType::Mx,
        };
        Ok(
            match tokio::time::timeout(timeout, dns.lookup(&name, rtype)).await {
                Err(_) | Ok(Err(DnsFailure::Timeout)) => Err(DnsError::Timeout),
                Ok(Err(DnsFailure::NotFound)) => Err(DnsError::NotFound),
                Ok(Err(DnsFailure::Failed(why))) => {
                    Err(DnsError::Failed(cut(&why, MAX_LOG).to_string()))
                }
                Ok(Ok(mut answers)) => {
                    answers.truncate(MAX_DNS_ANSWERS);
                    for a in &mut answers {
                        a.truncate(cut(a, MAX_LOG).len());
                    }
                    Ok(answers)
                }
            },
        )
    }
}

impl super::bindings::wasmrelay::plugin::types::Host for StoreState {}

/// A plugin's kv namespace (its name) and caps.
fn kv_cap(meta: &PluginMeta) -> KvCap<'_> {
    KvCap {
        namespace: &meta.name,
        max_keys: meta.limits.kv_keys,
        max_bytes: meta.limits.kv_bytes,
    }
}

fn oversized(len: usize) -> wit::StateError {
    wit::StateError::Invalid(format!("kv value of {len} bytes (max {MAX_VALUE})"))
}
