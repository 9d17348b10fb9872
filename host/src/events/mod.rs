//! The event log: one JSON object per line for every step of a message's life and every
//! plugin `emit`, for operators and for the metrics, webhooks and dashboard built on it.
//!
//! Layout:
//! - [`Events`] (here): the cheap, cloneable handle sessions, delivery and the plugin host
//!   emit through. Emitting never waits: events go into a channel bounded in events and in
//!   bytes, and when it is full they are counted as lost ([`Events::lost`]), logged, and an
//!   `events-lost` line says how many once the writer catches up.
//! - `log`: [`EventLog`], the one writer thread that owns the file (`[events] path`),
//!   appends in batches and rotates by size (`path` → `path.1` … `path.keep`).
//! - `event`: [`Event`] and its JSON line; `message`: the relay's own message events;
//!   `plugin`: `host.emit` from plugins (the [`crate::plugins::EventSink`]).
//!
//! Every line has `time` (RFC 3339, UTC, milliseconds) and `event`, then where they apply
//! `queue_id`, `recipient`, `plugin` and `hook` (the plugin that decided or emitted, and the
//! hook it was running), then the event's own fields:
//!
//! | event | when | fields |
//! |---|---|---|
//! | `received` | a message was accepted (spooled; its `250` goes out) | `from`, `rcpts`, `size`, `client_ip`, `helo`, `listener`, `auth_user`, `tls` |
//! | `queued` | a message entered the queue: received, or a DSN the relay wrote | `from`, `recipients`, `size`, `dsn_for` (the bounced message's id) |
//! | `rejected` | a sender, recipient or message refused, at any stage | `stage`, `code`, `status`, `reply`, `client_ip`, `listener`, `from` |
//! | `delivered` | one recipient accepted by the next hop | `remote`, `reply`, `attempts` (this one included) |
//! | `deferred` | one recipient's attempt failed temporarily | `status`, `reply`, `remote`, `class`, `attempts` (failed so far), `retry_at` |
//! | `bounced` | one recipient failed for good (5xx, expiry, `queue bounce`); a DSN follows unless NOTIFY or a null sender says otherwise. Also a DSN returned later to `[feedback]`'s address (`async: true`, about the original `queue_id`) | `status`, `reply`, `remote`, `class` (`hard`/`soft`, see `crate::feedback::classify`), `async`, `report_id` |
//! | `complaint` | an ARF report about a delivery of ours came back to `[feedback]`'s address | `feedback_type`, `user_agent`, `report_id` |
//! | `held` | the route hook held recipients (again at each retry while it holds them) | `reason`, `domain` |
//! | `dropped` | the route hook discarded recipients | `reason`, `domain` |
//! | `plugin` | a plugin called `emit` | `name`, `fields` (the plugin's, as an object of strings) |
//! | `open` | the tracking endpoint served a recipient's open pixel | `sender_domain`, `link` (0), `client_ip`, `user_agent`, `count` |
//! | `click` | the tracking endpoint redirected a recipient's tracked link | `sender_domain`, `link`, `client_ip`, `user_agent`, `count`, `url` |
//! | `unsubscribe` | a recipient's one-click unsubscribe (RFC 8058 POST) | `sender_domain`, `link` (0), `client_ip`, `user_agent`, `list`, `new` |
//! | `events-lost` | events were lost (full channel, failed write) | `count` |
//!
//! A plugin's event is `"event": "plugin"` with its own name under `name`, so no plugin can
//! pass its events off as the relay's. Syntax errors and commands out of sequence are not
//! `rejected` events: those refuse a command, not a sender, recipient or message.
//!
//! Durability: lines are written to the file (one `write` per batch, a batch being whatever
//! is queued when the writer wakes) as soon as the writer gets them, but never fsynced. A
//! relay crash loses nothing already written; a power loss may lose the last seconds. The
//! spool, not this log, is the record of what was accepted.

mod event;
mod log;
mod message;
mod plugin;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

pub use event::{rfc3339_ms, Event};
pub use log::{EventLog, EventLogError};
pub use message::Rejection;

/// What the writer thread is sent.
pub(crate) enum Msg {
    /// An event and its [`Event::weight`].
    Event(Event, usize),
    /// Answered once every event sent before it is written.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then the writer stops.
    Close(oneshot::Sender<()>),
}

/// Where events go: the log's channel (or nowhere when `[events] path` is empty) and every
/// [`EventTap`]. Clones share both; emitting on a handle with neither costs two branches.
#[derive(Clone, Default)]
pub struct Events {
    channel: Option<Arc<Channel>>,
    taps: Arc<[Arc<dyn EventTap>]>,
}

/// A consumer of every event beside the log (metrics, webhooks, the dashboard). `event` runs
/// on the emitter's task and must not block: a tap that does real work queues the event for
/// its own task and counts what it had to drop.
pub trait EventTap: Send + Sync + 'static {
    fn event(&self, event: &Event);
}

struct Channel {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

/// Shared by the handles and the writer.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Events lost since start.
    pub lost: AtomicU64,
    /// Weight of the events in the channel; the writer takes it off once they are written.
    pub queued: AtomicUsize,
    /// Most weight the channel may hold: a plugin emitting 32 fields of 1 KiB would
    /// otherwise make a few thousand queued events hundreds of MiB.
    pub max_queued: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("on", &self.is_on())
            .field("lost", &self.lost())
            .finish()
    }
}

impl Events {
    /// No event log: every emit is a no-op.
    pub fn off() -> Events {
        Events::default()
    }

    /// This handle, with `taps` also given every event.
    pub fn with_taps(mut self, taps: Vec<Arc<dyn EventTap>>) -> Events {
        let mut all: Vec<Arc<dyn EventTap>> = self.taps.to_vec();
        all.extend(taps);
        self.taps = all.into();
        self
    }

    /// Whether events go anywhere: emitters may skip building one when not.
    pub fn is_on(&self) -> bool {
        self.channel.is_some() || !self.taps.is_empty()
    }

    /// A handle on a fresh channel of `capacity` events and `max_bytes` of their weight, and
    /// the receiving end.
    pub(crate) fn channel(capacity: usize, max_bytes: usize) -> (Events, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Counters {
            lost: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            max_queued: max_bytes,
        };
        let channel = Channel {
            tx,
            counters: Arc::new(counters),
        };
        let events = Events {
            channel: Some(Arc::new(channel)),
            taps: Arc::new([]),
        };
        (events, rx)
    }

    fn parts(&self) -> Option<(mpsc::Sender<Msg>, Arc<Counters>)> {
        self.channel
            .as_ref()
            .map(|c| (c.tx.clone(), c.counters.clone()))
    }

    /// Queues `event` for the writer; counts it as lost if the channel is full.
    pub fn emit(&self, event: Event) {
        for tap in self.taps.iter() {
            tap.event(&event);
        }
        let Some(channel) = &self.channel else {
            return;
        };
        let counters = &channel.counters;
        let weight = event.weight();
        let before = counters.queued.fetch_add(weight, Relaxed);
        let refused = if before + weight > counters.max_queued {
            true
        } else {
            match channel.tx.try_send(Msg::Event(event, weight)) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => true,
                // The writer stopped: the relay is shutting down.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        };
        counters.queued.fetch_sub(weight, Relaxed);
        if refused {
            let n = counters.lost.fetch_add(1, Relaxed) + 1;
            // 1, 2, 4, 8 …: a full channel is reported without flooding the log.
            if n.is_power_of_two() {
                tracing::warn!(lost = n, "event log channel full; events lost");
            }
        }
    }

    /// Events lost since start because the channel was full or a write failed.
    pub fn lost(&self) -> u64 {
        self.channel
            .as_ref()
            .map_or(0, |c| c.counters.lost.load(Relaxed))
    }

    /// Waits until every event emitted before this call is written to the file.
    pub async fn flush(&self) {
        let Some(channel) = &self.channel else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if channel.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
