//! The durable queue: every message that got a `250` lives here until each recipient is
//! delivered, bounced or expired.
//!
//! `store` returns only once the message and its envelope are fsynced (file and directory);
//! concurrent stores share fsyncs (group commit). `open` recovers every complete message and
//! removes partial ones.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Disk full, permission, I/O: the message was not stored and must not be acknowledged.
    #[error("spool write failed for {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool read failed for {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spooled message {0} not found")]
    NotFound(MessageId),
    #[error("spooled message {id} is corrupt: {why}")]
    Corrupt { id: MessageId, why: String },
}

/// What `open` found on disk.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub recovered: usize,
    pub discarded_partial: usize,
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<()>,
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir`, recovering complete messages and
    /// removing partial writes.
    pub async fn open(dir: &Path) -> Result<(Spool, RecoveryReport), SpoolError> {
        let _ = dir;
        todo!("spool")
    }

    /// A fresh, unique id.
    pub fn new_id(&self) -> MessageId {
        let _ = &self.inner;
        todo!("spool")
    }

    /// Writes message and envelope durably; returns once both are fsynced.
    pub async fn store(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SpoolError> {
        let _ = (envelope, message);
        todo!("spool")
    }

    /// Envelopes of every queued message, oldest first.
    pub async fn list(&self) -> Vec<Envelope> {
        todo!("spool")
    }

    pub async fn envelope(&self, id: &MessageId) -> Result<Envelope, SpoolError> {
        let _ = id;
        todo!("spool")
    }

    pub async fn message(&self, id: &MessageId) -> Result<Vec<u8>, SpoolError> {
        let _ = id;
        todo!("spool")
    }

    /// Durably replaces the envelope (recipient status after a delivery attempt).
    pub async fn update(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        let _ = envelope;
        todo!("spool")
    }

    /// Removes a message once every recipient is done.
    pub async fn remove(&self, id: &MessageId) -> Result<(), SpoolError> {
        let _ = id;
        todo!("spool")
    }
}
