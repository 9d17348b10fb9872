//! The queue runner: decides when each spooled message is attempted, runs attempts with
//! bounded concurrency, and keeps idle connections for reuse.
//!
//! One scheduler task owns the timetable (message id → when its next recipient is due). On
//! start it loads every spooled envelope, so whatever was pending before a restart resumes.
//! [`QueueHandle::wake`] (a newly spooled message) and [`QueueHandle::flush`] (retry now)
//! reach it over a channel. Each due message runs in its own task (see [`super::attempt`]);
//! a message is never attempted twice at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::admin_ops::{self, OpReply, QueueOp};
use super::attempt;
use super::connections::{self, Idle, PoolKey};
use super::dkim::{DkimError, DkimSigners};
use super::identity::LocalIdentity;
use super::plan::Target;
use super::record;
use super::resolve::MxResolver;
use super::route::Router;
use crate::config::delivery::DeliveryConfig;
use crate::events::Events;
use crate::smtp::incoming::Spill;
use crate::smtp::session::{MessageStore, StoreFuture};
use crate::spool::{Arrival, Envelope, MessageBytes, MessageId, Spool};

/// Why the runner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Dkim(#[from] DkimError),
}

pub(super) enum Command {
    Wake(MessageId),
    Flush,
    Bounce(MessageId),
    /// An operator action (see [`super::admin_ops`]).
    Op(MessageId, QueueOp, OpReply),
}

/// A cheap, cloneable handle to a running [`QueueRunner`].
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl QueueHandle {
    pub(super) fn send(&self, command: Command) {
        let _ = self.tx.send(command);
    }

    /// A message was just spooled (or changed): attempt it now.
    pub fn wake(&self, id: MessageId) {
        let _ = self.tx.send(Command::Wake(id));
    }

    /// Retry every queued message now, ignoring the backoff schedule.
    pub fn flush(&self) {
        let _ = self.tx.send(Command::Flush);
    }

    /// Give up on every pending recipient of `id` and bounce it to the sender.
    pub fn bounce(&self, id: MessageId) {
        let _ = self.tx.send(Command::Bounce(id));
    }
}

/// The server's message store with delivery attached: stores durably in the spool, then
/// wakes the runner so a fresh message is attempted at once. Give it to the listeners in place
/// of the bare [`Spool`].
#[derive(Clone)]
pub struct WakingStore {
    pub spool: Spool,
    pub handle: QueueHandle,
}

impl MessageStore for WakingStore {
    fn new_id(&self) -> MessageId {
        self.spool.new_id()
    }

    fn store<'a>(&'a self, envelope: &'a Envelope, message: MessageBytes) -> StoreFuture<'a> {
        Box::pin(async move {
            self.spool.store(envelope, message).await?;
            self.handle.wake(envelope.id.clone());
            Ok(())
        })
    }

    fn spill(&self) -> Spill {
        MessageStore::spill(&self.spool)
    }

    fn announce(&self) -> Arrival {
        self.spool.announce()
    }
}

/// State shared by the scheduler and the attempt tasks.
pub(crate) struct Shared {
    pub config: DeliveryConfig,
    pub spool: Spool,
    pub resolver: MxResolver,
    pub router: Option<Arc<dyn Router>>,
    pub dkim: DkimSigners,
    /// Our names and listener addresses: next hops that are us are loops.
    pub identity: LocalIdentity,
    pub handle: QueueHandle,
    /// Delivered, deferred and bounced recipients, and queued DSNs, go to the event log.
    pub events: Events,
    /// Recipient attempts and outcomes by domain and pool.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Connection limits by destination (a pool, a host list with its TLS policy and
    /// credentials, or a domain's MX hosts).
    pub destinations: std::sync::Mutex<HashMap<Target, Arc<Semaphore>>>,
    /// Idle connections by next-hop key.
    pub pool: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    /// Delivery states the spool refused to record (disk full), newest per message; the
    /// next attempt of such a message writes this first and sends nothing until it succeeds.
    pub unsaved: std::sync::Mutex<HashMap<MessageId, Envelope>>,
}

impl Shared {
    pub fn keep_unsaved(&self, env: Envelope) {
        let mut map = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(env.id.clone(), env);
    }

    pub fn take_unsaved(&self, id: &MessageId) -> Option<Envelope> {
        let mut map = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id)
    }

    /// The connection limit of `target`: `max_connections` for a pool, else
    /// `per_destination`.
    pub fn destination(&self, target: &Target) -> Arc<Semaphore> {
        let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(limit) = map.get(target) {
            return limit.clone();
        }
        let limit = Arc::new(Semaphore::new(target.limit(&self.config)));
        map.insert(target.clone(), limit.clone());
        limit
    }
}

/// Delivers everything in the spool; see the module docs.
pub struct QueueRunner {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Command>,
}

impl QueueRunner {
    /// Builds the runner: loads DKIM keys, prepares limits. Nothing runs until [`run`].
    ///
    /// [`run`]: QueueRunner::run
    pub fn new(
        config: &DeliveryConfig,
        spool: Spool,
        resolver: MxResolver,
    ) -> Result<QueueRunner, DeliveryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            config: config.clone(),
            spool,
            resolver,
            router: None,
            dkim: DkimSigners::load(&config.dkim)?,
            identity: LocalIdentity::default(),
            handle: QueueHandle { tx },
            events: Events::off(),
            metrics: Arc::default(),
            destinations: Default::default(),
            pool: Default::default(),
            unsaved: Default::default(),
        };
        Ok(QueueRunner {
            shared: Arc::new(shared),
            rx,
        })
    }

    /// Puts delivery-stage hooks (the plugin chain) in front of the config routes: each
    /// attempt asks `router` for one batch and sends it every call.
    pub fn with_router(mut self, router: Arc<dyn Router>) -> QueueRunner {
        Arc::get_mut(&mut self.shared)
            .expect("with_router is called before run")
            .router = Some(router);
        self
    }

    /// Tells delivery who we are (host names, bound listeners), so that a next hop that is
    /// this relay is refused instead of looping.
    pub fn with_identity(mut self, identity: LocalIdentity) -> QueueRunner {
        Arc::get_mut(&mut self.shared)
            .expect("with_identity is called before run")
            .identity = identity;
        self
    }

    /// Records each recipient's outcome in the event log.
    pub fn with_events(mut self, events: Events) -> QueueRunner {
        Arc::get_mut(&mut self.shared)
            .expect("with_events is called before run")
            .events = events;
        self
    }

    /// Counts delivery attempts and outcomes into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> QueueRunner {
        Arc::get_mut(&mut self.shared)
            .expect("with_metrics is called before run")
            .metrics = metrics;
        self
    }

    /// The handle the server keeps to wake the runner.
    pub fn handle(&self) -> QueueHandle {
        self.shared.handle.clone()
    }

    /// A [`MessageStore`] for the listeners that wakes this runner after each store.
    pub fn store(&self) -> WakingStore {
        WakingStore {
            spool: self.shared.spool.clone(),
            handle: self.handle(),
        }
    }

    /// Runs until `shutdown` is cancelled; then gives attempts in flight a short grace period
    /// (at most 10 s) before aborting them, and closes idle connections. An aborted attempt
    /// is simply retried after the next start (it may deliver twice, never zero times).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let shared = self.shared.clone();
        let workers = Arc::new(Semaphore::new(shared.config.max_concurrency));
        let mut timetable = Timetable::default();
        for env in shared.spool.list().await.into_iter().filter(|e| !e.held) {
            timetable.schedule(
                env.id.clone(),
                attempt::next_due_ms(&env).unwrap_or(0),
                false,
            );
        }
        tracing::info!(queued = timetable.len(), "delivery started");
        let mut tasks: JoinSet<(MessageId, Option<u64>)> = JoinSet::new();
        let mut in_flight: HashSet<MessageId> = HashSet::new();
        let mut rewake: HashSet<MessageId> = HashSet::new();
        let mut bouncing: HashSet<MessageId> = HashSet::new();
        let mut waiting = admin_ops::Waiting::default();
        // A safety net: anything in the spool the timetable does not know (a lost wake, a
        // message stored by another path) is picked up within a minute.
        let mut rescan = tokio::time::interval(Duration::from_secs(60));
        rescan.tick().await;
        let mut reaper =
            tokio::time::interval(shared.config.idle_timeout.max(Duration::from_millis(100)));
        loop {
            let sleep_for = timetable
                .next_due()
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = self.rx.recv() => match cmd {
                    None => break,
                    Some(Command::Wake(id)) => {
                        if in_flight.contains(&id) {
                            rewake.insert(id);
                        } else {
                            timetable.schedule(id, 0, true);
                        }
                    }
                    Some(Command::Flush) => {
                        for env in shared.spool.list().await.into_iter().filter(|e| !e.held) {
                            if in_flight.contains(&env.id) {
                                rewake.insert(env.id);
                            } else {
                                timetable.schedule(env.id, 0, true);
                            }
                        }
                    }
                    Some(Command::Bounce(id)) => {
                        bouncing.insert(id.clone());
                        if in_flight.contains(&id) {
                            rewake.insert(id);
                        } else {
                            timetable.schedule(id, 0, true);
                        }
                    }
                    Some(Command::Op(id, op, reply)) => {
                        if in_flight.contains(&id) {
                            waiting.push(id, op, reply);
                        } else {
                            in_flight.insert(id.clone());
                            timetable.forget(&id);
                            let shared = shared.clone();
                            tasks.spawn(async move {
                                let next = admin_ops::run(&shared, &id, op, reply).await;
                                (id, next)
                            });
                        }
                    }
                },
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok((id, _)) if waiting.contains(&id) => {
                            // An operator action waited for this task: it runs now, in the
                            // same slot, and decides when the message is next due.
                            let (op, reply) = waiting.next(&id).expect("an action waits");
                            let shared = shared.clone();
                            tasks.spawn(async move {
                                let next = admin_ops::run(&shared, &id, op, reply).await;
                                (id, next)
                            });
                        }
                        Ok((id, next)) => {
                            in_flight.remove(&id);
                            if rewake.remove(&id) {
                                timetable.schedule(id, 0, true);
                            } else if let Some(due) = next {
                                timetable.schedule(id, due, false);
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "delivery task failed"),
                    }
                }
                _ = reaper.tick() => connections::reap_idle(&shared).await,
                _ = rescan.tick() => {
                    for env in shared.spool.list().await {
                        if !env.held && !in_flight.contains(&env.id) && !timetable.knows(&env.id) {
                            let due = attempt::next_due_ms(&env).unwrap_or(0);
                            timetable.schedule(env.id, due, false);
                        }
                    }
                }
                _ = tokio::time::sleep(sleep_for) => {
                    for (id, force) in timetable.pop_due(now_ms()) {
                        if !in_flight.insert(id.clone()) {
                            rewake.insert(id);
                            continue;
                        }
                        let shared = shared.clone();
                        let workers = workers.clone();
                        let bounce = bouncing.remove(&id);
                        // The attempt's future is boxed: spawned inline, its kilobytes were
                        // copied into the task.
                        tasks.spawn(async move {
                            let _permit = workers.acquire_owned().await;
                            let next = if bounce {
                                let span = tracing::info_span!("delivery", queue_id = %id);
                                Box::pin(record::bounce_all(&shared, &id).instrument(span)).await
                            } else {
                                // Its span continues the message's trace (see there).
                                Box::pin(attempt::process(&shared, &id, force)).await
                            };
                            (id, next)
                        });
                    }
                }
            }
        }
        let grace = shared
            .config
            .timeouts
            .data_final
            .min(Duration::from_secs(10));
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tasks.abort_all();
        }
        connections::close_all(&shared).await;
        tracing::info!("delivery stopped");
    }
}

/// When each known message is next due; lazily deleted entries in a min-heap.
#[derive(Default)]
struct Timetable {
    heap: BinaryHeap<Reverse<(u64, MessageId)>>,
    due: HashMap<MessageId, (u64, bool)>,
}

impl Timetable {
    fn len(&self) -> usize {
        self.due.len()
    }

    fn knows(&self, id: &MessageId) -> bool {
        self.due.contains_key(id)
    }

    /// Drops `id` (its heap entry goes lazily).
    fn forget(&mut self, id: &MessageId) {
        self.due.remove(id);
    }

    /// Sets (or moves earlier) the time `id` is due; `force` ignores recipient schedules.
    fn schedule(&mut self, id: MessageId, at_ms: u64, force: bool) {
        match self.due.get_mut(&id) {
            Some((t, f)) if *t <= at_ms => {
                *f |= force;
                return;
            }
            Some(entry) => *entry = (at_ms, force || entry.1),
            None => {
                self.due.insert(id.clone(), (at_ms, force));
            }
        }
        self.heap.push(Reverse((at_ms, id)));
    }

    fn next_due(&mut self) -> Option<u64> {
        while let Some(Reverse((t, id))) = self.heap.peek() {
            if self.due.get(id).is_some_and(|(due, _)| due == t) {
                return Some(*t);
            }
            self.heap.pop();
        }
        None
    }

    fn pop_due(&mut self, now: u64) -> Vec<(MessageId, bool)> {
        let mut out = Vec::new();
        while let Some(t) = self.next_due() {
            if t > now {
                break;
            }
            let Reverse((_, id)) = self.heap.pop().unwrap();
            if let Some((_, force)) = self.due.remove(&id) {
                out.push((id, force));
            }
        }
        out
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timetable_orders_and_dedups() {
        let mut t = Timetable::default();
        let id = |s: &str| MessageId(s.into());
        t.schedule(id("b"), 200, false);
        t.schedule(id("a"), 100, false);
        t.schedule(id("b"), 50, true);
        t.schedule(id("a"), 300, false);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_due(), Some(50));
        assert_eq!(t.pop_due(150), vec![(id("b"), true), (id("a"), false)]);
        assert_eq!(t.next_due(), None);
    }
}
