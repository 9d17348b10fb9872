//! Configuration: typed serde structs (`deny_unknown_fields` everywhere), a default for every
//! field, and validation that collects every error with its dotted key.
//!
//! Each area owns its section: `server` (listeners, relay policy, limits, users), `spool`,
//! `delivery` (routes, retries, DKIM), `plugins`, `events` and `tracking`.

pub mod admin;
pub mod delivery;
pub mod events;
pub mod feedback;
pub mod lists;
pub mod log;
pub mod plugins;
pub mod pools;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tracking;
pub mod webhooks;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use server::{
    LimitsConfig, ListenerConfig, ListenerRole, LongLines, RelayConfig, SpoolConfig, UserConfig,
};

/// One problem in a config file, with the dotted key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every error found in one config file.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {path}:\n{}", .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub errors: Vec<ConfigError>,
}

/// The whole `relay.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Our name in the greeting, EHLO reply and `Received:` headers.
    pub hostname: String,
    /// Where to accept SMTP; several at once, each with its role.
    pub listeners: Vec<ListenerConfig>,
    /// Which domains we take mail for and who may relay.
    pub relay: RelayConfig,
    /// Protocol and resource limits.
    pub limits: LimitsConfig,
    /// SMTP AUTH accounts.
    pub users: Vec<UserConfig>,
    /// The durable queue.
    pub spool: SpoolConfig,
    /// Delivery: routes, retries, DKIM signing.
    pub delivery: delivery::DeliveryConfig,
    /// The plugin chain, in order.
    pub plugins: Vec<plugins::PluginConfig>,
    /// The sandbox shared by all plugins: compile cache, CPU tick, instance pool.
    pub plugin_runtime: plugins::PluginRuntimeConfig,
    /// Named shared lists plugins may read and write (the suppression list is one).
    pub lists: Vec<lists::ListConfig>,
    /// The JSON-lines event log.
    pub events: events::EventsConfig,
    /// The HTTP endpoint of the `tracker` plugin's links.
    pub tracking: tracking::TrackingConfig,
    /// Where plugins' shared state lives: this relay's memory, or Redis for a fleet.
    pub state: state::StateConfig,
    /// The relay's own log on stderr: text or JSON lines, and the level.
    pub log: log::LogConfig,
    /// The admin HTTP API, the dashboard and `/metrics`.
    pub admin: admin::AdminConfig,
    /// OpenTelemetry traces (OTLP) and the bound on metric series.
    pub telemetry: telemetry::TelemetryConfig,
    /// Returned mail: asynchronous bounces and complaints, and suppression.
    pub feedback: feedback::FeedbackConfig,
    /// Signed HTTP POSTs of events, from a durable outbox.
    pub webhooks: Vec<webhooks::WebhookConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: default_hostname(),
            listeners: Vec::new(),
            relay: RelayConfig::default(),
            limits: LimitsConfig::default(),
            users: Vec::new(),
            spool: SpoolConfig::default(),
            delivery: delivery::DeliveryConfig::default(),
            plugins: Vec::new(),
            plugin_runtime: plugins::PluginRuntimeConfig::default(),
            lists: Vec::new(),
            events: events::EventsConfig::default(),
            tracking: tracking::TrackingConfig::default(),
            state: state::StateConfig::default(),
            log: log::LogConfig::default(),
            admin: admin::AdminConfig::default(),
            telemetry: telemetry::TelemetryConfig::default(),
            feedback: feedback::FeedbackConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

/// Names of pools, lists and annotations: 1..=64 bytes of `a-z 0-9 - _ .`, so they are
/// safe in keys, logs and file names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
}

/// The machine's host name, or `localhost` when it cannot be read.
fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl Config {
    /// Reads, parses and validates `path`. Relative paths inside the file are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            path: path.to_path_buf(),
            errors,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![ConfigError::new("", format!("cannot read: {e}"))]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(fail)
    }

    /// Parses and validates config text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
        let mut config = deserialize(text).map_err(|e| vec![e])?;
        config.resolve_paths(base);
        let errors = config.validate();
        if config.delivery.hostname.is_empty() {
            config.delivery.hostname = config.hostname.clone();
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        server::resolve_listener_paths(&mut self.listeners, &mut self.spool, base);
        self.delivery.resolve_paths(base);
        for p in &mut self.plugins {
            p.resolve_paths(base);
        }
        self.plugin_runtime.resolve_paths(base);
        self.events.resolve_paths(base);
        self.admin.resolve_paths(base);
        self.webhooks.iter_mut().for_each(|w| w.resolve_paths(base));
    }

    /// Valid settings that weaken security; `check-config` prints them, `serve` logs them.
    pub fn warnings(&self) -> Vec<ConfigError> {
        self.delivery.warnings("delivery")
    }

    /// Every semantic error in the config.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.hostname.is_empty() || self.hostname.contains([' ', '@']) {
            errors.push(ConfigError::new(
                "hostname",
                format!("not a host name: {:?}", self.hostname),
            ));
        }
        server::validate_listeners(&self.listeners, &mut errors);
        server::validate_relay(&self.relay, &mut errors);
        server::validate_limits(&self.limits, &mut errors);
        server::validate_users(&self.users, &mut errors);
        server::validate_spool(&self.spool, &mut errors);
        self.delivery.validate("delivery", &mut errors);
        for (i, p) in self.plugins.iter().enumerate() {
            p.validate(&format!("plugins[{i}]"), &mut errors);
        }
        plugins::validate_unique_names(&self.plugins, &mut errors);
        let names: Vec<String> = self.plugins.iter().map(|p| p.display_name()).collect();
        lists::validate(&self.lists, &names, &mut errors);
        self.plugin_runtime.validate("plugin_runtime", &mut errors);
        self.events.validate("events", &mut errors);
        self.tracking
            .validate("tracking", &self.plugins, &self.lists, &mut errors);
        self.state.validate("state", &mut errors);
        self.log.validate("log", &mut errors);
        self.admin.validate("admin", &mut errors);
        self.telemetry.validate("telemetry", &mut errors);
        self.feedback
            .validate("feedback", &self.relay, &self.lists, &mut errors);
        webhooks::validate(&self.webhooks, &mut errors);
        errors
    }
}

/// Parses the TOML text into `Config`. A failure names the dotted key serde was in
/// (`plugins[2].limits.cpu`) and the line toml reports.
fn deserialize(text: &str) -> Result<Config, ConfigError> {
    let line_of = |e: &toml::de::Error| {
        e.span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
    };
    let message = |e: &toml::de::Error| {
        let mut m = e.message().trim_end().to_string();
        // humantime-serde's refusal says only "expected a duration".
        if m.ends_with("expected a duration") {
            m.push_str(DURATION_HINT);
        }
        match line_of(e) {
            Some(line) => format!("{m} (line {line})"),
            None => m,
        }
    };
    let document =
        toml::Deserializer::parse(text).map_err(|e| ConfigError::new("", message(&e)))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let key = match e.path().iter().next() {
            None => String::new(),
            Some(_) => e.path().to_string(),
        };
        ConfigError::new(key, message(e.inner()))
    })
}

const DURATION_HINT: &str = " such as \"30s\", \"5m\", \"500ms\" or \"5d\" (at most \"1year\")";

/// Durations in config are humantime strings; each must lie in `range`. Returns whether it
/// does, after recording an error under `key` if not.
pub(crate) fn check_duration(
    errors: &mut Vec<ConfigError>,
    key: impl Into<String>,
    value: Duration,
    range: RangeInclusive<Duration>,
) -> bool {
    if range.contains(&value) {
        return true;
    }
    let show = |d: &Duration| humantime_serde::re::humantime::format_duration(*d).to_string();
    errors.push(ConfigError::new(
        key,
        format!(
            "must be between {} and {}",
            show(range.start()),
            show(range.end())
        ),
    ));
    false
}

/// The longest duration any setting takes: a year (365.25 days, `"1year"` as humantime
/// writes it). Anything longer is a typo, and the bound keeps deadline arithmetic far from
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// The range of a timeout or interval that must be positive.
pub(crate) const POSITIVE: RangeInclusive<Duration> = Duration::from_millis(1)..=MAX_DURATION;

/// Makes `p` absolute against `base` if it is relative.
pub fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() && !p.as_os_str().is_empty() {
        *p = base.join(&*p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        Config::parse(text, Path::new("/nonexistent"))
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn quickstart_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/relay.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert!(config.spool.dir.is_absolute());
        assert!(config.relay.is_relay_network("127.0.0.1".parse().unwrap()));
        assert!(config
            .relay
            .is_relay_network("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!config.relay.is_relay_network("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn unknown_fields_are_named_with_their_table() {
        let e = errors("[[listeners]]\naddress = \"127.0.0.1:25\"\n[[listeners]]\naddress = \"127.0.0.1:26\"\nport = 3\n");
        assert!(
            e[0].starts_with("listeners[1].port: unknown field"),
            "{e:?}"
        );
        let e = errors("[limits]\nmax_errors = \"ten\"\n");
        assert!(e[0].starts_with("limits.max_errors:"), "{e:?}");
    }

    const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:2525\"\n";

    #[test]
    fn durations_are_humantime_strings() {
        let text = format!(
            "{LISTENER}[limits]\ncommand_timeout = \"1m 30s\"\ndata_block_timeout = \"500ms\"\n\
             auth_check_timeout = \"400ms\"\n\
             [plugin_runtime]\nepoch_tick = \"5ms\"\n"
        );
        let config = Config::parse(&text, Path::new("/nonexistent")).unwrap();
        assert_eq!(config.limits.command_timeout, Duration::from_secs(90));
        assert_eq!(config.limits.data_block_timeout, Duration::from_millis(500));
        assert_eq!(config.limits.tls_handshake_timeout, Duration::from_secs(30));
        assert_eq!(config.plugin_runtime.epoch_tick, Duration::from_millis(5));
        assert_eq!(
            config.spool.commit_delay,
            crate::spool::DEFAULT_COMMIT_DELAY
        );
        let off = Config::parse(
            &format!("{LISTENER}[spool]\ncommit_delay = \"0s\"\n"),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(off.spool.commit_delay, Duration::ZERO);
    }

    #[test]
    fn unparsable_durations_name_their_key() {
        let plugins = "[[plugins]]\npath = \"a.wasm\"\n".repeat(2);
        let e = errors(&format!(
            "{LISTENER}{plugins}[[plugins]]\npath = \"c.wasm\"\n\
             limits = {{ cpu = \"99999999999999999d\" }}\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("plugins[2].limits.cpu: invalid value: string \"99999999999999999d\""),
            "{e:?}"
        );
        assert!(
            e[0].contains(DURATION_HINT) && e[0].ends_with("(line 9)"),
            "{e:?}"
        );
        let e = errors("[limits]\ncommand_timeout = 300\n");
        assert!(
            e[0].starts_with("limits.command_timeout: invalid type: integer `300`"),
            "{e:?}"
        );
        let e = errors("[limits]\ncommand_timeout_secs = 300\n");
        assert!(
            e[0].starts_with("limits.command_timeout_secs: unknown field"),
            "{e:?}"
        );
    }

    #[test]
    fn durations_out_of_range_are_semantic_errors() {
        let e = errors(&format!(
            "{LISTENER}[limits]\ncommand_timeout = \"0s\"\n\
             tls_handshake_timeout = \"500000000000000000s\"\n\
             [[plugins]]\npath = \"/nonexistent/a.wasm\"\nlimits = {{ cpu = \"11m\" }}\n\
             [plugin_runtime]\nepoch_tick = \"100us\"\n\
             [spool]\ncommit_delay = \"1s\"\n"
        ));
        assert_eq!(
            e,
            [
                "limits.command_timeout: must be between 1ms and 1year",
                "limits.tls_handshake_timeout: must be between 1ms and 1year",
                "spool.commit_delay: must be between 0s and 50ms",
                "plugins[0].path: no such file: /nonexistent/a.wasm",
                "plugins[0].limits.cpu: must be between 1ms and 10m",
                "plugin_runtime.epoch_tick: must be between 1ms and 1s",
            ]
        );
    }

    #[test]
    fn syntax_errors_have_a_line_and_no_key() {
        let e = Config::parse("[limits]\nmax_errors = = 3\n", Path::new("/")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, "");
        assert!(e[0].message.ends_with("(line 2)"), "{e:?}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let e =
            errors("hostname = \"bad host\"\n[limits]\nmax_recipients = 5\nmax_text_line = 10\n");
        let keys: Vec<_> = e
            .iter()
            .map(|e| e.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "hostname",
                "listeners",
                "limits.max_recipients",
                "limits.max_text_line"
            ]
        );
    }

    #[test]
    fn wildcard_local_domains_match_subdomains_only() {
        let relay = RelayConfig {
            local_domains: vec!["*.example.com".into(), "Example.org".into()],
            relay_networks: vec![],
        };
        assert!(relay.is_local_domain("a.example.com"));
        assert!(relay.is_local_domain("A.B.EXAMPLE.COM."));
        assert!(!relay.is_local_domain("example.com"));
        assert!(!relay.is_local_domain("badexample.com"));
        assert!(relay.is_local_domain("example.ORG"));
    }
}
