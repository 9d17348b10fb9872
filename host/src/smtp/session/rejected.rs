//! Refusals the event log records: a `rejected` event for every sender, recipient or message
//! refused (by a limit, the relay policy or a plugin), with the plugin that decided.

use tokio::io::{AsyncRead, AsyncWrite};
use wasmrelay_codec::reply::Reply;

use super::hooks::reverse_path;
use super::{Flow, Session, Transaction};
use crate::events::Rejection;
use crate::plugins::Hook;
use crate::spool::MessageId;

/// What a refusal was about, beyond the connection and the open transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused<'a> {
    /// The connection, the greeting, the login or the sender.
    Session,
    Recipient(&'a str),
    /// The message, under the id DATA gave it, with its (already closed) transaction.
    Message(&'a MessageId, &'a Transaction),
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Records that `stage` refused `what` with `reply`; `by_plugin` when the reply is a
    /// plugin's verdict (the chain says which plugin).
    pub(super) fn rejected(&self, stage: Hook, what: Refused<'_>, reply: &Reply, by_plugin: bool) {
        if !self.env.events.is_on() {
            return;
        }
        let txn = match what {
            Refused::Message(_, txn) => Some(txn),
            _ => self.txn.as_ref(),
        };
        let from = txn.map(|t| reverse_path(&t.from));
        let decided_by = match (by_plugin, &self.plugins) {
            (true, Some(plugins)) => plugins.decided_by(),
            _ => None,
        };
        self.env.events.rejected(Rejection {
            stage,
            reply,
            client_ip: self.ctx.peer.ip(),
            listener: &self.ctx.listener,
            from: from.as_deref(),
            recipient: match what {
                Refused::Recipient(r) => Some(r),
                _ => None,
            },
            queue_id: match what {
                Refused::Message(id, _) => Some(id.as_str()),
                _ => None,
            },
            decided_by,
        });
    }

    /// Refuses with `reply` (counted like any failed command) and records it.
    pub(super) fn refuse(&mut self, stage: Hook, what: Refused<'_>, reply: Reply) -> Flow {
        self.rejected(stage, what, &reply, false);
        self.fail(reply)
    }
}
