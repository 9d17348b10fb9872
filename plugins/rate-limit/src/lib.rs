//! The bundled `rate-limit` policy plugin (documented in plugins/README.md).
//!
//! Layout: [`config`] parses and checks the rules once per instance; [`keys`] builds the
//! state keys (tenant-safe, IPv6 by prefix, via [`net`]); [`limits`] checks and charges
//! GCRA rates and calendar quotas through the host without charging on a refusal; [`reply`]
//! turns a refusal into the SMTP reply. This file maps hooks to stages:
//!
//! - `connect`: `concurrent` rules count the connection (a count the host holds for the
//!   session and gives back when it ends, `host::counter_hold`), then `connections` rules
//!   charge it; a refusal ends the connection (421, or 554 to reject).
//! - `mail-from`: `messages` rules charge the message (`host::rate_limit_for_message`), so a
//!   sender over its limit is refused before it sends the message, and the host gives the
//!   charge back when the transaction ends without its message queued: a transaction that
//!   never reaches the end of DATA, or whose message any plugin or the relay refuses, does
//!   not count, and no `data` call is needed to charge.
//! - `rcpt`: `recipients` rules: the per-message cap, then one recipient charged.
//!
//! When a stage's rules are all limits the relay can keep exactly ([`relay`]: `concurrent`
//! counts and `connections` rates by ip, `messages` rates, without quotas or exemptions that
//! can apply at the stage: at `connect` no one has authenticated, so only networks count), the
//! relay is handed them at load, counts and charges them itself (counts first, as here) and
//! calls `connect` or `mail-from` only for a client over one.
//!
//! The plugin keeps nothing of a session in its own memory (the host holds the connection
//! counts and gives them back), and says so in its `wasmrelay:wants` section, so its pooled
//! instance goes back to the pool after every call and an idle connection holds none. With
//! no `closed` hook, a session costs one call fewer.

mod config;
mod keys;
mod limits;
mod net;
mod relay;
mod reply;

use std::borrow::Cow;

use wasmrelay_plugin_sdk::host::{self, list_form};
use wasmrelay_plugin_sdk::{export_plugin, Context, Hook, Plugin, Verdict};

use config::{Config, Count, KeyPart, Rule};
use keys::{ClientIp, Facts};
use limits::{Charge, Check, Limit, Refusal};
use reply::Stage;

struct RateLimit {
    config: Config,
    /// Whether the stage's rules need the authenticated user (a key part or an exemption).
    user_for_messages: bool,
    user_for_recipients: bool,
    /// Whether the stage's rules key on the sender (or the recipient's domain): the hook
    /// asks for and normalizes only what a key needs.
    sender_for_messages: bool,
    sender_for_recipients: bool,
    recipient_for_recipients: bool,
    /// What the relay may count and charge in place of `connect` and `mail-from` (empty:
    /// call them).
    relay_at_connect: Vec<host::RelayLimit>,
    relay_at_mail_from: Vec<host::RelayLimit>,
}

/// An instance holds nothing of a session between calls (docs/plugins.md#instances).
#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 21] = *b"session-memory: none\n";

impl Plugin for RateLimit {
    const HOOKS: &'static [Hook] = &[Hook::Connect, Hook::MailFrom, Hook::Rcpt];

    fn init(config: &str) -> Result<Self, String> {
        let config = Config::parse(config)?;
        let any =
            |rules: &[usize], f: &dyn Fn(&Rule) -> bool| rules.iter().any(|&i| f(&config.rules[i]));
        let user = |r: &Rule| r.uses(KeyPart::User) || !r.exempt.users.is_empty();
        let sender = |r: &Rule| r.uses(KeyPart::Sender) || r.uses(KeyPart::SenderDomain);
        let global_users = !config.exempt.users.is_empty();
        Ok(RateLimit {
            user_for_messages: global_users || any(&config.messages, &user),
            user_for_recipients: global_users || any(&config.recipients, &user),
            sender_for_messages: any(&config.messages, &sender),
            sender_for_recipients: any(&config.recipients, &sender),
            recipient_for_recipients: any(&config.recipients, &|r| {
                r.uses(KeyPart::RecipientDomain)
            }),
            relay_at_connect: relay::at_connect(&config),
            relay_at_mail_from: relay::at_mail_from(&config),
            config,
        })
    }

    /// Only the stages the rules count: a config without connection rules costs nothing
    /// at connect.
    fn hooks(&self) -> Vec<Hook> {
        let c = &self.config;
        let mut hooks = Vec::new();
        if !c.connect.is_empty() {
            hooks.push(Hook::Connect);
        }
        if !c.messages.is_empty() {
            hooks.push(Hook::MailFrom);
        }
        if !c.recipients.is_empty() {
            hooks.push(Hook::Rcpt);
        }
        hooks
    }

    /// `recipients` rules that only cap the recipients of a message can refuse nothing before
    /// the smallest cap, so `rcpt` is called only from there on. A rule with a rate or a
    /// quota counts every recipient: then every call.
    fn wanted_recipient_count(&self, hook: Hook) -> u32 {
        if hook != Hook::Rcpt {
            return 0;
        }
        let mut least: Option<u32> = None;
        for &i in &self.config.recipients {
            let rule = &self.config.rules[i];
            match rule.per_message {
                Some(cap) if rule.rate.is_none() && rule.quotas.is_empty() => {
                    least = Some(least.map_or(cap, |l| l.min(cap)));
                }
                _ => return 0,
            }
        }
        least.unwrap_or(0)
    }

    /// Computed in `init`: asked once, at load.
    fn relay_limits(&self, hook: Hook) -> Vec<host::RelayLimit> {
        match hook {
            Hook::Connect => self.relay_at_connect.clone(),
            Hook::MailFrom => self.relay_at_mail_from.clone(),
            _ => Vec::new(),
        }
    }

    fn connect(&mut self, ctx: &Context) -> Verdict {
        if self.config.connect.is_empty() {
            return Verdict::Continue;
        }
        let ip = ClientIp::of(ctx);
        if self.config.exempt.network(&ip) {
            return Verdict::Continue;
        }
        let facts = Facts {
            ip: &ip,
            user: None,
            sender: None,
            recipient: None,
        };
        // A refused connection ends, and the host gives back what it counted.
        let decided = self.count_concurrent(&facts).and_then(|()| {
            let checks = self.checks(&self.config.connect, &facts);
            limits::admit(&checks, 1, Charge::Now)
        });
        self.verdict(Stage::Connect, decided)
    }

    fn mail_from(&mut self, ctx: &Context, sender: &str) -> Verdict {
        if self.config.messages.is_empty() {
            return Verdict::Continue;
        }
        let ip = ClientIp::of(ctx);
        let Some(user) = self.client(ctx, &ip, self.user_for_messages) else {
            return Verdict::Continue;
        };
        let sender = self.sender_for_messages.then(|| list_form(sender));
        let facts = Facts {
            ip: &ip,
            user: user.as_deref(),
            sender: sender.as_deref(),
            recipient: None,
        };
        let checks = self.checks(&self.config.messages, &facts);
        let decided = limits::admit(&checks, 1, Charge::ForMessage);
        self.verdict(Stage::Transaction, decided)
    }

    fn rcpt(&mut self, ctx: &Context, recipient: &str) -> Verdict {
        if self.config.recipients.is_empty() {
            return Verdict::Continue;
        }
        let ip = ClientIp::of(ctx);
        let Some(user) = self.client(ctx, &ip, self.user_for_recipients) else {
            return Verdict::Continue;
        };
        let sender = if self.sender_for_recipients {
            ctx.mail_from().map(owned_list_form)
        } else {
            None
        };
        let recipient = self.recipient_for_recipients.then(|| list_form(recipient));
        let facts = Facts {
            ip: &ip,
            user: user.as_deref(),
            sender: sender.as_deref(),
            recipient: recipient.as_deref(),
        };
        let decided = self.per_message(ctx, &facts).and_then(|()| {
            let checks = self.checks(&self.config.recipients, &facts);
            limits::admit(&checks, 1, Charge::Now)
        });
        self.verdict(Stage::Transaction, decided)
    }
}

impl RateLimit {
    /// The authenticated user (lower-cased) when the stage's rules need it; `None` when the
    /// client or the user is exempt from every rule.
    fn client(
        &mut self,
        ctx: &Context,
        ip: &ClientIp<'_>,
        wants_user: bool,
    ) -> Option<Option<String>> {
        let user = wants_user
            .then(|| ctx.auth_user())
            .flatten()
            .map(owned_list_form);
        let exempt = self.config.exempt.network(ip) || self.config.exempt.user(user.as_deref());
        (!exempt).then_some(user)
    }

    /// The rate and quota checks of `rules` that apply to these facts, in config order.
    fn checks<'c>(&'c self, rules: &[usize], facts: &Facts<'_>) -> Vec<Check<'c>> {
        let mut checks = Vec::new();
        for &i in rules {
            let rule = &self.config.rules[i];
            if rule.exempt.network(facts.ip) || rule.exempt.user(facts.user) {
                continue;
            }
            let mut push = |tag: &str, limit: Limit<'c>| {
                let key = keys::key(rule, tag, facts)?;
                checks.push(Check {
                    rule: i,
                    key,
                    limit,
                    on_state_error: rule.on_state_error,
                });
                Some(())
            };
            if let Some(rate) = &rule.rate {
                if push("r", Limit::Rate(rate)).is_none() {
                    continue;
                }
            }
            for quota in &rule.quotas {
                push(quota.tag, Limit::Quota(quota));
            }
        }
        checks
    }

    /// `per_message` caps: the recipients the transaction already has, plus this one.
    fn per_message(&self, ctx: &Context, facts: &Facts<'_>) -> Result<(), Refusal> {
        let mut have = None;
        for &i in &self.config.recipients {
            let rule = &self.config.rules[i];
            let Some(cap) = rule.per_message else {
                continue;
            };
            if rule.exempt.network(facts.ip)
                || rule.exempt.user(facts.user)
                || !keys::applies(rule, facts)
            {
                continue;
            }
            let n = *have.get_or_insert_with(|| ctx.recipient_count() as usize);
            if n >= cap as usize {
                return Err(Refusal::Cap {
                    rule: i,
                    cap: u64::from(cap),
                });
            }
        }
        Ok(())
    }

    /// Counts this connection for every `concurrent` rule, held until the session ends. The
    /// counters live in epochs of `concurrent_expiry`: a connection adds to the current
    /// epoch's key and the count is that key plus the previous epoch's, so a count the host
    /// never gave back (a crashed relay) is gone after at most two epochs, and the host's
    /// decrement never meets a reset counter.
    fn count_concurrent(&self, facts: &Facts<'_>) -> Result<(), Refusal> {
        let expiry = self.config.concurrent_expiry;
        // The relay numbers epochs the same way for the counts it keeps (`relay`).
        let expiry_ms = self.config.concurrent_epoch_ms().max(1);
        let epoch = host::now_ms() / expiry_ms;
        for &i in &self.config.connect {
            let rule = &self.config.rules[i];
            let (Count::Concurrent, Some(max)) = (rule.count, rule.max) else {
                continue;
            };
            if rule.exempt.network(facts.ip) {
                continue;
            }
            let key = |e: u64| keys::key_of(rule, &["c", itoa::Buffer::new().format(e)], facts);
            let (Some(now_key), Some(prev_key)) = (key(epoch), key(epoch.saturating_sub(1))) else {
                continue;
            };
            let fail = |e| limits::failed::<()>(i, rule.on_state_error, &e);
            let total = match host::counter_hold(&now_key, expiry.saturating_mul(2)) {
                Ok(n) => n,
                Err(e) => {
                    fail(e)?;
                    continue;
                }
            };
            let before = match host::counter_get(&prev_key) {
                Ok(n) => n.max(0),
                Err(e) => {
                    fail(e)?;
                    0
                }
            };
            if total.saturating_add(before) > i64::from(max) {
                return Err(Refusal::Cap {
                    rule: i,
                    cap: u64::from(max),
                });
            }
        }
        Ok(())
    }

    fn verdict(&self, stage: Stage, decided: Result<(), Refusal>) -> Verdict {
        match decided {
            Ok(()) => Verdict::Continue,
            Err(refusal) => self.refuse(stage, &refusal),
        }
    }

    fn refuse(&self, stage: Stage, refusal: &Refusal) -> Verdict {
        let verdict = reply::verdict(&self.config, stage, refusal);
        let rule = &self.config.rules[refusal.rule()];
        host::emit(
            "rate-limited",
            &[("rule", &rule.name), ("count", rule.count.name())],
        );
        verdict
    }
}

/// [`list_form`] of an address the plugin owns, reusing its buffer when it is already in
/// that form.
fn owned_list_form(address: String) -> String {
    match list_form(&address) {
        Cow::Borrowed(bare) if bare.len() == address.len() => address,
        form => form.into_owned(),
    }
}

export_plugin!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(rules: &str) -> u32 {
        let config = format!(r#"{{"rules": [{rules}]}}"#);
        let plugin = RateLimit::init(&config).expect("a valid config");
        assert_eq!(plugin.wanted_recipient_count(Hook::Data), 0);
        plugin.wanted_recipient_count(Hook::Rcpt)
    }

    #[test]
    fn the_quickstart_hands_the_relay_its_connection_count_and_rates() {
        let plugin = RateLimit::init(
            r#"{"on_state_error": "allow", "rules": [
                {"name": "flood", "count": "connections", "key": "ip", "rate": "5000/s"},
                {"name": "open", "count": "concurrent", "key": "ip", "max": 2000},
                {"name": "per-sender", "count": "messages", "key": "sender", "rate": "10000/s"},
                {"name": "rcpts", "count": "recipients", "key": "ip", "per_message": 1000}
            ]}"#,
        )
        .expect("a valid config");
        let by_ip = vec![host::KeyPart::ClientNetwork {
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }];
        let connect = plugin.relay_limits(Hook::Connect);
        let [host::RelayLimit::Concurrent(open), host::RelayLimit::Rate(flood)] =
            connect.as_slice()
        else {
            panic!("the count, then the rate: {connect:?}");
        };
        assert_eq!(
            *open,
            host::RelayCount {
                key_start: "open\x1fc".into(),
                key: by_ip.clone(),
                max: 2000,
                epoch: std::time::Duration::from_secs(3600),
            }
        );
        assert_eq!(flood.key_start, "flood\x1fr\x1f");
        assert_eq!(flood.key, by_ip);
        assert_eq!((flood.rate, flood.burst), (5000, 5000));
        let mail_from = plugin.relay_limits(Hook::MailFrom);
        let [host::RelayLimit::Rate(per_sender)] = mail_from.as_slice() else {
            panic!("the sender's rate: {mail_from:?}");
        };
        assert_eq!(per_sender.key_start, "per-sender\x1fr\x1f");
        assert_eq!(per_sender.key, [host::KeyPart::Sender]);
        assert_eq!(plugin.relay_limits(Hook::Rcpt), []);

        let exempt = RateLimit::init(
            r#"{"exempt_networks": "10.0.0.0/8", "rules": [
                {"name": "open", "count": "concurrent", "key": "ip", "max": 2000}
            ]}"#,
        )
        .expect("a valid config");
        assert_eq!(exempt.relay_limits(Hook::Connect), [], "the hook exempts");
    }

    #[test]
    fn rcpt_is_wanted_from_the_smallest_cap_when_only_caps_count_recipients() {
        let cap = |n: u32| {
            format!(r#"{{"name": "c{n}", "count": "recipients", "key": "ip", "per_message": {n}}}"#)
        };
        assert_eq!(wanted(&cap(50)), 50);
        assert_eq!(wanted(&[cap(50), cap(20), cap(90)].join(",")), 20);
        let rate = r#"{"name": "r", "count": "recipients", "key": "ip", "rate": "10/s"}"#;
        assert_eq!(wanted(&[cap(50), rate.into()].join(",")), 0);
        let both = r#"{"name": "b", "count": "recipients", "key": "ip", "rate": "10/s", "per_message": 5}"#;
        assert_eq!(wanted(both), 0, "a rate counts every recipient");
        let messages = r#"{"name": "m", "count": "messages", "key": "sender", "rate": "10/s"}"#;
        assert_eq!(
            wanted(messages),
            0,
            "no recipients rule: no rcpt hook to limit"
        );
    }
}
