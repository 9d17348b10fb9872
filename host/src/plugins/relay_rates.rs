//! Rates the relay charges in a plugin's place (`host.want-calls-over-rates`,
//! docs/plugins.md#rates-the-relay-charges): a plugin whose `connect` or `mail-from` hook
//! only charges rates declares them at load, and the relay checks and charges them with the
//! keys it builds itself. The hook is called only for a client one of them would refuse,
//! and then checks and answers as if nothing had been declared: a rate limit costs a call
//! per client over it, not one per connection and message.
//!
//! A key is the declared start, then per part its tag letter, the value's length, `:` and
//! the value, which is the form the bundled `rate-limit` writes its own keys in: a charge
//! made here and one the hook makes when called land on the same key.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;
use std::time::Duration;

use super::holds::{Charge, SessionHolds};
use super::state::MAX_KEY;
use super::types::{ConnectionInfo, Hook, TransactionInfo};
use crate::state::{self, StateBackend};

/// Rates one plugin may declare per hook.
pub(crate) const MAX_RATES: usize = 8;
/// Longest declared key start; with the parts the key stays within what a plugin may pass.
pub(crate) const MAX_KEY_START: usize = 128;

/// What follows a key's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyPart {
    /// The client's address as the network of these prefix lengths.
    ClientNetwork {
        ipv4: u8,
        ipv6: u8,
    },
    Sender,
    SenderDomain,
    AuthUser,
}

/// One declared rate: one unit per call, `rate` per `period` in bursts of `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayRate {
    key_start: String,
    key: Vec<KeyPart>,
    rate: u32,
    period: Duration,
    burst: u32,
}

impl RelayRate {
    /// A declared rate for `hook`, or why it is refused.
    pub(crate) fn new(
        hook: Hook,
        key_start: String,
        key: Vec<KeyPart>,
        (rate, period_ms, burst): (u32, u64, u32),
    ) -> Result<RelayRate, String> {
        if key_start.len() > MAX_KEY_START {
            return Err(format!(
                "a key start of {} bytes (at most {MAX_KEY_START})",
                key_start.len()
            ));
        }
        let period = Duration::from_millis(period_ms);
        state::memory::check_rate(rate, period, burst).map_err(|e| e.to_string())?;
        // A check peeks with one more than the burst, which must not be a real charge.
        if burst == u32::MAX {
            return Err("a burst of u32::MAX cannot be checked before it is charged".into());
        }
        for part in &key {
            match *part {
                KeyPart::ClientNetwork { ipv4, ipv6 } if ipv4 > 32 || ipv6 > 128 => {
                    return Err(format!(
                        "prefixes /{ipv4} and /{ipv6} past the address length"
                    ))
                }
                KeyPart::Sender | KeyPart::SenderDomain if hook == Hook::Connect => {
                    return Err("the sender is not known at connect".into())
                }
                _ => {}
            }
        }
        Ok(RelayRate {
            key_start,
            key,
            rate,
            period,
            burst,
        })
    }

    /// The key for this session, or `None` when a part is not known yet (a user before
    /// AUTH), which leaves the rate out as the plugin's own check would.
    pub(crate) fn key(&self, facts: &Facts<'_>) -> Option<String> {
        let mut out = String::with_capacity(self.key_start.len() + 48);
        out.push_str(&self.key_start);
        for part in &self.key {
            match *part {
                KeyPart::ClientNetwork { ipv4, ipv6 } => {
                    let network = network(facts.ip?, ipv4, ipv6);
                    push_part(&mut out, 'i', &network);
                }
                KeyPart::Sender => push_part(&mut out, 's', facts.sender.as_deref()?),
                KeyPart::SenderDomain => push_part(&mut out, 'd', domain(facts.sender.as_deref()?)),
                KeyPart::AuthUser => push_part(&mut out, 'u', facts.user.as_deref()?),
            }
        }
        Some(out)
    }
}

/// A part as the WIT documents it: tag, length in decimal, `:`, value.
fn push_part(out: &mut String, tag: char, value: &str) {
    out.push(tag);
    out.push_str(itoa::Buffer::new().format(value.len()));
    out.push(':');
    out.push_str(value);
}

/// `ip` as the network of the prefix for its family, `/N` shown below the full length; an
/// IPv4-mapped IPv6 address is the IPv4 client it stands for.
fn network(ip: IpAddr, ipv4: u8, ipv6: u8) -> String {
    let mut out = String::with_capacity(43);
    let (masked, prefix, full) = match ip.to_canonical() {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(ipv4)).unwrap_or(0);
            (IpAddr::from((u32::from(a) & mask).to_be_bytes()), ipv4, 32)
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(ipv6)).unwrap_or(0);
            (
                IpAddr::from((u128::from(a) & mask).to_be_bytes()),
                ipv6,
                128,
            )
        }
    };
    let _ = write!(out, "{masked}");
    if prefix < full {
        let _ = write!(out, "/{prefix}");
    }
    out
}

/// The domain of an address: after the last `@`, trailing dots removed (`""` without one).
fn domain(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d.trim_end_matches('.'))
}

/// What a key can be made of, as the hook at hand knows the session; text in list form.
pub(crate) struct Facts<'a> {
    ip: Option<IpAddr>,
    sender: Option<Cow<'a, str>>,
    user: Option<Cow<'a, str>>,
}

impl<'a> Facts<'a> {
    pub(crate) fn of(conn: Option<&'a ConnectionInfo>, tx: &'a TransactionInfo) -> Facts<'a> {
        Facts {
            ip: conn.map(|c| c.remote.ip()),
            sender: tx.mail_from.as_deref().map(super::chain::list_form),
            user: conn
                .and_then(|c| c.auth_user.as_deref())
                .map(super::chain::list_form),
        }
    }
}

/// The rates declared for `connect` and `mail-from`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeclaredRates {
    connect: RateWants,
    mail_from: RateWants,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum RateWants {
    /// Nothing declared: the hook is called every time.
    #[default]
    None,
    Rates(Vec<RelayRate>),
    /// A declaration was refused: called every time, whatever was declared besides, since
    /// the rates the relay would charge are not all the hook does.
    Refused,
}

impl DeclaredRates {
    /// The rates the relay charges for `hook` (none: the hook is always called).
    pub(crate) fn get(&self, hook: Hook) -> &[RelayRate] {
        let wants = match hook {
            Hook::Connect => &self.connect,
            Hook::MailFrom => &self.mail_from,
            _ => return &[],
        };
        match wants {
            RateWants::Rates(rates) => rates,
            RateWants::None | RateWants::Refused => &[],
        }
    }

    /// Adds `rates` to `hook`'s, or refuses them (the first error) and every later one.
    pub(crate) fn declare(
        &mut self,
        hook: Hook,
        rates: impl IntoIterator<Item = Result<RelayRate, String>>,
    ) -> Result<(), String> {
        let wants = match hook {
            Hook::Connect => &mut self.connect,
            Hook::MailFrom => &mut self.mail_from,
            _ => {
                return Err(format!(
                    "hook `{}` takes no rates (only connect and mail-from)",
                    hook.name()
                ))
            }
        };
        match add_rates(wants, rates) {
            Ok(all) => {
                *wants = RateWants::Rates(all);
                Ok(())
            }
            Err(e) => {
                *wants = RateWants::Refused;
                Err(e)
            }
        }
    }
}

fn add_rates(
    wants: &RateWants,
    rates: impl IntoIterator<Item = Result<RelayRate, String>>,
) -> Result<Vec<RelayRate>, String> {
    let mut all = match wants {
        RateWants::None => Vec::new(),
        RateWants::Rates(rates) => rates.clone(),
        RateWants::Refused => return Err("an earlier rate declaration was refused".into()),
    };
    let before = all.len();
    for rate in rates {
        all.push(rate?);
    }
    if all.len() == before {
        return Err("no rates".into());
    }
    if all.len() > MAX_RATES {
        return Err(format!("more than {MAX_RATES} rates for one hook"));
    }
    Ok(all)
}

/// Checks and charges the rates plugin `plugin` declared for `hook`. True when every one
/// allowed and is charged, so the call is not needed; false (nothing more charged) when one
/// would refuse, the backend did not answer or a key is too long: the hook is then called.
/// At `mail-from` each charge is recorded with the session's, to be given back unless the
/// message is queued.
pub(crate) async fn charged(
    plugin: &str,
    rates: &[RelayRate],
    hook: Hook,
    facts: &Facts<'_>,
    backend: &dyn StateBackend,
    holds: Option<&SessionHolds>,
) -> bool {
    let mut keyed = Vec::with_capacity(rates.len());
    for rate in rates {
        let Some(key) = rate.key(facts) else {
            continue;
        };
        if key.len() > MAX_KEY {
            return false;
        }
        // The plugin's private key space, as its own calls are keyed.
        keyed.push((format!("{plugin}\0{key}"), rate));
    }
    let for_message = hook == Hook::MailFrom;
    let prefix_len = plugin.len() + 1;
    let Some(((last_key, last), first)) = keyed.split_last() else {
        return true;
    };
    if for_message {
        let Some(holds) = holds else {
            return false;
        };
        // Room for every charge, checked once: none are recorded yet.
        if !holds.has_room_for_charges(&last_key[..prefix_len], keyed.len()) {
            return false;
        }
    }
    for (key, r) in first {
        match backend
            .rate_limit(key, r.rate, r.period, r.burst, r.burst + 1)
            .await
        {
            Ok(d) if !d.allowed && d.remaining >= 1 => {}
            _ => return false,
        }
    }
    for (key, r) in std::iter::once((last_key, last)).chain(first.iter().map(|(k, r)| (k, r))) {
        match backend.rate_limit(key, r.rate, r.period, r.burst, 1).await {
            Ok(d) if d.allowed => {}
            _ => return false,
        }
        if let (true, Some(holds)) = (for_message, holds) {
            holds.charge(Charge::Rate {
                key: key.clone(),
                rate: r.rate,
                period: r.period,
                cost: 1,
            });
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::InProcessBackend;

    fn rate(hook: Hook, key: Vec<KeyPart>, burst: u32) -> Result<RelayRate, String> {
        RelayRate::new(hook, "r1\x1fr\x1f".into(), key, (burst, 3_600_000, burst))
    }

    fn facts<'a>(ip: &str, sender: Option<&'a str>, user: Option<&'a str>) -> Facts<'a> {
        Facts {
            ip: Some(ip.parse().unwrap()),
            sender: sender.map(crate::plugins::chain::list_form),
            user: user.map(crate::plugins::chain::list_form),
        }
    }

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
        // No user before AUTH: the rate is left out, as the plugin's own check leaves it.
        assert_eq!(
            rate(Hook::MailFrom, vec![KeyPart::AuthUser], 5)
                .unwrap()
                .key(&v4),
            None
        );
    }

    #[test]
    fn declarations_are_checked_and_a_refusal_stays() {
        let ok = || {
            rate(
                Hook::Connect,
                vec![KeyPart::ClientNetwork { ipv4: 24, ipv6: 48 }],
                5,
            )
        };
        let mut d = DeclaredRates::default();
        d.declare(Hook::Connect, [ok()]).unwrap();
        d.declare(Hook::Connect, [ok()]).unwrap();
        assert_eq!(d.get(Hook::Connect).len(), 2, "a second declaration adds");
        assert!(d.get(Hook::MailFrom).is_empty());
        let err = |r: Result<(), String>| r.unwrap_err();
        assert!(err(d.declare(Hook::Rcpt, [ok()])).contains("only connect and mail-from"));
        assert!(err(d.declare(Hook::MailFrom, [])).contains("no rates"));
        assert!(d.get(Hook::MailFrom).is_empty());
        let sender = rate(Hook::Connect, vec![KeyPart::Sender], 5);
        assert!(err(sender.map(drop)).contains("not known at connect"));
        let wide = rate(
            Hook::Connect,
            vec![KeyPart::ClientNetwork { ipv4: 33, ipv6: 64 }],
            5,
        );
        assert!(err(wide.map(drop)).contains("past the address length"));
        assert!(rate(Hook::MailFrom, vec![], 0).is_err(), "a zero rate");
        assert!(
            rate(Hook::MailFrom, vec![], u32::MAX).is_err(),
            "a burst with no peek"
        );
        let long = RelayRate::new(Hook::MailFrom, "x".repeat(129), vec![], (1, 1000, 1));
        assert!(err(long.map(drop)).contains("at most 128"));
        // Too many: refused, and the hook is called every time from then on.
        assert!(err(d.declare(Hook::Connect, (0..7).map(|_| ok()))).contains("more than 8"));
        assert!(d.get(Hook::Connect).is_empty());
        assert!(err(d.declare(Hook::Connect, [ok()])).contains("earlier rate declaration"));
        assert!(d.get(Hook::Connect).is_empty());
    }

    /// Every rate allows: all are charged (for the message at `mail-from`). One refuses: no
    /// other is charged and the call is needed.
    #[tokio::test]
    async fn rates_are_charged_together_or_not_at_all() {
        let backend = InProcessBackend::new();
        let holds = SessionHolds::default();
        let f = facts("192.0.2.1", Some("a@b.org"), None);
        let per_ip = rate(
            Hook::MailFrom,
            vec![KeyPart::ClientNetwork { ipv4: 32, ipv6: 64 }],
            3,
        );
        let per_sender = rate(Hook::MailFrom, vec![KeyPart::Sender], 1);
        let rates = [per_ip.unwrap(), per_sender.unwrap()];
        let left = |key: &str| {
            let backend = &backend;
            let key = format!("p\0r1\x1fr\x1f{key}");
            async move {
                backend
                    .rate_limit(&key, 3, Duration::from_secs(3600), 3, 4)
                    .await
                    .unwrap()
                    .remaining
            }
        };
        assert!(charged("p", &rates, Hook::MailFrom, &f, &backend, Some(&holds)).await);
        assert_eq!(
            (left("i9:192.0.2.1").await, holds.take_charges().len()),
            (2, 2)
        );
        // The sender's burst of one is spent: nothing charged, the per-ip rate included.
        assert!(!charged("p", &rates, Hook::MailFrom, &f, &backend, Some(&holds)).await);
        assert_eq!(
            (left("i9:192.0.2.1").await, holds.take_charges().len()),
            (2, 0)
        );
        // At mail-from a session is needed to give a charge back; at connect nothing is.
        assert!(!charged("p", &rates[..1], Hook::MailFrom, &f, &backend, None).await);
        assert!(charged("p", &rates[..1], Hook::Connect, &f, &backend, None).await);
        assert_eq!(left("i9:192.0.2.1").await, 1);
    }
}
