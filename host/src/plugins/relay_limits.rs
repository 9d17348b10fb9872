//! Limits the relay keeps in a plugin's place (`host.want-calls-over-limits`,
//! docs/plugins.md#limits-the-relay-keeps): a plugin whose `connect` or `mail-from` hook only
//! counts connections and charges rates declares them at load, and the relay counts and
//! charges them with the keys it builds itself. The hook is called only for a client one of
//! them would refuse, and then counts, checks and answers as if nothing had been declared:
//! a rate limit costs a call per client over it, not one per connection and message.
//!
//! A key is the declared start, then per part its tag letter, the value's length, `:` and
//! the value, which is the form the bundled `rate-limit` writes its own keys in: a charge
//! made here and one the hook makes when called land on the same key.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::holds::{Charge, SessionHolds};
use super::state::MAX_KEY;
use super::types::{ConnectionInfo, Hook, TransactionInfo};
use crate::state::{self, StateBackend};

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

/// Writes `key`'s parts; `None` when one is not known.
fn push_parts(out: &mut String, key: &[KeyPart], facts: &Facts<'_>) -> Option<()> {
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

/// One plugin's limits at one call, with what keeping them needs.
pub(crate) struct Keeper<'a> {
    /// The plugin's name: its keys are private to it, as its own calls' keys are.
    pub plugin: &'a str,
    pub hook: Hook,
    pub facts: &'a Facts<'a>,
    pub backend: &'a dyn StateBackend,
    /// The session's holds and charges; none outside a session.
    pub holds: Option<&'a SessionHolds>,
}

impl Keeper<'_> {
    /// Counts and charges `limits`. True when every one allowed, so the call is not needed:
    /// the counts are held for the session, the rates charged (at `mail-from` for the
    /// message, recorded to be given back unless it is queued). False when one would refuse,
    /// the backend did not answer or a key is too long: what was counted is taken back,
    /// nothing more is charged, and the hook is to be called.
    pub(crate) async fn kept(&self, limits: &[RelayLimit]) -> bool {
        let mut counted = Vec::new();
        let within = self.within(limits, &mut counted).await;
        if let (false, Some(holds)) = (within, self.holds) {
            for (key, window) in counted {
                holds.forget(&key);
                if let Err(e) = self.backend.counter_add(&key, -1, window).await {
                    let plugin = self.plugin;
                    tracing::warn!(plugin, error = %e, "could not take back a connection count");
                }
            }
        }
        within
    }

    /// A buffer holding the start of a key in the plugin's private space: its name and a
    /// NUL, as its own calls' keys are.
    fn private(&self, capacity: usize) -> String {
        let mut key = String::with_capacity(self.prefix_len() + capacity);
        key.push_str(self.plugin);
        key.push('\0');
        key
    }

    fn prefix_len(&self) -> usize {
        self.plugin.len() + 1
    }

    /// Takes the counts (recorded in `counted` as they are made), then the rates.
    async fn within(&self, limits: &[RelayLimit], counted: &mut Vec<(String, Duration)>) -> bool {
        let mut rates = Vec::with_capacity(limits.len());
        for limit in limits {
            match limit {
                RelayLimit::Rate(r) => {
                    let mut key = self.private(r.key_start.len() + 48);
                    if r.write_key(&mut key, self.facts).is_none() {
                        continue;
                    }
                    if key.len() - self.prefix_len() > MAX_KEY {
                        return false;
                    }
                    rates.push((key, r));
                }
                RelayLimit::Concurrent(c) => {
                    if !self.count(c, counted).await {
                        return false;
                    }
                }
            }
        }
        self.charge_rates(&rates).await
    }

    /// Adds the connection to `c`'s current epoch, held for the session; whether the count
    /// with the previous epoch's stays within `c.max`.
    async fn count(&self, c: &RelayCount, counted: &mut Vec<(String, Duration)>) -> bool {
        let Some(holds) = self.holds else {
            return false;
        };
        let mut parts = String::with_capacity(48);
        if push_parts(&mut parts, &c.key, self.facts).is_none() {
            return true;
        }
        let epoch = now_ms() / c.epoch_ms().max(1);
        let key = |epoch| {
            let mut key = self.private(c.key_start.len() + 21 + parts.len());
            c.write_key(&mut key, epoch, &parts);
            key
        };
        let (now, before) = (key(epoch), key(epoch.saturating_sub(1)));
        if now.len().max(before.len()) - self.prefix_len() > MAX_KEY {
            return false;
        }
        if !holds.has_room(&now[..self.prefix_len()]) {
            return false;
        }
        let window = c.epoch.saturating_mul(2);
        let Ok(total) = self.backend.counter_add(&now, 1, window).await else {
            return false;
        };
        holds.add(now.clone(), window);
        counted.push((now, window));
        let Ok(earlier) = self.backend.counter_get(&before).await else {
            return false;
        };
        total.saturating_add(earlier.max(0)) <= i64::from(c.max)
    }

    /// Peeks every rate but the last, charges the last, then the others: none is charged
    /// when one refuses, short of a race with another session between a peek and its charge.
    async fn charge_rates(&self, rates: &[(String, &RelayRate)]) -> bool {
        let Some(((last_key, last), first)) = rates.split_last() else {
            return true;
        };
        let for_message = self.hook == Hook::MailFrom;
        if for_message {
            // Room for every charge, checked once: none are recorded yet.
            let prefix = &last_key[..self.prefix_len()];
            let room = self
                .holds
                .is_some_and(|h| h.has_room_for_charges(prefix, rates.len()));
            if !room {
                return false;
            }
        }
        let backend = self.backend;
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
            if let (true, Some(holds)) = (for_message, self.holds) {
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
}

fn now_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
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

    fn keeper<'a>(
        hook: Hook,
        facts: &'a Facts<'a>,
        backend: &'a InProcessBackend,
        holds: Option<&'a SessionHolds>,
    ) -> Keeper<'a> {
        Keeper {
            plugin: "p",
            hook,
            facts,
            backend,
            holds,
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
        let rates = [
            RelayLimit::Rate(per_ip.unwrap()),
            RelayLimit::Rate(per_sender.unwrap()),
        ];
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
        assert!(
            keeper(Hook::MailFrom, &f, &backend, Some(&holds))
                .kept(&rates)
                .await
        );
        assert_eq!(
            (left("i9:192.0.2.1").await, holds.take_charges().len()),
            (2, 2)
        );
        // The sender's burst of one is spent: nothing charged, the per-ip rate included.
        assert!(
            !keeper(Hook::MailFrom, &f, &backend, Some(&holds))
                .kept(&rates)
                .await
        );
        assert_eq!(
            (left("i9:192.0.2.1").await, holds.take_charges().len()),
            (2, 0)
        );
        // At mail-from a session is needed to give a charge back; at connect nothing is.
        assert!(
            !keeper(Hook::MailFrom, &f, &backend, None)
                .kept(&rates[..1])
                .await
        );
        assert!(
            keeper(Hook::Connect, &f, &backend, None)
                .kept(&rates[..1])
                .await
        );
        assert_eq!(left("i9:192.0.2.1").await, 1);
    }

    /// A count within `max` stays held for the session; one over it is taken back (the
    /// hook, called, counts the connection itself), and so is one a rate then refuses.
    #[tokio::test]
    async fn a_count_over_its_max_or_beside_a_refusing_rate_is_taken_back() {
        let backend = InProcessBackend::new();
        let holds = SessionHolds::default();
        let f = facts("192.0.2.1", None, None);
        let net = vec![KeyPart::ClientNetwork { ipv4: 32, ipv6: 64 }];
        let count = RelayCount::new(Hook::Connect, "open\x1fc".into(), net.clone(), 2, 60_000);
        let limits = [RelayLimit::Concurrent(count.unwrap())];
        let epoch = now_ms() / 60_000;
        let key = format!("p\0open\x1fc{epoch}\x1fi9:192.0.2.1");
        let held = || async { backend.counter_get(&key).await.unwrap() };
        assert!(
            keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&limits)
                .await
        );
        assert!(
            keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&limits)
                .await
        );
        assert_eq!(held().await, 2);
        assert!(
            !keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&limits)
                .await
        );
        assert_eq!(
            (held().await, holds.take().len()),
            (2, 2),
            "the third is taken back"
        );
        // A rate that refuses after the count: the count is taken back as well.
        let spent = rate(Hook::Connect, net, 1).unwrap();
        let key_of_rate = format!("p\0{}", spent.key(&f).unwrap());
        backend
            .rate_limit(&key_of_rate, 1, Duration::from_secs(3600), 1, 1)
            .await
            .unwrap();
        let both = [limits[0].clone(), RelayLimit::Rate(spent)];
        backend
            .counter_add(&key, -2, Duration::from_secs(120))
            .await
            .unwrap();
        assert!(
            !keeper(Hook::Connect, &f, &backend, Some(&holds))
                .kept(&both)
                .await
        );
        assert_eq!((held().await, holds.take().len()), (0, 0));
        // No session to give a count back at its end: the hook is called.
        assert!(
            !keeper(Hook::Connect, &f, &backend, None)
                .kept(&limits)
                .await
        );
    }
}
