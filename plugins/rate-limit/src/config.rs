//! The plugin's `config` table, checked and compiled once per instance: rule names, limits and
//! networks are parsed here so that hooks only compare and format.
//!
//! Errors name the key (`rules[2].rate: ...`); unknown keys are refused.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use wasmrelay_plugin_sdk::host::{list_address, QuotaWindow};

use crate::keys::ClientIp;
use crate::net::Cidr;

/// Largest `burst`: a peek asks the backend for `burst + 1`, which must not overflow.
const MAX_BURST: u32 = 1_000_000;
const MAX_RULE_NAME: usize = 64;
const DEFAULT_CONCURRENT_EXPIRY: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "one_or_many")]
    exempt_networks: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    exempt_users: Vec<String>,
    #[serde(default)]
    on_state_error: OnStateError,
    #[serde(default)]
    concurrent_expiry: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    count: Count,
    #[serde(deserialize_with = "one_or_many")]
    key: Vec<String>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default, deserialize_with = "one_or_many")]
    quota: Vec<String>,
    #[serde(default)]
    max: Option<u32>,
    #[serde(default)]
    per_message: Option<u32>,
    #[serde(default)]
    action: Action,
    #[serde(default, deserialize_with = "one_or_many")]
    exempt_networks: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    exempt_users: Vec<String>,
    #[serde(default)]
    ipv4_prefix: Option<u8>,
    #[serde(default)]
    ipv6_prefix: Option<u8>,
    #[serde(default)]
    on_state_error: Option<OnStateError>,
}

/// What a rule counts, which also fixes the stage it is checked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    /// New connections, at `connect`.
    Connections,
    /// Open connections, +1 at `connect`, held by the host until the session ends.
    Concurrent,
    /// Messages: checked at `mail-from`, charged once at `data`.
    Messages,
    /// Recipients, charged one by one at `rcpt`.
    Recipients,
}

impl Count {
    pub fn name(self) -> &'static str {
        match self {
            Count::Connections => "connections",
            Count::Concurrent => "concurrent connections",
            Count::Messages => "messages",
            Count::Recipients => "recipients",
        }
    }
}

/// What a client gets once over a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// 451 4.7.1 (421 and disconnect at connect): come back later.
    #[default]
    Tempfail,
    /// 550 5.7.1 (554 at connect): do not.
    Reject,
}

/// When the state backend cannot answer: let the client through, or ask it to retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStateError {
    #[default]
    Allow,
    Tempfail,
}

/// One part of a rule's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    Ip,
    User,
    Sender,
    SenderDomain,
    RecipientDomain,
}

impl KeyPart {
    fn parse(s: &str) -> Option<KeyPart> {
        Some(match s {
            "ip" => KeyPart::Ip,
            "user" => KeyPart::User,
            "sender" => KeyPart::Sender,
            "sender_domain" => KeyPart::SenderDomain,
            "recipient_domain" => KeyPart::RecipientDomain,
            _ => return None,
        })
    }

    /// The tag of this part inside a state key; distinct per part so that a sender and a
    /// user with the same text never share a key.
    pub fn tag(self) -> char {
        match self {
            KeyPart::Ip => 'i',
            KeyPart::User => 'u',
            KeyPart::Sender => 's',
            KeyPart::SenderDomain => 'd',
            KeyPart::RecipientDomain => 'r',
        }
    }
}

/// A GCRA rate: `count` per `period`, bursts of `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
    /// As configured, for replies (`5/min`).
    pub text: String,
}

/// A quota over a calendar window (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub window: QuotaWindow,
    /// Tag of the window inside a state key.
    pub tag: &'static str,
}

/// Networks and users a rule (or the whole plugin) does not apply to.
#[derive(Debug, Clone, Default)]
pub struct Exempt {
    pub networks: Vec<Cidr>,
    /// Lower-cased.
    pub users: Vec<String>,
}

impl Exempt {
    fn parse(networks: &[String], users: &[String], at: &str) -> Result<Exempt, String> {
        let networks = networks
            .iter()
            .enumerate()
            .map(|(i, n)| Cidr::parse(n).map_err(|e| format!("{at}exempt_networks[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let users = users.iter().map(|u| list_address(u)).collect();
        Ok(Exempt { networks, users })
    }

    /// Whether the client is in an exempt network; asks for its address only when there are
    /// exempt networks.
    pub fn network(&self, ip: &ClientIp<'_>) -> bool {
        !self.networks.is_empty() && {
            let ip = ip.get();
            self.networks.iter().any(|n| n.contains(ip))
        }
    }

    /// `user` lower-cased.
    pub fn user(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| self.users.iter().any(|x| x == u))
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub count: Count,
    pub key: Vec<KeyPart>,
    pub rate: Option<Rate>,
    pub quotas: Vec<Quota>,
    /// Concurrent connections allowed (`count = "concurrent"`).
    pub max: Option<u32>,
    /// Recipients allowed in one transaction (`count = "recipients"`).
    pub per_message: Option<u32>,
    pub action: Action,
    pub exempt: Exempt,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub on_state_error: OnStateError,
}

impl Rule {
    pub fn uses(&self, part: KeyPart) -> bool {
        self.key.contains(&part)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub rules: Vec<Rule>,
    pub exempt: Exempt,
    /// A counted connection whose close was never seen stops counting after one to two of
    /// these.
    pub concurrent_expiry: Duration,
    /// Rules by stage, in config order (indexes into `rules`).
    pub connect: Vec<usize>,
    pub messages: Vec<usize>,
    pub recipients: Vec<usize>,
}

impl Config {
    /// The length of a `concurrent` count's epoch ([`Config::concurrent_expiry`]) in whole
    /// milliseconds, the unit epochs are numbered in; 0 only for an expiry under a
    /// millisecond, which `parse` refuses.
    pub fn concurrent_epoch_ms(&self) -> u64 {
        let expiry = self.concurrent_expiry;
        expiry
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(expiry.subsec_millis()))
    }

    /// Parses and checks the JSON of the `config` table.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let exempt = Exempt::parse(&raw.exempt_networks, &raw.exempt_users, "")?;
        let concurrent_expiry = match &raw.concurrent_expiry {
            None => DEFAULT_CONCURRENT_EXPIRY,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if d >= Duration::from_secs(60) => d,
                Ok(_) => return Err("concurrent_expiry: must be at least 1m".into()),
                Err(e) => return Err(format!("concurrent_expiry: {e}")),
            },
        };
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
        for (i, value) in raw.rules.into_iter().enumerate() {
            let at = format!("rules[{i}].");
            let rule: RawRule =
                serde_json::from_value(value).map_err(|e| format!("rules[{i}]: {e}"))?;
            let rule = compile(rule, raw.on_state_error, &at)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(format!("{at}name: {:?} is used twice", rule.name));
            }
            rules.push(rule);
        }
        let stage = |f: fn(Count) -> bool| {
            (0..rules.len())
                .filter(|&i| f(rules[i].count))
                .collect::<Vec<_>>()
        };
        Ok(Config {
            connect: stage(|c| matches!(c, Count::Connections | Count::Concurrent)),
            messages: stage(|c| c == Count::Messages),
            recipients: stage(|c| c == Count::Recipients),
            rules,
            exempt,
            concurrent_expiry,
        })
    }
}

fn compile(raw: RawRule, default_on_error: OnStateError, at: &str) -> Result<Rule, String> {
    let name = raw.name;
    if name.is_empty()
        || name.len() > MAX_RULE_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "{at}name: {name:?} must be 1..={MAX_RULE_NAME} characters of a-z A-Z 0-9 - _ ."
        ));
    }
    let mut key = Vec::with_capacity(raw.key.len());
    for (j, part) in raw.key.iter().enumerate() {
        let part = KeyPart::parse(part).ok_or_else(|| {
            format!(
                "{at}key[{j}]: unknown key {part:?} (ip, user, sender, sender_domain, \
                 recipient_domain)"
            )
        })?;
        if key.contains(&part) {
            return Err(format!("{at}key[{j}]: {part:?} is listed twice"));
        }
        key.push(part);
    }
    if key.is_empty() {
        return Err(format!(
            "{at}key: at least one of ip, user, sender, sender_domain, recipient_domain"
        ));
    }
    let rate = match &raw.rate {
        None => None,
        Some(text) => Some(parse_rate(text, raw.burst).map_err(|e| format!("{at}rate: {e}"))?),
    };
    if raw.burst.is_some() && rate.is_none() {
        return Err(format!("{at}burst: only with rate"));
    }
    if let Some(r) = &rate {
        if r.burst == 0 || r.burst > MAX_BURST {
            return Err(format!("{at}burst: must be 1..={MAX_BURST}"));
        }
    }
    let quotas = raw
        .quota
        .iter()
        .enumerate()
        .map(|(j, q)| parse_quota(q).map_err(|e| format!("{at}quota[{j}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    for (j, q) in quotas.iter().enumerate() {
        if quotas[..j].iter().any(|p| p.window == q.window) {
            return Err(format!(
                "{at}quota[{j}]: a second quota for the same window"
            ));
        }
    }
    let only = |what: &str, counts: &str| format!("{at}{what}: only for count = {counts}");
    let limited = rate.is_some() || !quotas.is_empty();
    match raw.count {
        Count::Concurrent => {
            if limited {
                return Err(format!(
                    "{at}count: \"concurrent\" takes max, not rate or quota"
                ));
            }
            if raw.max.is_none_or(|m| m == 0) {
                return Err(format!(
                    "{at}max: required for count = \"concurrent\", at least 1"
                ));
            }
        }
        Count::Connections | Count::Messages if !limited => {
            return Err(format!("{at}rate: a rate or a quota is required"));
        }
        Count::Recipients if !limited && raw.per_message.is_none() => {
            return Err(format!(
                "{at}rate: a rate, a quota or per_message is required"
            ));
        }
        _ => {}
    }
    if raw.max.is_some() && raw.count != Count::Concurrent {
        return Err(only("max", "\"concurrent\""));
    }
    if raw.per_message.is_some() && raw.count != Count::Recipients {
        return Err(only("per_message", "\"recipients\""));
    }
    if raw.per_message == Some(0) {
        return Err(format!("{at}per_message: must be at least 1"));
    }
    // At connect only the client's address is known; recipients only at rcpt.
    if matches!(raw.count, Count::Connections | Count::Concurrent) && key != [KeyPart::Ip] {
        return Err(format!("{at}key: connections are counted by \"ip\" only"));
    }
    if raw.count != Count::Recipients && key.contains(&KeyPart::RecipientDomain) {
        return Err(only("key \"recipient_domain\"", "\"recipients\""));
    }
    let ipv4_prefix = raw.ipv4_prefix.unwrap_or(32);
    let ipv6_prefix = raw.ipv6_prefix.unwrap_or(64);
    if ipv4_prefix > 32 {
        return Err(format!("{at}ipv4_prefix: must be 0..=32"));
    }
    if ipv6_prefix > 128 {
        return Err(format!("{at}ipv6_prefix: must be 0..=128"));
    }
    Ok(Rule {
        exempt: Exempt::parse(&raw.exempt_networks, &raw.exempt_users, at)?,
        name,
        count: raw.count,
        key,
        rate,
        quotas,
        max: raw.max,
        per_message: raw.per_message,
        action: raw.action,
        ipv4_prefix,
        ipv6_prefix,
        on_state_error: raw.on_state_error.unwrap_or(default_on_error),
    })
}

/// `5/min`, `100/1h`, `10/30s`: a count per period (humantime units; a bare unit means one).
fn parse_rate(text: &str, burst: Option<u32>) -> Result<Rate, String> {
    let (count, period) = split_limit(text)?;
    let count: u32 = count
        .parse()
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| format!("{text:?}: the count must be 1..={}", u32::MAX))?;
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        humantime::parse_duration(period)
    } else {
        humantime::parse_duration(&format!("1{period}"))
    }
    .map_err(|e| format!("{text:?}: {e}"))?;
    if period < Duration::from_millis(1) || period > Duration::from_secs(366 * 86_400) {
        return Err(format!("{text:?}: the period must be 1ms..=366d"));
    }
    Ok(Rate {
        count,
        period,
        burst: burst.unwrap_or(count.min(MAX_BURST)),
        text: text.to_string(),
    })
}

/// `500/day`, `100/hour`, `20/minute`.
fn parse_quota(text: &str) -> Result<Quota, String> {
    let (limit, window) = split_limit(text)?;
    let limit: u64 = limit
        .parse()
        .ok()
        .filter(|&l| l > 0)
        .ok_or_else(|| format!("{text:?}: the limit must be a positive integer"))?;
    let (window, tag) = match window {
        "minute" | "min" | "m" => (QuotaWindow::Minute, "qm"),
        "hour" | "h" => (QuotaWindow::Hour, "qh"),
        "day" | "d" => (QuotaWindow::Day, "qd"),
        _ => return Err(format!("{text:?}: the window is minute, hour or day (UTC)")),
    };
    Ok(Quota { limit, window, tag })
}

fn split_limit(text: &str) -> Result<(&str, &str), String> {
    text.split_once('/')
        .map(|(a, b)| (a.trim(), b.trim()))
        .ok_or_else(|| format!("{text:?}: expected COUNT/PERIOD, e.g. \"5/min\""))
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(vec![s.to_string()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Config::parse(json).unwrap_err()
    }

    #[test]
    fn parses_rules_by_stage() {
        let c = Config::parse(
            r#"{"exempt_networks": "10.0.0.0/8", "rules": [
                {"name": "flood", "count": "connections", "key": "ip", "rate": "30/min"},
                {"name": "per-user", "count": "messages", "key": ["user"], "quota": "500/day"},
                {"name": "rcpt", "count": "recipients", "key": ["user", "recipient_domain"],
                 "per_message": 100, "rate": "100/1h", "burst": 20},
                {"name": "open", "count": "concurrent", "key": "ip", "max": 10}
            ]}"#,
        )
        .unwrap();
        assert_eq!(c.connect, [0, 3]);
        assert_eq!(c.messages, [1]);
        assert_eq!(c.recipients, [2]);
        let rate = c.rules[0].rate.as_ref().unwrap();
        assert_eq!(
            (rate.count, rate.period, rate.burst),
            (30, Duration::from_secs(60), 30)
        );
        let rate = c.rules[2].rate.as_ref().unwrap();
        assert_eq!((rate.period, rate.burst), (Duration::from_secs(3600), 20));
        assert_eq!(c.rules[1].quotas[0].limit, 500);
        assert_eq!(c.rules[1].quotas[0].window, QuotaWindow::Day);
        assert_eq!(c.rules[0].ipv6_prefix, 64);
        assert!(c
            .exempt
            .network(&ClientIp::known("10.1.2.3".parse().unwrap())));
        assert_eq!(c.concurrent_expiry, Duration::from_secs(3600));
    }

    #[test]
    fn errors_name_the_key() {
        for (json, want) in [
            (r#"{"rulez": []}"#, "unknown field `rulez`"),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5/min", "x": 1}]}"#,
                "rules[0]: unknown field `x`",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ipp", "rate": "5/min"}]}"#,
                "rules[0].key[0]: unknown key \"ipp\"",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5"}]}"#,
                "rules[0].rate: \"5\": expected COUNT/PERIOD",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "0/min"}]}"#,
                "rules[0].rate: \"0/min\": the count",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5/fortnight"}]}"#,
                "rules[0].rate: \"5/fortnight\"",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "quota": "5/week"}]}"#,
                "rules[0].quota[0]: \"5/week\": the window",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip"}]}"#,
                "rules[0].rate: a rate or a quota is required",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "concurrent", "key": "ip"}]}"#,
                "rules[0].max: required",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "connections", "key": "user", "rate": "5/min"}]}"#,
                "rules[0].key: connections are counted by \"ip\" only",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "recipient_domain", "rate": "5/min"}]}"#,
                "rules[0].key \"recipient_domain\": only for count = \"recipients\"",
            ),
            (
                r#"{"rules": [{"name": "a b", "count": "messages", "key": "ip", "rate": "5/min"}]}"#,
                "rules[0].name:",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5/min", "burst": 0}]}"#,
                "rules[0].burst: must be",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5/min", "ipv6_prefix": 129}]}"#,
                "rules[0].ipv6_prefix",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5/min", "exempt_networks": ["10.0.0.0/33"]}]}"#,
                "rules[0].exempt_networks[0]:",
            ),
            (
                r#"{"rules": [{"name": "a", "count": "messages", "key": "ip", "rate": "5/min"}, {"name": "a", "count": "messages", "key": "ip", "rate": "5/min"}]}"#,
                "rules[1].name: \"a\" is used twice",
            ),
            (
                r#"{"concurrent_expiry": "10s"}"#,
                "concurrent_expiry: must be at least 1m",
            ),
            (r#"{"on_state_error": "maybe"}"#, "unknown variant `maybe`"),
        ] {
            let got = err(json);
            assert!(got.starts_with(want) || got.contains(want), "{json}: {got}");
        }
    }

    #[test]
    fn empty_config_has_no_rules() {
        let c = Config::parse("{}").unwrap();
        assert!(c.rules.is_empty() && c.exempt.networks.is_empty() && c.exempt.users.is_empty());
    }
}
