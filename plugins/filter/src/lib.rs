//! The bundled `filter` policy plugin (plugins/README.md#filter documents the config).
//!
//! Layout: [`config`] reads and compiles the rules once in `init`; [`rules`] holds the
//! compiled rules, their scopes and replies; [`matchers`] the address lists; [`dnsbl`]
//! the blocklist lookups at connect; [`mime`] the attachment walk at DATA, nested messages
//! included. This file runs the rules of each stage in config order: the first reject,
//! tempfail or accept decides; tags and quarantine marks add up and are applied at DATA.
//!
//! Quarantine: the data hook cannot route, so it sets the annotation `quarantine` (the
//! reasons) and this plugin's `route` hook answers it with `hold`. A `queue flush` asks the
//! route hook again; a kv marker per message and domain tells that second call apart, and
//! it lets the message go.

mod config;
mod dnsbl;
mod matchers;
mod mime;
mod rules;

use std::net::IpAddr;

use wasmrelay_plugin_sdk::{
    export_plugin, host, AuthResult, Context, Envelope, Hook, Message, Plugin, RouteDecision,
    Verdict,
};

use crate::config::Rules;
use crate::mime::Attachments;
use crate::rules::{clean, Action, Check, OnDnsError, Rule, Stage};

/// The annotation a quarantine sets (other plugins may set it too) and `route` answers.
pub const QUARANTINE: &str = "quarantine";

struct Filter {
    rules: Rules,
    /// Whether any rule runs at connect, MAIL FROM, RCPT, DATA; whether any quarantines.
    at: [bool; 4],
    quarantines: bool,
    /// The fields `tag` rules add: copies arriving from outside are removed at DATA, so a
    /// sender cannot forge our verdict.
    tag_fields: Vec<String>,
    /// The message traits of which one must be there for the DATA rules to do anything
    /// (`None`: any message may concern them).
    data_traits: Option<Vec<String>>,
    /// An `accept` at connect: the session skips every later rule.
    session_exempt: bool,
    /// Tags and quarantine marks from connect, for every transaction of the session.
    session_marks: Vec<Mark>,
    tx: Transaction,
}

/// What a transaction collected before DATA.
#[derive(Default)]
struct Transaction {
    exempt: bool,
    marks: Vec<Mark>,
    /// Recipients an `accept` rule let in: if they are all the recipients, DATA rules skip.
    accepted_rcpts: Vec<String>,
}

#[derive(Clone)]
enum Mark {
    Tag(String, String),
    Quarantine(String),
}

/// The result of running one stage's rules.
enum Outcome {
    Continue,
    Verdict(Verdict),
}

fn stage_index(stage: Stage) -> usize {
    match stage {
        Stage::Connect => 0,
        Stage::MailFrom => 1,
        Stage::Rcpt => 2,
        Stage::Data => 3,
    }
}

impl Plugin for Filter {
    /// Every hook a config may need; `hooks` narrows it to what this config uses.
    const HOOKS: &'static [Hook] = &[
        Hook::Connect,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Data,
        Hook::Route,
    ];

    fn init(config: &str) -> Result<Self, String> {
        let rules = Rules::parse(config)?;
        let mut at = [false; 4];
        for rule in &rules.rules {
            for stage in [Stage::Connect, Stage::MailFrom, Stage::Rcpt, Stage::Data] {
                at[stage_index(stage)] |= rule.check.runs_at(stage);
            }
        }
        let marks = rules
            .rules
            .iter()
            .any(|r| matches!(r.action, Action::Tag(..) | Action::Quarantine));
        // Marks from earlier stages are applied at DATA.
        at[3] |= marks;
        let quarantines = rules
            .rules
            .iter()
            .any(|r| matches!(r.action, Action::Quarantine));
        let mut tag_fields: Vec<String> = Vec::new();
        for rule in &rules.rules {
            if let Action::Tag(name, _) = &rule.action {
                if !tag_fields.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                    tag_fields.push(name.clone());
                }
            }
        }
        let data_traits = data_traits(&rules, &tag_fields);
        Ok(Filter {
            rules,
            at,
            quarantines,
            data_traits,
            tag_fields,
            session_exempt: false,
            session_marks: Vec::new(),
            tx: Transaction::default(),
        })
    }

    /// Only what the rules need: connect for connection rules, mail-from for sender rules
    /// and whenever recipient rules keep transaction state (it starts the transaction),
    /// route for quarantine. Content rules alone keep nothing between MAIL FROM and DATA,
    /// so they cost one call per message, not two.
    fn hooks(&self) -> Vec<Hook> {
        let mut hooks = Vec::new();
        if self.at[0] {
            hooks.push(Hook::Connect);
        }
        if self.at[1] || self.at[2] {
            hooks.push(Hook::MailFrom);
        }
        if self.at[2] {
            hooks.push(Hook::Rcpt);
        }
        if self.at[3] {
            hooks.push(Hook::Data);
        }
        if self.quarantines {
            hooks.push(Hook::Route);
        }
        hooks
    }

    /// The DATA rules' traits, so a message none of them can match costs no call: an
    /// application's own text mail, with the quickstart's rules.
    fn wanted_message_traits(&self, hook: Hook) -> Vec<String> {
        match (hook, &self.data_traits) {
            (Hook::Data, Some(traits)) => traits.clone(),
            _ => Vec::new(),
        }
    }

    fn connect(&mut self, ctx: &Context) -> Verdict {
        self.session_exempt = false;
        self.session_marks.clear();
        if !self.at[0] {
            return Verdict::Continue;
        }
        let ip: Option<IpAddr> = ctx.remote_ip().parse().ok();
        let mut marks = Vec::new();
        let outcome = self.run(Stage::Connect, ctx, None, &mut marks, |rule| {
            let (Check::Dnsbl(list), Some(ip)) = (&rule.check, ip) else {
                return Ok(None);
            };
            match dnsbl::check(list, ip) {
                dnsbl::Outcome::NotListed => Ok(None),
                dnsbl::Outcome::Listed { zone, answer } => {
                    Ok(Some(format!("{ip} is listed by {zone} ({answer})")))
                }
                dnsbl::Outcome::Failed { zone, why } => match list.on_error {
                    OnDnsError::Continue => Ok(None),
                    OnDnsError::Tempfail => Err(Verdict::tempfail(
                        421,
                        "4.7.1",
                        clean(&format!(
                            "Blocklist {zone} unavailable ({why}), try again later"
                        )),
                    )),
                },
            }
        });
        self.session_marks = marks;
        match outcome {
            Outcome::Verdict(Verdict::Accept) => {
                self.session_exempt = true;
                Verdict::Accept
            }
            Outcome::Verdict(v) => v,
            Outcome::Continue => Verdict::Continue,
        }
    }

    fn mail_from(&mut self, ctx: &Context, sender: &str) -> Verdict {
        self.tx = Transaction::default();
        if !self.at[1] || self.session_exempt {
            return Verdict::Continue;
        }
        let size = ctx.size();
        let mut marks = Vec::new();
        let outcome = self.run(Stage::MailFrom, ctx, Some(sender), &mut marks, |rule| {
            Ok(match &rule.check {
                Check::Sender(list) => list.contains(sender).then(|| display_address(sender)),
                Check::MaxSize(max) => too_big(size, *max),
                _ => None,
            })
        });
        self.tx.marks = marks;
        match outcome {
            Outcome::Verdict(Verdict::Accept) => {
                self.tx.exempt = true;
                Verdict::Accept
            }
            Outcome::Verdict(v) => v,
            Outcome::Continue => Verdict::Continue,
        }
    }

    fn rcpt(&mut self, ctx: &Context, recipient: &str) -> Verdict {
        if !self.at[2] || self.session_exempt || self.tx.exempt {
            return Verdict::Continue;
        }
        let mut marks = Vec::new();
        let outcome = self.run(Stage::Rcpt, ctx, None, &mut marks, |rule| {
            Ok(match &rule.check {
                Check::Recipient(list) => {
                    list.contains(recipient).then(|| display_address(recipient))
                }
                _ => None,
            })
        });
        self.tx.marks.extend(marks);
        match outcome {
            Outcome::Verdict(Verdict::Accept) => {
                self.tx.accepted_rcpts.push(recipient.to_ascii_lowercase());
                Verdict::Accept
            }
            Outcome::Verdict(v) => v,
            Outcome::Continue => Verdict::Continue,
        }
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        if !self.at[3] {
            return Verdict::Continue;
        }
        let mut marks: Vec<Mark> = self.session_marks.clone();
        marks.append(&mut self.tx.marks);
        let mut verdict = Verdict::Continue;
        if !self.session_exempt && !self.tx.exempt && !self.all_rcpts_accepted(ctx) {
            let mut lazy = Lazy::default();
            let max_nested_scan = self.rules.max_nested_scan;
            let outcome = self.run(Stage::Data, ctx, None, &mut marks, |rule| {
                Ok(lazy.check(rule, ctx, msg, max_nested_scan))
            });
            if let Outcome::Verdict(v) = outcome {
                if !matches!(v, Verdict::Accept) {
                    return v;
                }
                verdict = v;
            }
        }
        if !self.tag_fields.is_empty() && ctx.attribute("trusted").as_deref() != Some("yes") {
            for field in &self.tag_fields {
                msg.remove_header(field);
            }
        }
        match apply_marks(ctx, msg, &marks) {
            Ok(()) => verdict,
            // Never deliver what a rule meant to hold.
            Err(e) => {
                host::error(&format!("cannot set the quarantine annotation: {e}"));
                Verdict::tempfail(451, "4.3.0", "Quarantine unavailable, try again later")
            }
        }
    }

    fn route(&mut self, env: &Envelope, domain: &str, _recipients: &[String]) -> RouteDecision {
        if !self.quarantines {
            return RouteDecision::Continue;
        }
        let Some(reason) = env.annotation(QUARANTINE) else {
            return RouteDecision::Continue;
        };
        // Held recipients are asked about again only when `queue flush` releases them.
        // The domain hashed: a long one would push the key past the host's 256 bytes.
        let key = format!("held:{}:{:016x}", env.queue_id(), fnv1a(domain));
        match host::kv_add(&key, b"1", Some(self.rules.quarantine_ttl)) {
            Ok(true) => RouteDecision::Hold(clean(&format!("quarantined: {reason}"))),
            Ok(false) => {
                host::info(&format!(
                    "quarantined message {} released for {domain}",
                    env.queue_id()
                ));
                RouteDecision::Continue
            }
            Err(e) => {
                host::warn(&format!("quarantine state unavailable ({e:?}); holding"));
                RouteDecision::Hold(clean(&format!("quarantined: {reason}")))
            }
        }
    }
}

impl Filter {
    /// Runs the rules of `stage` in order. `check` says whether a rule matches (with the
    /// detail for replies and logs), or returns a verdict of its own. Tags and quarantine
    /// marks go to `marks`; the first reject, tempfail or accept ends the stage.
    fn run(
        &self,
        stage: Stage,
        ctx: &Context,
        sender: Option<&str>,
        marks: &mut Vec<Mark>,
        mut check: impl FnMut(&Rule) -> Result<Option<String>, Verdict>,
    ) -> Outcome {
        let mut size_capped = false;
        for rule in &self.rules.rules {
            if !rule.check.runs_at(stage) || !rule.scope.applies(ctx, sender) {
                continue;
            }
            // The first size rule whose scope applies sets the cap; later ones do not.
            if matches!(rule.check, Check::MaxSize(_)) {
                if size_capped {
                    continue;
                }
                size_capped = true;
            }
            let detail = match check(rule) {
                Ok(Some(detail)) => clean(&detail),
                Ok(None) => continue,
                Err(verdict) => return Outcome::Verdict(verdict),
            };
            host::info(&format!(
                "rule {} ({}): {detail}",
                rule.name,
                rule.action.name()
            ));
            host::emit(
                "filter.match",
                &[
                    ("rule", &rule.name),
                    ("action", rule.action.name()),
                    ("detail", &detail),
                ],
            );
            match &rule.action {
                Action::Accept => return Outcome::Verdict(Verdict::Accept),
                Action::Tag(name, value) => {
                    marks.push(Mark::Tag(name.clone(), value.fill(&rule.name, &detail)))
                }
                Action::Quarantine => {
                    marks.push(Mark::Quarantine(format!("{}: {detail}", rule.name)))
                }
                Action::Reject(_) | Action::Tempfail(_) => {
                    let verdict = rule.refusal(stage, &detail).expect("a refusing action");
                    return Outcome::Verdict(verdict);
                }
            }
        }
        Outcome::Continue
    }

    fn all_rcpts_accepted(&self, ctx: &Context) -> bool {
        if self.tx.accepted_rcpts.is_empty() {
            return false;
        }
        let rcpts = ctx.recipients();
        !rcpts.is_empty()
            && rcpts
                .iter()
                .all(|r| self.tx.accepted_rcpts.contains(&r.to_ascii_lowercase()))
    }
}

/// What the DATA rules read, fetched once and only when a rule needs it.
#[derive(Default)]
struct Lazy {
    headers: Option<Vec<(String, String)>>,
    attachments: Option<Attachments>,
    auth: Option<Vec<AuthResult>>,
}

impl Lazy {
    fn check(&mut self, rule: &Rule, ctx: &Context, msg: &Message, nested: u64) -> Option<String> {
        match &rule.check {
            Check::MaxSize(max) => too_big(Some(msg.size()), *max),
            Check::RequireHeaders(names) => {
                let headers = self.headers.get_or_insert_with(|| msg.headers());
                names
                    .iter()
                    .find(|name| {
                        !headers
                            .iter()
                            .any(|(n, v)| n.eq_ignore_ascii_case(name) && !v.trim().is_empty())
                    })
                    .map(|name| format!("no {name} header"))
            }
            Check::Header { name, regex } => {
                let headers = self.headers.get_or_insert_with(|| msg.headers());
                headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case(name) && regex.is_match(v))
                    .then(|| format!("{name} header"))
            }
            Check::Attachments(blocked) => self
                .attachments
                .get_or_insert_with(|| Attachments::read(msg, nested))
                .blocked_by(blocked),
            Check::Auth(check) => {
                let results = self.auth.get_or_insert_with(|| ctx.auth_results());
                results.iter().find_map(|r| {
                    if !r.method.eq_ignore_ascii_case(check.method) {
                        return None;
                    }
                    let result = r.result.to_ascii_lowercase();
                    if !check.results.contains(&result) {
                        return None;
                    }
                    let policy = dmarc_policy(&r.detail);
                    if let Some(wanted) = &check.policies {
                        if !policy.is_some_and(|p| wanted.iter().any(|w| w == p)) {
                            return None;
                        }
                    }
                    Some(match policy {
                        Some(p) => {
                            format!("{}={result} for {} (policy {p})", check.method, r.domain)
                        }
                        None => format!("{}={result} for {}", check.method, r.domain),
                    })
                })
            }
            Check::Dnsbl(_) | Check::Sender(_) | Check::Recipient(_) => None,
        }
    }
}

/// The message traits (WIT `host.want-messages-with`) of which a message must have one for
/// the DATA hook to do anything: one per DATA rule, what it can match, and `untrusted-client`
/// when tags are removed from outside mail. `None` when some message without any could still
/// concern the hook: a mark from an earlier stage to apply, a rule that matches what a
/// message lacks (`require_headers`), attachment types a plain text body has.
fn data_traits(rules: &Rules, tag_fields: &[String]) -> Option<Vec<String>> {
    let mut traits = Vec::new();
    if !tag_fields.is_empty() {
        traits.push("untrusted-client".to_string());
    }
    for rule in &rules.rules {
        let marks = matches!(rule.action, Action::Tag(..) | Action::Quarantine);
        let before_data = [Stage::Connect, Stage::MailFrom, Stage::Rcpt]
            .into_iter()
            .any(|stage| rule.check.runs_at(stage));
        if marks && before_data {
            return None;
        }
        if !rule.check.runs_at(Stage::Data) {
            continue;
        }
        let t = match &rule.check {
            Check::MaxSize(max) => format!("larger-than:{max}"),
            Check::Header { name, .. } => format!("header:{name}"),
            Check::Auth(_) => "auth-results".to_string(),
            Check::Attachments(blocked) if !blocked.may_match_plain_parts() => {
                "attachment".to_string()
            }
            _ => return None,
        };
        if !traits.contains(&t) {
            traits.push(t);
        }
    }
    Some(traits)
}

/// The published DMARC policy in a result's detail (`policy.dmarc=reject`).
fn dmarc_policy(detail: &str) -> Option<&str> {
    detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("policy.dmarc="))
        .map(|p| p.trim_end_matches(';'))
}

/// FNV-1a of the lower-cased `text`: short, stable across builds and relays.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

fn too_big(size: Option<u64>, max: u64) -> Option<String> {
    size.filter(|&s| s > max)
        .map(|s| format!("{s} bytes, the limit is {max}"))
}

fn display_address(address: &str) -> String {
    if address.is_empty() {
        "<>".into()
    } else {
        address.to_string()
    }
}

/// Adds the tags and sets the quarantine annotation.
fn apply_marks(ctx: &Context, msg: &Message, marks: &[Mark]) -> Result<(), String> {
    let mut reasons: Vec<&str> = Vec::new();
    for mark in marks {
        match mark {
            Mark::Tag(name, value) => msg.add_header(name, value),
            Mark::Quarantine(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    // Cut well under the host's 1 KiB for annotation values.
    let value = clean(&reasons.join("; "));
    ctx.set_annotation(QUARANTINE, &value)
}

export_plugin!(Filter);

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(rules: &str) -> Vec<Hook> {
        Filter::init(&format!(r#"{{"rules": [{rules}]}}"#))
            .expect("a valid config")
            .hooks()
    }

    fn traits(rules: &str) -> Vec<String> {
        Filter::init(&format!(r#"{{"rules": [{rules}]}}"#))
            .expect("a valid config")
            .wanted_message_traits(Hook::Data)
    }

    #[test]
    fn data_is_limited_to_the_messages_its_rules_can_match() {
        let exe = r#"{"name": "exe", "attachment_extensions": ["exe"],
                      "attachment_types": ["application/x-msdownload"]}"#;
        let dmarc = r#"{"name": "dmarc", "auth": "dmarc", "dmarc_policy": ["reject"]}"#;
        assert_eq!(
            traits(&format!("{exe}, {dmarc}")),
            ["attachment", "auth-results"]
        );
        let size = r#"{"name": "big", "max_size": 1000}"#;
        let header = r#"{"name": "h", "header": "X-Spam", "pattern": "yes", "action": "tag",
                         "tag": "X-Filtered: spam"}"#;
        assert_eq!(
            traits(&format!("{size}, {header}")),
            ["untrusted-client", "larger-than:1000", "header:X-Spam"],
            "tags are removed from outside mail"
        );
        // What a message lacks, a plain body's type, a mark from MAIL FROM: every message.
        let required = r#"{"name": "r", "require_headers": ["Date"]}"#;
        assert!(traits(&format!("{exe}, {required}")).is_empty());
        let text = r#"{"name": "t", "attachment_types": ["text/*"]}"#;
        assert!(traits(text).is_empty());
        let marked = r#"{"name": "m", "sender_in": ["a@example.com"], "action": "quarantine"}"#;
        assert!(traits(&format!("{exe}, {marked}")).is_empty());
        let sized_tag = r#"{"name": "s", "max_size": 10, "action": "tag", "tag": "X-Big: yes"}"#;
        assert!(
            traits(sized_tag).is_empty(),
            "a size tag may mark at MAIL FROM"
        );
    }

    #[test]
    fn mail_from_is_asked_only_when_the_transaction_keeps_state() {
        let content = r#"{"name": "exe", "attachment_extensions": ["exe"]}"#;
        assert_eq!(hooks(content), [Hook::Data]);
        // Recipient rules keep what they accepted for DATA: MAIL FROM starts it afresh.
        let rcpt = r#"{"name": "r", "recipient_in": ["a@example.com"], "action": "accept"}"#;
        assert_eq!(
            hooks(&format!("{content}, {rcpt}")),
            [Hook::MailFrom, Hook::Rcpt, Hook::Data]
        );
        let sender = r#"{"name": "s", "sender_in": ["a@example.com"]}"#;
        assert_eq!(hooks(sender), [Hook::MailFrom]);
    }
}
