//! Running the chain: lazy instances, per-call budgets, failure handling and `on_error`.

use std::sync::Arc;

use tracing::Instrument;
use wasmtime::component::Resource;
use wasmtime::Store;

use crate::config::plugins::OnError;
use crate::plugins::bindings::{self, wasmrelay::plugin::types as wit};
use crate::plugins::context::{ContextData, ContextRes};
use crate::plugins::envelope::{EnvelopeRes, RecipientRes};
use crate::plugins::error::FailureKind;
use crate::plugins::holds::SessionHolds;
use crate::plugins::message::MessageRes;
use crate::plugins::metrics::VerdictKind;
use crate::plugins::scope::Scope;
use crate::plugins::state::StoreState;
use crate::plugins::types::{EnvelopeInfo, Hook, RecipientInfo, Verdict};
use crate::plugins::PluginHost;

mod delivery;
mod exports;
mod instantiate;
mod pool;
mod session;
mod wanted;
pub use delivery::DeliveryPlugins;
use exports::Exports;
pub(crate) use exports::Linked;
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub use instantiate::bench_instantiate;
pub(crate) use instantiate::probe;
use instantiate::{classify, instantiate};
pub(crate) use pool::Pool;
pub use session::SessionPlugins;
pub(crate) use wanted::list_form;
use wanted::{listed, relay_kept, Caller, MessageFacts};

/// One live instance: its store and its hooks.
pub(crate) struct Slot {
    store: Store<StoreState>,
    exports: Exports,
    /// The store's `context` resource, made at the instance's first session hook and
    /// refilled at each (a table entry pushed and deleted per call cost an allocation, a
    /// free and two table walks). Between calls it holds nothing.
    context: Option<Resource<ContextRes>>,
}

impl Slot {
    pub(super) fn new(store: Store<StoreState>, exports: Exports) -> Slot {
        Slot {
            store,
            exports,
            context: None,
        }
    }

    /// The `context` resource filled for one call: the chain run's snapshot and the
    /// plugin's session value.
    fn fill_context(
        &mut self,
        data: &Arc<ContextData>,
        session_value: Option<Vec<u8>>,
    ) -> wasmtime::Result<u32> {
        let table = &mut self.store.data_mut().table;
        if let Some(res) = &self.context {
            let entry = table.get_mut(res)?;
            entry.data = Some(data.clone());
            entry.session_value = session_value;
            return Ok(res.rep());
        }
        let res = table.push(ContextRes {
            data: Some(data.clone()),
            session_value,
        })?;
        let rep = res.rep();
        self.context = Some(res);
        Ok(rep)
    }

    /// Empties the `context` resource after a call, so the instance keeps nothing of the
    /// session (a pooled one serves others next), and returns the session value the call
    /// left.
    fn empty_context(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some(res) = &self.context else {
            return Ok(None);
        };
        let entry = self.store.data_mut().table.get_mut(res)?;
        entry.data = None;
        Ok(entry.session_value.take())
    }
}

/// A hook invocation with its arguments. Session hooks get the `context` of the chain run;
/// delivery hooks get an `envelope`.
#[derive(Clone)]
enum Call<'a> {
    Connect,
    Helo,
    Auth(&'a str),
    /// The reverse path is the run's snapshot's (`tx.mail_from`), passed without a copy.
    MailFrom,
    Rcpt(&'a str),
    Queued(&'a str),
    Closed,
    Data(MessageRes),
    Route(&'a str, &'a [String]),
    RecipientCopy(Arc<RecipientInfo>, MessageRes),
    Report(&'a wit::DeliveryReport),
}

/// The resource a call's first argument borrows.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Session(&'a Arc<ContextData>),
    Delivery(&'a Arc<EnvelopeInfo>),
}

/// What came back, still unvalidated.
enum Answer {
    Verdict(wit::Verdict),
    Edited(wit::Verdict, MessageRes),
    Route(wit::RouteDecision),
    Unit,
}

/// What a call is about, for the events a plugin emits during it: the message (its queue id,
/// or at `data` the id it will be queued under) and the recipient at hand.
fn scope<'a>(hook: Hook, subject: Subject<'a>, call: &'a Call<'_>) -> Scope<'a> {
    let queue_id = match subject {
        Subject::Session(c) => c.tx.queue_id.as_deref().or(c.tx.message_id.as_deref()),
        Subject::Delivery(e) => Some(e.queue_id.as_str()),
    };
    let recipient = match call {
        Call::Rcpt(r) => Some(*r),
        Call::RecipientCopy(r, _) => Some(r.address.as_str()),
        _ => None,
    };
    Scope {
        hook,
        queue_id,
        recipient,
    }
}

/// Calls one hook on a live instance, to end by `deadline` (its wall-time limit). A session
/// hook's context carries the plugin's `session_value` in, and the value the call left comes
/// back with the answer; the session's held counts are reachable during the call only.
async fn call_slot(
    slot: &mut Slot,
    deadline: tokio::time::Instant,
    hook: Hook,
    subject: Subject<'_>,
    session: (Option<Vec<u8>>, Option<&Arc<SessionHolds>>),
    call: Call<'_>,
) -> Result<(Answer, Option<Vec<u8>>), FailureKind> {
    let (session_value, holds) = session;
    let data = slot.store.data_mut();
    data.arm_call(scope(hook, subject, &call), deadline);
    data.holds = holds.cloned();
    slot.store.set_epoch_deadline(1);
    let fut = async {
        // The subject resource: the instance's own `context` entry, filled for the call; an
        // envelope lives in the store's table for the call only.
        let (ctx_rep, env_rep) = match subject {
            Subject::Session(c) => (Some(slot.fill_context(c, session_value)?), None),
            Subject::Delivery(e) => (
                None,
                Some(slot.store.data_mut().table.push(EnvelopeRes(e.clone()))?),
            ),
        };
        let Slot {
            store,
            exports: hooks,
            ..
        } = &mut *slot;
        let ctx = || Resource::<ContextRes>::new_borrow(ctx_rep.expect("context"));
        let env = || Resource::<EnvelopeRes>::new_borrow(env_rep.as_ref().expect("envelope").rep());
        let answer = match call {
            Call::Connect => Answer::Verdict(Box::pin(hooks.connect(store, ctx())).await?.0),
            Call::Helo => Answer::Verdict(Box::pin(hooks.helo(store, ctx())).await?.0),
            Call::Auth(user) => Answer::Verdict(Box::pin(hooks.auth(store, ctx(), user)).await?.0),
            Call::MailFrom => {
                let sender = match subject {
                    Subject::Session(c) => c.tx.mail_from.as_deref().unwrap_or(""),
                    Subject::Delivery(_) => unreachable!("mail-from is a session hook"),
                };
                Answer::Verdict(Box::pin(hooks.mail_from(store, ctx(), sender)).await?.0)
            }
            Call::Rcpt(r) => Answer::Verdict(Box::pin(hooks.rcpt(store, ctx(), r)).await?.0),
            Call::Queued(id) => {
                Box::pin(hooks.queued(store, ctx(), id)).await?;
                Answer::Unit
            }
            Call::Closed => {
                Box::pin(hooks.closed(store, ctx())).await?;
                Answer::Unit
            }
            Call::Data(msg) => {
                let m = store.data_mut().table.push(msg)?;
                let m_borrow = Resource::<MessageRes>::new_borrow(m.rep());
                let (v,) = Box::pin(hooks.data(store, ctx(), m_borrow)).await?;
                Answer::Edited(v, store.data_mut().table.delete(m)?)
            }
            Call::Route(domain, rcpts) => {
                Answer::Route(Box::pin(hooks.route(store, env(), domain, rcpts)).await?.0)
            }
            Call::RecipientCopy(rcpt, msg) => {
                let r = store.data_mut().table.push(RecipientRes(rcpt))?;
                let m = store.data_mut().table.push(msg)?;
                let r_borrow = Resource::<RecipientRes>::new_borrow(r.rep());
                let m_borrow = Resource::<MessageRes>::new_borrow(m.rep());
                let (v,) = Box::pin(hooks.recipient_copy(store, env(), r_borrow, m_borrow)).await?;
                store.data_mut().table.delete(r)?;
                Answer::Edited(v, store.data_mut().table.delete(m)?)
            }
            Call::Report(rep) => {
                Box::pin(hooks.delivery_result(store, env(), rep)).await?;
                Answer::Unit
            }
        };
        if let Some(e) = env_rep {
            store.data_mut().table.delete(e)?;
        }
        let kept = slot.empty_context()?;
        wasmtime::Result::Ok((answer, kept))
    };
    let result = tokio::time::timeout_at(deadline, fut).await;
    slot.store.data_mut().holds = None;
    match result {
        Err(_) => Err(FailureKind::WallTime),
        Ok(Err(e)) => Err(classify(e, slot.store.data())),
        Ok(Ok(a)) => Ok(a),
    }
}

/// What a chain keeps for one plugin during its session or batch.
#[derive(Default)]
struct Member {
    /// Its live instance, if it has one now.
    slot: Option<Slot>,
    /// Whether it already had an instance in this session or batch: one lost to a failure
    /// is replaced by a fresh instance, never by a pooled one, whose memory would hold another
    /// session's facts where this session's were.
    had_instance: bool,
    /// Its session value (`context.set-session-value`), kept between its calls.
    session_value: Option<Vec<u8>>,
}

/// The instances of one session or delivery batch, one member per plugin (in one allocation:
/// a chain is built for every session and every delivery batch).
struct Chain {
    host: Arc<PluginHost>,
    members: Vec<Member>,
    /// The plugin (by index) whose verdict ended the last run, and the hook.
    decided: Option<(usize, Hook)>,
    /// The `plugin` span of the last call, until [`Chain::count`] records its verdict.
    span: tracing::Span,
    /// The counts the session's plugins hold until it ends; none for a delivery batch.
    holds: Option<Arc<SessionHolds>>,
}

impl Chain {
    fn new(host: Arc<PluginHost>) -> Chain {
        let members = host.plugins.iter().map(|_| Member::default()).collect();
        Chain {
            host,
            members,
            decided: None,
            span: tracing::Span::none(),
            holds: None,
        }
    }

    fn decided_by(&self) -> Option<(&str, Hook)> {
        self.decided
            .map(|(i, hook)| (self.host.plugins[i].meta.name.as_str(), hook))
    }

    /// Counts how a call of plugin `i` ended, and ends the call's span with its verdict.
    fn count(&mut self, i: usize, hook: Hook, kind: VerdictKind) {
        let meta = &self.host.plugins[i].meta;
        meta.stats.verdict(hook, kind);
        meta.instruments.verdict(hook, kind);
        std::mem::replace(&mut self.span, tracing::Span::none()).record("verdict", kind.name());
    }

    fn handles(&self, i: usize, hook: Hook) -> bool {
        self.host.plugins[i].hooks & hook.bit() != 0
    }

    /// Calls plugin `i`, creating its instance if needed; any failure drops the instance.
    async fn invoke(
        &mut self,
        i: usize,
        hook: Hook,
        subject: Subject<'_>,
        call: Call<'_>,
    ) -> Result<Answer, FailureKind> {
        let host = self.host.clone();
        let plugin = &host.plugins[i];
        let meta = &plugin.meta;
        // The instance is out of its slot while it runs: if this future is dropped midway
        // (the client went away), the instance goes with it and is never reused.
        // A plugin that keeps no session memory may take any pooled instance at any call.
        let first = !std::mem::replace(&mut self.members[i].had_instance, true);
        let warm = match self.members[i].slot.take() {
            Some(slot) => Some(slot),
            None if first || plugin.wants.call_scoped() => {
                plugin.pool.as_ref().and_then(Pool::take)
            }
            None => None,
        };
        let session = match subject {
            Subject::Session(_) => (self.members[i].session_value.clone(), self.holds.as_ref()),
            Subject::Delivery(_) => (None, None),
        };
        let span = tracing::debug_span!(
            "plugin",
            plugin = %meta.name,
            hook = hook.name(),
            verdict = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        );
        // One clock read for the call's wall-time deadline, its budgets and its latency.
        let started = tokio::time::Instant::now();
        // wasmtime's instantiation and call futures are boxed where they are made: they are
        // kilobytes, and nested unboxed in every caller's state they were copied at each
        // await of each hook (a fifth of a `continue` call's time went to memmove); boxed
        // further out, they were still copied once per level on the way in.
        let result = async {
            let fresh = warm.is_none();
            let mut slot = match warm {
                Some(slot) => slot,
                None => Box::pin(instantiate(&host, &plugin.pre, meta)).await?,
            };
            // An instantiation has a wall-time limit of its own; the call's starts after it.
            let begins = if fresh {
                tokio::time::Instant::now()
            } else {
                started
            };
            let deadline = begins + meta.limits.wall;
            let answer = call_slot(&mut slot, deadline, hook, subject, session, call).await?;
            Ok((slot, answer))
        }
        .instrument(span.clone())
        .await;
        let took = started.elapsed();
        meta.instruments.latency(hook, took);
        span.record(
            "duration_us",
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        );
        self.span = span;
        match result {
            Ok((slot, (answer, kept))) => {
                self.members[i].slot = Some(slot);
                if let Subject::Session(_) = subject {
                    self.members[i].session_value = kept;
                }
                meta.stats.call();
                Ok(answer)
            }
            Err(kind) => Err(self.failed(i, hook, kind)),
        }
    }

    /// Ends plugin `i`'s call once its answer was checked: a `pooled` plugin that declared
    /// `session-memory: none` gives its instance back to the pool now rather than at the end
    /// of the session, so an idle session holds no instance of it. An instance dropped for
    /// its answer is already gone.
    fn settle(&mut self, i: usize) {
        let plugin = &self.host.plugins[i];
        if !plugin.wants.call_scoped() {
            return;
        }
        if let (Some(pool), Some(slot)) = (&plugin.pool, self.members[i].slot.take()) {
            pool.give(slot);
        }
    }

    /// Logs and counts a failure; the instance is already gone.
    fn failed(&self, i: usize, hook: Hook, kind: FailureKind) -> FailureKind {
        let meta = &self.host.plugins[i].meta;
        meta.stats.failure(&kind);
        meta.instruments.failure(hook, &kind);
        tracing::warn!(plugin = %meta.name, %hook, error = %kind, on_error = ?meta.on_error, "plugin failed; instance discarded");
        kind
    }

    fn on_error(&self, i: usize) -> Verdict {
        match self.host.plugins[i].meta.on_error {
            OnError::Tempfail => Verdict::plugin_tempfail(),
            OnError::Accept => Verdict::Continue,
            OnError::Reject => Verdict::plugin_reject(),
        }
    }

    /// A validated verdict, or the plugin's `on_error` if the call failed or returned nonsense.
    fn verdict_of(
        &mut self,
        i: usize,
        hook: Hook,
        answer: Result<wit::Verdict, FailureKind>,
    ) -> Verdict {
        let checked = answer.and_then(|v| bindings::verdict(v).map_err(FailureKind::Malformed));
        let kind = checked.as_ref().map_or(VerdictKind::Error, VerdictKind::of);
        self.count(i, hook, kind);
        let verdict = match checked {
            Ok(v) => v,
            Err(FailureKind::Malformed(why)) => {
                self.members[i].slot = None;
                self.failed(i, hook, FailureKind::Malformed(why));
                self.on_error(i)
            }
            Err(_) => self.on_error(i),
        };
        self.settle(i);
        if verdict.is_final() {
            self.decided = Some((i, hook));
        }
        verdict
    }

    async fn verdict_chain(
        &mut self,
        hook: Hook,
        ctx: &Arc<ContextData>,
        call: Call<'_>,
    ) -> Verdict {
        self.decided = None;
        for i in 0..self.members.len() {
            if !self.handles(i, hook) || !self.enough_recipients(i, hook, Subject::Session(ctx)) {
                continue;
            }
            if let Call::Rcpt(recipient) = &call {
                if !listed(&self.host, i, recipient).await {
                    continue;
                }
            }
            if relay_kept(&self.host, self.holds.as_deref(), i, hook, ctx).await {
                continue;
            }
            let answer = match self
                .invoke(i, hook, Subject::Session(ctx), call.clone())
                .await
            {
                Ok(Answer::Verdict(v)) => Ok(v),
                Ok(_) => unreachable!("session hooks answer with verdicts"),
                Err(kind) => Err(kind),
            };
            let verdict = self.verdict_of(i, hook, answer);
            if verdict.is_final() {
                return verdict;
            }
        }
        Verdict::Continue
    }

    /// Runs a hook that may edit the message through the chain: each plugin sees the edits
    /// of the ones before it; a plugin that fails or returns nonsense has its edits dropped.
    /// A plugin whose `wants` declaration the message does not meet is not called (nor
    /// instantiated).
    async fn edit_chain<'c>(
        &mut self,
        hook: Hook,
        subject: Subject<'_>,
        mut current: MessageRes,
        call: impl Fn(MessageRes) -> Call<'c>,
    ) -> (Verdict, MessageRes) {
        self.decided = None;
        let mut verdict = Verdict::Continue;
        // What the declarations ask of the current message, found once per version of it
        // and only if a plugin declared what it wants; the part tree is cached with the
        // message, so a plugin that asks for the parts next does not pay for it again.
        let mut facts = MessageFacts::default();
        for i in 0..self.members.len() {
            if !self.handles(i, hook)
                || !self.enough_recipients(i, hook, subject)
                || !self.wanted_by(i, hook, Caller::of(subject), &mut current, &mut facts)
            {
                continue;
            }
            let answer = match self.invoke(i, hook, subject, call(current.clone())).await {
                Ok(Answer::Edited(v, edited)) => {
                    if bindings::verdict(v.clone()).is_ok() {
                        current = edited;
                        facts = MessageFacts::default();
                    }
                    Ok(v)
                }
                Ok(_) => unreachable!("editing hooks answer with a verdict and the message"),
                Err(kind) => Err(kind),
            };
            verdict = self.verdict_of(i, hook, answer);
            if verdict.is_final() {
                break;
            }
        }
        (verdict, current)
    }

    /// Runs an informational hook on every plugin that handles it; failures are logged and
    /// counted, there is nothing to decide.
    async fn notify_all(&mut self, hook: Hook, subject: Subject<'_>, call: Call<'_>) {
        for i in 0..self.members.len() {
            if self.handles(i, hook) {
                let done = self.invoke(i, hook, subject, call.clone()).await;
                let kind = match done {
                    Ok(_) => VerdictKind::Continue,
                    Err(_) => VerdictKind::Error,
                };
                self.count(i, hook, kind);
                self.settle(i);
            }
        }
    }
}

/// Healthy instances of `pooled` plugins go back to their pool when the session or batch ends.
impl Drop for Chain {
    fn drop(&mut self) {
        for (plugin, member) in self.host.plugins.iter().zip(self.members.iter_mut()) {
            if let (Some(pool), Some(slot)) = (&plugin.pool, member.slot.take()) {
                pool.give(slot);
            }
        }
    }
}
