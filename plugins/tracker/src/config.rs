//! The plugin's config table (plugins/README.md#tracker documents every key). The relay's
//! tracking endpoint reads `secret` and `old_secrets` from this same table, so the key is
//! written once.

use serde::Deserialize;
use wasmrelay_tracking_token::{is_web_url, Key};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    secret: String,
    #[serde(default)]
    old_secrets: Vec<String>,
    base_url: String,
    #[serde(default = "yes")]
    opens: bool,
    #[serde(default = "yes")]
    clicks: bool,
    #[serde(default = "yes")]
    list_unsubscribe: bool,
    #[serde(default)]
    unsubscribe_link: String,
    #[serde(default)]
    exclude_senders: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The parsed config, with the signing key prepared.
#[derive(Debug)]
pub struct Config {
    pub key: Key,
    /// Without a trailing `/`.
    pub base_url: String,
    pub opens: bool,
    pub clicks: bool,
    pub list_unsubscribe: bool,
    /// The visible link's text, HTML-escaped; empty for none.
    pub unsubscribe_link: String,
    /// Lower-cased; `user@domain` matches an address, `domain` a sender's domain.
    pub exclude_senders: Vec<String>,
}

impl Config {
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let key = Key::new(raw.secret.as_bytes()).map_err(|e| format!("secret: {e}"))?;
        for (i, old) in raw.old_secrets.iter().enumerate() {
            Key::new(old.as_bytes()).map_err(|e| format!("old_secrets[{i}]: {e}"))?;
        }
        let base_url = raw.base_url.trim_end_matches('/').to_string();
        if !is_web_url(&base_url) || base_url.contains(['?', '#', '&', '\'']) {
            return Err(format!(
                "base_url: {:?} is not an http or https URL without query or fragment \
                 (the tracking endpoint's public address, e.g. \"https://t.example.com\")",
                raw.base_url
            ));
        }
        let exclude_senders = raw
            .exclude_senders
            .iter()
            .map(|s| s.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect();
        Ok(Config {
            key,
            base_url,
            opens: raw.opens,
            clicks: raw.clicks,
            list_unsubscribe: raw.list_unsubscribe,
            unsubscribe_link: wasmrelay_tracking_token::html_escape(raw.unsubscribe_link.trim()),
            exclude_senders,
        })
    }

    /// Whether mail from `sender` (the reverse path, lower-cased) is left alone.
    pub fn excluded(&self, sender: &str) -> bool {
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        self.exclude_senders
            .iter()
            .any(|e| e == sender || (!e.contains('@') && e == domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!(
            r#"{{"secret": "{SECRET}", "base_url": "https://t.example.com/"{extra}}}"#
        ))
    }

    #[test]
    fn defaults_and_normalisation() {
        let c =
            parse(r#", "exclude_senders": ["@Alerts.Example.com", "CEO@example.com"]"#).unwrap();
        assert_eq!(c.base_url, "https://t.example.com");
        assert!(c.opens && c.clicks && c.list_unsubscribe);
        assert_eq!(c.unsubscribe_link, "");
        assert!(c.excluded("x@alerts.example.com"));
        assert!(c.excluded("ceo@example.com"));
        assert!(!c.excluded("news@example.com"));
        assert!(!c.excluded(""));
    }

    #[test]
    fn errors_name_their_key() {
        let err = |json: &str| Config::parse(json).unwrap_err();
        assert!(err(r#"{"base_url": "https://t/"}"#).contains("missing field `secret`"));
        assert!(err(&format!(r#"{{"secret": "{SECRET}"}}"#)).contains("`base_url`"));
        assert!(err(r#"{"secret": "short", "base_url": "https://t/"}"#)
            .starts_with("secret: must be at least 32 bytes"));
        assert!(parse(r#", "old_secrets": ["x"]"#)
            .unwrap_err()
            .starts_with("old_secrets[0]:"));
        assert!(Config::parse(&format!(
            r#"{{"secret": "{SECRET}", "base_url": "ftp://t/"}}"#
        ))
        .unwrap_err()
        .starts_with("base_url:"));
        assert!(parse(r#", "pixel": true"#)
            .unwrap_err()
            .contains("unknown field `pixel`"));
    }
}
