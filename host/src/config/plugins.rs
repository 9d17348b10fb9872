//! `[[plugins]]`: the plugin chain, in order, and `[plugin_runtime]`, the sandbox shared by
//! every plugin.
//!
//! ```toml
//! [plugin_runtime]
//! cache_dir = "/var/cache/wasmrelay"
//!
//! [[plugins]]
//! builtin = "rate-limit"          # or: path = "plugins/my-policy.wasm"
//! on_error = "tempfail"
//! instances = "pooled"            # warm instances reused across sessions (default: "pooled"
//!                                 # for a builtin, "fresh" for a path)
//! limits = { cpu = "20ms", wall = "500ms", memory_mb = 16 }
//! config = { per_ip = "30/min" }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{check_duration, ConfigError};

/// One plugin in the chain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// The component (`.wasm`, built for `wasm32-wasip2`); relative to the config file.
    pub path: PathBuf,
    /// A plugin that ships inside the relay binary (`rate-limit`, `router`, `filter`,
    /// `tracker`), instead of `path`.
    pub builtin: Option<String>,
    /// Name in logs, metrics and events; defaults to `builtin` or the file stem of `path`.
    pub name: Option<String>,
    /// The plugin's own settings, handed to it as JSON by `init` and `host.config()`.
    pub config: toml::Table,
    /// Per-hook resource limits.
    pub limits: PluginLimits,
    /// What a trap, timeout or limit breach in this plugin means for the client.
    pub on_error: OnError,
    /// DNS zones the plugin may query with `dns-lookup` (the name itself or names under
    /// it, e.g. `zen.spamhaus.org`); empty refuses every lookup, so a plugin cannot send
    /// data out in query names.
    pub dns_zones: Vec<String>,
    /// How instances are made: `fresh` or `pooled` (see [`InstancePolicy`]); unset, a
    /// bundled plugin is `pooled` and a plugin from a file `fresh` ([`Self::instance_policy`]).
    pub instances: Option<InstancePolicy>,
    /// Under `pooled`: how many idle warm instances are kept (default 8; 32 for a bundled
    /// plugin). A busy relay makes more as needed and drops those that find the pool full
    /// when released.
    pub pool_size: Option<u32>,
}

/// Instance policy of one plugin. The state-reset contract is in docs/plugins.md#instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstancePolicy {
    /// A new instance (and `init`) for every SMTP session and delivery batch: nothing a
    /// plugin keeps in memory survives the session.
    Fresh,
    /// Warm instances reused across sessions, one session at a time: memory (what `init`
    /// built, caches) survives; budgets and resource handles are per call. An instance
    /// that fails, or whose call is abandoned, is discarded, never reused.
    Pooled,
}

/// Idle instances kept per `pooled` plugin unless `pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// The same for a bundled plugin: an idle one holds about 50 KiB, not an interpreter's MiBs,
/// so the pool can cover a busy relay's concurrent sessions.
pub const DEFAULT_BUNDLED_POOL_SIZE: u32 = 32;
const MAX_POOL_SIZE: u32 = 1_000;

/// Limits applied to every hook call of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// CPU time per hook call (measured in epoch ticks of `plugin_runtime.epoch_tick`).
    #[serde(with = "humantime_serde")]
    pub cpu: Duration,
    /// Wall-clock time per hook call, DNS lookups included.
    #[serde(with = "humantime_serde")]
    pub wall: Duration,
    /// Linear memory per instance, in MiB.
    pub memory_mb: u64,
    /// Host capability calls (log, kv, rate, DNS ...) per hook call.
    pub capability_calls: u32,
    /// Live kv keys this plugin may hold (in the shared backend, across all its instances);
    /// a `kv-set` or `kv-add` past it fails with `denied`. 0 leaves the plugin no kv.
    pub kv_keys: u64,
    /// Bytes of kv keys plus values this plugin may hold, enforced like `kv_keys`.
    pub kv_bytes: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            cpu: Duration::from_millis(100),
            wall: Duration::from_secs(2),
            memory_mb: 32,
            capability_calls: 1_000,
            kv_keys: 100_000,
            kv_bytes: 64 << 20,
        }
    }
}

/// The reply when a plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// `451 4.3.0`: the client retries later. Safe default: mail is never lost.
    #[default]
    Tempfail,
    /// Ignore the plugin and continue the chain as if it said `continue`.
    Accept,
    /// `550 5.7.0`: refuse permanently.
    Reject,
}

/// `[plugin_runtime]`: the sandbox shared by every plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginRuntimeConfig {
    /// Where compiled components are cached (keyed by content hash and engine); empty: the
    /// user's cache directory (`$XDG_CACHE_HOME/wasmrelay/plugins` or
    /// `~/.cache/wasmrelay/plugins`), or no cache when neither is set.
    pub cache_dir: PathBuf,
    /// Epoch tick: the granularity of `limits.cpu`.
    #[serde(with = "humantime_serde")]
    pub epoch_tick: Duration,
    /// Pool size: live plugin instances across all sessions (sessions × plugins).
    pub max_instances: u32,
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        PluginRuntimeConfig {
            cache_dir: PathBuf::new(),
            epoch_tick: Duration::from_millis(2),
            max_instances: 1_000,
        }
    }
}

impl PluginRuntimeConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        super::resolve(base, &mut self.cache_dir);
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        check_duration(
            errors,
            format!("{key}.epoch_tick"),
            self.epoch_tick,
            MIN_EPOCH_TICK..=MAX_EPOCH_TICK,
        );
        if !(1..=100_000).contains(&self.max_instances) {
            errors.push(ConfigError::new(
                format!("{key}.max_instances"),
                "must be between 1 and 100000",
            ));
        }
    }
}

/// Two plugins with one name would share private state (keys are namespaced by name).
pub fn validate_unique_names(plugins: &[PluginConfig], errors: &mut Vec<ConfigError>) {
    for (i, p) in plugins.iter().enumerate() {
        let name = p.display_name();
        if let Some(first) = plugins[..i].iter().position(|q| q.display_name() == name) {
            errors.push(ConfigError::new(
                format!("plugins[{i}].name"),
                format!("{name:?} is already the name of plugins[{first}]; names must be unique"),
            ));
        }
    }
}

/// Hard ceilings: a plugin never gets more than this, whatever the config says.
pub const MAX_MEMORY_MB: u64 = 4_096;
pub const MAX_WALL: Duration = Duration::from_secs(600);
/// Below a millisecond a limit cannot be measured: CPU is counted in ticks of 1ms or more.
const MIN_LIMIT: Duration = Duration::from_millis(1);
const MIN_EPOCH_TICK: Duration = Duration::from_millis(1);
const MAX_EPOCH_TICK: Duration = Duration::from_secs(1);

impl PluginConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        if !self.path.as_os_str().is_empty() {
            super::resolve(base, &mut self.path);
        }
    }

    /// Where the component comes from, for messages: the file, or `builtin:NAME`.
    pub fn origin(&self) -> PathBuf {
        match &self.builtin {
            Some(name) => PathBuf::from(format!("builtin:{name}")),
            None => self.path.clone(),
        }
    }

    /// The component's bytes: the embedded ones for `builtin`, else the file at `path`.
    pub fn read_component(&self) -> std::io::Result<std::borrow::Cow<'static, [u8]>> {
        match &self.builtin {
            Some(name) => wasmrelay_bundled::component(name)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such builtin plugin")
                }),
            None => std::fs::read(&self.path).map(std::borrow::Cow::Owned),
        }
    }

    /// The name used in logs: `name`, else `builtin`, else the file stem of `path`.
    pub fn display_name(&self) -> String {
        match self.name.as_ref().or(self.builtin.as_ref()) {
            Some(n) => n.clone(),
            None => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".to_string()),
        }
    }

    /// The `config` table as the JSON object the plugin receives.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        let has_path = !self.path.as_os_str().is_empty();
        if let Some(name) = &self.builtin {
            if has_path {
                errors.push(ConfigError::new(
                    format!("{key}.builtin"),
                    "give either builtin or path, not both",
                ));
            } else if wasmrelay_bundled::component(name).is_none() {
                let known: Vec<_> = wasmrelay_bundled::names().collect();
                errors.push(ConfigError::new(
                    format!("{key}.builtin"),
                    format!(
                        "no builtin plugin {name:?} (there are: {})",
                        known.join(", ")
                    ),
                ));
            }
        } else if !has_path {
            errors.push(ConfigError::new(
                format!("{key}.path"),
                "is required (or builtin)",
            ));
        } else if !self.path.is_file() {
            errors.push(ConfigError::new(
                format!("{key}.path"),
                format!("no such file: {}", self.path.display()),
            ));
        }
        if let Some(name) = &self.name {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                errors.push(ConfigError::new(
                    format!("{key}.name"),
                    "must be non-empty ASCII letters, digits, '-', '_' or '.'",
                ));
            }
        }
        let l = &self.limits;
        let k = |f: &str| format!("{key}.limits.{f}");
        let cpu_ok = check_duration(errors, k("cpu"), l.cpu, MIN_LIMIT..=MAX_WALL);
        let wall_ok = check_duration(errors, k("wall"), l.wall, MIN_LIMIT..=MAX_WALL);
        if cpu_ok && wall_ok && l.wall < l.cpu {
            errors.push(ConfigError::new(k("wall"), "must be at least cpu"));
        }
        if l.memory_mb < 2 || l.memory_mb > MAX_MEMORY_MB {
            errors.push(ConfigError::new(
                k("memory_mb"),
                format!("must be 2..={MAX_MEMORY_MB}"),
            ));
        }
        if l.capability_calls == 0 {
            errors.push(ConfigError::new(
                k("capability_calls"),
                "must be at least 1",
            ));
        }
        match (self.instance_policy(), self.pool_size) {
            (InstancePolicy::Fresh, Some(_)) => errors.push(ConfigError::new(
                format!("{key}.pool_size"),
                "applies only with instances = \"pooled\"",
            )),
            (InstancePolicy::Pooled, Some(n)) if !(1..=MAX_POOL_SIZE).contains(&n) => {
                errors.push(ConfigError::new(
                    format!("{key}.pool_size"),
                    format!("must be 1..={MAX_POOL_SIZE}"),
                ))
            }
            _ => {}
        }
    }

    /// `instances`, or the default: the bundled plugins keep no session's facts in memory
    /// between sessions (each resets what it keeps at the session's first hook), so they
    /// are pooled; a plugin from a file is fresh unless it says it is safe to pool.
    pub fn instance_policy(&self) -> InstancePolicy {
        match (self.instances, &self.builtin) {
            (Some(policy), _) => policy,
            (None, Some(_)) => InstancePolicy::Pooled,
            (None, None) => InstancePolicy::Fresh,
        }
    }

    /// Idle instances to keep: `None` under `fresh`.
    pub fn pool_capacity(&self) -> Option<usize> {
        let default = match self.builtin {
            Some(_) => DEFAULT_BUNDLED_POOL_SIZE,
            None => DEFAULT_POOL_SIZE,
        };
        (self.instance_policy() == InstancePolicy::Pooled)
            .then(|| self.pool_size.unwrap_or(default) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(toml_text: &str) -> Vec<String> {
        let p: PluginConfig = toml::from_str(toml_text).unwrap();
        let mut errors = Vec::new();
        p.validate("plugins[2]", &mut errors);
        errors.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_and_json_config() {
        let p: PluginConfig =
            toml::from_str("path = \"x.wasm\"\nconfig = { per_ip = 30, name = \"a\" }").unwrap();
        assert_eq!(p.on_error, OnError::Tempfail);
        assert_eq!(p.limits, PluginLimits::default());
        assert_eq!(p.display_name(), "x");
        let json: serde_json::Value = serde_json::from_str(&p.config_json()).unwrap();
        assert_eq!(json["per_ip"], 30);
    }

    #[test]
    fn errors_name_dotted_keys() {
        let errors = errors_of(
            "path = \"/nonexistent/x.wasm\"\nname = \"bad name\"\n\
             limits = { cpu = \"0s\", wall = \"5ms\", memory_mb = 1, capability_calls = 0 }",
        );
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "plugins[2].path",
                "plugins[2].name",
                "plugins[2].limits.cpu",
                "plugins[2].limits.memory_mb",
                "plugins[2].limits.capability_calls",
            ]
        );
    }

    #[test]
    fn unknown_fields_and_bad_on_error_are_refused() {
        assert!(toml::from_str::<PluginConfig>("path = \"x\"\nlimit = {}").is_err());
        assert!(toml::from_str::<PluginConfig>("on_error = \"ignore\"").is_err());
        assert!(toml::from_str::<PluginConfig>("limits = { cpu_ms = 5 }").is_err());
        assert!(toml::from_str::<PluginConfig>("limits = { cpu = 5 }").is_err());
        let p: PluginConfig = toml::from_str("on_error = \"accept\"").unwrap();
        assert_eq!(p.on_error, OnError::Accept);
    }

    #[test]
    fn instance_policy_and_pool_size() {
        let p: PluginConfig = toml::from_str("path = \"x\"").unwrap();
        assert_eq!(
            (p.instance_policy(), p.pool_capacity()),
            (InstancePolicy::Fresh, None)
        );
        let p: PluginConfig = toml::from_str("builtin = \"rate-limit\"").unwrap();
        assert_eq!(
            (p.instance_policy(), p.pool_capacity()),
            (
                InstancePolicy::Pooled,
                Some(DEFAULT_BUNDLED_POOL_SIZE as usize)
            )
        );
        let p: PluginConfig =
            toml::from_str("builtin = \"rate-limit\"\ninstances = \"fresh\"").unwrap();
        assert_eq!(p.pool_capacity(), None);
        let p: PluginConfig = toml::from_str("instances = \"pooled\"").unwrap();
        assert_eq!(p.pool_capacity(), Some(DEFAULT_POOL_SIZE as usize));
        assert!(toml::from_str::<PluginConfig>("instances = \"shared\"").is_err());
        let keys = |text: &str| {
            errors_of(&format!("path = \"/nonexistent\"\n{text}"))
                .into_iter()
                .filter(|e| e.contains("pool_size"))
                .count()
        };
        assert_eq!(keys("instances = \"pooled\"\npool_size = 4"), 0);
        assert_eq!(keys("instances = \"pooled\"\npool_size = 0"), 1);
        assert_eq!(keys("pool_size = 4"), 1);
    }
}
