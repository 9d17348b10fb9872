//! Configuration: typed serde structs (`deny_unknown_fields` everywhere), a default for every
//! field, and validation that collects every error with its dotted key.
//!
//! Each area owns its section: `server` (listeners, relay policy, limits, users), `spool`,
//! `delivery` (routes, retries, DKIM) and `plugins`.

pub mod delivery;
pub mod plugins;

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Delivery: routes, retries, DKIM signing.
    pub delivery: delivery::DeliveryConfig,
    /// The plugin chain, in order.
    pub plugins: Vec<plugins::PluginConfig>,
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
        let mut config: Config = toml::from_str(text).map_err(|e| vec![toml_error(&e)])?;
        config.resolve_paths(base);
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.delivery.resolve_paths(base);
        for p in &mut self.plugins {
            p.resolve_paths(base);
        }
    }

    /// Every semantic error in the config.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        self.delivery.validate("delivery", &mut errors);
        for (i, p) in self.plugins.iter().enumerate() {
            p.validate(&format!("plugins[{i}]"), &mut errors);
        }
        errors
    }
}

/// Turns a toml/serde error into a keyed error (toml reports a span; serde the field).
fn toml_error(e: &toml::de::Error) -> ConfigError {
    ConfigError::new("", e.message().to_string())
}

/// Makes `p` absolute against `base` if it is relative.
pub fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() && !p.as_os_str().is_empty() {
        *p = base.join(&*p);
    }
}
