//! What the spool keeps about a message besides its bytes: the envelope and its parts.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A spooled message's id: sortable by arrival, safe as a file name, shown in the `250` reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub String);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    Pending,
    Delivered,
    Bounced,
    Expired,
    /// Discarded by a route decision: neither delivered nor bounced.
    Dropped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// RFC 3461 NOTIFY values as given, upper-cased; empty means the default (FAILURE).
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub orcpt: Option<String>,
    pub status: RecipientStatus,
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next delivery attempt (0 = as soon as possible).
    #[serde(default)]
    pub next_attempt: u64,
    /// The last reply or error seen for this recipient, for `queue show` and DSNs.
    #[serde(default)]
    pub last_reply: Option<String>,
}

impl Recipient {
    pub fn pending(address: String) -> Self {
        Recipient {
            address,
            notify: vec![],
            orcpt: None,
            status: RecipientStatus::Pending,
            attempts: 0,
            next_attempt: 0,
            last_reply: None,
        }
    }
}

/// Who handed the message to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub helo: String,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub tls: bool,
    /// Why (or whether) the relay vouches for the content, decided at reception.
    #[serde(default)]
    pub origin: Origin,
}

impl ClientInfo {
    /// Whether delivery may put our DKIM signature on this message: only on mail we know
    /// the author of. An envelope written before `origin` existed reads as
    /// [`Origin::Outsider`], unless it records an AUTH user (set only after a successful AUTH).
    pub fn may_sign(&self) -> bool {
        self.origin != Origin::Outsider || self.auth_user.is_some()
    }
}

/// Where a message came from, as far as trusting its content goes. Recorded in the envelope
/// at reception, because delivery (DKIM signing) cannot ask the session any more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// An unauthenticated client outside `relay_networks`: anyone on the internet sending to
    /// our local domains. Its `From:` is a claim, never signed. Also what an envelope without
    /// the field means: the safe reading of a record that cannot say.
    #[default]
    Outsider,
    /// A session that passed SMTP AUTH.
    Authenticated,
    /// A client in `relay.relay_networks`.
    RelayNetwork,
    /// The relay itself: delivery status notifications.
    Local,
}

/// Everything about a message except its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MessageId,
    /// Unix seconds.
    pub received_at: u64,
    /// `None` is the null sender `<>`.
    pub mail_from: Option<String>,
    pub recipients: Vec<Recipient>,
    pub client: ClientInfo,
    #[serde(default)]
    pub eight_bit: bool,
    #[serde(default)]
    pub smtputf8: bool,
    /// RFC 3461 RET=HDRS.
    #[serde(default)]
    pub ret_headers_only: bool,
    #[serde(default)]
    pub envid: Option<String>,
    /// Size of the message bytes.
    pub size: u64,
    /// The listener that received it (its name, or its address when unnamed).
    #[serde(default)]
    pub listener: String,
    /// Annotations set by plugins at reception, for the delivery-stage hooks.
    #[serde(default)]
    pub annotations: Vec<(String, String)>,
    /// Held by an operator (`queue hold`): not attempted until released.
    #[serde(default)]
    pub held: bool,
    /// The W3C `traceparent` of the transaction that received it, when traces are exported:
    /// delivery spans continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}
