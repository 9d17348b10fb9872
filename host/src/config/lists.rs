//! `[[lists]]`: named shared lists (sets of strings with optional TTLs) and which plugins
//! may read and write each. The suppression list is one of them.
//!
//! ```toml
//! [[lists]]
//! name = "suppression"
//! readers = ["router", "filter"]
//! writers = ["tracker"]
//! max_members = 1000000
//! ```
//!
//! With the in-process state backend, lists are kept in a journal under the spool
//! (`<spool>/state/lists.journal`) and survive restarts; operators manage them with
//! `wasmrelay list show|add|remove`.

use serde::Deserialize;

use super::ConfigError;

/// One named list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListConfig {
    /// The name plugins and `wasmrelay list` use: 1..=64 bytes of `a-z 0-9 - _ .`.
    pub name: String,
    /// Plugins (by name) that may call `list-contains`; `"*"` for every plugin. Writers
    /// may always read.
    pub readers: Vec<String>,
    /// Plugins (by name) that may call `list-add` and `list-remove`; `"*"` for every plugin.
    pub writers: Vec<String>,
    /// Live members the list may hold; adding one more is refused (`denied`) until members
    /// expire or are removed. Bounds the memory and journal a writer can fill.
    pub max_members: u64,
}

/// Default `max_members`: a million members (about 100 MB of memory at most).
pub const DEFAULT_MAX_MEMBERS: u64 = 1_000_000;
/// Ceiling of `max_members`.
pub const MAX_MEMBERS: u64 = 100_000_000;

impl Default for ListConfig {
    fn default() -> Self {
        ListConfig {
            name: String::new(),
            readers: Vec::new(),
            writers: Vec::new(),
            max_members: DEFAULT_MAX_MEMBERS,
        }
    }
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
        if !(1..=MAX_MEMBERS).contains(&list.max_members) {
            errors.push(ConfigError::new(
                format!("{key}.max_members"),
                format!("must be 1..={MAX_MEMBERS}"),
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn keyed_errors(text: &str) -> Vec<String> {
        Config::parse(text, Path::new("/nonexistent"))
            .unwrap_err()
            .iter()
            .filter(|e| e.key.starts_with("lists"))
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn every_list_error_names_its_key() {
        let errors = keyed_errors(
            r#"
[[plugins]]
path = "/nonexistent/tracker.wasm"

[[lists]]
name = "suppression"
writers = ["tracker"]
readers = ["*", "filtre"]

[[lists]]
name = "Bad Name"
max_members = 0

[[lists]]
name = "suppression"
writers = ["ghost"]
"#,
        );
        assert_eq!(
            errors,
            [
                "lists[0].readers[1]: no plugin named \"filtre\" in [[plugins]]",
                "lists[1].name: must be 1 to 64 characters of a-z 0-9 - _ .",
                "lists[1].max_members: must be 1..=100000000",
                "lists[2].name: list \"suppression\" is declared twice",
                "lists[2].writers[0]: no plugin named \"ghost\" in [[plugins]]",
            ]
        );
    }

    #[test]
    fn unknown_list_keys_are_named() {
        let errors = keyed_errors("[[lists]]\nname = \"s\"\nwriter = [\"x\"]\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("lists[0].writer: unknown field `writer`"),
            "{errors:?}"
        );
    }

    #[test]
    fn defaults() {
        let list: super::ListConfig = toml::from_str("name = \"s\"").unwrap();
        assert_eq!(list.max_members, super::DEFAULT_MAX_MEMBERS);
        assert!(!list.may_read("anyone"));
        assert!(keyed_errors("[[lists]]\nname = \"s\"\n").is_empty());
    }
}
