//! Route rules: conditions on the envelope and the annotations set at `data`, and the action
//! of the first rule that matches. The same rules answer two questions: at `route`, where a
//! destination's recipients go; at `rcpt`, whether any rule could serve a recipient at all
//! (annotations are not known yet there, so a rule that needs one "may" match).

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmrelay_plugin_sdk::{RouteDecision, TlsPolicy};

use crate::matcher::{valid_token, Domains, Names};

/// One `routes` entry as written in config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    pub recipient_domains: Vec<String>,
    pub sender_domains: Vec<String>,
    pub auth_users: Vec<String>,
    pub listeners: Vec<String>,
    pub streams: Vec<String>,
    pub annotations: BTreeMap<String, String>,
    pub pool: Option<String>,
    pub mx: Option<MxTls>,
    pub hold: Option<String>,
    pub drop: Option<String>,
    pub relay: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MxTls {
    None,
    Opportunistic,
    Require,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Pool(String),
    Mx(TlsPolicy),
    Hold(String),
    Drop(String),
    /// The relay's own `[[delivery.routes]]` (or MX) decide: the hook answers `continue`.
    Relay,
}

impl Action {
    pub fn decision(&self) -> RouteDecision {
        match self {
            Action::Pool(name) => RouteDecision::Pool(name.clone()),
            Action::Mx(tls) => RouteDecision::Mx(*tls),
            Action::Hold(reason) => RouteDecision::Hold(reason.clone()),
            Action::Drop(reason) => RouteDecision::Drop(reason.clone()),
            Action::Relay => RouteDecision::Continue,
        }
    }
}

/// Longest hold or drop reason: it is shown in `queue show` and the event log.
const MAX_REASON: usize = 256;

/// A compiled rule: absent conditions are `None` and always hold.
#[derive(Debug)]
pub struct Rule {
    recipient_domains: Option<Domains>,
    sender_domains: Option<Domains>,
    auth_users: Option<Names>,
    listeners: Option<Names>,
    streams: Option<Names>,
    /// (name, value); a value of `*` asks only that the annotation is set.
    annotations: Vec<(String, String)>,
    pub action: Action,
}

/// Whether a rule applies, when some facts may not be known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    No,
    Maybe,
    Yes,
}

/// What rules are matched against. Implementations fetch lazily: a fact no rule asks about
/// costs no host call. `None` from `annotation` means not known at this stage.
pub trait Facts {
    /// The sender's domain, lower-case; `None` for the null sender.
    fn sender_domain(&mut self) -> Option<&str>;
    fn auth_user(&mut self) -> Option<&str>;
    fn listener(&mut self) -> Option<&str>;
    /// `Some(None)`: known to be absent; `None`: not known at this stage.
    fn annotation(&mut self, name: &str) -> Option<Option<&str>>;
}

fn list<T>(
    items: &[String],
    key: String,
    parse: impl FnOnce(&[String], &str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if items.is_empty() {
        return Ok(None);
    }
    parse(items, &key).map(Some)
}

fn reason(text: &str, key: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_REASON || text.chars().any(char::is_control) {
        return Err(format!(
            "{key}: must be one line of 1 to {MAX_REASON} bytes"
        ));
    }
    Ok(text.to_string())
}

impl Rule {
    /// `key` is the rule's dotted key (`routes[2]`); `stream` the stream annotation's name.
    pub fn compile(c: &RuleConfig, key: &str, stream: &str) -> Result<Rule, String> {
        let mut actions = Vec::new();
        if let Some(pool) = &c.pool {
            if !valid_token(pool) {
                return Err(format!(
                    "{key}.pool: must be a [[delivery.pools]] name (1 to 64 of a-z 0-9 - _ .)"
                ));
            }
            actions.push(Action::Pool(pool.clone()));
        }
        if let Some(tls) = c.mx {
            actions.push(Action::Mx(match tls {
                MxTls::None => TlsPolicy::None,
                MxTls::Opportunistic => TlsPolicy::Opportunistic,
                MxTls::Require => TlsPolicy::Require,
            }));
        }
        if let Some(text) = &c.hold {
            actions.push(Action::Hold(reason(text, &format!("{key}.hold"))?));
        }
        if let Some(text) = &c.drop {
            actions.push(Action::Drop(reason(text, &format!("{key}.drop"))?));
        }
        match c.relay {
            Some(true) => actions.push(Action::Relay),
            Some(false) => return Err(format!("{key}.relay: only `relay = true` is meaningful")),
            None => {}
        }
        let action = match <[Action; 1]>::try_from(actions) {
            Ok([action]) => action,
            Err(_) => {
                return Err(format!(
                    "{key}: needs exactly one of pool, mx, hold, drop, relay"
                ))
            }
        };
        let mut annotations = Vec::new();
        for (name, value) in &c.annotations {
            if !valid_token(name) {
                return Err(format!(
                    "{key}.annotations.{name}: not an annotation name (1 to 64 of a-z 0-9 - _ .)"
                ));
            }
            annotations.push((name.clone(), value.clone()));
        }
        if !c.streams.is_empty() && c.annotations.contains_key(stream) {
            return Err(format!(
                "{key}: streams and annotations.{stream} test the same annotation; keep one"
            ));
        }
        Ok(Rule {
            recipient_domains: list(
                &c.recipient_domains,
                format!("{key}.recipient_domains"),
                Domains::parse,
            )?,
            sender_domains: list(
                &c.sender_domains,
                format!("{key}.sender_domains"),
                Domains::parse,
            )?,
            auth_users: list(&c.auth_users, format!("{key}.auth_users"), |n, k| {
                Names::parse(n, k, false)
            })?,
            listeners: list(&c.listeners, format!("{key}.listeners"), |n, k| {
                Names::parse(n, k, false)
            })?,
            streams: list(&c.streams, format!("{key}.streams"), |n, k| {
                Names::parse(n, k, true)
            })?,
            annotations,
            action,
        })
    }

    /// A rule with no condition matches everything: rules after it are never reached.
    pub fn is_catch_all(&self) -> bool {
        self.recipient_domains.is_none()
            && self.sender_domains.is_none()
            && self.auth_users.is_none()
            && self.listeners.is_none()
            && self.streams.is_none()
            && self.annotations.is_empty()
    }

    /// Whether the rule applies to mail for `domain` (lower-case) given `facts`; the stream
    /// annotation is `stream`. Conditions are checked cheapest first.
    pub fn matches(&self, domain: &str, stream: &str, facts: &mut dyn Facts) -> Match {
        if let Some(d) = &self.recipient_domains {
            if !d.matches(domain) {
                return Match::No;
            }
        }
        if let Some(d) = &self.sender_domains {
            if !facts.sender_domain().is_some_and(|s| d.matches(s)) {
                return Match::No;
            }
        }
        if let Some(users) = &self.auth_users {
            if !facts.auth_user().is_some_and(|u| users.matches(u)) {
                return Match::No;
            }
        }
        if let Some(names) = &self.listeners {
            if !facts.listener().is_some_and(|l| names.matches(l)) {
                return Match::No;
            }
        }
        let mut unknown = false;
        if let Some(streams) = &self.streams {
            match facts.annotation(stream) {
                None => unknown = true,
                Some(value) => {
                    if !value.is_some_and(|v| streams.matches(&v.to_ascii_lowercase())) {
                        return Match::No;
                    }
                }
            }
        }
        for (name, want) in &self.annotations {
            match facts.annotation(name) {
                None => unknown = true,
                Some(Some(v)) if want == "*" || v == want => {}
                Some(_) => return Match::No,
            }
        }
        if unknown {
            Match::Maybe
        } else {
            Match::Yes
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Facts from literals; `annotations: None` plays the `rcpt` stage.
    #[derive(Default)]
    pub struct Known {
        pub sender: Option<&'static str>,
        pub user: Option<&'static str>,
        pub listener: Option<&'static str>,
        pub annotations: Option<Vec<(&'static str, &'static str)>>,
    }

    impl Facts for Known {
        fn sender_domain(&mut self) -> Option<&str> {
            self.sender
        }
        fn auth_user(&mut self) -> Option<&str> {
            self.user
        }
        fn listener(&mut self) -> Option<&str> {
            self.listener
        }
        fn annotation(&mut self, name: &str) -> Option<Option<&str>> {
            let all = self.annotations.as_ref()?;
            Some(all.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
        }
    }

    pub fn rule(toml_like: serde_json::Value) -> Result<Rule, String> {
        let c: RuleConfig = serde_json::from_value(toml_like).map_err(|e| e.to_string())?;
        Rule::compile(&c, "routes[0]", "stream")
    }

    #[test]
    fn every_condition_must_hold() {
        let r = rule(serde_json::json!({
            "recipient_domains": ["*.example.net"],
            "sender_domains": ["notify.example.com"],
            "auth_users": ["app"],
            "listeners": ["submission"],
            "streams": ["Transactional"],
            "pool": "transactional",
        }))
        .unwrap();
        let mut facts = Known {
            sender: Some("notify.example.com"),
            user: Some("app"),
            listener: Some("submission"),
            annotations: Some(vec![("stream", "TRANSACTIONAL")]),
        };
        assert_eq!(
            r.matches("mx.example.net", "stream", &mut facts),
            Match::Yes
        );
        assert_eq!(r.matches("example.net", "stream", &mut facts), Match::No);
        facts.annotations = None;
        assert_eq!(
            r.matches("a.example.net", "stream", &mut facts),
            Match::Maybe
        );
        facts.annotations = Some(vec![]);
        assert_eq!(r.matches("a.example.net", "stream", &mut facts), Match::No);
        facts.annotations = Some(vec![("stream", "transactional")]);
        facts.user = None;
        assert_eq!(r.matches("a.example.net", "stream", &mut facts), Match::No);
        assert_eq!(r.action, Action::Pool("transactional".into()));
        assert!(!r.is_catch_all());
    }

    #[test]
    fn null_sender_matches_no_sender_domain() {
        let r = rule(serde_json::json!({"sender_domains": ["*"], "relay": true})).unwrap();
        let mut facts = Known::default();
        assert_eq!(r.matches("x.test", "stream", &mut facts), Match::No);
        facts.sender = Some("a.test");
        assert_eq!(r.matches("x.test", "stream", &mut facts), Match::Yes);
    }

    #[test]
    fn annotations_by_value_or_presence() {
        let r = rule(serde_json::json!({
            "annotations": {"spam": "*", "tier": "gold"}, "hold": "review"
        }))
        .unwrap();
        let mut facts = Known {
            annotations: Some(vec![("spam", "yes"), ("tier", "gold")]),
            ..Known::default()
        };
        assert_eq!(r.matches("x.test", "stream", &mut facts), Match::Yes);
        facts.annotations = Some(vec![("tier", "gold")]);
        assert_eq!(r.matches("x.test", "stream", &mut facts), Match::No);
        assert_eq!(r.action, Action::Hold("review".into()));
    }

    #[test]
    fn exactly_one_action() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"pool": "a", "mx": "require"}),
            serde_json::json!({"relay": false}),
        ] {
            let err = rule(bad).unwrap_err();
            assert!(err.starts_with("routes[0]"), "{err}");
        }
        assert_eq!(
            rule(serde_json::json!({"mx": "require"})).unwrap().action,
            Action::Mx(TlsPolicy::Require)
        );
        assert!(rule(serde_json::json!({"relay": true}))
            .unwrap()
            .is_catch_all());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (bad, key) in [
            (serde_json::json!({"pool": "Bad Pool"}), "routes[0].pool"),
            (serde_json::json!({"hold": ""}), "routes[0].hold"),
            (serde_json::json!({"drop": "a\r\nb"}), "routes[0].drop"),
            (
                serde_json::json!({"annotations": {"X": "y"}, "relay": true}),
                "routes[0].annotations.X",
            ),
            (
                serde_json::json!({"streams": ["a"], "annotations": {"stream": "b"}, "relay": true}),
                "routes[0]: streams",
            ),
            (
                serde_json::json!({"recipient_domains": ["a b"], "relay": true}),
                "routes[0].recipient_domains[0]",
            ),
        ] {
            let err = rule(bad).unwrap_err();
            assert!(err.starts_with(key), "{err}");
        }
        let err = rule(serde_json::json!({"poool": "x"})).unwrap_err();
        assert!(err.contains("unknown field `poool`"), "{err}");
    }
}
