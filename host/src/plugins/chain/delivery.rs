//! The delivery-stage view of the chain: `route`, `recipient-copy` and `delivery-result`,
//! with one instance set per delivery batch.

use std::sync::Arc;

use wasmrelay_codec::reply::{Enhanced, Reply};

use super::{Answer, Call, Caller, Chain, Subject};
use crate::config::plugins::OnError;
use crate::plugins::bindings;
use crate::plugins::error::FailureKind;
use crate::plugins::message::MessageRes;
use crate::plugins::metrics::VerdictKind;
use crate::plugins::types::{
    DeliveryReport, EnvelopeInfo, Hook, RecipientInfo, RouteDecision, Verdict,
};
use crate::plugins::PluginHost;
use crate::spool::MessageBytes;

/// The chain for one delivery batch (one attempt of one message): `route`, `recipient-copy`
/// and `delivery-result`, with their own instances. Use a new one for another message.
pub struct DeliveryPlugins {
    chain: Chain,
    /// Set once a copy of the batch's message concerned none of the plugins that handle
    /// `recipient-copy` (their `wants` ruled it out): the other recipients' copies of that
    /// message skip the chain without parsing it. Kept shared, so its bytes stay where they
    /// are and another message can never be taken for it.
    copies_unwanted: Option<MessageBytes>,
}

impl DeliveryPlugins {
    pub(crate) fn new(host: Arc<PluginHost>) -> Self {
        DeliveryPlugins {
            chain: Chain::new(host),
            copies_unwanted: None,
        }
    }

    /// Whether any plugin handles `hook` (callers skip building arguments otherwise).
    pub fn handles(&self, hook: Hook) -> bool {
        self.chain.host.handles(hook)
    }

    /// The plugin whose decision the last `route` returned, and the hook.
    pub fn decided_by(&self) -> Option<(&str, Hook)> {
        self.chain.decided_by()
    }

    /// Where to send one domain's pending `recipients`; [`RouteDecision::Continue`] when no
    /// plugin decided. A failing plugin's `on_error` maps to defer (tempfail), continue
    /// (accept) or bounce (reject).
    pub async fn route(
        &mut self,
        env: &Arc<EnvelopeInfo>,
        domain: &str,
        recipients: &[String],
    ) -> RouteDecision {
        self.chain.decided = None;
        if !self.handles(Hook::Route) {
            return RouteDecision::Continue;
        }
        for i in 0..self.chain.members.len() {
            if !self.chain.handles(i, Hook::Route) {
                continue;
            }
            let call = Call::Route(domain, recipients);
            let decision = match self
                .chain
                .invoke(i, Hook::Route, Subject::Delivery(env), call)
                .await
            {
                Ok(Answer::Route(r)) => match bindings::route(r, &self.chain.host.pools) {
                    Ok(d) => {
                        self.chain.count(i, Hook::Route, VerdictKind::of_route(&d));
                        d
                    }
                    Err(why) => {
                        self.chain.members[i].slot = None;
                        self.chain
                            .failed(i, Hook::Route, FailureKind::Malformed(why));
                        self.chain.count(i, Hook::Route, VerdictKind::Error);
                        self.route_on_error(i)
                    }
                },
                Ok(_) => unreachable!("the route hook answers with a route"),
                Err(_) => {
                    self.chain.count(i, Hook::Route, VerdictKind::Error);
                    self.route_on_error(i)
                }
            };
            self.chain.settle(i);
            if decision != RouteDecision::Continue {
                self.chain.decided = Some((i, Hook::Route));
                return decision;
            }
        }
        RouteDecision::Continue
    }

    fn route_on_error(&self, i: usize) -> RouteDecision {
        match self.chain.host.plugins[i].meta.on_error {
            OnError::Tempfail => RouteDecision::Defer(Reply::new(
                451,
                Enhanced(4, 3, 0),
                "Temporary routing policy failure",
            )),
            OnError::Accept => RouteDecision::Continue,
            OnError::Reject => RouteDecision::Bounce(Reply::new(
                550,
                Enhanced(5, 7, 0),
                "Rejected by routing policy",
            )),
        }
    }

    /// Renders one recipient's copy: every plugin that handles `recipient-copy` may edit
    /// it (this copy only). Returns the verdict and the copy when it differs from `message`;
    /// a failing plugin's edits are dropped and its `on_error` decides (tempfail defers the
    /// recipient, reject bounces it, accept sends the copy as it is). The message is read in
    /// place, and the envelope and recipient are asked for only when some plugin is to see
    /// the copy: a copy every plugin's `wants` rule out costs a read of its header fields
    /// (and of its MIME structure when it is multipart), once per message.
    pub async fn recipient_copy(
        &mut self,
        env: impl FnOnce() -> Arc<EnvelopeInfo>,
        rcpt: impl FnOnce() -> RecipientInfo,
        message: &MessageBytes,
    ) -> (Verdict, Option<Vec<u8>>) {
        let unwanted = self
            .copies_unwanted
            .as_ref()
            .is_some_and(|known| same_bytes(known, message));
        if !self.handles(Hook::RecipientCopy) || unwanted {
            return (Verdict::Continue, None);
        }
        let max = self.chain.host.max_message;
        // Most mail is decided from its header fields alone; a multipart message whose part
        // types matter is parsed for its part tree, which the chain then keeps.
        let mut parsed = None;
        let reached =
            match self
                .chain
                .reaches_any_raw(Hook::RecipientCopy, Caller::Unknown, message)
            {
                Some(reached) => reached,
                None => {
                    let current = parsed.insert(MessageRes::parse_shared(message.clone(), max));
                    self.chain.reaches_any(Hook::RecipientCopy, current)
                }
            };
        if !reached {
            // No plugin is to see it: the copy is the message as it came in.
            self.chain.decided = None;
            self.copies_unwanted = Some(message.clone());
            return (Verdict::Continue, None);
        }
        let current = parsed.unwrap_or_else(|| MessageRes::parse_shared(message.clone(), max));
        let (env, rcpt) = (env(), Arc::new(rcpt()));
        let call = |m| Call::RecipientCopy(rcpt.clone(), m);
        let (verdict, current) = self
            .chain
            .edit_chain(Hook::RecipientCopy, Subject::Delivery(&env), current, call)
            .await;
        let edited = current.is_edited().then(|| current.into_bytes());
        (verdict, edited)
    }

    /// Tells every plugin that handles it what an attempt (or a route decision) did.
    pub async fn delivery_result(&mut self, env: &Arc<EnvelopeInfo>, report: &DeliveryReport) {
        if !self.handles(Hook::DeliveryResult) {
            return;
        }
        let wit_report = bindings::delivery_report(report);
        self.chain
            .notify_all(
                Hook::DeliveryResult,
                Subject::Delivery(env),
                Call::Report(&wit_report),
            )
            .await;
    }
}

/// Whether `a` and `b` are the same bytes in memory. While `a` is kept, no other message
/// can be at its address.
fn same_bytes(a: &MessageBytes, b: &MessageBytes) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_bytes_are_the_same_message() {
        let a = MessageBytes::from(&b"Subject: x\r\n\r\nbody\r\n"[..]);
        let equal = MessageBytes::from(&b"Subject: x\r\n\r\nbody\r\n"[..]);
        assert!(same_bytes(&a, &a.clone()));
        assert!(
            !same_bytes(&a, &equal),
            "another message with the same text"
        );
    }
}
