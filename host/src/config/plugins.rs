//! `[[plugins]]`: the plugin chain, in order.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {}

impl PluginConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        let _ = base;
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        let _ = (key, errors);
    }
}
