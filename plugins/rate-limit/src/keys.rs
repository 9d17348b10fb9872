//! State keys. One tenant's counts must never land on another's key, whatever a client puts
//! in its envelope, so a key is built from parts that cannot run into each other:
//!
//! `RULE \x1f LIMIT \x1f PART...` where RULE is the rule's name (no separators allowed in
//! it), LIMIT says which of the rule's limits (`r` rate, `qm`/`qh`/`qd` quota per window,
//! `c<epoch>` concurrency) and each PART is a one-letter kind, the value's length, `:` and
//! the value (`s13:a@example.org`). Values are lower-cased; the client address is the
//! network of the rule's prefix. Keys that would pass the host's 256-byte limit carry
//! `#` and the SHA-256 of their parts instead.

use std::cell::OnceCell;
use std::fmt::Write;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use wasmrelay_plugin_sdk::Context;

use crate::config::{KeyPart, Rule};
use crate::net;

/// The host refuses longer keys.
const MAX_KEY: usize = 256;

/// The client's address, asked of the host the first time a key or an exemption needs it:
/// rules keyed on the sender or the user, with no exempt networks, never ask. Asked anew at
/// each hook: a pooled instance serves other sessions after this one.
pub struct ClientIp<'a> {
    ctx: Option<&'a Context>,
    ip: OnceCell<IpAddr>,
}

impl<'a> ClientIp<'a> {
    pub fn of(ctx: &'a Context) -> Self {
        ClientIp {
            ctx: Some(ctx),
            ip: OnceCell::new(),
        }
    }

    /// An address already known (tests).
    #[cfg(test)]
    pub fn known(ip: IpAddr) -> Self {
        ClientIp {
            ctx: None,
            ip: OnceCell::from(ip),
        }
    }

    /// Asked as numbers: no string to copy in and parse.
    pub fn get(&self) -> IpAddr {
        *self.ip.get_or_init(|| {
            let ctx = self
                .ctx
                .expect("a client address without a context is known");
            IpAddr::from(ctx.remote_address())
        })
    }
}

/// What a key can be made of, as far as the current hook knows it. Text is lower-cased.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    pub ip: &'a ClientIp<'a>,
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
    key_of(rule, &[limit], facts)
}

/// [`key`] with the limit given in pieces, written in place (`["c", epoch]`).
pub fn key_of(rule: &Rule, limit: &[&str], facts: &Facts<'_>) -> Option<String> {
    let mut out = String::with_capacity(64);
    out.push_str(&rule.name);
    out.push('\x1f');
    limit.iter().for_each(|piece| out.push_str(piece));
    out.push('\x1f');
    let head = out.len();
    for part in &rule.key {
        out.push(part.tag());
        match part {
            KeyPart::Ip => {
                // Written in place, its length put in front once known.
                let at = out.len();
                net::write_key(&mut out, facts.ip.get(), rule.ipv4_prefix, rule.ipv6_prefix);
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

/// Whether [`key`] would give `rule` a key with these facts, without building it (nor asking
/// for the client's address, which every session has).
pub fn applies(rule: &Rule, facts: &Facts<'_>) -> bool {
    rule.key.iter().all(|part| match part {
        KeyPart::Ip => true,
        KeyPart::User => facts.user.is_some(),
        KeyPart::Sender | KeyPart::SenderDomain => facts.sender.is_some(),
        KeyPart::RecipientDomain => facts.recipient.is_some(),
    })
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

    fn v6() -> ClientIp<'static> {
        ClientIp::known("2001:db8:0:1::5".parse().unwrap())
    }

    fn facts<'a>(
        ip: &'a ClientIp<'a>,
        user: Option<&'a str>,
        sender: Option<&'a str>,
    ) -> Facts<'a> {
        Facts {
            ip,
            user,
            sender,
            recipient: Some("bob@example.com"),
        }
    }

    #[test]
    fn parts_are_tagged_and_length_prefixed() {
        let ip = v6();
        let r = rules(r#"["user", "sender_domain"]"#);
        let k = key(&r, "r", &facts(&ip, Some("a|b"), Some("x@c.org"))).unwrap();
        assert_eq!(k, "r1\x1fr\x1fu3:a|bd5:c.org");
        // Values that would concatenate the same way give different keys.
        let other = key(&r, "r", &facts(&ip, Some("a"), Some("x@b.c.org"))).unwrap();
        assert_ne!(k, other);
        let by_ip = rules(r#"["ip", "recipient_domain"]"#);
        assert_eq!(
            key(&by_ip, "qd", &facts(&ip, None, None)).unwrap(),
            "r1\x1fqd\x1fi17:2001:db8:0:1::/64r11:example.com"
        );
    }

    #[test]
    fn ipv4_parts_are_length_prefixed() {
        let r = rules(r#"["ip", "sender"]"#);
        let ip = ClientIp::known("192.0.2.77".parse().unwrap());
        let facts = Facts {
            ip: &ip,
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
    fn a_limit_in_pieces_is_the_limit_joined() {
        let ip = ClientIp::known("192.0.2.77".parse().unwrap());
        let r = rules(r#"["ip", "sender"]"#);
        let facts = facts(&ip, None, Some("a@b.org"));
        let joined = key(&r, "c1234", &facts).unwrap();
        assert_eq!(joined, "r1\x1fc1234\x1fi10:192.0.2.77s7:a@b.org");
        assert_eq!(key_of(&r, &["c", "1234"], &facts).unwrap(), joined);
        assert_eq!(key_of(&r, &[], &facts), key(&r, "", &facts));
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
        let ip = v6();
        let r = rules(r#"["user"]"#);
        assert_eq!(key(&r, "r", &facts(&ip, None, Some("a@b"))), None);
        let s = rules(r#"["sender_domain"]"#);
        assert_eq!(
            key(&s, "r", &facts(&ip, None, Some(""))).unwrap(),
            "r1\x1fr\x1fd0:",
            "the null sender has a domain of its own, distinct from every real one"
        );
    }

    #[test]
    fn applies_exactly_when_a_key_is_built() {
        let ip = v6();
        for parts in [
            r#"["ip"]"#,
            r#"["user"]"#,
            r#"["sender"]"#,
            r#"["sender_domain"]"#,
            r#"["recipient_domain"]"#,
            r#"["ip", "user", "sender"]"#,
        ] {
            let r = rules(parts);
            for (user, sender, recipient) in [
                (None, None, None),
                (Some("u"), None, None),
                (None, Some("a@b"), None),
                (None, Some(""), Some("c@d")),
                (Some("u"), Some("a@b"), Some("c@d")),
            ] {
                let facts = Facts {
                    recipient,
                    ..facts(&ip, user, sender)
                };
                assert_eq!(
                    applies(&r, &facts),
                    key(&r, "", &facts).is_some(),
                    "{parts} with {user:?} {sender:?} {recipient:?}"
                );
            }
        }
    }

    #[test]
    fn long_keys_are_hashed_under_the_host_limit() {
        let ip = v6();
        let r = rules(r#"["sender"]"#);
        let long_a = format!("{}@example.org", "a".repeat(300));
        let long_b = format!("{}@example.org", "a".repeat(301));
        let ka = key(&r, "r", &facts(&ip, None, Some(&long_a))).unwrap();
        let kb = key(&r, "r", &facts(&ip, None, Some(&long_b))).unwrap();
        assert!(ka.len() <= MAX_KEY && kb.len() <= MAX_KEY);
        assert!(ka.starts_with("r1\x1fr\x1f#"));
        assert_ne!(ka, kb);
    }
}
