//! `[tracking]`: the HTTP endpoint behind the `tracker` plugin's links (open pixel, click
//! redirect, RFC 8058 one-click unsubscribe).
//!
//! ```toml
//! [tracking]
//! listen = "127.0.0.1:8025"          # absent (the default) = no endpoint
//! plugin = "tracker"                 # whose config holds `secret` (and `old_secrets`)
//! suppression_list = "suppression"   # where an unsubscribe puts the recipient
//! ```
//!
//! The key is not repeated here: the endpoint verifies tokens with the `secret` (and any
//! `old_secrets`) of the named plugin's `config` table, which signed them. The public URL
//! the links point at is that plugin's `base_url` (usually a reverse proxy with TLS in front
//! of `listen`). Like `[events]`, the section is read at start; a change needs a restart.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use wasmrelay_tracking_token::Key;

use super::lists::ListConfig;
use super::plugins::PluginConfig;
use super::{check_duration, ConfigError, MAX_DURATION, POSITIVE};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Where the endpoint listens (plain HTTP); absent turns it off.
    pub listen: Option<SocketAddr>,
    /// The `[[plugins]]` entry (by name) whose `config.secret` signs the tokens.
    pub plugin: String,
    /// The `[[lists]]` entry a one-click unsubscribe adds the recipient to; empty records
    /// the unsubscribe without suppressing anyone.
    pub suppression_list: String,
    /// How long after a message was received its links are honoured; older tokens get 404.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Repeated opens and clicks of one recipient are counted in a window this long from
    /// the first (the `count` field of the events).
    #[serde(with = "humantime_serde")]
    pub count_window: Duration,
    /// HTTP connections served at once; more wait to be accepted.
    pub max_connections: u32,
    /// Time for a client to send a request (headers and the POST body); idle keep-alive
    /// connections are closed after it too.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            listen: None,
            plugin: "tracker".to_string(),
            suppression_list: "suppression".to_string(),
            max_age: MAX_DURATION,
            count_window: Duration::from_secs(30 * 86_400),
            max_connections: 1_024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl TrackingConfig {
    pub fn is_enabled(&self) -> bool {
        self.listen.is_some()
    }

    /// The verification keys: the plugin's `secret`, then its `old_secrets`.
    pub fn keys(&self, plugins: &[PluginConfig]) -> Result<Vec<Key>, ConfigError> {
        let Some(i) = plugins.iter().position(|p| p.display_name() == self.plugin) else {
            return Err(ConfigError::new(
                "tracking.plugin",
                format!(
                    "no plugin named {:?} in [[plugins]] (its config.secret signs the links)",
                    self.plugin
                ),
            ));
        };
        let table = &plugins[i].config;
        let key = |name: String, value: Option<&toml::Value>| match value.and_then(|v| v.as_str()) {
            None => Err(ConfigError::new(&name, "must be set to a string")),
            Some(s) => Key::new(s.as_bytes()).map_err(|e| ConfigError::new(&name, e.to_string())),
        };
        let base = format!("plugins[{i}].config");
        let mut keys = vec![key(format!("{base}.secret"), table.get("secret"))?];
        if let Some(old) = table.get("old_secrets") {
            let Some(old) = old.as_array() else {
                return Err(ConfigError::new(
                    format!("{base}.old_secrets"),
                    "must be a list of strings",
                ));
            };
            for (j, v) in old.iter().enumerate() {
                keys.push(key(format!("{base}.old_secrets[{j}]"), Some(v))?);
            }
        }
        Ok(keys)
    }

    pub fn validate(
        &self,
        key: &str,
        plugins: &[PluginConfig],
        lists: &[ListConfig],
        errors: &mut Vec<ConfigError>,
    ) {
        if !self.is_enabled() {
            return;
        }
        if let Err(e) = self.keys(plugins) {
            errors.push(e);
        }
        if !self.suppression_list.is_empty()
            && !lists.iter().any(|l| l.name == self.suppression_list)
        {
            errors.push(ConfigError::new(
                format!("{key}.suppression_list"),
                format!("no list named {:?} in [[lists]]", self.suppression_list),
            ));
        }
        check_duration(errors, format!("{key}.max_age"), self.max_age, POSITIVE);
        check_duration(
            errors,
            format!("{key}.count_window"),
            self.count_window,
            POSITIVE,
        );
        check_duration(
            errors,
            format!("{key}.request_timeout"),
            self.request_timeout,
            Duration::from_millis(100)..=Duration::from_secs(600),
        );
        if !(1..=100_000).contains(&self.max_connections) {
            errors.push(ConfigError::new(
                format!("{key}.max_connections"),
                "must be between 1 and 100000",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text, Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .iter()
                .filter(|e| e.key.starts_with("tracking") || e.key.contains("config"))
                .map(|e| e.to_string())
                .collect(),
        }
    }

    fn config(plugin: &str, tracking: &str) -> String {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:2525\"\n[[plugins]]\nbuiltin = \"tracker\"\n\
             {plugin}\n[[lists]]\nname = \"suppression\"\n[tracking]\n{tracking}\n"
        )
    }

    #[test]
    fn the_secret_is_read_from_the_plugin() {
        let ok = config(
            &format!("config = {{ secret = \"{SECRET}\", old_secrets = [\"{SECRET}x\"] }}"),
            "listen = \"127.0.0.1:0\"",
        );
        assert_eq!(errors(&ok), Vec::<String>::new());
        let parsed = Config::parse(&ok, Path::new("/")).unwrap();
        assert_eq!(parsed.tracking.keys(&parsed.plugins).unwrap().len(), 2);
        // Off, nothing is checked.
        assert_eq!(errors(&config("", "")), Vec::<String>::new());
    }

    #[test]
    fn every_error_names_its_key() {
        assert_eq!(
            errors(&config("", "listen = \"127.0.0.1:0\"")),
            ["plugins[0].config.secret: must be set to a string"]
        );
        let e = errors(&config(
            "config = { secret = \"short\" }",
            "listen = \"127.0.0.1:0\"",
        ));
        assert!(
            e[0].starts_with("plugins[0].config.secret: must be at least 32 bytes (it has 5)"),
            "{e:?}"
        );
        let e = errors(&config(
            &format!("config = {{ secret = \"{SECRET}\", old_secrets = [\"x\"] }}"),
            "listen = \"127.0.0.1:0\"\nplugin = \"trakcer\"\nsuppression_list = \"nope\"\n\
             count_window = \"0s\"\nmax_connections = 0",
        ));
        assert_eq!(
            e,
            [
                "tracking.plugin: no plugin named \"trakcer\" in [[plugins]] (its config.secret signs the links)",
                "tracking.suppression_list: no list named \"nope\" in [[lists]]",
                "tracking.count_window: must be between 1ms and 1year",
                "tracking.max_connections: must be between 1 and 100000",
            ]
        );
        let e = errors(&config("", "listen = \"127.0.0.1:0\"\nport = 1"));
        assert!(e[0].starts_with("tracking.port: unknown field"), "{e:?}");
    }
}
