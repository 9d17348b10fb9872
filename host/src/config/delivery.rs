//! `[delivery]`: routes, MX resolution, retry schedule, DKIM signing.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {}

impl DeliveryConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        let _ = base;
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        let _ = (key, errors);
    }
}
