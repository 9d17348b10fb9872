//! Rates the relay charges in the plugin's place (`host::want_calls_over_rates`): when all a
//! hook does with a client under its limits is charge GCRA rates, the relay builds the same
//! keys, checks and charges them itself, and calls the hook only for a client over one (or
//! when it cannot decide), which then checks and answers as it always does.
//!
//! Only a stage whose every rule the relay can charge exactly is declared; anything else
//! (a quota, a `concurrent` count, an exemption) needs the hook at every call.

use wasmrelay_plugin_sdk::host::{self, RelayRate};

use crate::config::{Config, Count, KeyPart};

/// The relay takes at most this many rates per hook.
const MAX_RATES: usize = 8;
/// The relay takes key starts up to this many bytes.
const MAX_KEY_START: usize = 128;

/// The rates of `rules` (a stage's rules, counting `count`) for the relay to charge, or
/// none unless every rule is a rate alone, keyed on what the relay knows, exempting no one.
pub fn rates(config: &Config, rules: &[usize], count: Count) -> Vec<RelayRate> {
    if !config.exempt.networks.is_empty() || !config.exempt.users.is_empty() {
        return Vec::new();
    }
    if rules.len() > MAX_RATES {
        return Vec::new();
    }
    let mut rates = Vec::with_capacity(rules.len());
    for &i in rules {
        let rule = &config.rules[i];
        let Some(rate) = &rule.rate else {
            return Vec::new();
        };
        if rule.count != count
            || !rule.quotas.is_empty()
            || !rule.exempt.networks.is_empty()
            || !rule.exempt.users.is_empty()
        {
            return Vec::new();
        }
        let mut key = Vec::with_capacity(rule.key.len());
        for part in &rule.key {
            key.push(match part {
                KeyPart::Ip => host::KeyPart::ClientNetwork {
                    ipv4_prefix: rule.ipv4_prefix,
                    ipv6_prefix: rule.ipv6_prefix,
                },
                KeyPart::Sender => host::KeyPart::Sender,
                KeyPart::SenderDomain => host::KeyPart::SenderDomain,
                KeyPart::User => host::KeyPart::AuthUser,
                KeyPart::RecipientDomain => return Vec::new(),
            });
        }
        // What keys::key_of writes before the parts for a rate.
        let key_start = format!("{}\x1fr\x1f", rule.name);
        if key_start.len() > MAX_KEY_START {
            return Vec::new();
        }
        rates.push(RelayRate {
            key_start,
            key,
            rate: rate.count,
            period: rate.period,
            burst: rate.burst,
        });
    }
    rates
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

    fn connect_rates(c: &Config) -> Vec<RelayRate> {
        rates(c, &c.connect, Count::Connections)
    }

    fn message_rates(c: &Config) -> Vec<RelayRate> {
        rates(c, &c.messages, Count::Messages)
    }

    /// The key the relay builds for `rate`, as the WIT's `key-part` describes it (each part:
    /// tag, length in bytes in decimal, `:`, value); `None` when it leaves the rate out.
    fn relay_key(
        rate: &RelayRate,
        ip: IpAddr,
        sender: Option<&str>,
        user: Option<&str>,
    ) -> Option<String> {
        let mut key = rate.key_start.clone();
        for part in &rate.key {
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
            key.push(tag);
            key.push_str(&value.len().to_string());
            key.push(':');
            key.push_str(&value);
        }
        Some(key)
    }

    const FLOOD: &str =
        r#"{"name": "flood", "count": "connections", "key": "ip", "rate": "30/min", "burst": 10}"#;
    const OPEN: &str = r#"{"name": "open", "count": "concurrent", "key": "ip", "max": 10}"#;
    const PER_SENDER: &str =
        r#"{"name": "per-sender", "count": "messages", "key": "sender", "rate": "100/h"}"#;
    const RCPTS: &str =
        r#"{"name": "rcpts", "count": "recipients", "key": "ip", "per_message": 50}"#;

    #[test]
    fn quickstart_declares_the_sender_rate_but_not_connect_which_counts_open_connections() {
        let c = config(&[FLOOD, OPEN, PER_SENDER, RCPTS].join(","));
        assert_eq!(connect_rates(&c), [], "concurrent needs the hook");
        assert_eq!(
            message_rates(&c),
            [RelayRate {
                key_start: "per-sender\x1fr\x1f".into(),
                key: vec![host::KeyPart::Sender],
                rate: 100,
                period: std::time::Duration::from_secs(3600),
                burst: 100,
            }]
        );
    }

    #[test]
    fn connection_rates_alone_are_declared_with_their_prefixes() {
        let slow = r#"{"name": "slow", "count": "connections", "key": "ip", "rate": "5/s", "ipv4_prefix": 24, "ipv6_prefix": 48}"#;
        let c = config(&[FLOOD, slow].join(","));
        let rates = connect_rates(&c);
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].key_start, "flood\x1fr\x1f");
        assert_eq!(
            (rates[0].rate, rates[0].period, rates[0].burst),
            (30, std::time::Duration::from_secs(60), 10)
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
        for rules in [
            [PER_SENDER, quota].join(","),
            both.into(),
            [exempt, PER_SENDER].join(","),
        ] {
            assert_eq!(message_rates(&config(&rules)), [], "{rules}");
        }
        assert_eq!(connect_rates(&config(exempt_net)), []);
        let global = Config::parse(&format!(
            r#"{{"exempt_networks": "10.0.0.0/8", "rules": [{FLOOD}, {PER_SENDER}]}}"#
        ))
        .unwrap();
        assert_eq!(connect_rates(&global), []);
        assert_eq!(message_rates(&global), []);
        let users = Config::parse(&format!(
            r#"{{"exempt_users": "ops@example.org", "rules": [{PER_SENDER}]}}"#
        ))
        .unwrap();
        assert_eq!(message_rates(&users), []);
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
    fn more_rates_than_the_relay_takes_are_not_declared() {
        let rule = |n: usize| {
            format!(r#"{{"name": "m{n}", "count": "messages", "key": "sender", "rate": "5/min"}}"#)
        };
        let eight: Vec<String> = (0..MAX_RATES).map(rule).collect();
        assert_eq!(message_rates(&config(&eight.join(","))).len(), MAX_RATES);
        let nine: Vec<String> = (0..=MAX_RATES).map(rule).collect();
        assert_eq!(message_rates(&config(&nine.join(","))), []);
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
}
