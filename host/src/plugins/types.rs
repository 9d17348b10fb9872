//! Plain host-side values the relay hands to and gets back from the plugin chain. They
//! mirror `plugin-sdk/wit` but stay independent of the generated bindings.

use std::net::SocketAddr;

use wasmrelay_codec::reply::{Enhanced, Reply};

/// Every stage, in order. The same list as the WIT `hook` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Connect,
    Helo,
    Auth,
    MailFrom,
    Rcpt,
    Data,
    Queued,
    Closed,
    Route,
    RecipientCopy,
    DeliveryResult,
}

impl Hook {
    /// In stage order, as in the stage table (plugin-sdk/README.md#stages).
    pub const ALL: [Hook; 11] = [
        Hook::Connect,
        Hook::Helo,
        Hook::Auth,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Data,
        Hook::Queued,
        Hook::Closed,
        Hook::Route,
        Hook::RecipientCopy,
        Hook::DeliveryResult,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Helo => "helo",
            Hook::Auth => "auth",
            Hook::MailFrom => "mail-from",
            Hook::Rcpt => "rcpt",
            Hook::Data => "data",
            Hook::Queued => "queued",
            Hook::Closed => "closed",
            Hook::Route => "route",
            Hook::RecipientCopy => "recipient-copy",
            Hook::DeliveryResult => "delivery-result",
        }
    }

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the chain decided for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody objected: the session goes on with its own default.
    Continue,
    /// A plugin accepted explicitly; later plugins were not asked.
    Accept,
    /// Send this 5xx.
    Reject(Reply),
    /// Send this 4xx.
    Tempfail(Reply),
    /// Send this reply and close the connection.
    Disconnect(Reply),
}

impl Verdict {
    /// Whether the stage is refused (or the connection ended) rather than let through.
    pub fn refuses(&self) -> bool {
        !matches!(self, Verdict::Continue | Verdict::Accept)
    }

    /// The reply a failing plugin's `on_error = "tempfail"` gives.
    pub fn plugin_tempfail() -> Verdict {
        Verdict::Tempfail(Reply::new(
            451,
            Enhanced(4, 3, 0),
            "Temporary policy failure, try again later",
        ))
    }

    /// The reply a failing plugin's `on_error = "reject"` gives.
    pub fn plugin_reject() -> Verdict {
        Verdict::Reject(Reply::new(550, Enhanced(5, 7, 0), "Rejected by policy"))
    }

    /// Whether this verdict ends the chain.
    pub fn is_final(&self) -> bool {
        !matches!(self, Verdict::Continue)
    }
}

/// TLS facts of an inbound connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub protocol: String,
    pub cipher: String,
}

/// One SPF/DKIM/DMARC result, RFC 8601 vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthResult {
    pub method: String,
    pub result: String,
    pub domain: String,
    pub detail: String,
}

/// The attribute (`context.attribute`) that says whether the client may relay: `yes` or
/// `no`.
pub const TRUSTED: &str = "trusted";

/// Connection facts, as the session knows them at the time of the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub session_id: String,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub helo: Option<String>,
    pub tls: Option<TlsInfo>,
    pub auth_user: Option<String>,
    /// The listener's name (its address when unnamed).
    pub listener: String,
    /// Other facts plugins may ask for by name (`context.attribute`), e.g. `listener-role`.
    /// Names and values are the relay's own words (`yes`, `relay` ...): nothing to allocate
    /// per session.
    pub attributes: Vec<(&'static str, &'static str)>,
}

impl ConnectionInfo {
    /// A connection with only addresses known (what `connect` sees).
    pub fn new(session_id: impl Into<String>, remote: SocketAddr, local: SocketAddr) -> Self {
        ConnectionInfo {
            session_id: session_id.into(),
            remote,
            local,
            helo: None,
            tls: None,
            auth_user: None,
            listener: local.to_string(),
            attributes: Vec::new(),
        }
    }
}

/// The current transaction (MAIL FROM to end of DATA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionInfo {
    /// Reverse path without brackets; `Some("")` for the null sender.
    pub mail_from: Option<String>,
    /// ESMTP parameters of MAIL FROM (keyword upper-cased, value or `""`).
    pub mail_params: Vec<(String, String)>,
    /// SIZE from MAIL FROM, then the real size from end of DATA on.
    pub size: Option<u64>,
    /// Recipients accepted so far.
    pub recipients: Vec<String>,
    /// Set once the message is spooled.
    pub queue_id: Option<String>,
    /// From the end of DATA on, the id the message will be queued under. Not shown to
    /// plugins (they get `queue_id` from `queued` on); it tags what they emit at `data`.
    pub message_id: Option<String>,
    /// SPF/DKIM/DMARC results known so far.
    pub auth_results: Vec<AuthResult>,
    /// Annotations set by plugins so far; stored with the message.
    pub annotations: Vec<(String, String)>,
}

/// TLS toward a smart host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    None,
    Opportunistic,
    Require,
}

/// A queued message as delivery-stage hooks see it (`envelope` resource).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeInfo {
    pub queue_id: String,
    /// Reverse path (`""` for the null sender).
    pub mail_from: String,
    /// 1 for the first attempt of the recipients at hand.
    pub attempt: u32,
    pub size: u64,
    pub received_ms: u64,
    /// Reception facts by name (`auth-user`, `client-ip`, `helo`, `listener`, `trusted`).
    pub attributes: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

/// DSN NOTIFY values of one recipient (RFC 3461).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
    pub never: bool,
}

/// One recipient of a queued message (`recipient` resource).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientInfo {
    pub address: String,
    pub orcpt: Option<String>,
    pub notify: Notify,
}

/// Where delivery sends a domain's recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// No plugin decided: use the relay's configured routing.
    Continue,
    /// A named smart-host pool from config.
    Pool(String),
    /// The domain's MX hosts with this TLS policy.
    Mx(TlsPolicy),
    /// Keep queued without attempting delivery (reason).
    Hold(String),
    /// Discard (reason).
    Drop(String),
    /// Retry later, recording this 4xx.
    Defer(Reply),
    /// Fail permanently with this 5xx (DSN to the sender).
    Bounce(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    Deferred,
    Bounced,
    Held,
    Dropped,
}

/// What one attempt (or route decision) did for some recipients of one message, for the
/// `delivery-result` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub domain: String,
    pub recipients: Vec<String>,
    pub status: DeliveryStatus,
    pub remote_host: Option<String>,
    pub reply: Option<Reply>,
}

#[cfg(test)]
mod tests {
    use super::Hook;

    const WIT: &str = include_str!("../../../plugin-sdk/wit/plugin.wit");
    const STAGES: &str = include_str!("../../../plugin-sdk/README.md");

    /// The stage list lives in three places that must agree: the WIT `hook` enum, the host's
    /// `Hook::ALL` and the one stage table in the SDK README.
    #[test]
    fn host_hooks_match_the_wit_enum_and_the_stage_table() {
        let start = WIT.find("enum hook {").expect("the WIT declares enum hook");
        let body = &WIT[start + "enum hook {".len()..];
        let body = &body[..body.find('}').expect("enum hook closes")];
        let wit: Vec<&str> = body
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        let host: Vec<&str> = Hook::ALL.iter().map(|h| h.name()).collect();
        assert_eq!(host, wit, "Hook::ALL and the WIT enum differ");

        let table: Vec<&str> = STAGES
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let hook = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                cells.get(1)?.parse::<u32>().ok().map(|_| hook)
            })
            .collect();
        assert_eq!(
            host, table,
            "the stage table in plugin-sdk/README.md differs"
        );
    }
}
