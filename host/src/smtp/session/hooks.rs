//! Where the session asks the plugin chain. Each stage builds the facts plugins see, runs the
//! chain, and turns its verdict into what the session does next: `None` to go on with the
//! session's own answer, `Some(flow)` once the plugin's reply is queued.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;
use wasmrelay_codec::command::{Address, ReversePath};

use super::{Flow, Session, Transaction};
use crate::plugins::{ConnectionInfo, Hook, TlsInfo, TransactionInfo, Verdict};
use crate::spool::MessageId;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Whether any plugin of this session's chain handles `hook`: the facts are only built
    /// for hooks someone listens to, so a relay without plugins pays nothing.
    fn wants(&self, hook: Hook) -> bool {
        self.plugins
            .as_ref()
            .is_some_and(|p| p.host().handles(hook))
    }

    fn connection_info(&self) -> ConnectionInfo {
        let tls = self.ctx.tls.as_ref().map(|t| {
            let (protocol, cipher) = t.split_once(' ').unwrap_or((t.as_str(), ""));
            TlsInfo {
                protocol: protocol.to_string(),
                cipher: cipher.to_string(),
            }
        });
        ConnectionInfo {
            session_id: self.ctx.id.to_string(),
            remote: self.ctx.peer,
            local: self.ctx.local,
            helo: self.ctx.helo.clone(),
            tls,
            auth_user: self.ctx.auth_user.clone(),
            attributes: vec![
                ("listener".into(), self.ctx.listener.clone()),
                (
                    "trusted-network".into(),
                    self.ctx.trusted_network.to_string(),
                ),
            ],
        }
    }

    /// Applies a refusing verdict: its reply is queued (and counted, like any refusal);
    /// `disconnect` also ends the session.
    fn apply(&mut self, verdict: Verdict) -> Option<Flow> {
        match verdict {
            Verdict::Continue | Verdict::Accept => None,
            Verdict::Reject(reply) | Verdict::Tempfail(reply) => Some(self.fail(reply)),
            Verdict::Disconnect(reply) => {
                self.io.reply(&reply);
                Some(Flow::Close)
            }
        }
    }

    /// Before the greeting. Any refusal here ends the connection after its reply.
    pub(super) async fn hook_connect(&mut self) -> Option<Flow> {
        if !self.wants(Hook::Connect) {
            return None;
        }
        let info = self.connection_info();
        let verdict = self.plugins.as_mut()?.connect(&info).await;
        match verdict {
            Verdict::Continue | Verdict::Accept => None,
            Verdict::Reject(reply) | Verdict::Tempfail(reply) | Verdict::Disconnect(reply) => {
                info!(reply = %reply, "refused at connect by policy");
                self.io.reply(&reply);
                Some(Flow::Close)
            }
        }
    }

    pub(super) async fn hook_helo(&mut self) -> Option<Flow> {
        if !self.wants(Hook::Helo) {
            return None;
        }
        let info = self.connection_info();
        let verdict = self.plugins.as_mut()?.helo(&info).await;
        self.apply(verdict)
    }

    pub(super) async fn hook_auth(&mut self, user: &str) -> Option<Flow> {
        if !self.wants(Hook::Auth) {
            return None;
        }
        let info = self.connection_info();
        let verdict = self.plugins.as_mut()?.auth(&info, user).await;
        self.apply(verdict)
    }

    pub(super) async fn hook_mail(&mut self, from: &ReversePath) -> Option<Flow> {
        if !self.wants(Hook::MailFrom) {
            return None;
        }
        let info = self.connection_info();
        let tx = TransactionInfo {
            mail_from: Some(reverse_path(from)),
            ..Default::default()
        };
        let verdict = self.plugins.as_mut()?.mail_from(&info, &tx).await;
        self.apply(verdict)
    }

    pub(super) async fn hook_rcpt(&mut self, rcpt: &Address) -> Option<Flow> {
        if !self.wants(Hook::Rcpt) {
            return None;
        }
        let info = self.connection_info();
        let tx = transaction_info(self.txn.as_ref()?);
        let verdict = self
            .plugins
            .as_mut()?
            .rcpt(&info, &tx, &rcpt.to_string())
            .await;
        self.apply(verdict)
    }

    /// After the final dot, before the message is spooled; edits land in `message`.
    pub(super) async fn hook_data(
        &mut self,
        txn: &Transaction,
        message: &mut Vec<u8>,
    ) -> Option<Flow> {
        if !self.wants(Hook::Data) {
            return None;
        }
        let info = self.connection_info();
        let tx = transaction_info(txn);
        let verdict = self.plugins.as_mut()?.data(&info, &tx, message).await;
        self.apply(verdict)
    }

    /// The message is durable; the verdict cannot take the `250` back, so it is only logged.
    pub(super) async fn hook_queued(&mut self, txn: &Transaction, id: &MessageId) {
        if !self.wants(Hook::Queued) {
            return;
        }
        let info = self.connection_info();
        let tx = transaction_info(txn);
        if let Some(plugins) = self.plugins.as_mut() {
            let verdict = plugins.queued(&info, &tx, id.as_str()).await;
            if verdict != Verdict::Continue && verdict != Verdict::Accept {
                info!(id = %id, ?verdict, "queued hook verdict ignored: the message is already accepted");
            }
        }
    }
}

fn reverse_path(from: &ReversePath) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(a) => a.to_string(),
    }
}

fn transaction_info(txn: &Transaction) -> TransactionInfo {
    TransactionInfo {
        mail_from: Some(reverse_path(&txn.from)),
        recipients: txn.recipients.iter().map(|(a, _)| a.to_string()).collect(),
        auth_results: Vec::new(),
    }
}
