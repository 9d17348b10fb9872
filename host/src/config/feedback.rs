//! `[feedback]`: mail that comes back to us (asynchronous bounces, RFC 3464 DSNs, and ARF
//! complaints, RFC 5965) and what it does to the suppression list.
//!
//! ```toml
//! [feedback]
//! bounce_address = "bounces@mail.example.com"  # and/or a whole domain:
//! bounce_domain = "bounces.example.com"         # any local part, VERP-style bounces+x@...
//! suppress_on = ["complaint", "hard_bounce"]    # what puts a recipient on the list
//! list = "suppression"                          # a [[lists]] name
//! consume = true                                # reports are not relayed onward
//! match_window = "30d"                          # how long a sent message can be reported
//! ```
//!
//! The bounce address's domain must be one of `[relay] local_domains`, so that remote MTAs
//! may send to it. Read at start; a change needs a restart.

use std::time::Duration;

use serde::Deserialize;

use super::lists::ListConfig;
use super::{ConfigError, RelayConfig};

/// What adds a recipient to the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressOn {
    /// An ARF report (abuse, fraud ...) about a message we sent to the recipient.
    Complaint,
    /// A DSN with a permanent failure (see `crate::feedback::classify`).
    HardBounce,
    /// A DSN with a temporary failure (mailbox full ...): rarely wanted.
    SoftBounce,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// One address whose mail is parsed as feedback; empty for none.
    pub bounce_address: String,
    /// A domain every address of which is a feedback address (`bounces+anything@domain`);
    /// empty for none.
    pub bounce_domain: String,
    /// Which reports put the recipient on `list`. Default `["complaint", "hard_bounce"]`.
    pub suppress_on: Vec<SuppressOn>,
    /// The `[[lists]]` entry recipients are added to. Default `"suppression"`.
    pub list: String,
    /// Whether feedback messages stop here (default `true`) or are also relayed onward like
    /// any mail for a local domain.
    pub consume: bool,
    /// How long after delivery a message may be reported on (default `"30d"`): the relay
    /// remembers which recipients it delivered each message to for this long.
    #[serde(with = "humantime_serde")]
    pub match_window: Duration,
    /// Most deliveries remembered at once (default 1,000,000, about 40 MB); the oldest are
    /// forgotten first.
    pub max_tracked: u64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            bounce_address: String::new(),
            bounce_domain: String::new(),
            suppress_on: vec![SuppressOn::Complaint, SuppressOn::HardBounce],
            list: "suppression".into(),
            consume: true,
            match_window: Duration::from_secs(30 * 86_400),
            max_tracked: 1_000_000,
        }
    }
}

/// Ceiling of `max_tracked`.
const MAX_TRACKED: u64 = 100_000_000;

impl FeedbackConfig {
    pub fn is_enabled(&self) -> bool {
        !self.bounce_address.is_empty() || !self.bounce_domain.is_empty()
    }

    /// Whether mail to `rcpt` is feedback: the bounce address, or any address at the bounce
    /// domain (both compared without case).
    pub fn is_feedback_address(&self, rcpt: &str) -> bool {
        let rcpt = rcpt.trim_matches(['<', '>']);
        if !self.bounce_address.is_empty() && rcpt.eq_ignore_ascii_case(&self.bounce_address) {
            return true;
        }
        !self.bounce_domain.is_empty()
            && rcpt
                .rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.bounce_domain))
    }

    pub fn validate(
        &self,
        key: &str,
        relay: &RelayConfig,
        lists: &[ListConfig],
        errors: &mut Vec<ConfigError>,
    ) {
        if !self.is_enabled() {
            return;
        }
        if !self.bounce_address.is_empty() {
            match self.bounce_address.rsplit_once('@') {
                Some((local, domain))
                    if !local.is_empty() && !domain.is_empty() && !local.contains(['<', '>']) =>
                {
                    if !relay.is_local_domain(domain) {
                        errors.push(ConfigError::new(
                            format!("{key}.bounce_address"),
                            format!("{domain:?} must be one of relay.local_domains, or remote MTAs cannot return mail to it"),
                        ));
                    }
                }
                _ => errors.push(ConfigError::new(
                    format!("{key}.bounce_address"),
                    format!("not an address: {:?}", self.bounce_address),
                )),
            }
        }
        if !self.bounce_domain.is_empty() && !relay.is_local_domain(&self.bounce_domain) {
            errors.push(ConfigError::new(
                format!("{key}.bounce_domain"),
                format!(
                    "{:?} must be one of relay.local_domains, or remote MTAs cannot return mail to it",
                    self.bounce_domain
                ),
            ));
        }
        if !self.suppress_on.is_empty() && !lists.iter().any(|l| l.name == self.list) {
            errors.push(ConfigError::new(
                format!("{key}.list"),
                format!("no [[lists]] entry named {:?}", self.list),
            ));
        }
        super::check_duration(
            errors,
            format!("{key}.match_window"),
            self.match_window,
            Duration::from_secs(60)..=super::MAX_DURATION,
        );
        if !(1..=MAX_TRACKED).contains(&self.max_tracked) {
            errors.push(ConfigError::new(
                format!("{key}.max_tracked"),
                format!("must be 1..={MAX_TRACKED}"),
            ));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// The errors of `text` under the key `prefix` (none when it parses).
    pub(crate) fn errors_under(text: &str, prefix: &str) -> Vec<String> {
        match Config::parse(text, Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .iter()
                .filter(|e| e.key.starts_with(prefix))
                .map(|e| e.to_string())
                .collect(),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        errors_under(text, "feedback")
    }

    const BASE: &str =
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[relay]\nlocal_domains = [\"example.com\"]\n";

    #[test]
    fn every_feedback_error_names_its_key() {
        let e = errors(&format!(
            "{BASE}[feedback]\nbounce_address = \"bounces@elsewhere.test\"\n\
             bounce_domain = \"other.test\"\nmatch_window = \"1s\"\nmax_tracked = 0\n"
        ));
        let keys: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "feedback.bounce_address",
                "feedback.bounce_domain",
                "feedback.list",
                "feedback.match_window",
                "feedback.max_tracked"
            ],
            "{e:?}"
        );
        let e = errors(&format!("{BASE}[feedback]\nsuppress_on = [\"spam\"]\n"));
        assert!(
            e[0].starts_with("feedback.suppress_on[0]: unknown variant"),
            "{e:?}"
        );
        let e = errors(&format!("{BASE}[feedback]\nbounce = \"x\"\n"));
        assert!(e[0].starts_with("feedback.bounce: unknown field"), "{e:?}");
    }

    #[test]
    fn addresses_and_domains_match_without_case() {
        let text = format!(
            "{BASE}[[lists]]\nname = \"suppression\"\n[feedback]\n\
             bounce_address = \"Bounces@Example.com\"\nbounce_domain = \"example.com\"\n"
        );
        let c = Config::parse(&text, Path::new("/nonexistent"))
            .unwrap()
            .feedback;
        assert!(c.is_enabled() && c.consume);
        assert!(c.is_feedback_address("<bounces@EXAMPLE.com>"));
        assert!(c.is_feedback_address("bounces+x1@example.COM"));
        assert!(!c.is_feedback_address("bounces@example.com.evil.test"));
        assert!(super::FeedbackConfig::default().suppress_on.len() == 2);
    }
}
