//! Making instances: a store with its limits and budgets, instantiation and `init` (with a
//! second try when idle pooled instances hold the engine's pool), the load-time probe, and
//! how a failure is classified.

use std::sync::Arc;

use wasmtime::{Store, UpdateDeadline};

use super::exports::Linked;
use super::Slot;
use crate::plugins::error::FailureKind;
use crate::plugins::state::StoreState;
use crate::plugins::types::Hook;
use crate::plugins::wants::Declared;
use crate::plugins::{PluginHost, PluginMeta};

/// Bytes a plugin may hand the host in one capability call (see `new_store`).
const HOSTCALL_FUEL: usize = 8 << 20;

fn new_store(host: &PluginHost, meta: &Arc<PluginMeta>) -> Store<StoreState> {
    let mut store = Store::new(
        &host.engine,
        StoreState::new(meta.clone(), host.caps.clone()),
    );
    store.limiter(|s| s);
    // What one capability call may make the host allocate while lifting its arguments
    // (strings, lists): the largest legitimate transfer is a 4 MiB text part or a body
    // chunk; anything past this traps before the host copies it.
    store.set_hostcall_fuel(HOSTCALL_FUEL);
    // Every tick spent in wasm costs one unit of the hook's CPU budget; between ticks the
    // task yields so wall-time timeouts and other sessions keep running.
    store.epoch_deadline_callback(|mut cx| {
        let s = cx.data_mut();
        if s.cpu_left == 0 {
            s.cpu_exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        s.cpu_left -= 1;
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

pub(super) fn classify(e: wasmtime::Error, s: &StoreState) -> FailureKind {
    if s.cpu_exceeded {
        FailureKind::Cpu
    } else if s.memory_exceeded {
        FailureKind::Memory
    } else if s.calls_exceeded {
        FailureKind::Capabilities
    } else {
        let text = format!("{e:#}");
        let first = text.lines().next().unwrap_or_default();
        FailureKind::Trap(first.chars().take(300).collect())
    }
}

pub(super) async fn instantiate(
    host: &PluginHost,
    pre: &Linked,
    meta: &Arc<PluginMeta>,
) -> Result<Slot, FailureKind> {
    match instantiate_once(host, pre, meta).await {
        // Idle instances of `pooled` plugins hold slots of the engine's instance pool: a
        // session that needs one must not be refused for the sake of a warm spare.
        Err((kind, true)) => match host.drop_idle_instances() {
            0 => Err(kind),
            dropped => {
                tracing::warn!(plugin = %meta.name, dropped,
                    "plugin instance pool full: idle pooled instances dropped to make room \
                     (raise [plugin_runtime] max_instances)");
                instantiate_once(host, pre, meta)
                    .await
                    .map_err(|(kind, _)| kind)
            }
        },
        other => other.map_err(|(kind, _)| kind),
    }
}

/// One attempt in a new store; the flag says the engine's instance pool was full.
async fn instantiate_once(
    host: &PluginHost,
    pre: &Linked,
    meta: &Arc<PluginMeta>,
) -> Result<Slot, (FailureKind, bool)> {
    let mut store = new_store(host, meta);
    store.data_mut().arm();
    store.set_epoch_deadline(1);
    let wall = meta.limits.wall;
    let result = tokio::time::timeout(wall, async {
        let exports = pre.instantiate(&mut store).await?;
        let (init,) = exports.init(&mut store, &meta.config_json).await?;
        wasmtime::Result::Ok((exports, init))
    })
    .await;
    meta.stats.instantiated();
    match result {
        Err(_) => Err((FailureKind::WallTime, false)),
        Ok(Err(e)) => {
            let e: wasmtime::Error = e;
            let pool_full = e
                .chain()
                .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>());
            let kind = match classify(e, store.data()) {
                FailureKind::Trap(t) => FailureKind::Instantiate(t),
                other => other,
            };
            Err((kind, pool_full))
        }
        Ok(Ok((_, Err(msg)))) => Err((
            FailureKind::Instantiate(format!(
                "init refused its config: {}",
                msg.chars().take(300).collect::<String>()
            )),
            false,
        )),
        Ok(Ok((exports, Ok(())))) => Ok(Slot::new(store, exports)),
    }
}

/// Instantiates plugin `index` (and runs its `init` if asked) outside any session, then
/// drops the instance. For the benchmark (feature `test-util`); not part of the API.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub async fn bench_instantiate(host: &Arc<PluginHost>, index: usize, init: bool) -> bool {
    let plugin = &host.plugins[index];
    if init {
        return instantiate(host, &plugin.pre, &plugin.meta).await.is_ok();
    }
    let mut store = new_store(host, &plugin.meta);
    store.data_mut().arm();
    store.set_epoch_deadline(1);
    plugin.pre.instantiate(&mut store).await.is_ok()
}

/// Load-time check of one plugin: instantiate, `init`, ask `hooks()`. Returns the hooks it
/// handles and what it declared through the host meanwhile (`host.want-headers`,
/// `host.want-recipient-count`).
pub(crate) async fn probe(
    host: &PluginHost,
    pre: &Linked,
    meta: &Arc<PluginMeta>,
) -> Result<(u16, Declared), FailureKind> {
    let mut slot = instantiate(host, pre, meta).await?;
    slot.store.data_mut().arm();
    slot.store.data_mut().declaring = Some(Declared::default());
    slot.store.set_epoch_deadline(1);
    let Slot { store, exports, .. } = &mut slot;
    let wall = meta.limits.wall;
    let hooks = match tokio::time::timeout(wall, exports.hooks(store)).await {
        Err(_) => return Err(FailureKind::WallTime),
        Ok(Err(e)) => return Err(classify(e, store.data())),
        Ok(Ok((h,))) => h,
    };
    if hooks.len() > 64 {
        let why = format!("hooks() listed {} hooks", hooks.len());
        return Err(FailureKind::Malformed(why));
    }
    let declared = store.data_mut().declaring.take().unwrap_or_default();
    let bits = hooks
        .into_iter()
        .fold(0, |bits, h| bits | Hook::from(h).bit());
    Ok((bits, declared))
}
