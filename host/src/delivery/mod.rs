//! Delivery: takes spooled messages to their destinations, or bounces them.
//!
//! Layout:
//! - [`route`]: recipient domain → [`Route`]; the [`Router`] seam the plugin chain's
//!   delivery-stage hooks plug into (one [`DeliveryHooks`] batch per attempt), then config
//!   routes, then MX.
//! - [`resolve`]: MX and address lookups with hickory (null MX, implicit MX, NXDOMAIN).
//! - [`client`]: the SMTP client (EHLO, STARTTLS, AUTH, PIPELINING, per-recipient replies);
//!   its byte-level pieces (reply parsing, dot-stuffing, CRLF, xtext) are `wasmrelay_codec`.
//! - [`runner`]: the queue runner (scheduling, concurrency), with [`retry`] for the backoff
//!   schedule. Each due message gets one attempt (`attempt`) in steps: route (`plan`),
//!   render per-recipient copies (`copies`), send per destination (`send`, over pooled
//!   connections from `connections`), record (`record`).
//! - [`outcome`]: what an attempt did per recipient, with typed replies.
//! - [`dsn`]: RFC 3464 bounce and delay notices.
//! - [`dkim`]: DKIM signing per sending domain, and key generation.
//! - [`identity`]: our own names and addresses, so that we never deliver to ourselves.
//!
//! The relay (`crate::relay`) starts delivery with [`QueueRunner::new`] and
//! [`QueueRunner::run`]; its listeners store through [`QueueRunner::store`], a [`WakingStore`]
//! that wakes the runner for each new message, and the control socket reaches the
//! [`QueueHandle`] for `flush` and `bounce`, and for the operator actions of [`admin_ops`]
//! (`hold`, `release`, `delete`).

pub mod admin_ops;
mod attempt;
pub mod client;
mod connections;
mod copies;
pub mod dkim;
pub mod dsn;
pub mod identity;
pub mod outcome;
mod plan;
mod record;
pub mod resolve;
pub mod retry;
pub mod route;
pub mod runner;
mod send;
pub(crate) mod tls;

pub use admin_ops::{QueueOp, QueueOpError};
use attempt::next_due_ms;
pub use dkim::{keygen, DkimSigners};
pub use identity::LocalIdentity;
pub use outcome::{Failure, Outcome, Reason};
pub use resolve::MxResolver;
pub use route::{
    CopyRequest, DeliveryHooks, DeliveryResult, Rendered, Route, RouteRequest, Router,
};
pub use runner::{DeliveryError, QueueHandle, QueueRunner, WakingStore};

/// The domain part of an address (after the last `@`), lower-cased.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// A spooled envelope for unit tests: message `m1` from `s@origin.test`, received at 1 s,
/// from 127.0.0.1, with pending `recipients`.
#[cfg(test)]
pub(crate) fn test_envelope(recipients: &[&str]) -> crate::spool::Envelope {
    use crate::spool::{ClientInfo, Envelope, MessageId, Recipient};
    Envelope {
        id: MessageId("m1".into()),
        received_at: 1,
        mail_from: Some("s@origin.test".into()),
        recipients: recipients
            .iter()
            .map(|a| Recipient::pending(a.to_string()))
            .collect(),
        client: ClientInfo {
            ip: "127.0.0.1".parse().unwrap(),
            helo: "c".into(),
            auth_user: None,
            tls: false,
            origin: Default::default(),
        },
        eight_bit: false,
        smtputf8: false,
        ret_headers_only: false,
        envid: None,
        size: 1,
        listener: String::new(),
        annotations: Vec::new(),
        held: false,
        trace: None,
    }
}
