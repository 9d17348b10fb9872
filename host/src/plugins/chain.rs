//! Running the chain: lazy instances, per-call budgets, failure handling and `on_error`.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::{self, wasmrelay::plugin::types as wit, Plugin, PluginPre};
use super::context::{ContextData, ContextRes};
use super::error::FailureKind;
use super::message::MessageRes;
use super::state::StoreState;
use super::types::{
    ConnectionInfo, DeliveryReport, Hook, RouteDecision, RouteRequest, TransactionInfo, Verdict,
};
use super::{PluginHost, PluginMeta};
use crate::config::plugins::OnError;
use crate::smtp::reply::{Enhanced, Reply};

/// One live instance: its store and the handles to its exports.
struct Slot {
    store: Store<StoreState>,
    plugin: Plugin,
}

/// A hook invocation with its arguments.
#[derive(Clone)]
enum Call<'a> {
    Connect,
    Helo,
    Auth(&'a str),
    MailFrom(&'a str),
    Rcpt(&'a str),
    Queued(&'a str),
    Data(MessageRes),
    Route(&'a wit::RouteRequest),
    Report(&'a wit::DeliveryReport),
}

/// What came back, still unvalidated.
enum Answer {
    Verdict(wit::Verdict),
    Data(wit::Verdict, MessageRes),
    Route(wit::RouteDecision),
    Unit,
}

fn new_store(host: &PluginHost, meta: &Arc<PluginMeta>) -> Store<StoreState> {
    let mut store = Store::new(
        &host.engine,
        StoreState::new(meta.clone(), host.caps.clone()),
    );
    store.limiter(|s| s);
    // Every tick spent in wasm costs one unit of the hook's CPU budget; between ticks the
    // task yields so wall-time timeouts and other sessions keep running.
    store.epoch_deadline_callback(|mut cx| {
        let s = cx.data_mut();
        if s.cpu_left == 0 {
            s.cpu_exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        s.cpu_left -= 1;
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

fn classify(e: wasmtime::Error, s: &StoreState) -> FailureKind {
    if s.cpu_exceeded {
        FailureKind::Cpu
    } else if s.memory_exceeded {
        FailureKind::Memory
    } else if s.calls_exceeded {
        FailureKind::Capabilities
    } else {
        let text = format!("{e:#}");
        let first = text.lines().next().unwrap_or_default();
        FailureKind::Trap(first.chars().take(300).collect())
    }
}

async fn instantiate(
    host: &PluginHost,
    pre: &PluginPre<StoreState>,
    meta: &Arc<PluginMeta>,
) -> Result<Slot, FailureKind> {
    let mut store = new_store(host, meta);
    store.data_mut().arm();
    store.set_epoch_deadline(1);
    let wall = Duration::from_millis(meta.limits.wall_ms);
    let result = tokio::time::timeout(wall, async {
        let plugin = pre.instantiate_async(&mut store).await?;
        let init = plugin
            .wasmrelay_plugin_hooks()
            .call_init(&mut store, &meta.config_json)
            .await?;
        wasmtime::Result::Ok((plugin, init))
    })
    .await;
    meta.stats.instantiated();
    match result {
        Err(_) => Err(FailureKind::WallTime),
        Ok(Err(e)) => Err(match classify(e, store.data()) {
            FailureKind::Trap(t) => FailureKind::Instantiate(t),
            other => other,
        }),
        Ok(Ok((_, Err(msg)))) => Err(FailureKind::Instantiate(format!(
            "init refused its config: {}",
            msg.chars().take(300).collect::<String>()
        ))),
        Ok(Ok((plugin, Ok(())))) => Ok(Slot { store, plugin }),
    }
}

/// Instantiates plugin `index` (and runs its `init` if asked) outside any session, then
/// drops the instance. For the benchmark (feature `test-util`); not part of the API.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub async fn bench_instantiate(host: &Arc<PluginHost>, index: usize, init: bool) -> bool {
    let plugin = &host.plugins[index];
    if init {
        return instantiate(host, &plugin.pre, &plugin.meta).await.is_ok();
    }
    let mut store = new_store(host, &plugin.meta);
    store.data_mut().arm();
    store.set_epoch_deadline(1);
    plugin.pre.instantiate_async(&mut store).await.is_ok()
}

/// Load-time check of one plugin: instantiate, `init`, ask `hooks()`.
pub(crate) async fn probe(
    host: &PluginHost,
    pre: &PluginPre<StoreState>,
    meta: &Arc<PluginMeta>,
) -> Result<u16, FailureKind> {
    let mut slot = instantiate(host, pre, meta).await?;
    slot.store.data_mut().arm();
    slot.store.set_epoch_deadline(1);
    let Slot { store, plugin } = &mut slot;
    let wall = Duration::from_millis(meta.limits.wall_ms);
    let hooks = match tokio::time::timeout(
        wall,
        plugin.wasmrelay_plugin_hooks().call_hooks(&mut *store),
    )
    .await
    {
        Err(_) => return Err(FailureKind::WallTime),
        Ok(Err(e)) => return Err(classify(e, store.data())),
        Ok(Ok(h)) => h,
    };
    if hooks.len() > 64 {
        let why = format!("hooks() listed {} hooks", hooks.len());
        return Err(FailureKind::Malformed(why));
    }
    Ok(hooks
        .into_iter()
        .fold(0, |bits, h| bits | Hook::from(h).bit()))
}

/// Calls one hook on a live instance.
async fn call_slot(
    slot: &mut Slot,
    wall: Duration,
    ctx: Option<&Arc<ContextData>>,
    call: Call<'_>,
) -> Result<Answer, FailureKind> {
    let Slot { store, plugin } = slot;
    store.data_mut().arm();
    store.set_epoch_deadline(1);
    let hooks = plugin.wasmrelay_plugin_hooks();
    let fut = async {
        let ctx_res = match ctx {
            Some(c) => Some(store.data_mut().table.push(ContextRes(c.clone()))?),
            None => None,
        };
        let borrow =
            || Resource::<ContextRes>::new_borrow(ctx_res.as_ref().expect("context").rep());
        let answer = match call {
            Call::Connect => Answer::Verdict(hooks.call_connect(&mut *store, borrow()).await?),
            Call::Helo => Answer::Verdict(hooks.call_helo(&mut *store, borrow()).await?),
            Call::Auth(user) => {
                Answer::Verdict(hooks.call_auth(&mut *store, borrow(), user).await?)
            }
            Call::MailFrom(s) => {
                Answer::Verdict(hooks.call_mail_from(&mut *store, borrow(), s).await?)
            }
            Call::Rcpt(r) => Answer::Verdict(hooks.call_rcpt(&mut *store, borrow(), r).await?),
            Call::Queued(id) => {
                Answer::Verdict(hooks.call_queued(&mut *store, borrow(), id).await?)
            }
            Call::Data(msg) => {
                let m = store.data_mut().table.push(msg)?;
                let m_borrow = Resource::<MessageRes>::new_borrow(m.rep());
                let v = hooks.call_data(&mut *store, borrow(), m_borrow).await?;
                Answer::Data(v, store.data_mut().table.delete(m)?)
            }
            Call::Route(req) => Answer::Route(hooks.call_route(&mut *store, req).await?),
            Call::Report(rep) => {
                hooks.call_delivery_result(&mut *store, rep).await?;
                Answer::Unit
            }
        };
        if let Some(c) = ctx_res {
            store.data_mut().table.delete(c)?;
        }
        wasmtime::Result::Ok(answer)
    };
    match tokio::time::timeout(wall, fut).await {
        Err(_) => Err(FailureKind::WallTime),
        Ok(Err(e)) => Err(classify(e, store.data())),
        Ok(Ok(a)) => Ok(a),
    }
}

/// The instances of one session or delivery batch, one slot per plugin.
struct Chain {
    host: Arc<PluginHost>,
    slots: Vec<Option<Slot>>,
}

impl Chain {
    fn new(host: Arc<PluginHost>) -> Chain {
        let slots = host.plugins.iter().map(|_| None).collect();
        Chain { host, slots }
    }

    fn handles(&self, i: usize, hook: Hook) -> bool {
        self.host.plugins[i].hooks & hook.bit() != 0
    }

    /// Calls plugin `i`, creating its instance if needed; any failure drops the instance.
    async fn invoke(
        &mut self,
        i: usize,
        hook: Hook,
        ctx: Option<&Arc<ContextData>>,
        call: Call<'_>,
    ) -> Result<Answer, FailureKind> {
        let host = self.host.clone();
        let plugin = &host.plugins[i];
        let meta = &plugin.meta;
        let result = async {
            if self.slots[i].is_none() {
                self.slots[i] = Some(instantiate(&host, &plugin.pre, meta).await?);
            }
            let slot = self.slots[i].as_mut().expect("slot just filled");
            call_slot(slot, Duration::from_millis(meta.limits.wall_ms), ctx, call).await
        }
        .await;
        match result {
            Ok(answer) => {
                meta.stats.call();
                Ok(answer)
            }
            Err(kind) => {
                self.slots[i] = None;
                Err(self.failed(i, hook, kind))
            }
        }
    }

    /// Logs and counts a failure; the instance is already gone.
    fn failed(&self, i: usize, hook: Hook, kind: FailureKind) -> FailureKind {
        let meta = &self.host.plugins[i].meta;
        meta.stats.failure(&kind);
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
        match checked {
            Ok(v) => v,
            Err(FailureKind::Malformed(why)) => {
                self.slots[i] = None;
                self.failed(i, hook, FailureKind::Malformed(why));
                self.on_error(i)
            }
            Err(_) => self.on_error(i),
        }
    }

    async fn verdict_chain(
        &mut self,
        hook: Hook,
        ctx: Arc<ContextData>,
        call: Call<'_>,
    ) -> Verdict {
        for i in 0..self.slots.len() {
            if !self.handles(i, hook) {
                continue;
            }
            let answer = match self.invoke(i, hook, Some(&ctx), call.clone()).await {
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
}

/// One SMTP session's view of the chain. Created cheaply by [`PluginHost::session`]; each
/// plugin gets an instance the first time one of its hooks runs, reused by every later hook
/// of the session, and replaced after a failure.
pub struct SessionPlugins {
    chain: Chain,
}

impl SessionPlugins {
    pub(crate) fn new(host: Arc<PluginHost>) -> Self {
        SessionPlugins {
            chain: Chain::new(host),
        }
    }

    /// The host this session's chain came from (a reload does not change it).
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.chain.host
    }

    /// A client connected.
    pub async fn connect(&mut self, conn: &ConnectionInfo) -> Verdict {
        self.run(Hook::Connect, conn, None, Call::Connect).await
    }

    /// HELO/EHLO (`conn.helo` set).
    pub async fn helo(&mut self, conn: &ConnectionInfo) -> Verdict {
        self.run(Hook::Helo, conn, None, Call::Helo).await
    }

    /// AUTH succeeded as `user`.
    pub async fn auth(&mut self, conn: &ConnectionInfo, user: &str) -> Verdict {
        self.run(Hook::Auth, conn, None, Call::Auth(user)).await
    }

    /// MAIL FROM; `tx.mail_from` holds the reverse path.
    pub async fn mail_from(&mut self, conn: &ConnectionInfo, tx: &TransactionInfo) -> Verdict {
        let sender = tx.mail_from.as_deref().unwrap_or_default();
        self.run(Hook::MailFrom, conn, Some(tx), Call::MailFrom(sender))
            .await
    }

    /// RCPT TO; `tx.recipients` holds those accepted before this one.
    pub async fn rcpt(
        &mut self,
        conn: &ConnectionInfo,
        tx: &TransactionInfo,
        rcpt: &str,
    ) -> Verdict {
        self.run(Hook::Rcpt, conn, Some(tx), Call::Rcpt(rcpt)).await
    }

    /// End of DATA. Plugins' edits are applied to `message` before this returns, also when
    /// the verdict refuses it; the edits of a plugin that failed are dropped.
    pub async fn data(
        &mut self,
        conn: &ConnectionInfo,
        tx: &TransactionInfo,
        message: &mut Vec<u8>,
    ) -> Verdict {
        if !self.chain.host.handles(Hook::Data) {
            return Verdict::Continue;
        }
        let ctx = ContextData::new(conn, Some(tx));
        let mut current = MessageRes::parse(std::mem::take(message), self.chain.host.max_message);
        let mut verdict = Verdict::Continue;
        for i in 0..self.chain.slots.len() {
            if !self.chain.handles(i, Hook::Data) {
                continue;
            }
            let answer = match self
                .chain
                .invoke(i, Hook::Data, Some(&ctx), Call::Data(current.clone()))
                .await
            {
                Ok(Answer::Data(v, edited)) => {
                    if bindings::verdict(v.clone()).is_ok() {
                        current = edited;
                    }
                    Ok(v)
                }
                Ok(_) => unreachable!("the data hook answers with a verdict"),
                Err(kind) => Err(kind),
            };
            verdict = self.chain.verdict_of(i, Hook::Data, answer);
            if verdict.is_final() {
                break;
            }
        }
        if current.is_edited() {
            tracing::debug!("plugins edited the message");
        }
        *message = current.into_bytes();
        verdict
    }

    /// The message is durable under `queue_id`.
    pub async fn queued(
        &mut self,
        conn: &ConnectionInfo,
        tx: &TransactionInfo,
        queue_id: &str,
    ) -> Verdict {
        self.run(Hook::Queued, conn, Some(tx), Call::Queued(queue_id))
            .await
    }

    async fn run(
        &mut self,
        hook: Hook,
        conn: &ConnectionInfo,
        tx: Option<&TransactionInfo>,
        call: Call<'_>,
    ) -> Verdict {
        if !self.chain.host.handles(hook) {
            return Verdict::Continue;
        }
        self.chain
            .verdict_chain(hook, ContextData::new(conn, tx), call)
            .await
    }
}

/// The chain for one delivery batch: `route` and `delivery-result`, with their own instances.
pub struct DeliveryPlugins {
    chain: Chain,
}

impl DeliveryPlugins {
    pub(crate) fn new(host: Arc<PluginHost>) -> Self {
        DeliveryPlugins {
            chain: Chain::new(host),
        }
    }

    /// Where to send one domain's recipients; [`RouteDecision::Continue`] when no plugin
    /// decided. A failing plugin's `on_error` maps to defer (tempfail), continue (accept)
    /// or bounce (reject).
    pub async fn route(&mut self, req: &RouteRequest) -> RouteDecision {
        if !self.chain.host.handles(Hook::Route) {
            return RouteDecision::Continue;
        }
        let wit_req = bindings::route_request(req);
        for i in 0..self.chain.slots.len() {
            if !self.chain.handles(i, Hook::Route) {
                continue;
            }
            let decision = match self
                .chain
                .invoke(i, Hook::Route, None, Call::Route(&wit_req))
                .await
            {
                Ok(Answer::Route(r)) => match bindings::route(r) {
                    Ok(d) => d,
                    Err(why) => {
                        self.chain.slots[i] = None;
                        self.chain
                            .failed(i, Hook::Route, FailureKind::Malformed(why));
                        self.route_on_error(i)
                    }
                },
                Ok(_) => unreachable!("the route hook answers with a route"),
                Err(_) => self.route_on_error(i),
            };
            if decision != RouteDecision::Continue {
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

    /// Tells every plugin that handles it how a delivery attempt went. Failures are logged
    /// and counted; there is no verdict.
    pub async fn delivery_result(&mut self, report: &DeliveryReport) {
        if !self.chain.host.handles(Hook::DeliveryResult) {
            return;
        }
        let wit_report = bindings::delivery_report(report);
        for i in 0..self.chain.slots.len() {
            if self.chain.handles(i, Hook::DeliveryResult) {
                let _ = self
                    .chain
                    .invoke(i, Hook::DeliveryResult, None, Call::Report(&wit_report))
                    .await;
            }
        }
    }
}
