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
    Route,
    DeliveryResult,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::Connect,
        Hook::Helo,
        Hook::Auth,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Data,
        Hook::Queued,
        Hook::Route,
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
            Hook::Route => "route",
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

/// Connection facts, as the session knows them at the time of the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub session_id: String,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub helo: Option<String>,
    pub tls: Option<TlsInfo>,
    pub auth_user: Option<String>,
    /// Other facts plugins may ask for by name (`context.attribute`), e.g. `listener`.
    pub attributes: Vec<(String, String)>,
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
            attributes: Vec::new(),
        }
    }
}

/// The current transaction (MAIL FROM to end of DATA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionInfo {
    /// Reverse path without brackets; `Some("")` for the null sender.
    pub mail_from: Option<String>,
    /// Recipients accepted so far.
    pub recipients: Vec<String>,
    /// SPF/DKIM/DMARC results known so far.
    pub auth_results: Vec<AuthResult>,
}

/// TLS toward a smart host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    None,
    Opportunistic,
    Require,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
    pub credentials: Option<Credentials>,
}

/// Input of the `route` hook: one destination domain of one queued message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRequest {
    pub queue_id: String,
    /// Reverse path (`""` for the null sender).
    pub mail_from: String,
    pub domain: String,
    pub recipients: Vec<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub size: u64,
    /// Facts from reception (`auth-user`, `client-ip`, `helo`, `listener`) for routing by
    /// submitter.
    pub attributes: Vec<(String, String)>,
}

/// Where delivery sends a domain's recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// No plugin decided: use the relay's configured routing.
    Continue,
    /// These smart hosts, tried in order.
    Smarthosts(Vec<Smarthost>),
    /// The domain's MX hosts.
    Mx,
    /// Keep queued without attempting delivery (reason).
    Hold(String),
    /// Discard silently (reason).
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
}

/// Outcome of one delivery attempt, for the `delivery-result` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub queue_id: String,
    pub domain: String,
    pub recipients: Vec<String>,
    pub status: DeliveryStatus,
    pub attempt: u32,
    pub remote_host: Option<String>,
    pub reply: Option<Reply>,
}
