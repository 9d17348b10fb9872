//! Where the session asks the plugin chain. Each stage builds the facts plugins see, runs the
//! chain, and turns its verdict into what the session does next: `None` to go on with the
//! session's own answer, `Some(flow)` once the plugin's reply is queued.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;
use wasmrelay_codec::command::{Address, BodyType, DsnReturn, MailParams, ReversePath};

use super::rejected::Refused;
use super::{Flow, Session, Transaction};
use crate::config::ListenerRole;
use crate::plugins::{
    AuthResult, ConnectionInfo, Hook, TlsInfo, TransactionInfo, Verdict, TRUSTED,
};
use crate::spool::{MessageBytes, MessageId};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Whether any plugin of this session's chain handles `hook`: the facts are only built
    /// for hooks someone listens to, so a relay without plugins pays nothing.
    fn wants(&self, hook: Hook) -> bool {
        self.plugins
            .as_ref()
            .is_some_and(|p| p.host().handles(hook))
    }

    /// The connection facts plugins see, brought up to date only when HELO, TLS or AUTH
    /// changed them since the last hook (building them is a dozen small allocations; a
    /// session runs several hooks per message with the same facts). Stale facts no chain run
    /// holds any more (the usual case: a run lets go of them when it ends) are updated in
    /// place, so the EHLO after `connect` rewrites the HELO name instead of building anew.
    fn connection_info(&mut self) -> Arc<ConnectionInfo> {
        let info = match self.shown_facts.take() {
            Some(info) if self.still_current(&info) => info,
            Some(mut info) => match Arc::get_mut(&mut info) {
                Some(facts) => {
                    self.update_connection_info(facts);
                    info
                }
                None => Arc::new(self.build_connection_info()),
            },
            None => Arc::new(self.build_connection_info()),
        };
        self.shown_facts.insert(info).clone()
    }

    /// Whether `info` still says what the connection is. Of what
    /// [`Session::build_connection_info`] reads, only HELO, TLS and the AUTH user change during
    /// a session (and with AUTH, whether it may relay); the rest is fixed at connect.
    fn still_current(&self, info: &ConnectionInfo) -> bool {
        let tls = match (&info.tls, &self.ctx.tls) {
            (None, None) => true,
            (Some(shown), Some(now)) => {
                split_tls(now) == (shown.protocol.as_str(), shown.cipher.as_str())
            }
            _ => false,
        };
        tls && info.helo == self.ctx.helo && info.auth_user == self.ctx.auth_user
    }

    fn build_connection_info(&self) -> ConnectionInfo {
        let role = match self.env.listener.role {
            ListenerRole::Relay => "relay",
            ListenerRole::Submission => "submission",
            ListenerRole::Smtps => "smtps",
        };
        let mut info = ConnectionInfo {
            session_id: self.ctx.id.to_string(),
            remote: self.ctx.peer,
            local: self.ctx.local,
            helo: None,
            tls: None,
            auth_user: None,
            listener: self.ctx.listener.clone(),
            attributes: vec![
                ("listener-role", role),
                (TRUSTED, ""),
                ("trusted-network", yes_no(self.ctx.trusted_network)),
            ],
        };
        self.update_connection_info(&mut info);
        info
    }

    /// Writes what changes during a session into `info`, reusing its strings: HELO, TLS, the
    /// AUTH user, and whether the client may relay (`trusted`, which AUTH can change).
    fn update_connection_info(&self, info: &mut ConnectionInfo) {
        info.helo.clone_from(&self.ctx.helo);
        info.auth_user.clone_from(&self.ctx.auth_user);
        info.tls = self.ctx.tls.as_deref().map(|t| {
            let (protocol, cipher) = split_tls(t);
            TlsInfo {
                protocol: protocol.to_string(),
                cipher: cipher.to_string(),
            }
        });
        let trusted = yes_no(self.ctx.may_relay());
        if let Some((_, value)) = info.attributes.iter_mut().find(|(n, _)| *n == TRUSTED) {
            *value = trusted;
        }
    }

    /// Applies a refusing verdict: its reply is queued (and counted, like any refusal) and
    /// recorded as a rejection at `stage`; `disconnect` also ends the session.
    fn apply(&mut self, stage: Hook, what: Refused<'_>, verdict: Verdict) -> Option<Flow> {
        match verdict {
            Verdict::Continue | Verdict::Accept => None,
            Verdict::Reject(reply) | Verdict::Tempfail(reply) => {
                self.rejected(stage, what, &reply, true);
                Some(self.fail(reply))
            }
            Verdict::Disconnect(reply) => {
                self.rejected(stage, what, &reply, true);
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
                self.rejected(Hook::Connect, Refused::Session, &reply, true);
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
        self.apply(Hook::Helo, Refused::Session, verdict)
    }

    pub(super) async fn hook_auth(&mut self, user: &str) -> Option<Flow> {
        if !self.wants(Hook::Auth) {
            return None;
        }
        let info = self.connection_info();
        let verdict = self.plugins.as_mut()?.auth(&info, user).await;
        self.apply(Hook::Auth, Refused::Session, verdict)
    }

    /// MAIL FROM: a refusal, or the annotations plugins set and the reverse path as they saw
    /// it (the transaction starts with both).
    pub(super) async fn hook_mail(
        &mut self,
        from: &ReversePath,
        params: &MailParams,
    ) -> Result<(Vec<(String, String)>, Option<String>), Flow> {
        if !self.wants(Hook::MailFrom) {
            return Ok((Vec::new(), None));
        }
        let info = self.connection_info();
        let mut tx = TransactionInfo {
            mail_from: Some(reverse_path(from)),
            mail_params: mail_params(params),
            size: params.size,
            ..Default::default()
        };
        let Some(plugins) = self.plugins.as_mut() else {
            return Ok((Vec::new(), None));
        };
        let verdict = plugins.mail_from(&info, &mut tx).await;
        match self.apply(Hook::MailFrom, Refused::Session, verdict) {
            Some(flow) => Err(flow),
            None => Ok((tx.annotations, tx.mail_from)),
        }
    }

    pub(super) async fn hook_rcpt(&mut self, rcpt: &Address) -> Option<Flow> {
        if !self.wants(Hook::Rcpt) {
            return None;
        }
        let info = self.connection_info();
        let mut tx = transaction_info(self.txn.as_mut()?, None);
        let rcpt = rcpt.mailbox();
        let verdict = match self.plugins.as_mut() {
            Some(plugins) => plugins.rcpt(&info, &mut tx, &rcpt).await,
            None => Verdict::Continue,
        };
        if let Some(txn) = self.txn.as_mut() {
            give_back(txn, tx);
        }
        self.apply(Hook::Rcpt, Refused::Recipient(&rcpt), verdict)
    }

    /// After the final dot, before the message is spooled; edits land in `message` (written
    /// out as a new spill file when large), annotations in `txn`. `auth_results` are what the
    /// host checked of this message.
    pub(super) async fn hook_data(
        &mut self,
        id: &MessageId,
        txn: &mut Transaction,
        message: &mut MessageBytes,
        auth_results: Vec<AuthResult>,
    ) -> Option<Flow> {
        if !self.wants(Hook::Data) {
            return None;
        }
        let info = self.connection_info();
        let mut tx = transaction_info(txn, Some(message.len() as u64));
        tx.auth_results = auth_results;
        tx.message_id = Some(id.to_string());
        let Some(plugins) = self.plugins.as_mut() else {
            give_back(txn, tx);
            return None;
        };
        let (verdict, edited) = plugins.data_shared(&info, &mut tx, message).await;
        give_back(txn, tx);
        if let Some(flow) = self.apply(Hook::Data, Refused::Message(id, txn), verdict) {
            return Some(flow);
        }
        let edited = edited?;
        match self.rewrite(id, txn, &[&edited.head(), edited.body()]) {
            Ok(bytes) => *message = bytes,
            Err(flow) => return Some(flow),
        }
        None
    }

    /// The message is durable; informational.
    pub(super) async fn hook_queued(&mut self, txn: &mut Transaction, id: &MessageId, size: u64) {
        if !self.wants(Hook::Queued) {
            return;
        }
        let info = self.connection_info();
        let mut tx = transaction_info(txn, Some(size));
        tx.queue_id = Some(id.to_string());
        if let Some(plugins) = self.plugins.as_mut() {
            plugins.queued(&info, &tx, id.as_str()).await;
        }
        give_back(txn, tx);
    }

    /// Drops the open transaction (RSET, a new EHLO, STARTTLS): what plugins charged for its
    /// message is given back.
    pub(super) async fn end_transaction(&mut self) {
        if self.txn.take().is_some() {
            if let Some(plugins) = self.plugins.as_mut() {
                plugins.transaction_ended().await;
            }
        }
    }

    /// The connection is over, however it ended; informational. The counts plugins held
    /// for the session are given back either way.
    pub(super) async fn hook_closed(&mut self) {
        if !self.wants(Hook::Closed) {
            if let Some(plugins) = self.plugins.as_mut() {
                plugins.release_holds().await;
            }
            return;
        }
        let info = self.connection_info();
        if let Some(plugins) = self.plugins.as_mut() {
            plugins.closed(&info).await;
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The session's TLS description ("protocol cipher") as plugins see it.
fn split_tls(tls: &str) -> (&str, &str) {
    tls.split_once(' ').unwrap_or((tls, ""))
}

/// MAIL FROM parameters as plugins see them: keyword upper-cased, value or `""`.
fn mail_params(p: &MailParams) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(size) = p.size {
        out.push(("SIZE".into(), size.to_string()));
    }
    if let Some(body) = p.body {
        let v = match body {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
        };
        out.push(("BODY".into(), v.into()));
    }
    if p.smtputf8 {
        out.push(("SMTPUTF8".into(), String::new()));
    }
    if let Some(ret) = p.ret {
        let v = match ret {
            DsnReturn::Full => "FULL",
            DsnReturn::Headers => "HDRS",
        };
        out.push(("RET".into(), v.into()));
    }
    if let Some(envid) = &p.envid {
        out.push(("ENVID".into(), envid.clone()));
    }
    if let Some(auth) = &p.auth {
        out.push(("AUTH".into(), auth.clone()));
    }
    out
}

pub(super) fn reverse_path(from: &ReversePath) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(a) => a.mailbox(),
    }
}

/// The transaction as plugins see it; `size` is the real size once the message is in. The
/// reverse path and the recipients' list are lent from `txn` (the list extended with those
/// accepted since the last hook) and come back with [`give_back`].
fn transaction_info(txn: &mut Transaction, size: Option<u64>) -> TransactionInfo {
    let mut recipients = std::mem::take(&mut txn.mailboxes);
    if recipients.len() > txn.recipients.len() {
        recipients.clear();
    }
    recipients.extend(
        txn.recipients[recipients.len()..]
            .iter()
            .map(|(a, _)| a.mailbox()),
    );
    TransactionInfo {
        mail_from: Some(txn.sender.take().unwrap_or_else(|| reverse_path(&txn.from))),
        mail_params: mail_params(&txn.params),
        size: size.or(txn.params.size),
        recipients,
        queue_id: None,
        message_id: None,
        auth_results: Vec::new(),
        annotations: txn.annotations.clone(),
    }
}

/// What a hook leaves in the transaction: the annotations plugins set, and the reverse path
/// and recipients' list [`transaction_info`] lent.
fn give_back(txn: &mut Transaction, tx: TransactionInfo) {
    txn.annotations = tx.annotations;
    txn.mailboxes = tx.recipients;
    txn.sender = tx.mail_from;
}
