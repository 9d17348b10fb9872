//! Each rule's one condition, checked and compiled: which key is present, what it matches.

use std::collections::HashSet;

use regex::{Regex, RegexBuilder};

use super::{duration, AuthMethod, RawRule, DEFAULT_DNS_TIMEOUT};
use crate::matchers::{AddressSet, Membership};
use crate::rules::{AuthCheck, Check, Dnsbl, OnDnsError};

/// Longest regex source accepted, and the compiled-size caps: a config cannot make the
/// plugin build a program that fills its memory.
const MAX_PATTERN: usize = 1_000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_LIMIT: usize = 1 << 20;

/// The rule's one condition.
pub(super) fn condition(i: usize, r: &RawRule) -> Result<Check, String> {
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

/// A field name as RFC 5322 allows: printable ASCII without colon or space.
pub(super) fn header_name_ok(name: &str) -> bool {
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
