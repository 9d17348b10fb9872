//! The Wasm policy chain: every stage of a message's life asks the configured plugins, in
//! order, what to do; the first verdict other than `continue` wins.
//!
//! Layout:
//! - `plugin-sdk/wit/plugin.wit` is the interface (`wasmrelay:plugin@0.2.9`); `bindings`
//!   generates the host side from it and validates what plugins return.
//! - `engine`: one `Engine` (pooling allocator, copy-on-write images, epoch ticker) and the
//!   on-disk compile cache; components are refused at load unless they export
//!   `wasmrelay:plugin/hooks@0.2.x`.
//! - `chain`: [`SessionPlugins`] (one lazily created instance per plugin per SMTP session)
//!   and [`DeliveryPlugins`] (the same for a delivery batch); for `instances = "pooled"`
//!   plugins the instance comes from, and goes back to, a bounded pool of warm instances
//!   (`chain::pool`, with the state-reset contract).
//! - `state`: the store data, budgets and the `host` capability imports, with `scope` (what
//!   the current call is about); [`caps`] the shared-state backend, `context` and `message`
//!   the two resources; `holds` what the host gives back for plugins: the counts a
//!   session's plugins hold until it ends (`counter-hold`) and the charges for a message
//!   that was not queued (`rate-limit-for-message`, `quota-add-for-message`).
//! - [`transcript`]: `wasmrelay plugin test`, a scripted session against one plugin.
//! - `wants`: a plugin's declaration (a custom section) that its `data` or `recipient-copy`
//!   hook only concerns messages with a part of some content type, and what it declares at
//!   load (header fields, a recipient count, lists a recipient must be on); the chain skips
//!   it (and does not instantiate it) for the others.
//!
//! Limits per hook call: CPU (epoch ticks), wall time (`tokio::time::timeout`), memory
//! (store limiter under the pool's ceiling), capability calls, and caps on every value that
//! crosses the boundary. Any failure discards the instance (the next hook gets a fresh one),
//! is logged with the plugin's name and counted, and becomes the plugin's `on_error` verdict.

mod bindings;
pub mod caps;
mod chain;
mod context;
mod engine;
mod envelope;
mod error;
mod holds;
mod message;
mod message_traits;
mod metrics;
pub(crate) mod mime;
mod relay_limits;
mod scope;
mod state;
#[cfg(any(test, feature = "test-util"))]
#[doc(hidden)]
pub mod test_plugins;
pub mod transcript;
mod types;
mod wants;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

use crate::config::lists::ListConfig;
use crate::config::plugins::{OnError, PluginConfig, PluginLimits, PluginRuntimeConfig};
use crate::state::{InProcessBackend, StateBackend};

pub use caps::{DnsFailure, DnsLookup, DnsType, EventSink, PluginEvent, StaticDns, TracingEvents};
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub use chain::bench_instantiate;
pub use chain::{DeliveryPlugins, SessionPlugins};
pub use engine::CacheOutcome;
pub use error::{FailureKind, PluginLoadError};
pub use metrics::{PluginMetrics, VerdictCount, VerdictKind};
pub use types::{
    AuthResult, ConnectionInfo, DeliveryReport, DeliveryStatus, EnvelopeInfo, Hook, Notify,
    RecipientInfo, RouteDecision, TlsInfo, TlsPolicy, TransactionInfo, Verdict, TRUSTED,
};

use state::{Capabilities, StoreState};

/// Runtime settings shared by every plugin of a host.
pub struct PluginHostOptions {
    /// Compiled components are cached here; `None` compiles at every load.
    pub cache_dir: Option<PathBuf>,
    /// Granularity of CPU budgets.
    pub epoch_tick: Duration,
    /// Pool size: live instances across all sessions.
    pub max_instances: u32,
    /// Rate, counter, quota, kv and list state.
    pub backend: Arc<dyn StateBackend>,
    /// The `[[lists]]` declarations: which plugin may read and write which list.
    pub lists: Vec<ListConfig>,
    /// Names of the configured smart-host pools a `route` decision may name.
    pub pools: Vec<String>,
    /// DNS for `dns-lookup`: the relay's `hickory_resolver::TokioResolver` (wrapped in an
    /// `Arc`) or a [`StaticDns`] table; `None` makes every lookup fail.
    pub dns: Option<Arc<dyn DnsLookup>>,
    /// Upper bound of one DNS lookup.
    pub dns_timeout: Duration,
    /// Where `host.emit` goes.
    pub events: Arc<dyn EventSink>,
    /// Largest body a plugin may set with `replace-body`.
    pub max_message_size: usize,
    /// Where hook calls, verdicts, failures and latencies are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Default for PluginHostOptions {
    fn default() -> Self {
        let runtime = PluginRuntimeConfig::default();
        PluginHostOptions {
            cache_dir: None,
            epoch_tick: runtime.epoch_tick,
            max_instances: runtime.max_instances,
            backend: Arc::new(InProcessBackend::new()),
            lists: Vec::new(),
            pools: Vec::new(),
            dns: None,
            dns_timeout: Duration::from_secs(2),
            events: Arc::new(TracingEvents),
            max_message_size: 64 << 20,
            metrics: Arc::default(),
        }
    }
}

impl PluginHostOptions {
    /// Options from `[plugin_runtime]`, with the in-process backend and no resolver. Without
    /// a `cache_dir` the compile cache lives in the user's cache directory, so a restart
    /// loads compiled code instead of compiling again (seconds for a Python component).
    pub fn from_config(runtime: &PluginRuntimeConfig) -> Self {
        let cache_dir = if runtime.cache_dir.as_os_str().is_empty() {
            engine::user_cache_dir(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
        } else {
            Some(runtime.cache_dir.clone())
        };
        PluginHostOptions {
            cache_dir,
            epoch_tick: runtime.epoch_tick.max(Duration::from_millis(1)),
            max_instances: runtime.max_instances,
            ..PluginHostOptions::default()
        }
    }
}

/// What every instance of one plugin shares.
pub(crate) struct PluginMeta {
    pub name: String,
    pub config_json: String,
    pub limits: PluginLimits,
    pub on_error: OnError,
    /// `limits.cpu` in epoch ticks.
    pub cpu_ticks: u64,
    /// Zones `dns-lookup` may query.
    pub dns_zones: Vec<String>,
    /// The lists this plugin may read or write (declarations naming it).
    pub lists: Vec<ListConfig>,
    pub stats: metrics::Stats,
    /// The Prometheus side of `stats`, plus call latency.
    pub instruments: crate::metrics::PluginInstruments,
}

pub(crate) struct LoadedPlugin {
    pub meta: Arc<PluginMeta>,
    pub pre: chain::Linked,
    /// Bit set of the hooks the plugin handles (`Hook::bit`).
    pub hooks: u16,
    /// Which messages its message hooks are called for (`wants`).
    pub wants: wants::Wants,
    /// Warm instances, for `instances = "pooled"`.
    pub pool: Option<chain::Pool>,
}

/// A loaded, checked plugin chain. Cheap to share: sessions hold an `Arc` and keep the chain
/// they started with across a reload.
pub struct PluginHost {
    pub(crate) engine: Engine,
    pub(crate) plugins: Vec<LoadedPlugin>,
    pub(crate) caps: Arc<Capabilities>,
    pub(crate) max_message: usize,
    pub(crate) pools: Vec<String>,
    cache: Vec<CacheOutcome>,
    _ticker: engine::Ticker,
}

impl PluginHost {
    /// Compiles (or loads from the cache), links and probes every plugin: each is
    /// instantiated once, its `init` must succeed and `hooks()` says which stages to call.
    pub async fn load(
        configs: &[PluginConfig],
        opts: PluginHostOptions,
    ) -> Result<Arc<PluginHost>, PluginLoadError> {
        let max_memory_mb = configs
            .iter()
            .map(|c| c.limits.memory_mb)
            .max()
            .unwrap_or(2);
        let engine =
            engine::build_engine(opts.max_instances, (max_memory_mb.max(2) as usize) << 20)?;
        let linker_err = |e: wasmtime::Error| PluginLoadError::Engine(format!("{e:#}"));
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(linker_err)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(linker_err)?;
        let caps = Arc::new(Capabilities {
            backend: opts.backend,
            dns: opts.dns,
            events: opts.events,
            dns_timeout: opts.dns_timeout,
        });
        let tick = opts.epoch_tick.max(Duration::from_millis(1));
        let mut host = PluginHost {
            _ticker: engine::Ticker::start(&engine, opts.epoch_tick),
            engine,
            plugins: Vec::with_capacity(configs.len()),
            caps,
            max_message: opts.max_message_size,
            pools: opts.pools,
            cache: Vec::new(),
        };
        for config in configs {
            let (component, outcome, wants) =
                engine::load_component(&host.engine, config, opts.cache_dir.as_deref())?;
            let refuse =
                |e: wasmtime::Error| PluginLoadError::Interface(config.origin(), format!("{e:#}"));
            let pre = linker.instantiate_pre(&component).map_err(refuse)?;
            let pre = chain::Linked::new(pre)
                .map_err(|why| PluginLoadError::Interface(config.origin(), why))?;
            let meta = Arc::new(PluginMeta {
                name: config.display_name(),
                config_json: config.config_json(),
                limits: config.limits,
                on_error: config.on_error,
                cpu_ticks: epoch_ticks(config.limits.cpu, tick),
                dns_zones: config.dns_zones.clone(),
                lists: opts
                    .lists
                    .iter()
                    .filter(|l| {
                        let name = config.display_name();
                        l.may_read(&name) || l.may_write(&name)
                    })
                    .cloned()
                    .collect(),
                stats: metrics::Stats::default(),
                instruments: opts.metrics.plugin(&config.display_name()),
            });
            let (hooks, declared) =
                chain::probe(&host, &pre, &meta)
                    .await
                    .map_err(|e| PluginLoadError::Init {
                        name: meta.name.clone(),
                        message: e.to_string(),
                    })?;
            let wants = wants.with_declared(declared);
            tracing::info!(plugin = %meta.name, ?outcome, hooks = ?hook_names(hooks), ?wants, "plugin loaded");
            let pool = config.pool_capacity().map(chain::Pool::new);
            host.plugins.push(LoadedPlugin {
                meta,
                pre,
                hooks,
                wants,
                pool,
            });
            host.cache.push(outcome);
        }
        Ok(Arc::new(host))
    }

    /// A plugin set for one SMTP session; instances are created on first use.
    pub fn session(self: &Arc<Self>) -> SessionPlugins {
        SessionPlugins::new(self.clone())
    }

    /// A plugin set for one delivery batch (route, recipient-copy and delivery-result hooks).
    pub fn delivery(self: &Arc<Self>) -> DeliveryPlugins {
        DeliveryPlugins::new(self.clone())
    }

    /// Plugin names in chain order.
    pub fn names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.meta.name.clone()).collect()
    }

    /// Whether any plugin handles `hook`; the session can skip building arguments if not.
    pub fn handles(&self, hook: Hook) -> bool {
        self.plugins.iter().any(|p| p.hooks & hook.bit() != 0)
    }

    /// The hooks the plugin at `index` handles, as it declared at load.
    pub fn hooks_of(&self, index: usize) -> Vec<Hook> {
        self.plugins
            .get(index)
            .map(|p| hook_names(p.hooks))
            .unwrap_or_default()
    }

    /// Whether each plugin's compiled code came from the cache, in chain order.
    pub fn cache_outcomes(&self) -> &[CacheOutcome] {
        &self.cache
    }

    /// Drops the idle warm instances of every `pooled` plugin; returns how many.
    pub(crate) fn drop_idle_instances(&self) -> usize {
        self.plugins
            .iter()
            .filter_map(|p| p.pool.as_ref())
            .map(chain::Pool::clear)
            .sum()
    }

    /// Idle warm instances of the plugin at `index` (0 unless it is `pooled`).
    pub fn idle_instances(&self, index: usize) -> usize {
        let pool = self.plugins.get(index).and_then(|p| p.pool.as_ref());
        pool.map_or(0, chain::Pool::idle)
    }

    /// Counters of every plugin, in chain order.
    pub fn metrics(&self) -> Vec<PluginMetrics> {
        self.plugins
            .iter()
            .map(|p| p.meta.stats.snapshot(&p.meta.name))
            .collect()
    }
}

/// A CPU budget in whole epoch ticks, rounded up, at least one.
fn epoch_ticks(cpu: Duration, tick: Duration) -> u64 {
    let ticks = cpu.as_nanos().div_ceil(tick.as_nanos().max(1)).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn hook_names(bits: u16) -> Vec<Hook> {
    Hook::ALL
        .into_iter()
        .filter(|h| bits & h.bit() != 0)
        .collect()
}

#[cfg(test)]
mod charges_tests;
#[cfg(test)]
mod holds_tests;
#[cfg(test)]
mod message_traits_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod relay_limits_tests;
#[cfg(test)]
mod session_value_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transcript_tests;
#[cfg(test)]
mod verdict_tests;
#[cfg(test)]
mod wants_tests;
