//! Limits the relay keeps in a plugin's place (`host.want-calls-over-limits`,
//! docs/plugins.md#limits-the-relay-keeps): a plugin whose `connect` or `mail-from` hook only
//! counts connections and charges rates declares them at load, and the relay counts and
//! charges them with the keys it builds itself. The hook is called only for a client one of
//! them would refuse, and then counts, checks and answers as if nothing had been declared:
//! a rate limit costs a call per client over it, not one per connection and message.
//!
//! Here: what a plugin may declare and how it is checked. [`keys`] writes the keys as the
//! bundled `rate-limit` writes its own; [`keeper`] counts and charges at a call.

mod keeper;
mod keys;

use std::time::Duration;

use super::types::Hook;
use crate::state;
pub(crate) use keeper::Keeper;
use keys::push_parts;
pub(crate) use keys::Facts;

/// Limits one plugin may declare per hook.
pub(crate) const MAX_LIMITS: usize = 8;
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

/// A count of open connections, in epochs of `epoch` (`connect` only): the connection is
/// added to the current epoch's counter, held for the session, and the count is that plus the
/// previous epoch's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayCount {
    key_start: String,
    key: Vec<KeyPart>,
    max: u32,
    epoch: Duration,
}

/// What a hook does with a client under its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayLimit {
    Rate(RelayRate),
    Concurrent(RelayCount),
}

impl RelayRate {
    /// A declared rate for `hook`, or why it is refused.
    pub(crate) fn new(
        hook: Hook,
        key_start: String,
        key: Vec<KeyPart>,
        (rate, period_ms, burst): (u32, u64, u32),
    ) -> Result<RelayRate, String> {
        check_key(hook, &key_start, &key)?;
        let period = Duration::from_millis(period_ms);
        state::memory::check_rate(rate, period, burst).map_err(|e| e.to_string())?;
        // A check peeks with one more than the burst, which must not be a real charge.
        if burst == u32::MAX {
            return Err("a burst of u32::MAX cannot be checked before it is charged".into());
        }
        Ok(RelayRate {
            key_start,
            key,
            rate,
            period,
            burst,
        })
    }

    /// Appends the key for this session to `out`, or `None` when a part is not known yet
    /// (a user before AUTH), which leaves the rate out as the plugin's own check would.
    fn write_key(&self, out: &mut String, facts: &Facts<'_>) -> Option<()> {
        out.push_str(&self.key_start);
        push_parts(out, &self.key, facts)
    }

    #[cfg(test)]
    fn key(&self, facts: &Facts<'_>) -> Option<String> {
        let mut out = String::new();
        self.write_key(&mut out, facts).map(|()| out)
    }
}

impl RelayCount {
    /// A declared count for `hook`, or why it is refused.
    pub(crate) fn new(
        hook: Hook,
        key_start: String,
        key: Vec<KeyPart>,
        max: u32,
        epoch_ms: u64,
    ) -> Result<RelayCount, String> {
        if hook != Hook::Connect {
            return Err("connections are counted at connect only".into());
        }
        check_key(hook, &key_start, &key)?;
        if epoch_ms == 0 {
            return Err("an epoch of 0 ms".into());
        }
        Ok(RelayCount {
            key_start,
            key,
            max,
            epoch: Duration::from_millis(epoch_ms),
        })
    }

    /// Appends the key of epoch `epoch` (a number) to `out`, with the `parts` written
    /// for this session.
    fn write_key(&self, out: &mut String, epoch: u64, parts: &str) {
        out.push_str(&self.key_start);
        out.push_str(itoa::Buffer::new().format(epoch));
        out.push('\x1f');
        out.push_str(parts);
    }

    #[cfg(test)]
    fn key(&self, epoch: u64, facts: &Facts<'_>) -> Option<String> {
        let mut parts = String::new();
        push_parts(&mut parts, &self.key, facts)?;
        let mut out = String::new();
        self.write_key(&mut out, epoch, &parts);
        Some(out)
    }

    fn epoch_ms(&self) -> u64 {
        u64::try_from(self.epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Checks what every limit's key is made of.
fn check_key(hook: Hook, key_start: &str, key: &[KeyPart]) -> Result<(), String> {
    if key_start.len() > MAX_KEY_START {
        return Err(format!(
            "a key start of {} bytes (at most {MAX_KEY_START})",
            key_start.len()
        ));
    }
    for part in key {
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
    Ok(())
}

/// The limits declared for `connect` and `mail-from`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeclaredLimits {
    connect: LimitWants,
    mail_from: LimitWants,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum LimitWants {
    /// Nothing declared: the hook is called every time.
    #[default]
    None,
    Limits(Vec<RelayLimit>),
    /// A declaration was refused: called every time, whatever was declared besides, since
    /// the limits the relay would keep are not all the hook does.
    Refused,
}

impl DeclaredLimits {
    /// The limits the relay keeps for `hook` (none: the hook is always called).
    pub(crate) fn get(&self, hook: Hook) -> &[RelayLimit] {
        let wants = match hook {
            Hook::Connect => &self.connect,
            Hook::MailFrom => &self.mail_from,
            _ => return &[],
        };
        match wants {
            LimitWants::Limits(limits) => limits,
            LimitWants::None | LimitWants::Refused => &[],
        }
    }

    /// Adds `limits` to `hook`'s, or refuses them (the first error) and every later one.
    pub(crate) fn declare(
        &mut self,
        hook: Hook,
        limits: impl IntoIterator<Item = Result<RelayLimit, String>>,
    ) -> Result<(), String> {
        let wants = match hook {
            Hook::Connect => &mut self.connect,
            Hook::MailFrom => &mut self.mail_from,
            _ => {
                return Err(format!(
                    "hook `{}` takes no limits (only connect and mail-from)",
                    hook.name()
                ))
            }
        };
        match add_limits(wants, limits) {
            Ok(all) => {
                *wants = LimitWants::Limits(all);
                Ok(())
            }
            Err(e) => {
                *wants = LimitWants::Refused;
                Err(e)
            }
        }
    }
}

fn add_limits(
    wants: &LimitWants,
    limits: impl IntoIterator<Item = Result<RelayLimit, String>>,
) -> Result<Vec<RelayLimit>, String> {
    let mut all = match wants {
        LimitWants::None => Vec::new(),
        LimitWants::Limits(limits) => limits.clone(),
        LimitWants::Refused => return Err("an earlier limit declaration was refused".into()),
    };
    let before = all.len();
    for limit in limits {
        all.push(limit?);
    }
    if all.len() == before {
        return Err("no limits".into());
    }
    if all.len() > MAX_LIMITS {
        return Err(format!("more than {MAX_LIMITS} limits for one hook"));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn rate(hook: Hook, key: Vec<KeyPart>, burst: u32) -> Result<RelayRate, String> {
        RelayRate::new(hook, "r1\x1fr\x1f".into(), key, (burst, 3_600_000, burst))
    }

    pub(super) fn facts<'a>(ip: &str, sender: Option<&'a str>, user: Option<&'a str>) -> Facts<'a> {
        Facts {
            ip: Some(ip.parse().unwrap()),
            sender: sender.map(crate::plugins::chain::list_form),
            user: user.map(crate::plugins::chain::list_form),
        }
    }

    #[test]
    fn declarations_are_checked_and_a_refusal_stays() {
        let ok = || {
            let r = rate(
                Hook::Connect,
                vec![KeyPart::ClientNetwork { ipv4: 24, ipv6: 48 }],
                5,
            );
            r.map(RelayLimit::Rate)
        };
        let mut d = DeclaredLimits::default();
        d.declare(Hook::Connect, [ok()]).unwrap();
        d.declare(Hook::Connect, [ok()]).unwrap();
        assert_eq!(d.get(Hook::Connect).len(), 2, "a second declaration adds");
        assert!(d.get(Hook::MailFrom).is_empty());
        let err = |r: Result<(), String>| r.unwrap_err();
        assert!(err(d.declare(Hook::Rcpt, [ok()])).contains("only connect and mail-from"));
        assert!(err(d.declare(Hook::MailFrom, [])).contains("no limits"));
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
        let count = |hook, epoch_ms| RelayCount::new(hook, "c".into(), vec![], 10, epoch_ms);
        assert!(count(Hook::Connect, 60_000).is_ok());
        assert!(err(count(Hook::MailFrom, 60_000).map(drop)).contains("at connect only"));
        assert!(err(count(Hook::Connect, 0).map(drop)).contains("epoch of 0"));
        // Too many: refused, and the hook is called every time from then on.
        assert!(err(d.declare(Hook::Connect, (0..7).map(|_| ok()))).contains("more than 8"));
        assert!(d.get(Hook::Connect).is_empty());
        assert!(err(d.declare(Hook::Connect, [ok()])).contains("earlier limit declaration"));
        assert!(d.get(Hook::Connect).is_empty());
    }
}
