//! Routing: which next hops a recipient domain goes to.
//!
//! Order: the optional [`Router`] (the plugin chain's route hook), then `[[delivery.routes]]`
//! (first match; exact domains and `*.` wildcards), then MX lookup.

use std::future::Future;
use std::pin::Pin;

use wasmrelay_codec::reply::Enhanced;

use crate::config::delivery::{DeliveryConfig, SmartHostConfig, TlsPolicy};
use crate::spool::Envelope;

/// Where mail for one destination domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// These smart hosts, tried in order.
    SmartHosts(Vec<SmartHostConfig>),
    /// The domain's MX hosts, with this STARTTLS policy.
    Mx { tls: TlsPolicy },
    /// Keep the mail queued without an attempt; retried on the normal schedule.
    Hold,
    /// Discard for this recipient (counted as delivered, no DSN).
    Drop,
    /// Do not try now: a temporary failure with this status and text, retried on schedule.
    Defer(Enhanced, String),
    /// Fail permanently with this status and text: a DSN goes to the sender.
    Bounce(Enhanced, String),
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

/// A boxed future, so [`Router`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The route-hook seam: asked first for every destination domain of a message. `None` means
/// "no opinion": config routes and MX apply.
pub trait Router: Send + Sync {
    fn route<'a>(&'a self, envelope: &'a Envelope, domain: &'a str)
        -> BoxFuture<'a, Option<Route>>;

    /// Told what one attempt did for one recipient (after the envelope was updated).
    fn delivery_result<'a>(&'a self, result: DeliveryResult<'a>) -> BoxFuture<'a, ()> {
        let _ = result;
        Box::pin(async {})
    }

    /// Whether [`Router::delivery_result`] wants to hear about attempts at all.
    fn wants_results(&self) -> bool {
        false
    }
}

/// One recipient's outcome of one attempt, for [`Router::delivery_result`].
#[derive(Debug, Clone, Copy)]
pub struct DeliveryResult<'a> {
    pub envelope: &'a Envelope,
    pub recipient: &'a str,
    pub outcome: &'a super::Outcome,
    /// 1 for the first attempt.
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
