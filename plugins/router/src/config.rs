//! The plugin's `config` table (plugins/README.md#router documents every key), parsed and
//! compiled once per instance in `init`: hooks only look things up.

use serde::Deserialize;
use serde_json::Value;

use crate::matcher::{valid_token, Domains};
use crate::rules::{Rule, RuleConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    stream_annotation: String,
    classify: Vec<Value>,
    classify_untrusted: bool,
    remove_headers: Vec<String>,
    routes: Vec<Value>,
    unmatched: Unmatched,
    suppression: Option<Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stream_annotation: "stream".into(),
            classify: Vec::new(),
            classify_untrusted: false,
            remove_headers: Vec::new(),
            routes: Vec::new(),
            unmatched: Unmatched::Relay,
            suppression: None,
        }
    }
}

/// What happens to mail no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// `continue`: the relay's `[[delivery.routes]]`, else MX.
    Relay,
    /// Refused at RCPT when no rule can match; held at delivery if, once the annotations
    /// are known, none does.
    Refuse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyConfig {
    header: String,
    #[serde(default)]
    equals: Vec<String>,
    #[serde(default)]
    stream: Option<String>,
}

/// One header rule for the stream annotation.
#[derive(Debug)]
pub struct Classifier {
    pub header: String,
    /// Lower-case values that match; empty matches any value.
    pub equals: Vec<String>,
    /// The stream to set; `None` sets the header's own value (when it is a valid name).
    pub stream: Option<String>,
}

impl Classifier {
    /// The stream for a message whose `header` fields have `values`, if this rule applies.
    pub fn stream_for(&self, values: &[String]) -> Option<String> {
        for value in values {
            let value = value.trim().to_ascii_lowercase();
            if value.is_empty() || !(self.equals.is_empty() || self.equals.contains(&value)) {
                continue;
            }
            match &self.stream {
                Some(stream) => return Some(stream.clone()),
                None if valid_token(&value) => return Some(value),
                None => {}
            }
        }
        None
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressionConfig {
    list: String,
    #[serde(default)]
    on_error: FailMode,
    #[serde(default)]
    exempt_sender_domains: Vec<String>,
}

/// What a suppression check does when the list cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Accept the recipient (and log a warning).
    #[default]
    Open,
    /// `451 4.3.0`: the client retries later.
    Closed,
}

#[derive(Debug)]
pub struct Suppression {
    pub list: String,
    pub on_error: FailMode,
    pub exempt: Option<Domains>,
}

/// The compiled configuration.
#[derive(Debug)]
pub struct Policy {
    pub stream_annotation: String,
    pub classify: Vec<Classifier>,
    pub classify_untrusted: bool,
    pub remove_headers: Vec<String>,
    pub routes: Vec<Rule>,
    pub unmatched: Unmatched,
    pub suppression: Option<Suppression>,
    /// `unmatched = "refuse"` without a catch-all rule.
    refuse_unmatched: bool,
}

fn header_name(name: &str, key: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !ok {
        return Err(format!("{key}: {name:?} is not a header field name"));
    }
    Ok(name.to_string())
}

fn section<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<T, String> {
    T::deserialize(v).map_err(|e| format!("{key}: {e}"))
}

impl Policy {
    pub fn parse(json: &str) -> Result<Policy, String> {
        let c: Config = serde_json::from_str(json).map_err(|e| format!("router config: {e}"))?;
        let stream = c.stream_annotation;
        if !valid_token(&stream) {
            return Err(format!(
                "stream_annotation: {stream:?} is not an annotation name (1 to 64 of a-z 0-9 - _ .)"
            ));
        }
        let mut classify = Vec::new();
        for (i, v) in c.classify.iter().enumerate() {
            let key = format!("classify[{i}]");
            let cc: ClassifyConfig = section(v, &key)?;
            if let Some(s) = &cc.stream {
                if !valid_token(s) {
                    return Err(format!(
                        "{key}.stream: {s:?} is not a stream name (1 to 64 of a-z 0-9 - _ .)"
                    ));
                }
            }
            classify.push(Classifier {
                header: header_name(&cc.header, &format!("{key}.header"))?,
                equals: cc
                    .equals
                    .iter()
                    .map(|e| e.trim().to_ascii_lowercase())
                    .collect(),
                stream: cc.stream,
            });
        }
        let remove_headers = c
            .remove_headers
            .iter()
            .enumerate()
            .map(|(i, h)| header_name(h, &format!("remove_headers[{i}]")))
            .collect::<Result<_, _>>()?;
        let mut routes = Vec::new();
        for (i, v) in c.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let rc: RuleConfig = section(v, &key)?;
            routes.push(Rule::compile(&rc, &key, &stream)?);
        }
        if let Some(i) = routes.iter().position(Rule::is_catch_all) {
            if i + 1 < routes.len() {
                return Err(format!(
                    "routes[{i}]: has no condition, so routes[{}] and later are never reached",
                    i + 1
                ));
            }
        }
        let suppression = match &c.suppression {
            None => None,
            Some(v) => {
                let s: SuppressionConfig = section(v, "suppression")?;
                if !valid_token(&s.list) {
                    return Err(format!(
                        "suppression.list: {:?} is not a [[lists]] name",
                        s.list
                    ));
                }
                let exempt = match s.exempt_sender_domains.is_empty() {
                    true => None,
                    false => Some(Domains::parse(
                        &s.exempt_sender_domains,
                        "suppression.exempt_sender_domains",
                    )?),
                };
                Some(Suppression {
                    list: s.list,
                    on_error: s.on_error,
                    exempt,
                })
            }
        };
        let refuse_unmatched =
            c.unmatched == Unmatched::Refuse && !routes.iter().any(Rule::is_catch_all);
        Ok(Policy {
            refuse_unmatched,
            stream_annotation: stream,
            classify,
            classify_untrusted: c.classify_untrusted,
            remove_headers,
            routes,
            unmatched: c.unmatched,
            suppression,
        })
    }

    /// Whether `rcpt` has anything to check: refusal of unroutable recipients or suppression.
    pub fn checks_rcpt(&self) -> bool {
        self.refuses_unmatched() || self.suppression.is_some()
    }

    /// Whether a recipient no rule can match is refused (never with a catch-all rule).
    pub fn refuses_unmatched(&self) -> bool {
        self.refuse_unmatched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Policy::parse(json).unwrap_err()
    }

    #[test]
    fn empty_config_does_nothing() {
        let p = Policy::parse("{}").unwrap();
        assert!(p.routes.is_empty() && p.classify.is_empty());
        assert!(!p.checks_rcpt());
        assert_eq!(p.stream_annotation, "stream");
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err(r#"{"rules": []}"#).contains("unknown field `rules`"));
        assert!(err(r#"{"stream_annotation": "X-Stream"}"#).starts_with("stream_annotation:"));
        assert!(
            err(r#"{"classify": [{"header": "X-Stream", "value": "a"}]}"#)
                .starts_with("classify[0]: unknown field `value`")
        );
        assert!(err(r#"{"classify": [{"header": "Bad: name"}]}"#).starts_with("classify[0].header"));
        assert!(err(r#"{"classify": [{"header": "P", "stream": "Bulk"}]}"#)
            .starts_with("classify[0].stream"));
        assert!(err(r#"{"remove_headers": [""]}"#).starts_with("remove_headers[0]"));
        assert!(err(r#"{"routes": [{"relay": true}, {"mx": "none"}]}"#)
            .starts_with("routes[0]: has no condition"));
        assert!(
            err(r#"{"routes": [{"mx": "sometimes"}]}"#).starts_with("routes[0]: unknown variant")
        );
        assert!(err(r#"{"unmatched": "bounce"}"#).contains("unknown variant `bounce`"));
        assert!(err(r#"{"suppression": {"list": "s", "on_error": "ajar"}}"#)
            .starts_with("suppression: unknown variant `ajar`"));
        assert!(err(r#"{"suppression": {}}"#).starts_with("suppression: missing field `list`"));
        assert!(
            err(r#"{"suppression": {"list": "s", "exempt_sender_domains": ["a b"]}}"#)
                .starts_with("suppression.exempt_sender_domains[0]")
        );
    }

    #[test]
    fn refusal_needs_no_catch_all() {
        let p = Policy::parse(r#"{"unmatched": "refuse", "routes": [{"mx": "none"}]}"#).unwrap();
        assert!(!p.refuses_unmatched());
        let p = Policy::parse(
            r#"{"unmatched": "refuse", "routes": [{"streams": ["a"], "mx": "none"}]}"#,
        )
        .unwrap();
        assert!(p.refuses_unmatched() && p.checks_rcpt());
    }

    #[test]
    fn classifiers() {
        let p = Policy::parse(
            r#"{"classify": [
                {"header": "X-Stream"},
                {"header": "Precedence", "equals": ["Bulk", "list"], "stream": "newsletter"}
            ]}"#,
        )
        .unwrap();
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (copy, bulk) = (&p.classify[0], &p.classify[1]);
        assert_eq!(
            copy.stream_for(&v(&[" Newsletter "])),
            Some("newsletter".into())
        );
        assert_eq!(copy.stream_for(&v(&["no spaces allowed"])), None);
        assert_eq!(copy.stream_for(&v(&[""])), None);
        assert_eq!(
            copy.stream_for(&v(&["bad/", "second"])),
            Some("second".into())
        );
        assert_eq!(bulk.stream_for(&v(&["BULK"])), Some("newsletter".into()));
        assert_eq!(bulk.stream_for(&v(&["junk"])), None);
        assert_eq!(bulk.stream_for(&[]), None);
    }
}
