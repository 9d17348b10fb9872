//! `[log]`: the relay's own log on standard error (journald, a terminal, a file), as text or
//! JSON lines, and how much of it.
//!
//! ```toml
//! [log]
//! format = "text"     # or "json": one JSON object per line
//! level = "info"      # error | warn | info | debug | trace, or directives like
//!                     # "info,wasmrelay::delivery=debug"
//! ```
//!
//! The environment variable `WASMRELAY_LOG`, when set, overrides `level`. Read at start; a
//! change needs a restart. Not to be confused with `[events]`, the JSON-lines event log of
//! message events that the relay writes to a file of its own.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use super::ConfigError;

/// How the relay logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (one line per event, Postfix-like lines for messages) or `json`.
    pub format: LogFormat,
    /// The most detailed level logged, or `tracing` filter directives.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The shape of each log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `TIME LEVEL target: message key=value ...`; message lines read
    /// `QUEUEID: to=<...>, relay=..., status=sent (250 ...)`.
    Text,
    /// One JSON object per line with the event's fields at the top level.
    Json,
}

impl LogConfig {
    /// The filter this section asks for.
    pub fn filter(&self) -> Result<EnvFilter, String> {
        // A bare word is a target name to `EnvFilter` (everything under it, at trace): a
        // misspelt level would silently log everything. Only `target=level` may name one.
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        for part in self.level.split(',').map(str::trim) {
            if !part.contains('=') && !LEVELS.contains(&part.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "{part:?} is not a level (one of {}) nor a `target=level` directive",
                    LEVELS.join(", ")
                ));
            }
        }
        EnvFilter::builder()
            .parse(&self.level)
            .map_err(|e| format!("not a level or filter directive: {e}"))
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        if self.level.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.level"),
                "must name a level, such as \"info\"",
            ));
        } else if let Err(e) = self.filter() {
            errors.push(ConfigError::new(format!("{key}.level"), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let c: LogConfig = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        c.validate("log", &mut errors);
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn formats_levels_and_directives() {
        assert_eq!(
            toml::from_str::<LogConfig>("").unwrap(),
            LogConfig::default()
        );
        let c: LogConfig = toml::from_str("format = \"json\"\nlevel = \"debug\"\n").unwrap();
        assert_eq!(c.format, LogFormat::Json);
        assert!(errors("level = \"warn,wasmrelay::delivery=debug\"").is_empty());
        assert!(toml::from_str::<LogConfig>("format = \"syslog\"").is_err());
        assert!(toml::from_str::<LogConfig>("verbose = true").is_err());
    }

    #[test]
    fn bad_levels_name_the_key() {
        let e = errors("level = \"loud\"");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("log.level: \"loud\" is not a level"),
            "{e:?}"
        );
        let e = errors("level = \"info,wasmrelay=loud\"");
        assert!(
            e[0].starts_with("log.level: not a level or filter directive"),
            "{e:?}"
        );
        assert_eq!(
            errors("level = \" \""),
            ["log.level: must name a level, such as \"info\""]
        );
    }
}
