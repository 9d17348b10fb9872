//! Limits the relay keeps in the plugin's place (`host::want_calls_over_limits`): when all a
//! hook does with a client under its limits is count open connections and charge GCRA rates,
//! the relay builds the same keys, counts and charges them itself, and calls the hook only
//! for a client over one (or when it cannot decide), which then counts, checks and answers as
//! it always does.
//!
//! Only a stage whose every rule the relay can keep exactly is declared; anything else (a
//! quota, an exemption that can apply at the stage, a key the relay cannot build) needs the
//! hook at every call.

use std::time::Duration;

use wasmrelay_plugin_sdk::host::{self, RelayCount, RelayLimit, RelayRate};

use crate::config::{Config, Count, Exempt, KeyPart, Rule};

/// The relay takes at most this many limits per hook.
const MAX_LIMITS: usize = 8;
/// The relay takes key starts up to this many bytes.
const MAX_KEY_START: usize = 128;

/// The `connect` stage's limits for the relay: its `concurrent` counts, then its
/// `connections` rates, each in config order, as the hook counts (`count_concurrent`) before
/// it charges; or none unless every rule is one of those, keyed on the client alone.
pub fn at_connect(config: &Config) -> Vec<RelayLimit> {
    // count_concurrent's epochs; the relay refuses an epoch of 0 ms.
    let epoch_ms = config.concurrent_epoch_ms();
    // No client has authenticated at connect: a user exemption cannot apply there.
    limits(config, &config.connect, Users::NotYet, |rule| {
        if rule.key != [KeyPart::Ip] {
            return None;
        }
        match rule.count {
            Count::Connections => rate(rule),
            Count::Concurrent if epoch_ms > 0 && rule.rate.is_none() && rule.quotas.is_empty() => {
                Some(RelayLimit::Concurrent(RelayCount {
                    // What keys::key_of writes before the epoch: the relay writes the epoch,
                    // 0x1f and the parts after it.
                    key_start: format!("{}\x1fc", rule.name),
                    key: key(rule)?,
                    max: rule.max?,
                    epoch: Duration::from_millis(epoch_ms),
                }))
            }
            _ => None,
        }
    })
}

/// The `mail-from` stage's limits for the relay: its `messages` rates, or none unless every
/// rule is a rate alone.
pub fn at_mail_from(config: &Config) -> Vec<RelayLimit> {
    limits(config, &config.messages, Users::Known, |rule| {
        match rule.count {
            Count::Messages => rate(rule),
            _ => None,
        }
    })
}

/// Whether a stage knows the authenticated user, so that user exemptions apply to it.
#[derive(Clone, Copy, PartialEq)]
enum Users {
    NotYet,
    Known,
}

/// The limits of `rules` (a stage's rules), counts first, or none unless `limit` gives one
/// for every rule, no one is exempt at this stage, and the relay takes them all.
fn limits(
    config: &Config,
    rules: &[usize],
    users: Users,
    limit: impl Fn(&Rule) -> Option<RelayLimit>,
) -> Vec<RelayLimit> {
    let exempts =
        |e: &Exempt| !e.networks.is_empty() || (users == Users::Known && !e.users.is_empty());
    if exempts(&config.exempt) {
        return Vec::new();
    }
    if rules.len() > MAX_LIMITS {
        return Vec::new();
    }
    let mut limits = Vec::with_capacity(rules.len());
    for &i in rules {
        let rule = &config.rules[i];
        if exempts(&rule.exempt) {
            return Vec::new();
        }
        let Some(limit) = limit(rule) else {
            return Vec::new();
        };
        let key_start = match &limit {
            RelayLimit::Rate(rate) => &rate.key_start,
            RelayLimit::Concurrent(count) => &count.key_start,
        };
        if key_start.len() > MAX_KEY_START {
            return Vec::new();
        }
        limits.push(limit);
    }
    // Stable: counts, then rates, each kind in config order.
    limits.sort_by_key(|limit| matches!(limit, RelayLimit::Rate(_)));
    limits
}

/// `rule`'s rate alone (no quota), or `None`.
fn rate(rule: &Rule) -> Option<RelayLimit> {
    let rate = rule.rate.as_ref()?;
    if !rule.quotas.is_empty() {
        return None;
    }
    Some(RelayLimit::Rate(RelayRate {
        // What keys::key_of writes before the parts for a rate.
        key_start: format!("{}\x1fr\x1f", rule.name),
        key: key(rule)?,
        rate: rate.count,
        period: rate.period,
        burst: rate.burst,
    }))
}

/// `rule`'s key parts as the relay builds them, or `None` for one it cannot.
fn key(rule: &Rule) -> Option<Vec<host::KeyPart>> {
    rule.key
        .iter()
        .map(|part| match part {
            KeyPart::Ip => Some(host::KeyPart::ClientNetwork {
                ipv4_prefix: rule.ipv4_prefix,
                ipv6_prefix: rule.ipv6_prefix,
            }),
            KeyPart::Sender => Some(host::KeyPart::Sender),
            KeyPart::SenderDomain => Some(host::KeyPart::SenderDomain),
            KeyPart::User => Some(host::KeyPart::AuthUser),
            KeyPart::RecipientDomain => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::keys::{self, ClientIp, Facts};
    use crate::net;

    fn config(rules: &str) -> Config {
        Config::parse(&format!(r#"{{"rules": [{rules}]}}"#)).expect("a valid config")
    }

    fn rates(limits: Vec<RelayLimit>) -> Vec<RelayRate> {
        limits
            .into_iter()
            .map(|limit| match limit {
                RelayLimit::Rate(rate) => rate,
                RelayLimit::Concurrent(count) => panic!("a count: {count:?}"),
            })
            .collect()
    }

    fn message_rates(c: &Config) -> Vec<RelayRate> {
        rates(at_mail_from(c))
    }

    /// The parts of a key as the WIT's `key-part` describes them (each part: tag, length in
    /// bytes in decimal, `:`, value); `None` when the relay leaves the limit out.
    fn relay_parts(
        key: &[host::KeyPart],
        ip: IpAddr,
        sender: Option<&str>,
        user: Option<&str>,
    ) -> Option<String> {
        let mut out = String::new();
        for part in key {
            let (tag, value) = match *part {
                host::KeyPart::ClientNetwork {
                    ipv4_prefix,
                    ipv6_prefix,
                } => {
                    let mut network = String::new();
                    net::write_key(&mut network, ip, ipv4_prefix, ipv6_prefix);
                    ('i', network)
                }
                host::KeyPart::Sender => ('s', sender?.to_string()),
                host::KeyPart::SenderDomain => {
                    let domain = sender?.rsplit_once('@').map_or("", |(_, d)| d);
                    ('d', domain.trim_end_matches('.').to_string())
                }
                host::KeyPart::AuthUser => ('u', user?.to_string()),
            };
            out.push(tag);
            out.push_str(&value.len().to_string());
            out.push(':');
            out.push_str(&value);
        }
        Some(out)
    }

    /// The key the relay builds for `rate`: its start, then the parts.
    fn relay_key(
        rate: &RelayRate,
        ip: IpAddr,
        sender: Option<&str>,
        user: Option<&str>,
    ) -> Option<String> {
        Some(rate.key_start.clone() + &relay_parts(&rate.key, ip, sender, user)?)
    }

    /// The key the relay builds for `count` in epoch `epoch`: its start, the epoch in
    /// decimal, 0x1f, then the parts.
    fn relay_count_key(count: &RelayCount, epoch: u64, ip: IpAddr) -> String {
        let parts = relay_parts(&count.key, ip, None, None).expect("an address only");
        format!("{}{epoch}\x1f{parts}", count.key_start)
    }

    const FLOOD: &str =
        r#"{"name": "flood", "count": "connections", "key": "ip", "rate": "30/min", "burst": 10}"#;
    const OPEN: &str = r#"{"name": "open", "count": "concurrent", "key": "ip", "max": 10}"#;
    const PER_SENDER: &str =
        r#"{"name": "per-sender", "count": "messages", "key": "sender", "rate": "100/h"}"#;
    const RCPTS: &str =
        r#"{"name": "rcpts", "count": "recipients", "key": "ip", "per_message": 50}"#;

    fn open(max: u32, ipv4_prefix: u8, ipv6_prefix: u8, epoch: Duration) -> RelayLimit {
        RelayLimit::Concurrent(RelayCount {
            key_start: "open\x1fc".into(),
            key: vec![host::KeyPart::ClientNetwork {
                ipv4_prefix,
                ipv6_prefix,
            }],
            max,
            epoch,
        })
    }

    #[test]
    fn the_quickstart_declares_its_count_before_its_rate_at_connect_and_the_sender_rate() {
        let c = config(&[FLOOD, OPEN, PER_SENDER, RCPTS].join(","));
        let limits = at_connect(&c);
        assert_eq!(limits.len(), 2);
        assert_eq!(
            limits[0],
            open(10, 32, 64, Duration::from_secs(3600)),
            "counted first, though second in the config"
        );
        assert_eq!(
            limits[1],
            RelayLimit::Rate(RelayRate {
                key_start: "flood\x1fr\x1f".into(),
                key: vec![host::KeyPart::ClientNetwork {
                    ipv4_prefix: 32,
                    ipv6_prefix: 64
                }],
                rate: 30,
                period: Duration::from_secs(60),
                burst: 10,
            })
        );
        assert_eq!(
            at_mail_from(&c),
            [RelayLimit::Rate(RelayRate {
                key_start: "per-sender\x1fr\x1f".into(),
                key: vec![host::KeyPart::Sender],
                rate: 100,
                period: Duration::from_secs(3600),
                burst: 100,
            })]
        );
    }

    #[test]
    fn counts_keep_their_order_and_prefixes_and_come_before_every_rate() {
        let open_net = r#"{"name": "open-net", "count": "concurrent", "key": "ip", "max": 50, "ipv4_prefix": 24, "ipv6_prefix": 48}"#;
        let c = Config::parse(&format!(
            r#"{{"concurrent_expiry": "10m", "rules": [{FLOOD}, {OPEN}, {PER_SENDER}, {open_net}]}}"#
        ))
        .unwrap();
        let limits = at_connect(&c);
        let kinds: Vec<&str> = limits
            .iter()
            .map(|limit| match limit {
                RelayLimit::Rate(rate) => rate.key_start.as_str(),
                RelayLimit::Concurrent(count) => count.key_start.as_str(),
            })
            .collect();
        assert_eq!(kinds, ["open\x1fc", "open-net\x1fc", "flood\x1fr\x1f"]);
        assert_eq!(limits[0], open(10, 32, 64, Duration::from_secs(600)));
        let RelayLimit::Concurrent(net) = &limits[1] else {
            panic!("a count");
        };
        assert_eq!(
            (net.max, &net.key[..]),
            (
                50,
                &[host::KeyPart::ClientNetwork {
                    ipv4_prefix: 24,
                    ipv6_prefix: 48
                }][..]
            )
        );
        let only_counts = config(OPEN);
        assert_eq!(
            at_connect(&only_counts),
            [open(10, 32, 64, Duration::from_secs(3600))]
        );
        assert_eq!(at_mail_from(&only_counts), [], "no messages rules");
    }

    #[test]
    fn the_epoch_is_the_one_the_hook_numbers_its_counts_in() {
        let mut c = Config::parse(&format!(
            r#"{{"concurrent_expiry": "1h 1ms 500us", "rules": [{OPEN}]}}"#
        ))
        .unwrap();
        assert_eq!(c.concurrent_epoch_ms(), 3_600_001, "whole milliseconds");
        assert_eq!(
            at_connect(&c),
            [open(10, 32, 64, Duration::from_millis(3_600_001))]
        );
        // Refused by parse, and by the relay: the hook's own epochs (at least 1 ms) would
        // not match, so nothing is declared.
        c.concurrent_expiry = Duration::from_micros(999);
        assert_eq!(c.concurrent_epoch_ms(), 0);
        assert_eq!(at_connect(&c), []);
    }

    #[test]
    fn connection_rates_alone_are_declared_with_their_prefixes() {
        let slow = r#"{"name": "slow", "count": "connections", "key": "ip", "rate": "5/s", "ipv4_prefix": 24, "ipv6_prefix": 48}"#;
        let c = config(&[FLOOD, slow].join(","));
        let rates = rates(at_connect(&c));
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].key_start, "flood\x1fr\x1f");
        assert_eq!(
            (rates[0].rate, rates[0].period, rates[0].burst),
            (30, Duration::from_secs(60), 10)
        );
        assert_eq!(
            rates[1].key,
            [host::KeyPart::ClientNetwork {
                ipv4_prefix: 24,
                ipv6_prefix: 48
            }]
        );
        assert_eq!(message_rates(&c), [], "no messages rules");
    }

    #[test]
    fn a_quota_or_an_exemption_keeps_the_hook_called() {
        let quota = r#"{"name": "q", "count": "messages", "key": "sender", "quota": "500/day"}"#;
        let both = r#"{"name": "b", "count": "messages", "key": "sender", "rate": "5/min", "quota": "500/day"}"#;
        let exempt = r#"{"name": "e", "count": "messages", "key": "sender", "rate": "5/min", "exempt_users": "ops@example.org"}"#;
        let exempt_net = r#"{"name": "n", "count": "connections", "key": "ip", "rate": "5/min", "exempt_networks": "10.0.0.0/8"}"#;
        let exempt_open = r#"{"name": "o", "count": "concurrent", "key": "ip", "max": 5, "exempt_networks": "10.0.0.0/8"}"#;
        let connection_quota =
            r#"{"name": "cq", "count": "connections", "key": "ip", "quota": "500/day"}"#;
        for rules in [
            [PER_SENDER, quota].join(","),
            both.into(),
            [exempt, PER_SENDER].join(","),
        ] {
            assert_eq!(message_rates(&config(&rules)), [], "{rules}");
        }
        for rules in [
            exempt_net.to_string(),
            [OPEN, exempt_net].join(","),
            [FLOOD, exempt_open].join(","),
            [OPEN, connection_quota].join(","),
        ] {
            assert_eq!(at_connect(&config(&rules)), [], "{rules}");
        }
        let global = Config::parse(&format!(
            r#"{{"exempt_networks": "10.0.0.0/8", "rules": [{FLOOD}, {OPEN}, {PER_SENDER}]}}"#
        ))
        .unwrap();
        assert_eq!(at_connect(&global), []);
        assert_eq!(at_mail_from(&global), []);
        let users = Config::parse(&format!(
            r#"{{"exempt_users": "ops@example.org", "rules": [{OPEN}, {PER_SENDER}]}}"#
        ))
        .unwrap();
        assert_eq!(at_mail_from(&users), []);
        // No one has authenticated at connect: the counts are the relay's all the same.
        assert_eq!(at_connect(&users), at_connect(&config(OPEN)));
        assert_eq!(at_connect(&users).len(), 1);
        let rule_users = format!(
            r#"{{"name": "u", "count": "connections", "key": "ip", "rate": "5/min", "exempt_users": "ops@example.org"}}, {OPEN}"#
        );
        assert_eq!(at_connect(&config(&rule_users)).len(), 2, "{rule_users}");
    }

    #[test]
    fn a_user_rate_is_declared_keyed_on_the_authenticated_user() {
        let per_user = r#"{"name": "per-user", "count": "messages", "key": ["user", "sender_domain"], "rate": "20/min"}"#;
        let rates = message_rates(&config(per_user));
        assert_eq!(rates.len(), 1);
        assert_eq!(
            rates[0].key,
            [host::KeyPart::AuthUser, host::KeyPart::SenderDomain]
        );
    }

    #[test]
    fn more_limits_than_the_relay_takes_are_not_declared() {
        let rule = |n: usize| {
            format!(r#"{{"name": "m{n}", "count": "messages", "key": "sender", "rate": "5/min"}}"#)
        };
        let eight: Vec<String> = (0..MAX_LIMITS).map(rule).collect();
        assert_eq!(message_rates(&config(&eight.join(","))).len(), MAX_LIMITS);
        let nine: Vec<String> = (0..=MAX_LIMITS).map(rule).collect();
        assert_eq!(at_mail_from(&config(&nine.join(","))), []);

        let connect = |n: usize| {
            if n.is_multiple_of(2) {
                format!(r#"{{"name": "o{n}", "count": "concurrent", "key": "ip", "max": 5}}"#)
            } else {
                format!(r#"{{"name": "f{n}", "count": "connections", "key": "ip", "rate": "5/s"}}"#)
            }
        };
        let eight: Vec<String> = (0..MAX_LIMITS).map(connect).collect();
        assert_eq!(at_connect(&config(&eight.join(","))).len(), MAX_LIMITS);
        let nine: Vec<String> = (0..=MAX_LIMITS).map(connect).collect();
        assert_eq!(at_connect(&config(&nine.join(","))), []);
    }

    #[test]
    fn a_key_start_longer_than_the_relay_takes_is_not_declared() {
        // Rule names are at most 64 bytes, so only a changed config gets here.
        for rules in [OPEN, FLOOD, PER_SENDER] {
            let mut c = config(rules);
            let declared = |c: &Config| at_connect(c).len() + at_mail_from(c).len();
            assert_eq!(declared(&c), 1, "{rules}");
            // A rate's key start is the name and 3 bytes, a count's the name and 2.
            let room = MAX_KEY_START - if rules == OPEN { 2 } else { 3 };
            c.rules[0].name = "n".repeat(room);
            assert_eq!(declared(&c), 1, "{rules} at {MAX_KEY_START} bytes");
            c.rules[0].name.push('n');
            assert_eq!(declared(&c), 0, "{rules} past {MAX_KEY_START} bytes");
        }
    }

    #[test]
    fn the_relay_builds_the_key_the_plugin_would() {
        let c = config(
            r#"{"name": "v4", "count": "messages", "key": "ip", "rate": "5/min"},
               {"name": "v4-net", "count": "messages", "key": "ip", "rate": "5/min", "ipv4_prefix": 24},
               {"name": "v6", "count": "messages", "key": "ip", "rate": "5/min"},
               {"name": "sender", "count": "messages", "key": ["sender", "ip"], "rate": "5/min"},
               {"name": "domain", "count": "messages", "key": "sender_domain", "rate": "5/min"},
               {"name": "user", "count": "messages", "key": ["user", "sender_domain"], "rate": "5/min"}"#,
        );
        let rates = message_rates(&c);
        assert_eq!(rates.len(), c.messages.len());
        for ip in ["192.0.2.77", "::ffff:192.0.2.77", "2001:db8:1:2:aaaa::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let client = ClientIp::known(ip);
            for (sender, user) in [
                (Some("a@example.org"), Some("alice")),
                (Some("a@sub.example.org."), None),
                (Some(""), Some("bob@example.org")),
                (Some("no-domain"), None),
            ] {
                let facts = Facts {
                    ip: &client,
                    user,
                    sender,
                    recipient: None,
                };
                for (&i, rate) in c.messages.iter().zip(&rates) {
                    assert_eq!(
                        relay_key(rate, ip, sender, user),
                        keys::key(&c.rules[i], "r", &facts),
                        "{} for {ip} {sender:?} {user:?}",
                        c.rules[i].name
                    );
                }
            }
        }
        // The cases above render as expected, not merely alike.
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let s = Some("a@example.org");
        assert_eq!(
            relay_key(&rates[0], ip, s, None).unwrap(),
            "v4\x1fr\x1fi10:192.0.2.77"
        );
        assert_eq!(
            relay_key(&rates[1], ip, s, None).unwrap(),
            "v4-net\x1fr\x1fi12:192.0.2.0/24"
        );
        assert_eq!(
            relay_key(&rates[2], v6, s, None).unwrap(),
            "v6\x1fr\x1fi17:2001:db8:1:2::/64"
        );
        assert_eq!(
            relay_key(&rates[3], ip, s, None).unwrap(),
            "sender\x1fr\x1fs13:a@example.orgi10:192.0.2.77"
        );
        assert_eq!(
            relay_key(&rates[4], ip, s, None).unwrap(),
            "domain\x1fr\x1fd11:example.org"
        );
        assert_eq!(
            relay_key(&rates[5], ip, s, Some("alice")).unwrap(),
            "user\x1fr\x1fu5:aliced11:example.org"
        );
        assert_eq!(
            relay_key(&rates[5], ip, s, None),
            None,
            "left out before AUTH"
        );
    }

    #[test]
    fn the_relay_builds_the_count_keys_the_plugin_would() {
        let c = config(
            r#"{"name": "open", "count": "concurrent", "key": "ip", "max": 10},
               {"name": "open-net", "count": "concurrent", "key": "ip", "max": 10, "ipv4_prefix": 24, "ipv6_prefix": 48},
               {"name": "open-all", "count": "concurrent", "key": "ip", "max": 10, "ipv4_prefix": 0, "ipv6_prefix": 0},
               {"name": "open-one", "count": "concurrent", "key": "ip", "max": 10, "ipv6_prefix": 128}"#,
        );
        let counts: Vec<RelayCount> = at_connect(&c)
            .into_iter()
            .map(|limit| match limit {
                RelayLimit::Concurrent(count) => count,
                RelayLimit::Rate(rate) => panic!("a rate: {rate:?}"),
            })
            .collect();
        assert_eq!(counts.len(), c.connect.len());
        for ip in ["192.0.2.77", "::ffff:192.0.2.77", "2001:db8:1:2:aaaa::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let client = ClientIp::known(ip);
            let facts = Facts {
                ip: &client,
                user: None,
                sender: None,
                recipient: None,
            };
            // As count_concurrent numbers them: now, and the one before.
            let now = 1_796_448_086_000 / c.concurrent_epoch_ms();
            for epoch in [0, 1, 9, 10, now - 1, now, u64::MAX] {
                let digits = epoch.to_string();
                for (&i, count) in c.connect.iter().zip(&counts) {
                    assert_eq!(
                        Some(relay_count_key(count, epoch, ip)),
                        keys::key_of(&c.rules[i], &["c", &digits], &facts),
                        "{} for {ip} in epoch {epoch}",
                        c.rules[i].name
                    );
                }
            }
        }
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(
            relay_count_key(&counts[0], 498_991, ip),
            "open\x1fc498991\x1fi10:192.0.2.77"
        );
        assert_eq!(
            relay_count_key(&counts[1], 7, "2001:db8:1:2:aaaa::1".parse().unwrap()),
            "open-net\x1fc7\x1fi15:2001:db8:1::/48"
        );
    }
}
