//! DNS blocklists (RFC 5782): the client's address reversed under each zone, queried for A.
//! NXDOMAIN means not listed; an answer in 127.0.0.0/8 means listed, except
//! 127.255.255.0/24, which is how Spamhaus and others say they refuse to answer us (a
//! public resolver, too many queries): that is logged, never held against the client.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use wasmrelay_plugin_sdk::host::{self, DnsError, RecordType};

use crate::rules::Dnsbl;

/// What the lists said about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NotListed,
    /// Listed by `zone` with `answer`.
    Listed {
        zone: String,
        answer: Ipv4Addr,
    },
    /// No usable answer from `zone` (timeout, failure, or an answer that is no verdict).
    Failed {
        zone: String,
        why: String,
    },
}

/// The query name for `ip` under `zone`: `d.c.b.a.zone` for IPv4, 32 reversed nibbles for
/// IPv6 (an IPv4-mapped IPv6 address is its IPv4 address).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => v4_name(v4, zone),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_name(v4, zone),
            None => {
                let mut name = String::with_capacity(64 + zone.len());
                for byte in v6.octets().iter().rev() {
                    for nibble in [byte & 0xf, byte >> 4] {
                        name.push(char::from_digit(u32::from(nibble), 16).expect("a nibble"));
                        name.push('.');
                    }
                }
                name.push_str(zone);
                name
            }
        },
    }
}

fn v4_name(v4: Ipv4Addr, zone: &str) -> String {
    let [a, b, c, d] = v4.octets();
    format!("{d}.{c}.{b}.{a}.{zone}")
}

/// How one zone's answer reads: listed (with the answer), not listed, or not a verdict.
pub fn judge(
    answers: &[String],
    accepted: Option<&[Ipv4Addr]>,
) -> Result<Option<Ipv4Addr>, String> {
    let mut listed = None;
    for answer in answers {
        let Ok(ip) = answer.trim().parse::<Ipv4Addr>() else {
            return Err(format!("answer {answer:?} is not an IPv4 address"));
        };
        let [a, b, c, _] = ip.octets();
        if (a, b, c) == (127, 255, 255) {
            return Err(format!("the list refuses to answer this relay ({ip})"));
        }
        if a != 127 {
            // A list that answers outside 127/8 is broken or gone (a parked domain answers
            // every name): believing it would refuse all mail.
            return Err(format!("answer {ip} is outside 127.0.0.0/8"));
        }
        let counts = accepted.is_none_or(|set| set.contains(&ip));
        if counts && listed.is_none() {
            listed = Some(ip);
        }
    }
    Ok(listed)
}

/// Checks `ip` against every zone of `rule`, within the rule's timeout in total; the first
/// zone that lists it decides.
pub fn check(rule: &Dnsbl, ip: IpAddr) -> Outcome {
    let start = host::now_ms();
    let budget = rule.timeout.as_millis() as u64;
    let mut failure = None;
    for zone in &rule.zones {
        let spent = host::now_ms().saturating_sub(start);
        if spent >= budget {
            failure.get_or_insert(Outcome::Failed {
                zone: zone.clone(),
                why: "no time left for this zone".into(),
            });
            break;
        }
        let name = query_name(ip, zone);
        let why =
            match host::dns_lookup(&name, RecordType::A, Duration::from_millis(budget - spent)) {
                Err(DnsError::NotFound) => continue,
                Err(DnsError::Timeout) => "timed out".to_string(),
                Err(DnsError::Denied) => format!("{zone} is not in this plugin's dns_zones"),
                Err(DnsError::Failed(e)) => e,
                Ok(answers) => match judge(&answers, rule.answers.as_deref()) {
                    Ok(Some(answer)) => {
                        return Outcome::Listed {
                            zone: zone.clone(),
                            answer,
                        }
                    }
                    Ok(None) => continue,
                    Err(why) => why,
                },
            };
        host::warn(&format!("dnsbl {zone}: {why} (query {name})"));
        failure.get_or_insert(Outcome::Failed {
            zone: zone.clone(),
            why,
        });
    }
    failure.unwrap_or(Outcome::NotListed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names() {
        assert_eq!(
            query_name("192.0.2.99".parse().unwrap(), "bl.test"),
            "99.2.0.192.bl.test"
        );
        assert_eq!(
            query_name("2001:db8::1".parse().unwrap(), "bl.test"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"
        );
        assert_eq!(
            query_name("::ffff:192.0.2.1".parse().unwrap(), "z"),
            "1.2.0.192.z"
        );
    }

    #[test]
    fn answers() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            judge(&s(&["127.0.0.2"]), None),
            Ok(Some(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert_eq!(judge(&s(&[]), None), Ok(None));
        assert!(judge(&s(&["127.255.255.254"]), None)
            .unwrap_err()
            .contains("refuses"));
        assert!(judge(&s(&["10.0.0.1"]), None).is_err());
        let only4 = [Ipv4Addr::new(127, 0, 0, 4)];
        assert_eq!(judge(&s(&["127.0.0.2"]), Some(&only4)), Ok(None));
        assert_eq!(
            judge(&s(&["127.0.0.2", "127.0.0.4"]), Some(&only4)),
            Ok(Some(only4[0]))
        );
    }
}
