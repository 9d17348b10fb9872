//! The plugin chain as delivery's [`Router`]: each delivery batch (one attempt of one
//! message) gets one [`DeliveryPlugins`] instance set, which answers every `route`,
//! `recipient-copy` and `delivery-result` call of that batch.

use std::sync::{Arc, RwLock};

use crate::config::delivery::TlsPolicy as ConfigTls;
use crate::delivery::route::BoxFuture;
use crate::delivery::{
    CopyRequest, DeliveryHooks, DeliveryResult, Failure, Outcome, Rendered, Route, RouteRequest,
    Router,
};
use crate::events::Events;
use crate::plugins::{
    DeliveryPlugins, DeliveryReport, DeliveryStatus, EnvelopeInfo, Hook, Notify, PluginHost,
    RecipientInfo, RouteDecision, TlsPolicy, Verdict,
};
use crate::spool::{Envelope, Recipient};

/// The current plugin chain; a reload replaces it, and the next delivery batch uses the new one.
pub type SharedPlugins = Arc<RwLock<Option<Arc<PluginHost>>>>;

pub struct PluginRouter {
    pub plugins: SharedPlugins,
    /// Held and dropped recipients, with the plugin's reason.
    pub events: Events,
}

impl Router for PluginRouter {
    fn batch(&self) -> Option<Box<dyn DeliveryHooks>> {
        let host = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let route = host.handles(Hook::Route);
        let copies = host.handles(Hook::RecipientCopy);
        let results = host.handles(Hook::DeliveryResult);
        // No chain for a batch no plugin takes part in (a chain is an allocation per batch).
        if !(route || copies || results) {
            return None;
        }
        Some(Box::new(PluginBatch {
            route,
            copies,
            results,
            plugins: host.delivery(),
            events: self.events.clone(),
        }))
    }
}

/// One batch's instance set; plugins are instantiated the first time one of their hooks
/// runs in the batch.
struct PluginBatch {
    plugins: DeliveryPlugins,
    events: Events,
    route: bool,
    copies: bool,
    results: bool,
}

impl DeliveryHooks for PluginBatch {
    fn route<'a>(&'a mut self, request: RouteRequest<'a>) -> BoxFuture<'a, Option<Route>> {
        Box::pin(async move {
            if !self.route {
                return None;
            }
            let env = Arc::new(envelope_info(request.envelope, request.attempt));
            let decision = self
                .plugins
                .route(&env, request.domain, request.recipients)
                .await;
            let by = self.plugins.decided_by();
            let id = &request.envelope.id;
            self.events
                .routed(id, request.domain, request.recipients, &decision, by);
            to_route(decision)
        })
    }

    fn renders_copies(&self) -> bool {
        self.copies
    }

    fn recipient_copy<'a>(&'a mut self, request: CopyRequest<'a>) -> BoxFuture<'a, Rendered> {
        Box::pin(async move {
            let env = || Arc::new(envelope_info(request.envelope, request.attempt));
            let rcpt = || recipient_info(request.recipient);
            let (verdict, edited) = self
                .plugins
                .recipient_copy(env, rcpt, request.message)
                .await;
            match verdict {
                Verdict::Continue | Verdict::Accept => match edited {
                    Some(copy) => Rendered::Edited(copy),
                    None => Rendered::Unchanged,
                },
                Verdict::Reject(reply) | Verdict::Tempfail(reply) | Verdict::Disconnect(reply) => {
                    Rendered::Refused(Failure::policy(reply))
                }
            }
        })
    }

    fn wants_results(&self) -> bool {
        self.results
    }

    fn delivery_result<'a>(&'a mut self, result: DeliveryResult<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let report = report(&result);
            let env = Arc::new(envelope_info(result.envelope, result.attempt));
            self.plugins.delivery_result(&env, &report).await;
        })
    }
}

/// The `delivery-report` for one result: the status, who answered and with what reply (the
/// remote's, a plugin's, or the relay's own for its local failures; none for hold and drop).
fn report(result: &DeliveryResult<'_>) -> DeliveryReport {
    let (status, remote_host, reply) = match result.outcome {
        Outcome::Delivered { remote, reply } => (
            DeliveryStatus::Delivered,
            Some(remote.clone()),
            Some(reply.clone()),
        ),
        Outcome::Transient(f) => (DeliveryStatus::Deferred, f.remote.clone(), Some(f.reply())),
        Outcome::Permanent(f) => (DeliveryStatus::Bounced, f.remote.clone(), Some(f.reply())),
        Outcome::Held(_) => (DeliveryStatus::Held, None, None),
        Outcome::Dropped(_) => (DeliveryStatus::Dropped, None, None),
    };
    DeliveryReport {
        domain: result.domain.to_string(),
        recipients: result.recipients.to_vec(),
        status,
        remote_host,
        reply,
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

/// One spooled recipient, with its RFC 3461 parameters as given.
fn recipient_info(r: &Recipient) -> RecipientInfo {
    let has = |k: &str| r.notify.iter().any(|n| n.eq_ignore_ascii_case(k));
    RecipientInfo {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        notify: Notify {
            success: has("SUCCESS"),
            failure: has("FAILURE"),
            delay: has("DELAY"),
            never: has("NEVER"),
        },
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

/// The chain's decision as a route; `None` when no plugin decided. Pool names are checked
/// against `[[delivery.pools]]` by delivery.
fn to_route(decision: RouteDecision) -> Option<Route> {
    Some(match decision {
        RouteDecision::Continue => return None,
        RouteDecision::Mx(tls) => Route::Mx {
            tls: match tls {
                TlsPolicy::None => ConfigTls::None,
                TlsPolicy::Opportunistic => ConfigTls::Opportunistic,
                TlsPolicy::Require => ConfigTls::Require,
            },
        },
        RouteDecision::Pool(name) => Route::Pool(name),
        RouteDecision::Hold(reason) => Route::Hold(reason),
        RouteDecision::Drop(reason) => Route::Drop(reason),
        RouteDecision::Defer(reply) => Route::Defer(reply),
        RouteDecision::Bounce(reply) => Route::Bounce(reply),
    })
}

#[cfg(test)]
mod tests {
    use wasmrelay_codec::reply::{Enhanced, Reply};

    use super::*;

    fn envelope() -> Envelope {
        let mut env = crate::delivery::test_envelope(&["a@x.test"]);
        env.received_at = 2;
        env.mail_from = None;
        env.client.auth_user = Some("u".into());
        env.listener = "submission".into();
        env.annotations = vec![("stream".into(), "bulk".into())];
        let r = &mut env.recipients[0];
        r.notify = vec!["SUCCESS".into(), "DELAY".into()];
        r.orcpt = Some("rfc822;a@x.test".into());
        env
    }

    #[test]
    fn hooks_see_the_envelope_and_recipient_as_spooled() {
        let env = envelope();
        let info = envelope_info(&env, 3);
        assert_eq!(info.attempt, 3);
        assert_eq!(info.received_ms, 2000);
        assert_eq!(info.mail_from, "");
        assert!(info
            .attributes
            .contains(&("auth-user".to_string(), "u".to_string())));
        assert!(info
            .attributes
            .contains(&("listener".to_string(), "submission".to_string())));
        assert_eq!(info.annotations, env.annotations);
        let rcpt = recipient_info(&env.recipients[0]);
        assert_eq!(rcpt.orcpt.as_deref(), Some("rfc822;a@x.test"));
        assert_eq!(
            rcpt.notify,
            Notify {
                success: true,
                delay: true,
                ..Notify::default()
            }
        );
    }

    #[test]
    fn reports_carry_typed_replies() {
        let env = envelope();
        let rcpts = vec!["a@x.test".to_string()];
        let result = |outcome: &Outcome| {
            report(&DeliveryResult {
                envelope: &env,
                domain: "x.test",
                recipients: &rcpts,
                outcome,
                attempt: 1,
            })
        };
        let ok = Reply::new(250, Enhanced(2, 0, 0), "queued as 7");
        let r = result(&Outcome::Delivered {
            remote: "mx[127.0.0.1]:25".into(),
            reply: ok.clone(),
        });
        assert_eq!(r.status, DeliveryStatus::Delivered);
        assert_eq!(r.reply, Some(ok));
        let refused = Reply::new(550, Enhanced(5, 1, 1), "no such user");
        let r = result(&Outcome::Permanent(Failure::remote_reply("mx", &refused)));
        assert_eq!(
            (r.status, r.reply),
            (DeliveryStatus::Bounced, Some(refused))
        );
        assert_eq!(r.remote_host.as_deref(), Some("mx"));
        let r = result(&Outcome::Transient(Failure::local(
            Enhanced(4, 4, 1),
            "connection refused",
        )));
        assert_eq!(r.status, DeliveryStatus::Deferred);
        assert_eq!(
            r.reply,
            Some(Reply::new(451, Enhanced(4, 4, 1), "connection refused"))
        );
        let r = result(&Outcome::Held("review".into()));
        assert_eq!((r.status, r.reply), (DeliveryStatus::Held, None));
        let r = result(&Outcome::Dropped("unwanted".into()));
        assert_eq!((r.status, &r.recipients), (DeliveryStatus::Dropped, &rcpts));
    }
}
