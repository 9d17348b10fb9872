//! `[[lists]]`: named shared lists (sets of strings with optional TTLs) and which plugins
//! may read and write each. The suppression list is one of them.
//!
//! ```toml
//! [[lists]]
//! name = "suppression"
//! readers = ["router", "filter"]
//! writers = ["tracker"]
//! ```

use serde::Deserialize;

use super::ConfigError;

/// One named list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListConfig {
    /// The name plugins and `wasmrelay list` use: 1..=64 bytes of `a-z 0-9 - _ .`.
    pub name: String,
    /// Plugins (by name) that may call `list-contains`; `"*"` for every plugin. Writers
    /// may always read.
    pub readers: Vec<String>,
    /// Plugins (by name) that may call `list-add` and `list-remove`; `"*"` for every plugin.
    pub writers: Vec<String>,
}

impl ListConfig {
    pub fn may_read(&self, plugin: &str) -> bool {
        self.may_write(plugin) || self.readers.iter().any(|r| r == "*" || r == plugin)
    }

    pub fn may_write(&self, plugin: &str) -> bool {
        self.writers.iter().any(|w| w == "*" || w == plugin)
    }
}

/// Checks names and uniqueness; `plugin_names` are the chain's names, for typos in
/// `readers`/`writers`.
pub fn validate(lists: &[ListConfig], plugin_names: &[String], errors: &mut Vec<ConfigError>) {
    for (i, list) in lists.iter().enumerate() {
        let key = format!("lists[{i}]");
        if !super::valid_name(&list.name) {
            errors.push(ConfigError::new(
                format!("{key}.name"),
                "must be 1 to 64 characters of a-z 0-9 - _ .",
            ));
        }
        if lists[..i].iter().any(|l| l.name == list.name) {
            errors.push(ConfigError::new(
                format!("{key}.name"),
                format!("list {:?} is declared twice", list.name),
            ));
        }
        for (field, names) in [("readers", &list.readers), ("writers", &list.writers)] {
            for (j, n) in names.iter().enumerate() {
                if n != "*" && !plugin_names.contains(n) {
                    errors.push(ConfigError::new(
                        format!("{key}.{field}[{j}]"),
                        format!("no plugin named {n:?} in [[plugins]]"),
                    ));
                }
            }
        }
    }
}
