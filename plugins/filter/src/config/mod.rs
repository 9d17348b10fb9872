//! The plugin's `config` table: read once in `init`, checked, and compiled into [`Rules`]
//! (regexes built, lists turned into sets, replies checked) so hooks only evaluate.
//! Every error names its dotted key (`rules[2].pattern: ...`). [`condition`] compiles each
//! rule's condition.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use self::condition::{condition, header_name_ok};
use crate::matchers::AddressSet;
use crate::rules::{Action, Check, Clients, OnDnsError, Rule, Scope, Template};

mod condition;

/// Default `max_nested_scan`: how much of one nested message is read to find its parts.
const DEFAULT_NESTED_SCAN: u64 = 10 << 20;
/// Default `quarantine_ttl`: how long a release by `queue flush` is remembered.
const DEFAULT_QUARANTINE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Default DNSBL `timeout`: the whole connect check, every zone included.
pub(crate) const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_millis(1_500);

/// The config as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rules: Vec<RawRule>,
    max_nested_scan: Option<Size>,
    quarantine_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    action: Option<ActionName>,
    reply: Option<String>,
    tag: Option<String>,
    senders: Option<Vec<String>>,
    users: Option<Vec<String>>,
    clients: Option<Clients>,
    dnsbl: Option<Vec<String>>,
    dnsbl_answers: Option<Vec<String>>,
    on_dns_error: Option<OnDnsError>,
    timeout: Option<String>,
    sender_in: Option<Vec<String>>,
    sender_list: Option<String>,
    recipient_in: Option<Vec<String>>,
    recipient_list: Option<String>,
    max_size: Option<Size>,
    require_headers: Option<Vec<String>>,
    header: Option<String>,
    pattern: Option<String>,
    attachment_extensions: Option<Vec<String>>,
    attachment_types: Option<Vec<String>>,
    auth: Option<AuthMethod>,
    results: Option<Vec<String>>,
    dmarc_policy: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionName {
    Reject,
    Tempfail,
    Tag,
    Quarantine,
    Accept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthMethod {
    Spf,
    Dkim,
    Dmarc,
}

/// A byte count: an integer, or a string with a unit (`"10MB"`, `"25MiB"`, `"500KB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            Size::Bytes(n) => return Ok(*n),
            Size::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as \"10MB\""))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "kib" => 1 << 10,
            "mb" | "m" => 1_000_000,
            "mib" => 1 << 20,
            "gb" | "g" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (B, KB, KiB, MB, MiB, GB, GiB)"
                ))
            }
        };
        n.checked_mul(scale)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// Everything `init` prepared.
#[derive(Debug)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub max_nested_scan: u64,
    pub quarantine_ttl: Duration,
}

impl Rules {
    pub fn parse(json: &str) -> Result<Rules, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })?;
        let max_nested_scan = match &raw.max_nested_scan {
            Some(size) => size.bytes().map_err(|e| format!("max_nested_scan: {e}"))?,
            None => DEFAULT_NESTED_SCAN,
        };
        let quarantine_ttl = match &raw.quarantine_ttl {
            Some(text) => duration(text).map_err(|e| format!("quarantine_ttl: {e}"))?,
            None => DEFAULT_QUARANTINE_TTL,
        };
        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut names = HashSet::new();
        for (i, rule) in raw.rules.into_iter().enumerate() {
            let rule = compile(i, rule)?;
            if !names.insert(rule.name.clone()) {
                return Err(format!("rules[{i}].name: {:?} is used twice", rule.name));
            }
            rules.push(rule);
        }
        Ok(Rules {
            rules,
            max_nested_scan,
            quarantine_ttl,
        })
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    Ok(d)
}

/// One rule, checked; `i` is its index for error keys.
fn compile(i: usize, r: RawRule) -> Result<Rule, String> {
    let key = |k: &str| format!("rules[{i}].{k}");
    let check = condition(i, &r)?;
    let kind = check.kind();
    let name = r.name.clone().unwrap_or_else(|| format!("{kind}-{i}"));
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        return Err(format!("{}: 1 to 64 printable characters", key("name")));
    }
    let connect = matches!(check, Check::Dnsbl(_));
    if connect && (r.senders.is_some() || r.users.is_some()) {
        return Err(format!(
            "{}: a dnsbl rule runs at connect, before any sender or user is known",
            key(if r.senders.is_some() {
                "senders"
            } else {
                "users"
            })
        ));
    }
    let scope = Scope {
        senders: r
            .senders
            .as_deref()
            .map(|s| AddressSet::parse(s).map_err(|e| format!("{}: {e}", key("senders"))))
            .transpose()?,
        users: r
            .users
            .as_ref()
            .map(|u| u.iter().map(|u| u.trim().to_ascii_lowercase()).collect()),
        clients: r.clients.unwrap_or(match check {
            Check::Dnsbl(_) | Check::Auth(_) => Clients::Outside,
            _ => Clients::All,
        }),
    };
    let action = action(i, &r, &name)?;
    Ok(Rule {
        name,
        action,
        scope,
        check,
    })
}

/// The rule's action, with its reply, tag or quarantine reason.
fn action(i: usize, r: &RawRule, name: &str) -> Result<Action, String> {
    let key = |k: &str| format!("rules[{i}].{k}");
    let which = r.action.unwrap_or(ActionName::Reject);
    if r.reply.is_some() && !matches!(which, ActionName::Reject | ActionName::Tempfail) {
        return Err(format!(
            "{}: only for action reject or tempfail",
            key("reply")
        ));
    }
    if r.tag.is_some() && which != ActionName::Tag {
        return Err(format!("{}: only for action tag", key("tag")));
    }
    Ok(match which {
        ActionName::Accept => Action::Accept,
        ActionName::Quarantine => Action::Quarantine,
        ActionName::Tag => {
            let text = r
                .tag
                .clone()
                .unwrap_or_else(|| format!("X-Wasmrelay-Filter: {name}"));
            let (field, value) = text
                .split_once(':')
                .ok_or_else(|| format!("{}: \"Name: value\"", key("tag")))?;
            if !header_name_ok(field) || value.contains(['\r', '\n']) {
                return Err(format!("{}: \"Name: value\" on one line", key("tag")));
            }
            Action::Tag(field.to_string(), Template::new(value.trim()))
        }
        ActionName::Reject | ActionName::Tempfail => {
            let class = if which == ActionName::Reject { 5 } else { 4 };
            let reply = match &r.reply {
                Some(text) => {
                    Some(reply(text, class).map_err(|e| format!("{}: {e}", key("reply")))?)
                }
                None => None,
            };
            if class == 5 {
                Action::Reject(reply)
            } else {
                Action::Tempfail(reply)
            }
        }
    })
}

/// `"550 5.7.1 text"` (the enhanced code optional) for a reply of class `class`.
fn reply(text: &str, class: u16) -> Result<(u16, Option<String>, Template), String> {
    let text = text.trim();
    let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (200..600).contains(c))
        .ok_or_else(|| format!("{text:?} does not start with a reply code such as 550"))?;
    if code / 100 != class {
        return Err(format!("the code must be {class}xx for this action"));
    }
    let (enhanced, rest) = match rest.split_once(' ').unwrap_or((rest, "")) {
        (e, r) if wasmrelay_plugin_sdk::EnhancedCode::parse(e).is_some() => {
            if !e.starts_with(&class.to_string()) {
                return Err(format!("the enhanced code must start with {class}."));
            }
            (Some(e.to_string()), r)
        }
        _ => (None, rest),
    };
    if rest.len() > 400 || rest.contains(['\r', '\n']) {
        return Err("the text must be one line of at most 400 bytes".into());
    }
    Ok((code, enhanced, Template::new(rest.trim())))
}
#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Rules::parse(json).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err(r#"{"rules":[{"dnsbl":["bl.test"],"bogus":1}]}"#)
            .starts_with("rules[0].bogus: unknown field"));
        assert!(err(r#"{"rules":[{"max_size":"10XB"}]}"#)
            .starts_with("rules[0].max_size: unknown size unit"));
        assert!(err(r#"{"rules":[{"header":"Subject","pattern":"("}]}"#)
            .starts_with("rules[0].pattern: "));
        assert!(err(
            r#"{"rules":[{"require_headers":["Date"],"action":"reject","reply":"451 4.7.1 no"}]}"#
        )
        .starts_with("rules[0].reply: the code must be 5xx"));
        assert!(
            err(r#"{"rules":[{"dnsbl":["bl.test"],"senders":["a@b"]}]}"#)
                .starts_with("rules[0].senders: ")
        );
        assert!(err(r#"{"rules":[{"dnsbl":["bl.test"],"max_size":1}]}"#)
            .contains("one condition per rule"));
        assert!(err(r#"{"rules":[{"action":"tag"}]}"#).starts_with("rules[0]: no condition"));
        assert!(
            err(r#"{"rules":[{"auth":"spf","dmarc_policy":["reject"]}]}"#)
                .starts_with("rules[0].dmarc_policy")
        );
        assert!(err(r#"{"quarantine_ttl":"soon"}"#).starts_with("quarantine_ttl: "));
        assert!(
            err(r#"{"rules":[{"action":"tag","tag":"Bad Name: x","max_size":1}]}"#)
                .starts_with("rules[0].tag")
        );
    }

    #[test]
    fn regexes_are_bounded() {
        let huge = r#"{"rules":[{"header":"Subject","pattern":"\\w{1000}\\w{1000}"}]}"#;
        assert!(err(huge).starts_with("rules[0].pattern: "), "{}", err(huge));
    }

    #[test]
    fn sizes_and_defaults() {
        let rules =
            Rules::parse(r#"{"rules":[{"max_size":"25MiB"},{"max_size":1000,"users":["Alice"]}]}"#)
                .unwrap();
        assert!(matches!(rules.rules[0].check, Check::MaxSize(26_214_400)));
        assert_eq!(rules.rules[1].name, "max_size-1");
        assert!(rules.rules[1]
            .scope
            .users
            .as_ref()
            .unwrap()
            .contains("alice"));
        assert_eq!(rules.max_nested_scan, DEFAULT_NESTED_SCAN);
        assert!(Rules::parse("{}").unwrap().rules.is_empty());
    }
}
