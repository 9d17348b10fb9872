//! Delivery: takes spooled messages to their destinations, or bounces them.
//!
//! Layout:
//! - [`route`]: recipient domain → [`Route`] (the [`Router`] seam for the plugin chain, then
//!   config routes, then MX).
//! - [`resolve`]: MX and address lookups with hickory (null MX, implicit MX, NXDOMAIN).
//! - [`client`]: the SMTP client (EHLO, STARTTLS, AUTH, PIPELINING, per-recipient replies);
//!   its byte-level pieces (reply parsing, dot-stuffing, CRLF, xtext) are `wasmrelay_codec`.
//! - [`runner`]: the queue runner (scheduling, per-destination concurrency, connection reuse),
//!   with [`retry`] for the backoff schedule.
//! - [`dsn`]: RFC 3464 bounce and delay notices.
//! - [`dkim`]: DKIM signing per sending domain, and key generation.
//! - [`identity`]: our own names and addresses, so that we never deliver to ourselves.
//!
//! The relay (`crate::relay`) starts delivery with [`QueueRunner::new`] and
//! [`QueueRunner::run`]; its listeners store through [`QueueRunner::store`], a [`WakingStore`]
//! that wakes the runner for each new message, and the control socket reaches the
//! [`QueueHandle`] for `flush` and `bounce`.

mod attempt;
pub mod client;
pub mod dkim;
pub mod dsn;
pub mod identity;
pub mod resolve;
pub mod retry;
pub mod route;
pub mod runner;
mod tls;

pub use dkim::{keygen, DkimSigners};
pub use identity::LocalIdentity;
pub use resolve::MxResolver;
pub use route::{DeliveryResult, Route, Router};
pub use runner::{DeliveryError, QueueHandle, QueueRunner, WakingStore};

use wasmrelay_codec::reply::Enhanced;

/// How one recipient's delivery attempt ended, with what a DSN or `queue show` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the next hop.
    Delivered { remote: String, reply: String },
    /// Try again later.
    Transient(Failure),
    /// Give up and bounce.
    Permanent(Failure),
}

/// A failed attempt: the status code for the DSN and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// RFC 3463 status (`5.1.1`, `4.4.1` ...).
    pub status: Enhanced,
    /// The remote host that answered, if any got that far.
    pub remote: Option<String>,
    /// The SMTP reply (`smtp; 550 5.1.1 no such user`) or our own explanation.
    pub diagnostic: String,
    /// Whether `diagnostic` is a remote SMTP reply (`smtp;` diagnostic type in the DSN).
    pub smtp_reply: bool,
}

impl Failure {
    /// A failure we diagnosed ourselves (DNS, TLS policy, timeouts ...).
    pub fn local(status: Enhanced, diagnostic: impl Into<String>) -> Self {
        Failure {
            status,
            remote: None,
            diagnostic: diagnostic.into(),
            smtp_reply: false,
        }
    }

    /// Whether it is a permanent failure, going by its status class.
    pub fn is_permanent(&self) -> bool {
        self.status.0 == 5
    }

    /// The line kept as the recipient's `last_reply`.
    pub fn summary(&self) -> String {
        match &self.remote {
            Some(r) => format!("{r}: {}", self.diagnostic),
            None => self.diagnostic.clone(),
        }
    }
}

impl Outcome {
    /// Classifies a failure by its status class.
    pub fn failed(f: Failure) -> Outcome {
        if f.is_permanent() {
            Outcome::Permanent(f)
        } else {
            Outcome::Transient(f)
        }
    }
}

/// The domain part of an address (after the last `@`), lower-cased.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}
