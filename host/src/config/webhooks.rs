//! `[[webhooks]]`: events POSTed in signed JSON batches to HTTP endpoints, from a durable
//! outbox under the spool (see `crate::webhooks`).
//!
//! ```toml
//! [[webhooks]]
//! url = "https://hooks.example.com/wasmrelay"
//! secret_file = "/etc/wasmrelay/webhook.secret"   # or secret = "..."
//! events = ["delivered", "bounced", "complaint"]  # default: delivery and engagement events
//! batch_max = 100
//! batch_wait = "1s"
//! timeout = "10s"
//! max_retry_age = "24h"
//! ```
//!
//! Read at start; a change needs a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Events a webhook may ask for: the event log's closed list (`crate::events`) and
/// `complaint` (`crate::feedback`).
pub const EVENT_NAMES: &[&str] = &[
    "received",
    "queued",
    "rejected",
    "delivered",
    "deferred",
    "bounced",
    "held",
    "dropped",
    "complaint",
    "plugin",
    "open",
    "click",
    "unsubscribe",
];

/// The default `events`: what happened to a sender's mail and what its readers did.
pub const DEFAULT_EVENTS: &[&str] = &[
    "delivered",
    "deferred",
    "bounced",
    "dropped",
    "complaint",
    "open",
    "click",
    "unsubscribe",
];

/// Shortest secret: 16 bytes, so signatures cannot be brute-forced.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Names the outbox (`<spool>/webhooks/NAME/`); default: derived from `url`, so keep
    /// `name` fixed when the URL changes and events queued for the old URL go to the new.
    pub name: String,
    /// `http://` or `https://` (certificates verified against the webpki roots).
    pub url: String,
    /// The HMAC-SHA256 key of `X-Wasmrelay-Signature`, at least 16 bytes; or `secret_file`.
    pub secret: String,
    /// A file holding the secret (trailing whitespace trimmed), relative to the config file.
    pub secret_file: PathBuf,
    /// Event names to send (default: delivered, deferred, bounced, dropped, complaint, open,
    /// click, unsubscribe); `["*"]` for every event.
    pub events: Vec<String>,
    /// Most events in one POST (default 100).
    pub batch_max: usize,
    /// How long a partial batch waits for more events (default `"1s"`).
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Connect-to-status timeout of one POST (default `"10s"`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Events still undelivered this long after they happened are given up (default
    /// `"24h"`).
    #[serde(with = "humantime_serde")]
    pub max_retry_age: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            name: String::new(),
            url: String::new(),
            secret: String::new(),
            secret_file: PathBuf::new(),
            events: DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect(),
            batch_max: 100,
            batch_wait: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_retry_age: Duration::from_secs(86_400),
        }
    }
}

/// Most events in one POST.
const MAX_BATCH: usize = 10_000;

impl WebhookConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        super::resolve(base, &mut self.secret_file);
    }

    /// The outbox's directory name: `name`, else `url-` and 16 hex digits of the URL's
    /// SHA-256.
    pub fn outbox_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        use sha2::Digest;
        let hash = sha2::Sha256::digest(self.url.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("url-{hex}")
    }

    /// Whether the webhook wants events named `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == name)
    }

    /// The secret's bytes: `secret`, or `secret_file`'s contents without trailing
    /// whitespace.
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        if !self.secret.is_empty() {
            return Ok(self.secret.as_bytes().to_vec());
        }
        let mut bytes = std::fs::read(&self.secret_file)
            .map_err(|e| format!("cannot read {}: {e}", self.secret_file.display()))?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Ok(bytes)
    }
}

pub fn validate(hooks: &[WebhookConfig], errors: &mut Vec<ConfigError>) {
    for (i, h) in hooks.iter().enumerate() {
        let key = format!("webhooks[{i}]");
        if !h.name.is_empty() && !super::valid_name(&h.name) {
            errors.push(ConfigError::new(
                format!("{key}.name"),
                "must be 1 to 64 characters of a-z 0-9 - _ .",
            ));
        }
        if let Err(e) = crate::webhooks::Endpoint::parse(&h.url) {
            errors.push(ConfigError::new(format!("{key}.url"), e));
        }
        if hooks[..i]
            .iter()
            .any(|o| o.outbox_name() == h.outbox_name())
        {
            errors.push(ConfigError::new(
                format!("{key}.name"),
                format!(
                    "outbox {:?} is used twice; give each webhook its own name",
                    h.outbox_name()
                ),
            ));
        }
        match (h.secret.is_empty(), h.secret_file.as_os_str().is_empty()) {
            (true, true) => errors.push(ConfigError::new(
                format!("{key}.secret"),
                "set secret or secret_file",
            )),
            (false, false) => errors.push(ConfigError::new(
                format!("{key}.secret"),
                "set secret or secret_file, not both",
            )),
            _ => match h.secret() {
                Err(e) => errors.push(ConfigError::new(format!("{key}.secret_file"), e)),
                Ok(s) if s.len() < MIN_SECRET_LEN => {
                    let which = if h.secret.is_empty() {
                        "secret_file"
                    } else {
                        "secret"
                    };
                    errors.push(ConfigError::new(
                        format!("{key}.{which}"),
                        format!("the secret must be at least {MIN_SECRET_LEN} bytes"),
                    ))
                }
                Ok(_) => {}
            },
        }
        if h.events.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.events"),
                "must not be empty",
            ));
        }
        for (j, e) in h.events.iter().enumerate() {
            if e != "*" && !EVENT_NAMES.contains(&e.as_str()) {
                errors.push(ConfigError::new(
                    format!("{key}.events[{j}]"),
                    format!("unknown event {e:?} (known: {})", EVENT_NAMES.join(", ")),
                ));
            }
        }
        if !(1..=MAX_BATCH).contains(&h.batch_max) {
            errors.push(ConfigError::new(
                format!("{key}.batch_max"),
                format!("must be 1..={MAX_BATCH}"),
            ));
        }
        let minute = Duration::from_secs(60);
        super::check_duration(
            errors,
            format!("{key}.batch_wait"),
            h.batch_wait,
            Duration::ZERO..=minute,
        );
        super::check_duration(
            errors,
            format!("{key}.timeout"),
            h.timeout,
            Duration::from_millis(100)..=minute * 10,
        );
        super::check_duration(
            errors,
            format!("{key}.max_retry_age"),
            h.max_retry_age,
            minute..=super::MAX_DURATION,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn errors(text: &str) -> Vec<String> {
        crate::config::feedback::tests::errors_under(text, "webhooks")
    }

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

    #[test]
    fn every_webhook_error_names_its_key() {
        let e = errors(&format!(
            "{BASE}[[webhooks]]\nurl = \"ftp://x\"\nsecret = \"short\"\nevents = [\"opened\"]\n\
             batch_max = 0\ntimeout = \"1h\"\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:1/\"\nsecret_file = \"/nonexistent/s\"\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:1/\"\nsecret = \"0123456789abcdef\"\nsecret_file = \"s\"\n"
        ));
        let keys: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "webhooks[0].url",
                "webhooks[0].secret",
                "webhooks[0].events[0]",
                "webhooks[0].batch_max",
                "webhooks[0].timeout",
                "webhooks[1].secret_file",
                "webhooks[2].name",
                "webhooks[2].secret",
            ],
            "{e:?}"
        );
        let e = errors(&format!(
            "{BASE}[[webhooks]]\nurl = \"http://a/\"\nsecrets = \"x\"\n"
        ));
        assert!(
            e[0].starts_with("webhooks[0].secrets: unknown field"),
            "{e:?}"
        );
    }

    #[test]
    fn defaults_and_event_selection() {
        let text = format!(
            "{BASE}[[webhooks]]\nurl = \"https://hooks.example.com/x\"\nsecret = \"0123456789abcdef\"\n"
        );
        let c = &Config::parse(&text, Path::new("/nonexistent"))
            .unwrap()
            .webhooks[0];
        assert!(c.wants("bounced") && c.wants("complaint") && !c.wants("received"));
        assert_eq!(c.batch_max, 100);
        assert!(c.outbox_name().starts_with("url-") && c.outbox_name().len() == 20);
        assert_eq!(c.secret().unwrap(), b"0123456789abcdef");
    }
}
