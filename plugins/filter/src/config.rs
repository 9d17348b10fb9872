//! The plugin's `config` table: read once in `init`, checked, and compiled into [`Rules`]
//! (regexes built, lists turned into sets, replies checked) so hooks only evaluate.
//! Every error names its dotted key (`rules[2].pattern: ...`).

use std::collections::HashSet;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::matchers::{AddressSet, Membership};
use crate::rules::{Action, AuthCheck, Check, Clients, Dnsbl, OnDnsError, Rule, Scope, Template};

/// Longest regex source accepted, and the compiled-size caps: a config cannot make the
/// plugin build a program that fills its memory.
const MAX_PATTERN: usize = 1_000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_LIMIT: usize = 1 << 20;
/// Default `max_nested_scan`: how much of one nested message is read to find its parts.
const DEFAULT_NESTED_SCAN: u64 = 10 << 20;
/// Default `quarantine_ttl`: how long a release by `queue flush` is remembered.
const DEFAULT_QUARANTINE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Default DNSBL `timeout`: the whole connect check, every zone included.
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_millis(1_500);

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

/// The rule's one condition.
fn condition(i: usize, r: &RawRule) -> Result<Check, String> {
    let key = |k: &str| format!("rules[{i}].{k}");
    let mut found: Vec<&str> = Vec::new();
    for (present, name) in [
        (r.dnsbl.is_some(), "dnsbl"),
        (
            r.sender_in.is_some() || r.sender_list.is_some(),
            "sender_in/sender_list",
        ),
        (
            r.recipient_in.is_some() || r.recipient_list.is_some(),
            "recipient_in/recipient_list",
        ),
        (r.max_size.is_some(), "max_size"),
        (r.require_headers.is_some(), "require_headers"),
        (r.header.is_some() || r.pattern.is_some(), "header/pattern"),
        (
            r.attachment_extensions.is_some() || r.attachment_types.is_some(),
            "attachment_extensions/attachment_types",
        ),
        (r.auth.is_some(), "auth"),
    ] {
        if present {
            found.push(name);
        }
    }
    match found.as_slice() {
        [_] => {}
        [] => {
            return Err(format!(
                "rules[{i}]: no condition (one of dnsbl, sender_in, sender_list, recipient_in, \
                 recipient_list, max_size, require_headers, header, attachment_extensions, \
                 attachment_types, auth)"
            ))
        }
        many => {
            return Err(format!(
                "rules[{i}]: one condition per rule, found {}",
                many.join(", ")
            ))
        }
    }
    let only_with = |k: &str, present: bool, owner: &str, has_owner: bool| {
        if present && !has_owner {
            Err(format!("{}: only with {owner}", key(k)))
        } else {
            Ok(())
        }
    };
    only_with(
        "dnsbl_answers",
        r.dnsbl_answers.is_some(),
        "dnsbl",
        r.dnsbl.is_some(),
    )?;
    only_with(
        "on_dns_error",
        r.on_dns_error.is_some(),
        "dnsbl",
        r.dnsbl.is_some(),
    )?;
    only_with("timeout", r.timeout.is_some(), "dnsbl", r.dnsbl.is_some())?;
    only_with("results", r.results.is_some(), "auth", r.auth.is_some())?;
    only_with(
        "dmarc_policy",
        r.dmarc_policy.is_some(),
        "auth = \"dmarc\"",
        r.auth == Some(AuthMethod::Dmarc),
    )?;

    if let Some(zones) = &r.dnsbl {
        return dnsbl(i, r, zones).map(Check::Dnsbl);
    }
    if r.sender_in.is_some() || r.sender_list.is_some() {
        return membership(i, "sender_in", &r.sender_in, "sender_list", &r.sender_list)
            .map(Check::Sender);
    }
    if r.recipient_in.is_some() || r.recipient_list.is_some() {
        return membership(
            i,
            "recipient_in",
            &r.recipient_in,
            "recipient_list",
            &r.recipient_list,
        )
        .map(Check::Recipient);
    }
    if let Some(size) = &r.max_size {
        let max = size
            .bytes()
            .map_err(|e| format!("{}: {e}", key("max_size")))?;
        return Ok(Check::MaxSize(max));
    }
    if let Some(names) = &r.require_headers {
        if names.is_empty() || names.iter().any(|n| !header_name_ok(n)) {
            return Err(format!(
                "{}: a list of header names",
                key("require_headers")
            ));
        }
        return Ok(Check::RequireHeaders(names.clone()));
    }
    if r.header.is_some() || r.pattern.is_some() {
        let (Some(name), Some(pattern)) = (&r.header, &r.pattern) else {
            let missing = if r.header.is_none() {
                "header"
            } else {
                "pattern"
            };
            return Err(format!(
                "{}: required with {}",
                key(missing),
                if missing == "header" {
                    "pattern"
                } else {
                    "header"
                }
            ));
        };
        if !header_name_ok(name) {
            return Err(format!("{}: not a header name", key("header")));
        }
        return Ok(Check::Header {
            name: name.clone(),
            regex: regex(pattern).map_err(|e| format!("{}: {e}", key("pattern")))?,
        });
    }
    if r.attachment_extensions.is_some() || r.attachment_types.is_some() {
        return attachments(i, r).map(Check::Attachments);
    }
    let method = r.auth.expect("one condition is present");
    auth(i, r, method).map(Check::Auth)
}

fn dnsbl(i: usize, r: &RawRule, zones: &[String]) -> Result<Dnsbl, String> {
    let key = |k: &str| format!("rules[{i}].{k}");
    let mut names = Vec::new();
    for zone in zones {
        let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !zone.is_empty()
            && zone.len() <= 180
            && zone.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("{}: {zone:?} is not a DNS zone", key("dnsbl")));
        }
        names.push(zone);
    }
    if names.is_empty() {
        return Err(format!("{}: at least one zone", key("dnsbl")));
    }
    let answers = match &r.dnsbl_answers {
        Some(list) => Some(
            list.iter()
                .map(|a| a.trim().parse::<std::net::Ipv4Addr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    format!(
                        "{}: IPv4 addresses such as \"127.0.0.2\"",
                        key("dnsbl_answers")
                    )
                })?,
        ),
        None => None,
    };
    let timeout = match &r.timeout {
        Some(t) => duration(t).map_err(|e| format!("{}: {e}", key("timeout")))?,
        None => DEFAULT_DNS_TIMEOUT,
    };
    Ok(Dnsbl {
        zones: names,
        answers,
        on_error: r.on_dns_error.unwrap_or(OnDnsError::Continue),
        timeout,
    })
}

fn membership(
    i: usize,
    in_key: &str,
    members: &Option<Vec<String>>,
    list_key: &str,
    list: &Option<String>,
) -> Result<Membership, String> {
    let set = members
        .as_deref()
        .map(|m| AddressSet::parse(m).map_err(|e| format!("rules[{i}].{in_key}: {e}")))
        .transpose()?;
    if let Some(name) = list {
        if name.is_empty() || name.len() > 64 {
            return Err(format!("rules[{i}].{list_key}: a list name from [[lists]]"));
        }
    }
    Ok(Membership {
        set,
        list: list.clone(),
    })
}

fn attachments(i: usize, r: &RawRule) -> Result<crate::mime::Blocked, String> {
    let mut extensions = HashSet::new();
    for ext in r.attachment_extensions.iter().flatten() {
        let ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
        if ext.is_empty() || ext.contains(['/', '\\', ' ']) {
            return Err(format!(
                "rules[{i}].attachment_extensions: {ext:?} is not an extension"
            ));
        }
        extensions.insert(ext);
    }
    let mut types = Vec::new();
    for t in r.attachment_types.iter().flatten() {
        let t = t.trim().to_ascii_lowercase();
        let ok = t
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a != "*");
        if !ok {
            return Err(format!(
                "rules[{i}].attachment_types: {t:?} is not type/subtype or type/*"
            ));
        }
        types.push(t);
    }
    Ok(crate::mime::Blocked { extensions, types })
}

fn auth(i: usize, r: &RawRule, method: AuthMethod) -> Result<AuthCheck, String> {
    let lower = |v: &Vec<String>| -> Vec<String> {
        v.iter().map(|s| s.trim().to_ascii_lowercase()).collect()
    };
    let results = r
        .results
        .as_ref()
        .map(lower)
        .unwrap_or_else(|| vec!["fail".into()]);
    const KNOWN: &[&str] = &[
        "pass",
        "fail",
        "softfail",
        "neutral",
        "none",
        "temperror",
        "permerror",
    ];
    if let Some(bad) = results.iter().find(|r| !KNOWN.contains(&r.as_str())) {
        return Err(format!(
            "rules[{i}].results: unknown result {bad:?} ({})",
            KNOWN.join(", ")
        ));
    }
    let policies = r.dmarc_policy.as_ref().map(lower);
    if let Some(bad) = policies
        .iter()
        .flatten()
        .find(|p| !["none", "quarantine", "reject"].contains(&p.as_str()))
    {
        return Err(format!(
            "rules[{i}].dmarc_policy: unknown policy {bad:?} (none, quarantine, reject)"
        ));
    }
    Ok(AuthCheck {
        method: match method {
            AuthMethod::Spf => "spf",
            AuthMethod::Dkim => "dkim",
            AuthMethod::Dmarc => "dmarc",
        },
        results,
        policies,
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

/// A field name as RFC 5322 allows: printable ASCII without colon or space.
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

fn regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("longer than {MAX_PATTERN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
        .map_err(|e| e.to_string().replace('\n', " "))
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
