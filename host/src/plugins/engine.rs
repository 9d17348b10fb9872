//! The one wasmtime `Engine` (component model, pooling allocator, copy-on-write memory
//! images, epoch interruption driven by a ticker thread) and the on-disk compile cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::PluginLoadError;
use super::wants::Wants;
use super::PluginConfig;

/// The interface every plugin exports, without its version.
pub(crate) const HOOKS_INTERFACE: &str = "wasmrelay:plugin/hooks";
/// The only interface major this host speaks (for `0.x`, the minor is the major).
pub(crate) const SUPPORTED_MAJOR: &str = "0.2";

/// Builds the engine. `max_instances` sizes the pool; `max_memory` is the largest linear
/// memory any plugin may have (per-plugin limits are enforced below it by the store).
pub(crate) fn build_engine(
    max_instances: u32,
    max_memory: usize,
) -> Result<Engine, PluginLoadError> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_instances)
        // A Rust component has one memory and a few core instances (the main module
        // plus the shims `wasm-component-ld` adds).
        .total_memories(max_instances)
        .total_tables(max_instances.saturating_mul(2))
        .total_core_instances(max_instances.saturating_mul(8))
        .total_stacks(max_instances)
        .max_memories_per_component(2)
        .max_memory_size(max_memory)
        // Reset a reused slot by rewriting only its dirty pages (PAGEMAP_SCAN, Linux 6.7+)
        // instead of unmapping them: a Rust plugin dirties its stack top (below 1 MiB),
        // data and a little heap, and keeping those resident saves page faults on the
        // next instantiation. Without PAGEMAP_SCAN only the low 64 KiB are kept.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
            2 << 20
        } else {
            64 << 10
        })
        .table_keep_resident(64 * 1024);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Plugins are synchronous components driven on fibers; the component-model
        // async machinery (tasks, streams) would only add per-call and per-store cost.
        .concurrency_support(false)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .max_wasm_stack(512 * 1024)
        .async_stack_size(1024 * 1024);
    Engine::new(&config).map_err(|e| PluginLoadError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every `tick` until dropped: the clock behind CPU budgets.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Ticker {
        let tick = tick.max(Duration::from_micros(100));
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasmrelay-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker thread");
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Disabled,
}

/// The compile cache when the config names none: `$XDG_CACHE_HOME/wasmrelay/plugins`, else
/// `$HOME/.cache/wasmrelay/plugins` (relative values are ignored, as the XDG spec says);
/// `None` without either.
pub(crate) fn user_cache_dir(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = xdg_cache_home
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".cache")))?;
    Some(base.join("wasmrelay").join("plugins"))
}

/// Where a compiled component lives: content hash + engine compatibility hash, so a new
/// wasmtime or different engine settings never load stale code.
fn cache_path(engine: &Engine, dir: &Path, wasm: &[u8]) -> PathBuf {
    let content = Sha256::digest(wasm);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let hex: String = content[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}-{:016x}.cwasm", h.finish()))
}

/// Compiles the plugin's component (or loads it from `cache_dir`), with what it declares it
/// wants to see.
pub(crate) fn load_component(
    engine: &Engine,
    config: &PluginConfig,
    cache_dir: Option<&Path>,
) -> Result<(Component, CacheOutcome, Wants), PluginLoadError> {
    let path = config.origin();
    let wasm = config
        .read_component()
        .map_err(|e| PluginLoadError::Read(path.clone(), e))?;
    let compile_err = |e: wasmtime::Error| PluginLoadError::Compile(path.clone(), format!("{e:#}"));
    let cache_dir = cache_dir.filter(|dir| match trusted_cache_dir(dir) {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(dir = %dir.display(), "plugin compile cache not used: {why}");
            false
        }
    });
    let (component, outcome) = match cache_dir {
        None => (
            Component::new(engine, &wasm).map_err(compile_err)?,
            CacheOutcome::Disabled,
        ),
        Some(dir) => {
            let cached = cache_path(engine, dir, &wasm);
            // SAFETY: the cache directory belongs to the relay's user, nobody else can write
            // it (checked above), and it only ever holds artifacts the relay serialized
            // itself, keyed by the engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &cached) } {
                Ok(c) => (c, CacheOutcome::Hit),
                Err(_) => {
                    let bytes = engine.precompile_component(&wasm).map_err(compile_err)?;
                    if let Err(e) = write_atomically(&cached, &bytes) {
                        tracing::warn!(path = %cached.display(), error = %e, "cannot write plugin cache");
                    }
                    // SAFETY: `bytes` was produced just now by this engine.
                    let c =
                        unsafe { Component::deserialize(engine, &bytes) }.map_err(compile_err)?;
                    (c, CacheOutcome::Miss)
                }
            }
        }
    };
    check_world(engine, &component)
        .map_err(|why| PluginLoadError::Interface(path.to_path_buf(), why))?;
    let wants =
        Wants::of_component(&wasm).map_err(|why| PluginLoadError::Interface(path.clone(), why))?;
    Ok((component, outcome, wants))
}

/// Compiled code is native code run inside the relay: a cache directory is used only when it
/// belongs to this process's user and neither its group nor others may write to it. A
/// missing one is created `0700`.
fn trusted_cache_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "owned by uid {}, not by the relay's uid {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "mode {:o} lets others write to it (chmod go-w)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, dest)
}

/// Refuses components that do not export `wasmrelay:plugin/hooks@0.2.x`, naming what they
/// export instead. The exact shape is checked again when the instance is pre-linked.
fn check_world(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let mut versions = Vec::new();
    let mut exports = Vec::new();
    for (name, item) in ty.exports(engine) {
        exports.push(name.to_string());
        if let (Some((iface, version)), ComponentItem::ComponentInstance(_)) =
            (name.split_once('@'), item.ty)
        {
            if iface == HOOKS_INTERFACE {
                versions.push(version.to_string());
            }
        }
    }
    let Some(version) = versions.first() else {
        return Err(format!(
            "not a wasmrelay plugin: it does not export {HOOKS_INTERFACE}@{SUPPORTED_MAJOR}.x (exports: {})",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        ));
    };
    let major = if version.starts_with("0.") {
        version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
    } else {
        version.split('.').next().unwrap_or_default().to_string()
    };
    if major != SUPPORTED_MAJOR {
        return Err(format!(
            "built for {HOOKS_INTERFACE}@{version}; this relay supports {SUPPORTED_MAJOR}.x only: \
             rebuild the plugin against plugin-sdk/wit (wasmrelay:plugin@{SUPPORTED_MAJOR}.0; \
             for Rust, wasmrelay-plugin-sdk {SUPPORTED_MAJOR})"
        ));
    }
    for (name, _) in ty.imports(engine) {
        let allowed = name.starts_with("wasmrelay:plugin/") || name.starts_with("wasi:");
        if !allowed {
            return Err(format!("imports {name}, which this relay does not provide"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cache_follows_xdg() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            user_cache_dir(os("/var/cache/x"), os("/home/u")),
            Some(PathBuf::from("/var/cache/x/wasmrelay/plugins"))
        );
        assert_eq!(
            user_cache_dir(None, os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/wasmrelay/plugins"))
        );
        assert_eq!(
            user_cache_dir(os("relative"), os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/wasmrelay/plugins"))
        );
        assert_eq!(user_cache_dir(None, os("")), None);
        assert_eq!(user_cache_dir(None, None), None);
    }
}
