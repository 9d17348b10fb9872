//! RCPT TO, and the relay decision: never an open relay.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;
use wasmrelay_codec::command::{Address, RcptParams};
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::rejected::Refused;
use super::{Flow, Session};
use crate::plugins::Hook;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn rcpt(&mut self, to: Address, params: RcptParams) -> Flow {
        let Some(txn) = &self.txn else {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "Need MAIL before RCPT"));
        };
        if txn.chunks.is_some() {
            return self.fail(Reply::new(
                503,
                Enhanced(5, 5, 1),
                "RCPT not allowed during BDAT",
            ));
        }
        if txn.recipients.len() >= self.env.limits.max_recipients {
            // 452, not 552: the client should send the rest in another transaction (RFC 5321 §4.5.3.1.10).
            let reply = Reply::new(452, Enhanced(4, 5, 3), "Too many recipients");
            self.rejected(
                Hook::Rcpt,
                Refused::Recipient(&to.to_string()),
                &reply,
                false,
            );
            return self.ok(reply);
        }
        if !txn.params.smtputf8 && !to.is_ascii() {
            return self.refuse(
                Hook::Rcpt,
                Refused::Recipient(&to.to_string()),
                Reply::new(553, Enhanced(5, 6, 7), "Non-ASCII address needs SMTPUTF8"),
            );
        }
        // `RCPT TO:<postmaster>` must always be accepted (RFC 5321 §4.5.1).
        let to = if to.domain.is_empty() {
            Address {
                local: to.local,
                domain: self.env.hostname.clone(),
            }
        } else {
            to
        };
        if let Some(reply) = self.relay_refusal(&to) {
            info!(rcpt = %to, "relay denied");
            return self.refuse(Hook::Rcpt, Refused::Recipient(&to.to_string()), reply);
        }
        // Plugins are asked only about recipients the relay policy allows: they can refuse
        // more, never open the relay.
        if let Some(flow) = self.hook_rcpt(&to).await {
            return flow;
        }
        if let Some(txn) = &mut self.txn {
            txn.recipients.push((to, params));
        }
        self.ok(Reply::new(250, Enhanced(2, 1, 5), "Recipient OK"))
    }

    /// Why this recipient is refused for this session, if it is. Trusted sessions may send
    /// anywhere; everyone else only to our own domains, and never through routing tricks in
    /// the local part (`%`-hack, bang paths, quoted `@`) that a downstream could act on.
    fn relay_refusal(&self, to: &Address) -> Option<Reply> {
        if self.ctx.may_relay() {
            return None;
        }
        let is_postmaster = to.local.eq_ignore_ascii_case("postmaster")
            && to.domain.eq_ignore_ascii_case(&self.env.hostname);
        let is_ours = is_postmaster || self.env.relay.is_local_domain(&to.domain);
        if !is_ours {
            return Some(Reply::new(554, Enhanced(5, 7, 1), "Relay access denied"));
        }
        if to.has_routing_chars() {
            return Some(Reply::new(
                554,
                Enhanced(5, 7, 1),
                "Relay access denied: routing in local part",
            ));
        }
        None
    }
}
