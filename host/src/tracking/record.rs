//! What a verified request leaves behind: an event in the event log (`open`, `click`,
//! `unsubscribe`), a count of repeats in the state backend, and for an unsubscribe the
//! recipient on the suppression list.
//!
//! Events carry `queue_id` and `recipient`, then `sender_domain` and `link` from the token,
//! `client_ip` and `user_agent` from the request; `open` and `click` a `count` (the
//! recipient's opens of the message, or clicks of the link, in `[tracking] count_window`,
//! this one included; absent when the backend could not count), `click` its `url`, and
//! `unsubscribe` the `list` and whether the recipient was `new` on it.

use wasmrelay_tracking_token::{Claims, Kind};

use super::handler::Request;
use super::Endpoint;
use crate::events::Event;

/// Longest `User-Agent` kept in an event.
const MAX_USER_AGENT: usize = 256;

impl Endpoint {
    /// An open or a click: counted, then logged.
    pub(super) async fn record_view(&self, claims: &Claims, req: &Request<'_>) {
        // Keys start with NUL so they cannot meet a plugin's (`name\0key`).
        let key = format!(
            "\0tracking\0{}\0{}\0{}\0{}",
            claims.kind.name(),
            claims.queue_id,
            claims.recipient,
            claims.link
        );
        let count = match self
            .backend
            .counter_add(&key, 1, self.config.count_window)
            .await
        {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "tracking: cannot count a repeat");
                None
            }
        };
        let event = self.event(claims, req).field_opt("count", count).field_opt(
            "url",
            (claims.kind == Kind::Click).then(|| claims.url.clone()),
        );
        self.events.emit(event);
    }

    /// A one-click unsubscribe: the recipient goes on the suppression list (durably, before
    /// the `200`), then the event is logged. `Err` when the list could not be written.
    pub(super) async fn record_unsubscribe(
        &self,
        claims: &Claims,
        req: &Request<'_>,
    ) -> Result<(), ()> {
        let list = &self.config.suppression_list;
        let new = if list.is_empty() {
            None
        } else {
            match self
                .backend
                .list_add(list, &claims.recipient, None, self.max_members)
                .await
            {
                Ok(new) => Some(new),
                Err(e) => {
                    tracing::warn!(error = %e, list = %list, "tracking: cannot suppress a recipient");
                    return Err(());
                }
            }
        };
        let event = self
            .event(claims, req)
            .field_opt("list", (!list.is_empty()).then(|| list.clone()))
            .field_opt("new", new);
        self.events.emit(event);
        Ok(())
    }

    fn event(&self, claims: &Claims, req: &Request<'_>) -> Event {
        let user_agent = req.user_agent.map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_string()
        });
        Event::new(claims.kind.name())
            .queue_id(&claims.queue_id)
            .recipient(claims.recipient.clone())
            .field("sender_domain", claims.sender_domain.clone())
            .field("link", claims.link)
            .field("client_ip", req.client_ip.to_canonical().to_string())
            .field_opt("user_agent", user_agent)
    }
}
