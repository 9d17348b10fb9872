//! State keys. One tenant's counts must never land on another's key, whatever a client puts
//! in its envelope, so a key is built from parts that cannot run into each other:
//!
//! `RULE \x1f LIMIT \x1f PART...` where RULE is the rule's name (no separators allowed in
//! it), LIMIT says which of the rule's limits (`r` rate, `qm`/`qh`/`qd` quota per window,
//! `c<epoch>` concurrency) and each PART is a one-letter kind, the value's length, `:` and
//! the value (`s13:a@example.org`). Values are lower-cased; the client address is the
//! network of the rule's prefix. Keys that would pass the host's 256-byte limit carry
//! `#` and the SHA-256 of their parts instead.

use std::fmt::Write;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::config::{KeyPart, Rule};
use crate::net;

/// The host refuses longer keys.
const MAX_KEY: usize = 256;

/// What a key can be made of, as far as the current hook knows it. Text is lower-cased.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub ip: IpAddr,
    pub user: Option<&'a str>,
    /// The reverse path, `""` for the null sender.
    pub sender: Option<&'a str>,
    pub recipient: Option<&'a str>,
}

/// The domain of an address (`""` for the null sender or an address without one).
fn domain(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d.trim_end_matches('.'))
}

/// The state key of `rule`'s limit `limit` for these facts; `None` when the rule keys on
/// something this session does not have (such as `user` before AUTH).
pub fn key(rule: &Rule, limit: &str, facts: &Facts<'_>) -> Option<String> {
    let mut out = String::with_capacity(64);
    out.push_str(&rule.name);
    out.push('\x1f');
    out.push_str(limit);
    out.push('\x1f');
    let head = out.len();
    for part in &rule.key {
        out.push(part.tag());
        match part {
            KeyPart::Ip => {
                // Written in place, its length put in front once known.
                let at = out.len();
                net::write_key(&mut out, facts.ip, rule.ipv4_prefix, rule.ipv6_prefix);
                let len = out.len() - at;
                out.insert(at, ':');
                out.insert_str(at, itoa::Buffer::new().format(len));
            }
            KeyPart::User => push_value(&mut out, facts.user?),
            KeyPart::Sender => push_value(&mut out, facts.sender?),
            KeyPart::SenderDomain => push_value(&mut out, domain(facts.sender?)),
            KeyPart::RecipientDomain => push_value(&mut out, domain(facts.recipient?)),
        }
    }
    if out.len() > MAX_KEY {
        let digest = Sha256::digest(&out.as_bytes()[head..]);
        out.truncate(head);
        out.push('#');
        for b in digest {
            let _ = write!(out, "{b:02x}");
        }
    }
    Some(out)
}

fn push_value(out: &mut String, value: &str) {
    push_decimal(out, value.len() as u64);
    out.push(':');
    out.push_str(value);
}

/// Appends `n` in decimal. Keys are built at every hook, and through `core::fmt` their
/// numbers (lengths, address octets, epochs) were about a third of this plugin's own
/// instructions per message.
pub fn push_decimal(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn rules(key: &str) -> Rule {
        let json = format!(
            r#"{{"rules": [{{"name": "r1", "count": "recipients", "key": {key}, "rate": "1/s"}}]}}"#
        );
        Config::parse(&json).unwrap().rules.remove(0)
    }

    fn facts<'a>(user: Option<&'a str>, sender: Option<&'a str>) -> Facts<'a> {
        Facts {
            ip: "2001:db8:0:1::5".parse().unwrap(),
            user,
            sender,
            recipient: Some("bob@example.com"),
        }
    }

    #[test]
    fn parts_are_tagged_and_length_prefixed() {
        let r = rules(r#"["user", "sender_domain"]"#);
        let k = key(&r, "r", &facts(Some("a|b"), Some("x@c.org"))).unwrap();
        assert_eq!(k, "r1\x1fr\x1fu3:a|bd5:c.org");
        // Values that would concatenate the same way give different keys.
        let other = key(&r, "r", &facts(Some("a"), Some("x@b.c.org"))).unwrap();
        assert_ne!(k, other);
        let ip = rules(r#"["ip", "recipient_domain"]"#);
        assert_eq!(
            key(&ip, "qd", &facts(None, None)).unwrap(),
            "r1\x1fqd\x1fi17:2001:db8:0:1::/64r11:example.com"
        );
    }

    #[test]
    fn ipv4_parts_are_length_prefixed() {
        let r = rules(r#"["ip", "sender"]"#);
        let facts = Facts {
            ip: "192.0.2.77".parse().unwrap(),
            user: None,
            sender: Some("a@b.org"),
            recipient: None,
        };
        assert_eq!(
            key(&r, "r", &facts).unwrap(),
            "r1\x1fr\x1fi10:192.0.2.77s7:a@b.org"
        );
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 255, 1_000_000, u64::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn missing_parts_skip_the_rule() {
        let r = rules(r#"["user"]"#);
        assert_eq!(key(&r, "r", &facts(None, Some("a@b"))), None);
        let s = rules(r#"["sender_domain"]"#);
        assert_eq!(
            key(&s, "r", &facts(None, Some(""))).unwrap(),
            "r1\x1fr\x1fd0:",
            "the null sender has a domain of its own, distinct from every real one"
        );
    }

    #[test]
    fn long_keys_are_hashed_under_the_host_limit() {
        let r = rules(r#"["sender"]"#);
        let long_a = format!("{}@example.org", "a".repeat(300));
        let long_b = format!("{}@example.org", "a".repeat(301));
        let ka = key(&r, "r", &facts(None, Some(&long_a))).unwrap();
        let kb = key(&r, "r", &facts(None, Some(&long_b))).unwrap();
        assert!(ka.len() <= MAX_KEY && kb.len() <= MAX_KEY);
        assert!(ka.starts_with("r1\x1fr\x1f#"));
        assert_ne!(ka, kb);
    }
}
