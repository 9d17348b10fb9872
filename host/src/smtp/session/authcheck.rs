//! Message authentication at the end of DATA, before the data hook: decides whether this
//! message is checked, runs the checks, puts our `Authentication-Results:` on top of the
//! message and takes forged ones out, and applies the listener's DMARC reject knob.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};
use wasmrelay_codec::command::ReversePath;
use wasmrelay_codec::message::header_end;
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::{Flow, Session, Transaction};
use crate::config::server::AuthCheck;
use crate::msgauth::header::{field_len, remove_ours, render};
use crate::msgauth::CheckInput;
use crate::plugins::AuthResult;
use crate::spool::{MessageBytes, MessageId};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Whether this listener checks this transaction (never an authenticated one).
    fn checks_auth(&self, txn: &Transaction) -> bool {
        if self.ctx.auth_user.is_some() || self.env.authenticator.is_none() {
            return false;
        }
        match self.env.listener.auth_check() {
            AuthCheck::Off => false,
            AuthCheck::All => true,
            AuthCheck::Inbound => {
                !self.ctx.trusted_network
                    && txn
                        .recipients
                        .iter()
                        .any(|(a, _)| self.env.relay.is_local_domain(&a.domain))
            }
        }
    }

    /// `message` starts with our `Received:` field. Checks it when the listener asks for it
    /// and returns the results for the data hook; `Err` once a DMARC refusal is queued.
    ///
    /// Whether checked or not, a message from a client outside `relay_networks` loses any
    /// `Authentication-Results` claiming our hostname: only we write those (RFC 8601 §5).
    /// `relay_networks` clients keep theirs, since a content filter of ours may re-inject
    /// what we already checked. The header section is edited in memory and the message
    /// written out again behind it only when it changes.
    pub(super) async fn authenticate_message(
        &mut self,
        id: &MessageId,
        txn: &Transaction,
        message: &mut MessageBytes,
    ) -> Result<Vec<AuthResult>, Flow> {
        let check = self.checks_auth(txn);
        if !check && self.ctx.trusted_network {
            return Ok(Vec::new());
        }
        let received = field_len(message);
        let hostname = self.env.hostname.clone();
        let outcome = match (&self.env.authenticator, check) {
            (Some(auth), true) => {
                let helo = self.ctx.helo.as_deref().unwrap_or("");
                let mail_from = match &txn.from {
                    ReversePath::Null => String::new(),
                    ReversePath::Mailbox(a) => a.to_string(),
                };
                let input = CheckInput {
                    ip: self.ctx.peer.ip().to_canonical(),
                    helo,
                    mail_from: &mail_from,
                    hostname: &hostname,
                    message: &message[received..],
                };
                let budget = self.env.limits.auth_check_timeout;
                Some(auth.check(&input, budget).await)
            }
            _ => None,
        };
        if let Some(domain) = outcome
            .as_ref()
            .and_then(|o| o.dmarc_reject.as_ref())
            .filter(|_| self.env.listener.dmarc_reject)
        {
            info!(domain = %domain, "message refused: DMARC policy reject");
            // A domain with a DMARC record is a DNS name; anything longer is not shown.
            let domain = if domain.len() <= 253 {
                domain.as_str()
            } else {
                "the author domain"
            };
            return Err(self.fail(Reply::new(
                550,
                Enhanced(5, 7, 1),
                format!("Message fails the DMARC policy of {domain}, which asks to reject it"),
            )));
        }
        // The header section is capped at reception, so this copy is small.
        let body = header_end(message).map_or(message.len(), |h| h.body);
        let mut head = message[..body].to_vec();
        let removed = remove_ours(&mut head, received, &hostname);
        if removed > 0 {
            info!(
                removed,
                "removed Authentication-Results claiming to be ours"
            );
        }
        if let Some(outcome) = &outcome {
            let field = render(&hostname, &outcome.findings);
            debug!(results = %field.trim_end(), "authentication results");
            head.splice(0..0, field.into_bytes());
        }
        if removed > 0 || outcome.is_some() {
            *message = self.rewrite(id, txn, &[&head, &message[body..]])?;
        }
        Ok(outcome
            .map(|o| o.findings.iter().map(|f| f.to_plugin()).collect())
            .unwrap_or_default())
    }
}
