//! The keys the relay builds for declared limits: per part its tag letter, the value's
//! length, `:` and the value, written as the bundled `rate-limit` writes its own (its
//! keys.rs), so that a charge made by the relay and one the hook makes land on one key.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};

use super::KeyPart;
use crate::plugins::types::{ConnectionInfo, TransactionInfo};

/// Writes `key`'s parts; `None` when one is not known.
pub(super) fn push_parts(out: &mut String, key: &[KeyPart], facts: &Facts<'_>) -> Option<()> {
    for part in key {
        match *part {
            KeyPart::ClientNetwork { ipv4, ipv6 } => {
                // Written in place, its length put in front once known.
                out.push('i');
                let at = out.len();
                write_network(out, facts.ip?, ipv4, ipv6);
                let len = out.len() - at;
                out.insert(at, ':');
                out.insert_str(at, itoa::Buffer::new().format(len));
            }
            KeyPart::Sender => push_part(out, 's', facts.sender.as_deref()?),
            KeyPart::SenderDomain => push_part(out, 'd', domain(facts.sender.as_deref()?)),
            KeyPart::AuthUser => push_part(out, 'u', facts.user.as_deref()?),
        }
    }
    Some(())
}

/// A part as the WIT documents it: tag, length in decimal, `:`, value.
fn push_part(out: &mut String, tag: char, value: &str) {
    out.push(tag);
    out.push_str(itoa::Buffer::new().format(value.len()));
    out.push(':');
    out.push_str(value);
}

/// Appends `ip` as the network of the prefix for its family, `/N` below the full length;
/// an IPv4-mapped IPv6 address is the IPv4 client it stands for. IPv4 digits are written by
/// hand: through `core::fmt`, keys cost the relay more than the limits they count.
fn write_network(out: &mut String, ip: IpAddr, ipv4: u8, ipv6: u8) {
    let (prefix, full) = match ip.to_canonical() {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(ipv4)).unwrap_or(0);
            let octets = (u32::from(a) & mask).to_be_bytes();
            for (i, octet) in octets.into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(itoa::Buffer::new().format(octet));
            }
            (ipv4, 32)
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(ipv6)).unwrap_or(0);
            let _ = write!(out, "{}", Ipv6Addr::from(u128::from(a) & mask));
            (ipv6, 128)
        }
    };
    if prefix < full {
        out.push('/');
        out.push_str(itoa::Buffer::new().format(prefix));
    }
}

/// The domain of an address: after the last `@`, trailing dots removed (`""` without one).
fn domain(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d.trim_end_matches('.'))
}
/// What a key can be made of, as the hook at hand knows the session; text in list form.
pub(crate) struct Facts<'a> {
    pub(super) ip: Option<IpAddr>,
    pub(super) sender: Option<Cow<'a, str>>,
    pub(super) user: Option<Cow<'a, str>>,
}

impl<'a> Facts<'a> {
    pub(crate) fn of(conn: Option<&'a ConnectionInfo>, tx: &'a TransactionInfo) -> Facts<'a> {
        Facts {
            ip: conn.map(|c| c.remote.ip()),
            sender: tx
                .mail_from
                .as_deref()
                .map(crate::plugins::chain::list_form),
            user: conn
                .and_then(|c| c.auth_user.as_deref())
                .map(crate::plugins::chain::list_form),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, rate};
    use super::super::*;

    /// The keys the bundled rate-limit builds for the same rules and facts
    /// (plugins/rate-limit/src/keys.rs): a charge made here is one the plugin sees.
    #[test]
    fn keys_are_written_as_the_bundled_rate_limit_writes_them() {
        let key = |parts: Vec<KeyPart>, f: &Facts<'_>| {
            rate(Hook::MailFrom, parts, 5).unwrap().key(f).unwrap()
        };
        let net = |ipv4, ipv6| KeyPart::ClientNetwork { ipv4, ipv6 };
        let v6 = facts("2001:db8:0:1::5", Some("<X@C.org>"), Some("A|b"));
        assert_eq!(
            key(vec![KeyPart::AuthUser, KeyPart::SenderDomain], &v6),
            "r1\x1fr\x1fu3:a|bd5:c.org"
        );
        assert_eq!(
            key(vec![net(32, 64)], &v6),
            "r1\x1fr\x1fi17:2001:db8:0:1::/64"
        );
        let v4 = facts("192.0.2.77", Some("a@b.org"), None);
        assert_eq!(
            key(vec![net(32, 64), KeyPart::Sender], &v4),
            "r1\x1fr\x1fi10:192.0.2.77s7:a@b.org"
        );
        assert_eq!(key(vec![net(24, 64)], &v4), "r1\x1fr\x1fi12:192.0.2.0/24");
        let mapped = facts("::ffff:192.0.2.77", Some(""), None);
        assert_eq!(
            key(vec![net(32, 128)], &mapped),
            "r1\x1fr\x1fi10:192.0.2.77"
        );
        assert_eq!(
            key(vec![KeyPart::Sender, KeyPart::SenderDomain], &mapped),
            "r1\x1fr\x1fs0:d0:",
            "the null sender"
        );
        let dotted = facts("192.0.2.1", Some("a@Example.COM."), None);
        assert_eq!(
            key(vec![KeyPart::SenderDomain], &dotted),
            "r1\x1fr\x1fd11:example.com"
        );
        // A count's key: the epoch between the start and the parts (keys::key_of(rule,
        // ["c", epoch])).
        let count = RelayCount::new(
            Hook::Connect,
            "open\x1fc".into(),
            vec![net(24, 64)],
            9,
            60_000,
        );
        assert_eq!(
            count.unwrap().key(29_000_000, &v4).unwrap(),
            "open\x1fc29000000\x1fi12:192.0.2.0/24"
        );
        // No user before AUTH: the rate is left out, as the plugin's own check leaves it.
        assert_eq!(
            rate(Hook::MailFrom, vec![KeyPart::AuthUser], 5)
                .unwrap()
                .key(&v4),
            None
        );
    }
}
