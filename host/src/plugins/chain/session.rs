//! The session-stage view of the chain: `connect` to `closed`, one instance set per SMTP
//! session, and the counts its plugins hold until it ends.

use std::sync::Arc;

use super::{Call, Caller, Chain, Subject};
use crate::plugins::context::ContextData;
use crate::plugins::holds;
use crate::plugins::message::MessageRes;
use crate::plugins::types::{ConnectionInfo, Hook, TransactionInfo, Verdict};
use crate::plugins::PluginHost;
use crate::spool::MessageBytes;

/// A session that ends without [`SessionPlugins::closed`] (its task was dropped: the relay
/// is shutting down, or a caller gave up on it) still gives its held counts back, from a task
/// of its own.
impl Drop for SessionPlugins {
    fn drop(&mut self) {
        let held = self.take_holds();
        let charges = self.take_charges();
        if held.is_empty() && charges.is_empty() {
            return;
        }
        let backend = self.chain.host.caps.backend.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    holds::give_back(&*backend, charges).await;
                    holds::release(&*backend, held).await;
                });
            }
            Err(_) => tracing::warn!(
                counts = held.len(),
                charges = charges.len(),
                "a session ended outside the runtime; what it held ages out"
            ),
        }
    }
}

/// One SMTP session's view of the chain. Created cheaply by [`PluginHost::session`]; each
/// plugin gets an instance the first time one of its hooks runs, reused by every later hook
/// of the session, and replaced after a failure. A pooled plugin without session memory
/// (`session-memory: none`) takes one from its pool at each hook and gives it back after.
pub struct SessionPlugins {
    chain: Chain,
    /// The snapshot of the last chain run, emptied, for the next run to fill.
    spare: Option<Arc<ContextData>>,
}

impl SessionPlugins {
    pub(crate) fn new(host: Arc<PluginHost>) -> Self {
        let mut chain = Chain::new(host);
        chain.holds = Some(Arc::default());
        SessionPlugins { chain, spare: None }
    }

    /// The host this session's chain came from (a reload does not change it).
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.chain.host
    }

    /// The plugin whose verdict ended the last chain run (also by failing into its
    /// `on_error`), and the hook; `None` when every plugin continued.
    pub fn decided_by(&self) -> Option<(&str, Hook)> {
        self.chain.decided_by()
    }

    /// A client connected.
    pub async fn connect(&mut self, conn: &Arc<ConnectionInfo>) -> Verdict {
        self.run(Hook::Connect, conn, Call::Connect).await
    }

    /// HELO/EHLO (`conn.helo` set).
    pub async fn helo(&mut self, conn: &Arc<ConnectionInfo>) -> Verdict {
        self.run(Hook::Helo, conn, Call::Helo).await
    }

    /// AUTH succeeded as `user`.
    pub async fn auth(&mut self, conn: &Arc<ConnectionInfo>, user: &str) -> Verdict {
        self.run(Hook::Auth, conn, Call::Auth(user)).await
    }

    /// MAIL FROM; `tx.mail_from` holds the reverse path. Annotations plugins set land in
    /// `tx.annotations`. What the plugins charged for the message of a transaction that
    /// ended unqueued is given back first (the session has not said so yet), and what they
    /// charged in this call if it is refused.
    pub async fn mail_from(
        &mut self,
        conn: &Arc<ConnectionInfo>,
        tx: &mut TransactionInfo,
    ) -> Verdict {
        self.transaction_ended().await;
        let verdict = self.run_tx(Hook::MailFrom, conn, tx, Call::MailFrom).await;
        if verdict.refuses() {
            self.transaction_ended().await;
        }
        verdict
    }

    /// RCPT TO; `tx.recipients` holds those accepted before this one.
    pub async fn rcpt(
        &mut self,
        conn: &Arc<ConnectionInfo>,
        tx: &mut TransactionInfo,
        rcpt: &str,
    ) -> Verdict {
        self.run_tx(Hook::Rcpt, conn, tx, Call::Rcpt(rcpt)).await
    }

    /// End of DATA. Plugins' edits are applied to `message` before this returns, also when
    /// the verdict refuses it; the edits of a plugin that failed are dropped. Annotations
    /// land in `tx.annotations`.
    pub async fn data(
        &mut self,
        conn: &Arc<ConnectionInfo>,
        tx: &mut TransactionInfo,
        message: &mut Vec<u8>,
    ) -> Verdict {
        if !self.chain.host.handles(Hook::Data) || self.data_unwanted(conn, tx, message) {
            return Verdict::Continue;
        }
        let current = MessageRes::parse(std::mem::take(message), self.chain.host.max_message);
        let (verdict, current) = self.edit_data(conn, tx, current).await;
        *message = current.into_bytes();
        verdict
    }

    /// The transaction's message is queued: what the plugins charged for it stays charged.
    pub fn message_queued(&mut self) {
        drop(self.take_charges());
    }

    /// The transaction ended without its message queued (RSET, a new EHLO, a refusal, a
    /// message that could not be stored): what the plugins charged for the message is given
    /// back. Nothing to do after [`SessionPlugins::message_queued`].
    pub async fn transaction_ended(&mut self) {
        let charges = self.take_charges();
        if !charges.is_empty() {
            holds::give_back(&*self.chain.host.caps.backend, charges).await;
        }
    }

    /// [`SessionPlugins::data`] for a message the host keeps (a large one is a mapped file):
    /// plugins read it in place, and the edited message, if any plugin changed it, comes
    /// back for the host to write out.
    pub async fn data_shared(
        &mut self,
        conn: &Arc<ConnectionInfo>,
        tx: &mut TransactionInfo,
        message: &MessageBytes,
    ) -> (Verdict, Option<MessageRes>) {
        if !self.chain.host.handles(Hook::Data) || self.data_unwanted(conn, tx, message) {
            return (Verdict::Continue, None);
        }
        let current = MessageRes::parse_shared(message.clone(), self.chain.host.max_message);
        let (verdict, current) = self.edit_data(conn, tx, current).await;
        (verdict, current.is_edited().then_some(current))
    }

    /// Whether every plugin's declarations rule the message out at `data`, told from its
    /// header fields alone (and its one part's MIME fields when it is not multipart): then
    /// it is not parsed, nor the call's context made. A trusted client's text mail, for a
    /// content policy limited to attachments and checked mail, say.
    fn data_unwanted(
        &mut self,
        conn: &ConnectionInfo,
        tx: &TransactionInfo,
        message: &[u8],
    ) -> bool {
        let caller = Caller::Session(Some(conn), tx);
        let unwanted = self.chain.reaches_any_raw(Hook::Data, caller, message) == Some(false);
        if unwanted {
            self.chain.decided = None;
        }
        unwanted
    }

    async fn edit_data(
        &mut self,
        conn: &Arc<ConnectionInfo>,
        tx: &mut TransactionInfo,
        current: MessageRes,
    ) -> (Verdict, MessageRes) {
        let ctx = ContextData::reuse(&mut self.spare, conn.clone(), std::mem::take(tx));
        let (verdict, current) = self
            .chain
            .edit_chain(Hook::Data, Subject::Session(&ctx), current, Call::Data)
            .await;
        if verdict.refuses() {
            self.transaction_ended().await;
        }
        if current.is_edited() {
            tracing::debug!("plugins edited the message");
        }
        *tx = ContextData::into_transaction(ctx, &mut self.spare);
        (verdict, current)
    }

    /// The message is durable under `queue_id`. Informational.
    pub async fn queued(
        &mut self,
        conn: &Arc<ConnectionInfo>,
        tx: &TransactionInfo,
        queue_id: &str,
    ) {
        if self.chain.host.handles(Hook::Queued) {
            let ctx = ContextData::reuse(&mut self.spare, conn.clone(), tx.clone());
            let call = Call::Queued(queue_id);
            self.chain
                .notify_all(Hook::Queued, Subject::Session(&ctx), call)
                .await;
            ContextData::release(ctx, &mut self.spare);
        }
    }

    /// The connection closed. Informational; then the counts the plugins hold are given
    /// back.
    pub async fn closed(&mut self, conn: &Arc<ConnectionInfo>) {
        if self.chain.host.handles(Hook::Closed) {
            let ctx = ContextData::reuse(&mut self.spare, conn.clone(), TransactionInfo::default());
            self.chain
                .notify_all(Hook::Closed, Subject::Session(&ctx), Call::Closed)
                .await;
            ContextData::release(ctx, &mut self.spare);
        }
        self.release_holds().await;
    }

    /// Gives back the counts the session's plugins hold (`counter-hold`) and the charges of
    /// a transaction still open (its message was never queued): at the end of the session,
    /// when no plugin has a `closed` hook to run first.
    pub async fn release_holds(&mut self) {
        self.transaction_ended().await;
        let held = self.take_holds();
        if !held.is_empty() {
            holds::release(&*self.chain.host.caps.backend, held).await;
        }
    }

    fn take_holds(&self) -> Vec<holds::Held> {
        let holds = self.chain.holds.as_ref();
        holds.map(|h| h.take()).unwrap_or_default()
    }

    fn take_charges(&self) -> Vec<holds::Charge> {
        let holds = self.chain.holds.as_ref();
        holds.map(|h| h.take_charges()).unwrap_or_default()
    }

    /// A session hook (no transaction yet) through the chain.
    async fn run(&mut self, hook: Hook, conn: &Arc<ConnectionInfo>, call: Call<'_>) -> Verdict {
        if !self.chain.host.handles(hook) {
            return Verdict::Continue;
        }
        let ctx = ContextData::reuse(&mut self.spare, conn.clone(), TransactionInfo::default());
        let verdict = self.chain.verdict_chain(hook, &ctx, call).await;
        ContextData::release(ctx, &mut self.spare);
        verdict
    }

    /// [`Self::run`] for transaction hooks, whose plugins may set annotations.
    async fn run_tx(
        &mut self,
        hook: Hook,
        conn: &Arc<ConnectionInfo>,
        tx: &mut TransactionInfo,
        call: Call<'_>,
    ) -> Verdict {
        if !self.chain.host.handles(hook) {
            return Verdict::Continue;
        }
        let ctx = ContextData::reuse(&mut self.spare, conn.clone(), std::mem::take(tx));
        let verdict = self.chain.verdict_chain(hook, &ctx, call).await;
        *tx = ContextData::into_transaction(ctx, &mut self.spare);
        verdict
    }
}
