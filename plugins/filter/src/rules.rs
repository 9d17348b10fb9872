//! Compiled rules: what each checks, whom it applies to, and what it does when it matches.

use std::collections::HashSet;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use wasmrelay_plugin_sdk::{Context, Reply, Verdict};

use crate::matchers::{AddressSet, Membership};

/// The stage a check runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    MailFrom,
    Rcpt,
    Data,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub scope: Scope,
    pub check: Check,
}

#[derive(Debug)]
pub enum Check {
    Dnsbl(Dnsbl),
    Sender(Membership),
    Recipient(Membership),
    /// Bytes; the first size rule whose scope matches sets the cap.
    MaxSize(u64),
    RequireHeaders(Vec<String>),
    Header {
        name: String,
        regex: Regex,
    },
    Attachments(crate::mime::Blocked),
    Auth(AuthCheck),
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Dnsbl(_) => "dnsbl",
            Check::Sender(_) => "sender",
            Check::Recipient(_) => "recipient",
            Check::MaxSize(_) => "max_size",
            Check::RequireHeaders(_) => "require_headers",
            Check::Header { .. } => "header",
            Check::Attachments(_) => "attachments",
            Check::Auth(_) => "auth",
        }
    }

    /// Whether the check runs at `stage` (a size cap runs at MAIL FROM on the SIZE
    /// parameter, and at DATA on the real size).
    pub fn runs_at(&self, stage: Stage) -> bool {
        match self {
            Check::Dnsbl(_) => stage == Stage::Connect,
            Check::Sender(_) => stage == Stage::MailFrom,
            Check::Recipient(_) => stage == Stage::Rcpt,
            Check::MaxSize(_) => matches!(stage, Stage::MailFrom | Stage::Data),
            _ => stage == Stage::Data,
        }
    }

    /// The default reply text before the match's detail.
    fn default_text(&self) -> &'static str {
        match self {
            Check::Dnsbl(_) => "Client address listed",
            Check::Sender(_) => "Sender refused by policy",
            Check::Recipient(_) => "Recipient refused by policy",
            Check::MaxSize(_) => "Message too large",
            Check::RequireHeaders(_) => "Message lacks a required header",
            Check::Header { .. } => "Message refused by content policy",
            Check::Attachments(_) => "Attachment type not accepted",
            Check::Auth(_) => "Message fails sender authentication",
        }
    }
}

#[derive(Debug)]
pub struct Dnsbl {
    pub zones: Vec<String>,
    /// Only these answers list a client; any 127.0.0.0/8 answer when none are given.
    pub answers: Option<Vec<std::net::Ipv4Addr>>,
    pub on_error: OnDnsError,
    /// For the whole check, every zone included.
    pub timeout: Duration,
}

/// What an unanswered DNSBL query means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDnsError {
    /// Fail open: the client is treated as not listed.
    Continue,
    /// Fail closed, temporarily: 421, the client retries later.
    Tempfail,
}

#[derive(Debug)]
pub struct AuthCheck {
    /// `spf`, `dkim` or `dmarc`.
    pub method: &'static str,
    /// Results that match (lower-case).
    pub results: Vec<String>,
    /// For DMARC: only these published policies (`policy.dmarc=` of the result).
    pub policies: Option<Vec<String>>,
}

/// Which clients a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clients {
    All,
    /// Neither authenticated nor in `relay_networks` (`trusted` is not `yes`).
    Outside,
    Trusted,
}

#[derive(Debug)]
pub struct Scope {
    pub senders: Option<AddressSet>,
    pub users: Option<HashSet<String>>,
    pub clients: Clients,
}

impl Scope {
    /// Whether the rule applies to this session and (when known) sender.
    pub fn applies(&self, ctx: &Context, sender: Option<&str>) -> bool {
        if self.clients != Clients::All {
            let trusted = ctx.attribute("trusted").as_deref() == Some("yes");
            if trusted != (self.clients == Clients::Trusted) {
                return false;
            }
        }
        if let Some(users) = &self.users {
            let user = ctx.auth_user().map(|u| u.to_ascii_lowercase());
            if !user.is_some_and(|u| users.contains(&u)) {
                return false;
            }
        }
        if let Some(senders) = &self.senders {
            let sender = sender.map(str::to_string).or_else(|| ctx.mail_from());
            if !sender.is_some_and(|s| senders.contains(&s)) {
                return false;
            }
        }
        true
    }
}

/// Reply text, tag value or quarantine reason with `{rule}` and `{detail}` filled in.
#[derive(Debug, Clone)]
pub struct Template(String);

impl Template {
    pub fn new(text: &str) -> Template {
        Template(text.to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fill(&self, rule: &str, detail: &str) -> String {
        clean(&self.0.replace("{rule}", rule).replace("{detail}", detail))
    }
}

/// One line of printable ASCII, at most 400 bytes: details come from the network (file
/// names, addresses) and end up in replies and header fields.
pub fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > 400 {
        out.truncate(397);
        out.push_str("...");
    }
    out
}

#[derive(Debug)]
pub enum Action {
    /// With the configured `(code, enhanced, text)`, or the default for the stage.
    Reject(Option<(u16, Option<String>, Template)>),
    Tempfail(Option<(u16, Option<String>, Template)>),
    /// Adds the field `name: value` at DATA.
    Tag(String, Template),
    /// Holds the message at delivery (annotation `quarantine`, answered by `route`).
    Quarantine,
    /// Accepts now; this plugin's later rules are skipped for the transaction.
    Accept,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Reject(_) => "reject",
            Action::Tempfail(_) => "tempfail",
            Action::Tag(..) => "tag",
            Action::Quarantine => "quarantine",
            Action::Accept => "accept",
        }
    }
}

impl Rule {
    /// The refusal for a match at `stage` with `detail`, for reject and tempfail actions.
    pub fn refusal(&self, stage: Stage, detail: &str) -> Option<Verdict> {
        let (configured, permanent) = match &self.action {
            Action::Reject(r) => (r, true),
            Action::Tempfail(r) => (r, false),
            _ => return None,
        };
        let reply = match configured {
            Some((code, enhanced, text)) if !text.is_empty() => Reply::new(
                *code,
                enhanced.as_deref().unwrap_or(""),
                text.fill(&self.name, detail),
            ),
            configured => {
                let (code, enhanced) = default_code(stage, &self.check, permanent);
                let (code, enhanced) = match configured {
                    Some((c, e, _)) => (*c, e.clone().unwrap_or_default()),
                    None => (code, enhanced.to_string()),
                };
                let text = clean(&format!("{}: {detail}", self.check.default_text()));
                Reply::new(code, &enhanced, text)
            }
        };
        Some(if permanent {
            Verdict::Reject(reply)
        } else {
            Verdict::Tempfail(reply)
        })
    }
}

/// RFC 5321 codes: 554 at the greeting, 552/452 for sizes, 550/451 for policy.
fn default_code(stage: Stage, check: &Check, permanent: bool) -> (u16, &'static str) {
    match (stage, check, permanent) {
        (Stage::Connect, _, true) => (554, "5.7.1"),
        (Stage::Connect, _, false) => (421, "4.7.1"),
        (_, Check::MaxSize(_), true) => (552, "5.3.4"),
        (_, Check::MaxSize(_), false) => (452, "4.3.4"),
        (_, _, true) => (550, "5.7.1"),
        (_, _, false) => (451, "4.7.1"),
    }
}
