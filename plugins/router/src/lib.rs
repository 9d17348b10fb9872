//! The bundled `router` policy plugin (plugins/README.md#router): ordered rules choose a
//! pool, MX, hold or drop for each destination at delivery.
//!
//! Layout: `config` parses and compiles the config table once per instance; `rules` holds
//! the route rules and how they match; `matcher` the domain and name sets they use. This
//! file has the three hooks:
//! - `data` classifies the message into a stream (an annotation, from header rules) and
//!   removes internal headers;
//! - `route` picks the first rule that matches the envelope and its annotations;
//! - `rcpt` refuses recipients no rule can serve (with `unmatched = "refuse"`) and
//!   recipients on the suppression list.

mod config;
mod matcher;
mod rules;

use wasmrelay_plugin_sdk::{
    export_plugin, host, Context, Envelope, Hook, Message, Plugin, RouteDecision, Verdict,
    MAX_WANTED_HEADERS,
};

use config::{FailMode, Policy, Unmatched};
use rules::{Facts, Match};

/// Reason of a hold when no rule matches at delivery under `unmatched = "refuse"`.
const NO_RULE: &str = "no routing rule matches this message";

struct Router {
    policy: Policy,
}

/// Nothing but the config lives in an instance, so it may serve any session at any call: the
/// host gives a pooled instance back after every call (docs/plugins.md#instances).
#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 21] = *b"session-memory: none\n";

impl Plugin for Router {
    const HOOKS: &'static [Hook] = &[Hook::Rcpt, Hook::Data, Hook::Route];

    fn init(config: &str) -> Result<Self, String> {
        Ok(Router {
            policy: Policy::parse(config)?,
        })
    }

    /// Only what the config uses: rcpt for suppression or unservable recipients, data for
    /// stream classification or header removal, route for routing rules.
    fn hooks(&self) -> Vec<Hook> {
        let p = &self.policy;
        let mut hooks = Vec::new();
        if p.checks_rcpt() {
            hooks.push(Hook::Rcpt);
        }
        if !p.classify.is_empty() || !p.remove_headers.is_empty() {
            hooks.push(Hook::Data);
        }
        if !(p.routes.is_empty() && p.unmatched == Unmatched::Relay) {
            hooks.push(Hook::Route);
        }
        hooks
    }

    /// With suppression alone at `rcpt` (unmatched recipients not refused), only recipients
    /// on the list can be refused: the relay looks the others up and spares their calls.
    fn wanted_recipient_lists(&self) -> Vec<String> {
        let p = &self.policy;
        match &p.suppression {
            Some(s) if !p.refuses_unmatched() => vec![s.list.clone()],
            _ => Vec::new(),
        }
    }

    /// `data` only classifies by the `classify` headers and removes `remove_headers`: a
    /// message with none of them is left as it is, so the host need not call it.
    fn wanted_headers(&self, hook: Hook) -> Vec<String> {
        if hook != Hook::Data {
            return Vec::new();
        }
        let p = &self.policy;
        let mut names: Vec<String> = Vec::new();
        let all = p
            .classify
            .iter()
            .map(|c| &c.header)
            .chain(&p.remove_headers);
        for name in all {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.clone());
            }
        }
        if names.len() > MAX_WANTED_HEADERS {
            // Too many to declare: called for every message, as without a declaration.
            return Vec::new();
        }
        names
    }

    fn rcpt(&mut self, ctx: &Context, recipient: &str) -> Verdict {
        let p = &self.policy;
        if !p.checks_rcpt() {
            return Verdict::Continue;
        }
        // Role addresses stay reachable whatever the rules say (RFC 5321 §4.5.1).
        let local = recipient.rsplit_once('@').map_or(recipient, |(l, _)| l);
        if local
            .trim_start_matches('<')
            .eq_ignore_ascii_case("postmaster")
        {
            return Verdict::Continue;
        }
        let mut facts = SessionFacts::new(ctx);
        if p.refuses_unmatched() {
            let domain = domain_of(recipient);
            let servable = p
                .routes
                .iter()
                .any(|r| r.matches(&domain, &p.stream_annotation, &mut facts) != Match::No);
            if !servable {
                return Verdict::reject(
                    550,
                    "5.7.1",
                    "Recipient not served here: no routing rule for this sender and recipient",
                );
            }
        }
        let Some(s) = &p.suppression else {
            return Verdict::Continue;
        };
        let exempt = s.exempt.as_ref().is_some_and(|d| {
            facts
                .sender_domain()
                .is_some_and(|sender| d.matches(sender))
        });
        if exempt {
            return Verdict::Continue;
        }
        match host::list_contains(&s.list, &host::list_form(recipient)) {
            Ok(false) => Verdict::Continue,
            Ok(true) => Verdict::reject(
                550,
                "5.7.1",
                "Recipient is on the suppression list (unsubscribed or repeatedly bounced)",
            ),
            Err(e) => {
                host::warn(&format!(
                    "suppression list {:?} unavailable ({e:?}); failing {}",
                    s.list,
                    match s.on_error {
                        FailMode::Open => "open",
                        FailMode::Closed => "closed",
                    }
                ));
                match s.on_error {
                    FailMode::Open => Verdict::Continue,
                    FailMode::Closed => Verdict::tempfail(
                        451,
                        "4.3.0",
                        "Suppression list unavailable, try again later",
                    ),
                }
            }
        }
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        let p = &self.policy;
        let classify = !p.classify.is_empty()
            && (p.classify_untrusted || ctx.attribute("trusted").as_deref() == Some("yes"));
        // Headers this call found absent: removing one is a host call that changes nothing.
        let mut absent: Vec<&str> = Vec::new();
        if classify {
            let stream = p.classify.iter().find_map(|c| {
                let values = msg.header(&c.header);
                if values.is_empty() {
                    absent.push(&c.header);
                }
                c.stream_for(&values)
            });
            if let Some(stream) = stream {
                // A plugin earlier in the chain that set the stream knows better.
                let set = ctx
                    .annotations()
                    .iter()
                    .any(|(name, _)| *name == p.stream_annotation);
                if !set {
                    if let Err(e) = ctx.set_annotation(&p.stream_annotation, &stream) {
                        host::warn(&format!("cannot set the stream annotation: {e}"));
                    }
                }
            }
        }
        for name in &p.remove_headers {
            if !absent.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                msg.remove_header(name);
            }
        }
        Verdict::Continue
    }

    fn route(&mut self, env: &Envelope, domain: &str, _recipients: &[String]) -> RouteDecision {
        let p = &self.policy;
        if p.routes.is_empty() && p.unmatched == Unmatched::Relay {
            return RouteDecision::Continue;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut facts = EnvelopeFacts::new(env);
        for rule in &p.routes {
            if rule.matches(&domain, &p.stream_annotation, &mut facts) == Match::Yes {
                return rule.action.decision();
            }
        }
        match p.unmatched {
            Unmatched::Relay => RouteDecision::Continue,
            Unmatched::Refuse => RouteDecision::Hold(NO_RULE.into()),
        }
    }
}

/// The lower-case domain of a recipient as the hooks get it.
fn domain_of(address: &str) -> String {
    // What follows the last `@` (a domain never holds one): brackets and a source route fall
    // away without parsing the whole address, per recipient and per message.
    address
        .trim()
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim_end_matches(['>', '.'])
        .to_ascii_lowercase()
}

/// The sender's domain; `None` for the null sender.
fn sender_domain(mail_from: &str) -> Option<String> {
    let domain = domain_of(mail_from);
    (!domain.is_empty()).then_some(domain)
}

/// Facts at `rcpt`, fetched from the context the first time a rule asks. Annotations are
/// not known yet (the stream is set at `data`).
struct SessionFacts<'a> {
    ctx: &'a Context,
    sender: Option<Option<String>>,
    user: Option<Option<String>>,
    listener: Option<Option<String>>,
}

impl<'a> SessionFacts<'a> {
    fn new(ctx: &'a Context) -> Self {
        SessionFacts {
            ctx,
            sender: None,
            user: None,
            listener: None,
        }
    }
}

impl Facts for SessionFacts<'_> {
    fn sender_domain(&mut self) -> Option<&str> {
        let ctx = self.ctx;
        self.sender
            .get_or_insert_with(|| sender_domain(&ctx.mail_from().unwrap_or_default()))
            .as_deref()
    }
    fn auth_user(&mut self) -> Option<&str> {
        let ctx = self.ctx;
        self.user.get_or_insert_with(|| ctx.auth_user()).as_deref()
    }
    fn listener(&mut self) -> Option<&str> {
        let ctx = self.ctx;
        self.listener
            .get_or_insert_with(|| Some(ctx.listener()))
            .as_deref()
    }
    fn annotation(&mut self, _name: &str) -> Option<Option<&str>> {
        None
    }
}

/// Facts at `route`, from the spooled envelope, fetched the first time a rule asks.
struct EnvelopeFacts<'a> {
    env: &'a Envelope,
    sender: Option<Option<String>>,
    user: Option<Option<String>>,
    listener: Option<Option<String>>,
    annotations: Vec<(String, Option<String>)>,
}

impl<'a> EnvelopeFacts<'a> {
    fn new(env: &'a Envelope) -> Self {
        EnvelopeFacts {
            env,
            sender: None,
            user: None,
            listener: None,
            annotations: Vec::new(),
        }
    }
}

impl Facts for EnvelopeFacts<'_> {
    fn sender_domain(&mut self) -> Option<&str> {
        let env = self.env;
        self.sender
            .get_or_insert_with(|| sender_domain(&env.mail_from()))
            .as_deref()
    }
    fn auth_user(&mut self) -> Option<&str> {
        let env = self.env;
        self.user
            .get_or_insert_with(|| env.attribute("auth-user"))
            .as_deref()
    }
    fn listener(&mut self) -> Option<&str> {
        let env = self.env;
        self.listener
            .get_or_insert_with(|| env.attribute("listener"))
            .as_deref()
    }
    fn annotation(&mut self, name: &str) -> Option<Option<&str>> {
        let i = match self.annotations.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let value = self.env.annotation(name);
                self.annotations.push((name.to_string(), value));
                self.annotations.len() - 1
            }
        };
        Some(self.annotations[i].1.as_deref())
    }
}

export_plugin!(Router);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmrelay_plugin_sdk::Address;

    #[test]
    fn rcpt_is_wanted_for_listed_recipients_only_when_suppression_is_all_it_checks() {
        let lists = |json: &str| {
            Router::init(json)
                .expect("a valid config")
                .wanted_recipient_lists()
        };
        let suppression = r#""suppression": {"list": "suppression"}"#;
        assert_eq!(lists(&format!("{{{suppression}}}")), ["suppression"]);
        let refuse = r#""routes": [{"recipient_domains": ["a.test"], "mx": "opportunistic"}], "unmatched": "refuse""#;
        assert!(
            lists(&format!("{{{suppression}, {refuse}}}")).is_empty(),
            "unservable recipients are refused too: every call"
        );
        assert!(lists("{}").is_empty());
    }

    #[test]
    fn domains_of_addresses() {
        assert_eq!(domain_of("User@Example.COM"), "example.com");
        assert_eq!(domain_of("<a@b.test.>"), "b.test");
        assert_eq!(domain_of("a@[127.0.0.1]"), "[127.0.0.1]");
        assert_eq!(sender_domain(""), None);
        assert_eq!(sender_domain("a@X.test").as_deref(), Some("x.test"));
    }

    /// The domain as the SDK's address parser finds it, for the addresses it accepts.
    #[test]
    fn domains_are_those_of_the_address_parser() {
        for address in [
            "a@b.test",
            " <A@B.Test> ",
            "<@relay.test:u@Dest.test>",
            "\"x@y\"@quoted.test",
            "a@b.test.",
            "<a@[IPv6:2001:db8::1]>",
            "<>",
            "",
        ] {
            let parsed = Address::parse(address).expect(address);
            assert_eq!(domain_of(address), parsed.domain(), "{address:?}");
        }
    }

    #[test]
    fn data_is_wanted_only_for_the_headers_it_reads_or_removes() {
        let router = |json: &str| Router {
            policy: Policy::parse(json).expect("a valid config"),
        };
        let r = router(
            r#"{"remove_headers": ["X-Stream", "X-Internal"], "classify": [
                {"header": "x-stream"},
                {"header": "Precedence", "equals": ["bulk"], "stream": "newsletter"}]}"#,
        );
        assert_eq!(
            r.wanted_headers(Hook::Data),
            ["x-stream", "Precedence", "X-Internal"],
            "each name once, whatever its case"
        );
        assert!(r.wanted_headers(Hook::Rcpt).is_empty());
        assert!(r.wanted_headers(Hook::RecipientCopy).is_empty());
        let many: Vec<String> = (0..=MAX_WANTED_HEADERS)
            .map(|i| format!("\"X-{i}\""))
            .collect();
        let r = router(&format!(r#"{{"remove_headers": [{}]}}"#, many.join(",")));
        assert!(
            r.wanted_headers(Hook::Data).is_empty(),
            "too many to declare: every message"
        );
    }
}
