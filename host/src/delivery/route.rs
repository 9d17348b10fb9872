//! Routing: which next hops a recipient domain goes to, and the seam the plugin chain's
//! delivery-stage hooks plug into.
//!
//! Order: the optional [`Router`]'s batch (the plugin chain's `route` hook), then
//! `[[delivery.routes]]` (first match; exact domains and `*.` wildcards), then MX.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;

use wasmrelay_codec::reply::Reply;

use super::{Failure, Outcome};
use crate::config::delivery::{DeliveryConfig, SmartHostConfig, TlsPolicy};
use crate::spool::{Envelope, MessageBytes, Recipient};

/// Where mail for one destination domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The named `[[delivery.pools]]` entry: its hosts in order, its TLS policy and
    /// credentials, its own connection cap.
    Pool(String),
    /// These smart hosts, tried in order.
    SmartHosts(Vec<SmartHostConfig>),
    /// The domain's MX hosts, with this STARTTLS policy.
    Mx { tls: TlsPolicy },
    /// Keep the recipients queued without an attempt until `queue flush` releases them (or
    /// they expire); the reason is kept as their `last_reply`.
    Hold(String),
    /// Discard the recipients (no delivery, no DSN); the reason is logged.
    Drop(String),
    /// Do not try now: a temporary failure with this 4xx, retried on schedule.
    Defer(Reply),
    /// Fail permanently with this 5xx: a DSN goes to the sender.
    Bounce(Reply),
}

impl PartialEq for SmartHostConfig {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.tls == other.tls
            && self.tls_verify == other.tls_verify
            && self.auth.as_ref().map(|a| (&a.user, &a.password))
                == other.auth.as_ref().map(|a| (&a.user, &a.password))
    }
}
impl Eq for SmartHostConfig {}

/// Consistent with `eq`: what a connection to the host is opened with.
impl Hash for SmartHostConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.host.hash(state);
        self.port.hash(state);
        (self.tls as u8).hash(state);
        self.tls_verify.hash(state);
        self.auth
            .as_ref()
            .map(|a| (&a.user, &a.password))
            .hash(state);
    }
}

/// A boxed future, so the hook traits stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The delivery-stage hooks in front of the config routes (the relay plugs the plugin chain
/// in here with [`super::QueueRunner::with_router`]).
pub trait Router: Send + Sync {
    /// The hooks for one delivery batch: one attempt of one message. Every `route`,
    /// `recipient-copy` and `delivery-result` call of the batch goes to the value returned,
    /// so a plugin chain answers them all with one instance set. `None`: nothing to ask.
    fn batch(&self) -> Option<Box<dyn DeliveryHooks>>;
}

/// One delivery batch's hooks; see [`Router::batch`]. Calls come one at a time.
pub trait DeliveryHooks: Send {
    /// Where one domain's pending recipients go; `None` means "no opinion": config routes
    /// and MX apply.
    fn route<'a>(&'a mut self, request: RouteRequest<'a>) -> BoxFuture<'a, Option<Route>>;

    /// Whether [`DeliveryHooks::recipient_copy`] is to be asked. When not, delivery neither
    /// parses nor copies the message per recipient.
    fn renders_copies(&self) -> bool {
        false
    }

    /// Renders one recipient's outgoing copy of the spooled message.
    fn recipient_copy<'a>(&'a mut self, request: CopyRequest<'a>) -> BoxFuture<'a, Rendered> {
        let _ = request;
        Box::pin(async { Rendered::Unchanged })
    }

    /// Whether [`DeliveryHooks::delivery_result`] wants to hear about attempts at all.
    fn wants_results(&self) -> bool {
        false
    }

    /// Told what the attempt did for some recipients of one domain, once the new state is
    /// durable.
    fn delivery_result<'a>(&'a mut self, result: DeliveryResult<'a>) -> BoxFuture<'a, ()> {
        let _ = result;
        Box::pin(async {})
    }
}

/// The `route` question for one destination domain.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    pub envelope: &'a Envelope,
    /// Lower case.
    pub domain: &'a str,
    /// The domain's recipients due in this attempt: pending, neither delivered, bounced nor
    /// waiting for a later retry.
    pub recipients: &'a [String],
    /// The attempt at hand for these recipients: the highest of theirs (a recipient's is one
    /// more than the attempts it already had), so 1 only when none was tried before.
    pub attempt: u32,
}

/// The `recipient-copy` request for one recipient.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    pub envelope: &'a Envelope,
    pub recipient: &'a Recipient,
    /// This recipient's attempt: one more than the attempts it already had.
    pub attempt: u32,
    /// The message as spooled (before DKIM signing, which applies to the rendered copy).
    pub message: &'a MessageBytes,
}

/// One recipient's copy, as rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Byte for byte the spooled message: it shares a transaction with the others.
    Unchanged,
    /// This recipient's own copy: it goes out in a transaction of its own.
    Edited(Vec<u8>),
    /// Not sent: a plugin's 4xx defers the recipient, a 5xx bounces it.
    Refused(Failure),
}

/// What one attempt did for some recipients of one domain, for
/// [`DeliveryHooks::delivery_result`].
#[derive(Debug, Clone, Copy)]
pub struct DeliveryResult<'a> {
    pub envelope: &'a Envelope,
    pub domain: &'a str,
    pub recipients: &'a [String],
    pub outcome: &'a Outcome,
    /// The attempt this was for these recipients (1 for the first).
    pub attempt: u32,
}

/// The route `[[delivery.routes]]` gives `domain` (already lower-case): the first route with an
/// exact match, a matching wildcard, or the catch-all `*`; MX with opportunistic TLS when none
/// matches.
pub fn config_route(config: &DeliveryConfig, domain: &str) -> Route {
    for r in &config.routes {
        let hit = r.domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            if d == "*" {
                return true;
            }
            match d.strip_prefix("*.") {
                Some(parent) => domain
                    .strip_suffix(parent)
                    .is_some_and(|head| head.ends_with('.') && head.len() > 1),
                None => d == domain,
            }
        });
        if hit {
            return if r.hosts.is_empty() {
                Route::Mx { tls: r.tls }
            } else {
                Route::SmartHosts(r.hosts.clone())
            };
        }
    }
    Route::Mx {
        tls: TlsPolicy::Opportunistic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_wildcard_and_default() {
        let config: DeliveryConfig = toml::from_str(
            r#"
            [[routes]]
            domains = ["example.com"]
            hosts = [{ host = "a.test", port = 2525 }]
            [[routes]]
            domains = ["*.example.com"]
            hosts = [{ host = "b.test" }]
            [[routes]]
            domains = ["mx.test"]
            tls = "require"
            "#,
        )
        .unwrap();
        let host = |r: Route| match r {
            Route::SmartHosts(h) => h[0].host.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(host(config_route(&config, "example.com")), "a.test");
        assert_eq!(host(config_route(&config, "eu.example.com")), "b.test");
        assert_eq!(host(config_route(&config, "a.b.example.com")), "b.test");
        assert_eq!(
            host(config_route(&config, "badexample.com")),
            "Mx { tls: Opportunistic }"
        );
        assert_eq!(
            config_route(&config, "mx.test"),
            Route::Mx {
                tls: TlsPolicy::Require
            }
        );
    }

    #[test]
    fn catch_all_matches_what_earlier_routes_did_not() {
        let config: DeliveryConfig = toml::from_str(
            r#"
            [[routes]]
            domains = ["example.com"]
            hosts = [{ host = "a.test" }]
            [[routes]]
            domains = ["*"]
            hosts = [{ host = "default.test" }]
            "#,
        )
        .unwrap();
        let host = |d: &str| match config_route(&config, d) {
            Route::SmartHosts(h) => h[0].host.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(host("example.com"), "a.test");
        assert_eq!(host("anything.example"), "default.test");
    }
}
