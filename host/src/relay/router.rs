//! The plugin chain as delivery's [`Router`]: the `route` and `delivery-result` hooks, asked
//! with their own instances for each delivery batch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use wasmrelay_codec::reply::{Enhanced, Reply};

use crate::config::delivery::{SmartHostConfig, TlsPolicy as ConfigTls};
use crate::delivery::route::BoxFuture;
use crate::delivery::{domain_of, DeliveryResult, Outcome, Route, Router};
use crate::events::Events;
use crate::plugins::{
    DeliveryReport, DeliveryStatus, EnvelopeInfo, Hook, PluginHost, RouteDecision, TlsPolicy,
};
use crate::spool::Envelope;

/// The current plugin chain; a reload replaces it, and the next delivery batch uses the new one.
pub type SharedPlugins = Arc<RwLock<Option<Arc<PluginHost>>>>;

pub struct PluginRouter {
    pub plugins: SharedPlugins,
    /// `[[delivery.pools]]` by name (like all of `[delivery]`, fixed until a restart).
    pub pools: HashMap<String, Vec<SmartHostConfig>>,
    /// Held and dropped recipients, with the plugin's reason.
    pub events: Events,
}

impl PluginRouter {
    fn current(&self) -> Option<Arc<PluginHost>> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Router for PluginRouter {
    fn route<'a>(
        &'a self,
        envelope: &'a Envelope,
        domain: &'a str,
    ) -> BoxFuture<'a, Option<Route>> {
        Box::pin(async move {
            let host = self.current().filter(|h| h.handles(Hook::Route))?;
            let recipients: Vec<String> = envelope
                .recipients
                .iter()
                .filter(|r| domain_of(&r.address) == domain)
                .map(|r| r.address.clone())
                .collect();
            let attempt = envelope
                .recipients
                .iter()
                .map(|r| r.attempts)
                .max()
                .unwrap_or(0)
                + 1;
            let env = Arc::new(envelope_info(envelope, attempt));
            let mut plugins = host.delivery();
            let decision = plugins.route(&env, domain, &recipients).await;
            let by = plugins.decided_by();
            self.events
                .routed(&envelope.id, domain, &recipients, &decision, by);
            to_route(decision, &self.pools)
        })
    }

    fn wants_results(&self) -> bool {
        self.current()
            .is_some_and(|h| h.handles(Hook::DeliveryResult))
    }

    fn delivery_result<'a>(&'a self, result: DeliveryResult<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(host) = self.current().filter(|h| h.handles(Hook::DeliveryResult)) else {
                return;
            };
            let (status, remote_host, reply) = match result.outcome {
                Outcome::Delivered { remote, reply } => (
                    DeliveryStatus::Delivered,
                    Some(remote.clone()),
                    parse_reply(reply),
                ),
                Outcome::Transient(f) => (
                    DeliveryStatus::Deferred,
                    f.remote.clone(),
                    failure_reply(450, f.status, &f.diagnostic),
                ),
                Outcome::Permanent(f) => (
                    DeliveryStatus::Bounced,
                    f.remote.clone(),
                    failure_reply(550, f.status, &f.diagnostic),
                ),
            };
            let report = DeliveryReport {
                domain: domain_of(result.recipient),
                recipients: vec![result.recipient.to_string()],
                status,
                remote_host,
                reply,
            };
            let env = Arc::new(envelope_info(result.envelope, result.attempt));
            host.delivery().delivery_result(&env, &report).await;
        })
    }
}

/// A spooled message as the delivery-stage hooks see it.
pub(crate) fn envelope_info(envelope: &Envelope, attempt: u32) -> EnvelopeInfo {
    EnvelopeInfo {
        queue_id: envelope.id.to_string(),
        mail_from: envelope.mail_from.clone().unwrap_or_default(),
        attempt,
        size: envelope.size,
        received_ms: envelope.received_at.saturating_mul(1000),
        attributes: reception_attributes(envelope),
        annotations: envelope.annotations.clone(),
    }
}

/// What reception knew, for routing by submitter.
fn reception_attributes(envelope: &Envelope) -> Vec<(String, String)> {
    let mut attrs = vec![
        ("client-ip".to_string(), envelope.client.ip.to_string()),
        ("helo".to_string(), envelope.client.helo.clone()),
    ];
    if !envelope.listener.is_empty() {
        attrs.push(("listener".to_string(), envelope.listener.clone()));
    }
    if let Some(user) = &envelope.client.auth_user {
        attrs.push(("auth-user".to_string(), user.clone()));
    }
    attrs
}

fn to_route(
    decision: RouteDecision,
    pools: &HashMap<String, Vec<SmartHostConfig>>,
) -> Option<Route> {
    Some(match decision {
        RouteDecision::Continue => return None,
        RouteDecision::Mx(tls) => Route::Mx {
            tls: match tls {
                TlsPolicy::None => ConfigTls::None,
                TlsPolicy::Opportunistic => ConfigTls::Opportunistic,
                TlsPolicy::Require => ConfigTls::Require,
            },
        },
        // The chain only returns configured names; one missing here means the config
        // changed under a running relay, so the recipients wait rather than go astray.
        RouteDecision::Pool(name) => match pools.get(&name) {
            Some(hosts) => Route::SmartHosts(hosts.clone()),
            None => Route::Defer(
                Enhanced(4, 4, 0),
                format!("policy: smart-host pool {name:?} is not configured"),
            ),
        },
        RouteDecision::Hold(_) => Route::Hold,
        RouteDecision::Drop(_) => Route::Drop,
        RouteDecision::Defer(reply) => Route::Defer(
            reply.enhanced.unwrap_or(Enhanced(4, 4, 0)),
            reply_text(&reply),
        ),
        RouteDecision::Bounce(reply) => Route::Bounce(
            reply.enhanced.unwrap_or(Enhanced(5, 4, 0)),
            reply_text(&reply),
        ),
    })
}

fn reply_text(reply: &Reply) -> String {
    format!("policy: {}", reply.lines.join(" "))
}

/// `"250 2.0.0 ok"` as a typed reply, when it is one.
fn parse_reply(text: &str) -> Option<Reply> {
    let code: u16 = text.get(..3)?.parse().ok()?;
    Some(Reply::plain(code, text.get(4..).unwrap_or("").to_string()))
}

fn failure_reply(default_code: u16, status: Enhanced, diagnostic: &str) -> Option<Reply> {
    let text = diagnostic.strip_prefix("smtp; ").unwrap_or(diagnostic);
    let code = text
        .get(..3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_code);
    Some(Reply::new(code, status, text.to_string()))
}
