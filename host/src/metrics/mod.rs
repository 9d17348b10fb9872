//! The relay's Prometheus metrics: one registry per relay, served as text on the admin
//! address (`/metrics`). Instruments are registered here and handed to the code they count.
//!
//! Layout:
//! - [`Metrics`] (here): the registry and the families, with the handles the hot paths keep
//!   ([`ConnectionInstruments`] for the listeners, [`PluginInstruments`] per loaded plugin);
//!   those paths count with atomic adds and never take a lock.
//! - `tap`: an [`crate::events::EventTap`] that counts what the event stream already says
//!   (messages accepted and refused, tracking events).
//! - `scrape`: values read when scraped (queue depth and age, spool fsyncs and batches,
//!   events lost, the Redis state backend's calls and circuit).
//! - `histogram`: a lock-free latency histogram; `plugins`: the per-plugin handles.
//!
//! Label values that come from the network (recipient domains) are checked and capped: at
//! most `[telemetry] metrics_max_domains` distinct domains get a series of their own, the
//! rest count under `other`, so no sender can grow the registry or break the text format.

mod histogram;
mod plugins;
mod scrape;
mod tap;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use histogram::{LatencyHistogram, LATENCY_BUCKETS};
use plugins::PluginFamilies;
pub use plugins::PluginInstruments;
pub use tap::MetricsTap;

/// Label pairs of a family whose label names are fixed by the relay.
type Labels = Vec<(&'static str, String)>;

/// Distinct recipient domains given series of their own when nothing else is configured.
pub const DEFAULT_MAX_DOMAINS: usize = 100;

/// Every metric of one relay. Shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// For the listeners: open, accepted and refused connections.
    pub connections: ConnectionInstruments,
    messages: MessageFamilies,
    delivery: DeliveryFamilies,
    plugins: PluginFamilies,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_max_domains(DEFAULT_MAX_DOMAINS)
    }

    /// Metrics that give at most `max_domains` recipient domains a series of their own.
    pub fn with_max_domains(max_domains: usize) -> Metrics {
        let mut registry = Registry::with_prefix("wasmrelay");
        let connections = ConnectionInstruments::register(&mut registry);
        let messages = MessageFamilies::default();
        registry.register(
            "messages_accepted",
            "Messages accepted: spooled and acknowledged with 250",
            messages.accepted.clone(),
        );
        registry.register(
            "messages_rejected",
            "Senders, recipients or messages refused with a 5xx reply, by stage and reply code",
            messages.rejected.clone(),
        );
        registry.register(
            "messages_tempfailed",
            "Senders, recipients or messages refused with a 4xx reply, by stage and reply code",
            messages.tempfailed.clone(),
        );
        registry.register(
            "tracking_events",
            "Tracking endpoint events: open, click, unsubscribe",
            messages.tracking.clone(),
        );
        let delivery = DeliveryFamilies {
            max_domains,
            ..DeliveryFamilies::default()
        };
        registry.register(
            "delivery_attempts",
            "Recipients attempted, by destination domain and pool",
            delivery.attempts.clone(),
        );
        registry.register(
            "delivery_outcomes",
            "Outcomes of recipient attempts (delivered, deferred, bounced), by destination domain and pool",
            delivery.outcomes.clone(),
        );
        let plugins = PluginFamilies::default();
        registry.register(
            "plugin_calls",
            "Plugin hook calls, by plugin, hook and verdict (error: the call failed)",
            plugins.calls.clone(),
        );
        registry.register(
            "plugin_errors",
            "Failed plugin hook calls, by plugin, hook and kind of failure",
            plugins.errors.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "How long plugin hook calls took, by plugin and hook",
            Unit::Seconds,
            plugins.latency.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            connections,
            messages,
            delivery,
            plugins,
        }
    }

    /// Registers `metric` as `wasmrelay_NAME`: each area makes its instruments where it
    /// counts and registers them here.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(name, help, metric);
    }

    /// The text exposition format (OpenMetrics), as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }

    /// The event tap that counts messages and tracking events; give it to
    /// [`crate::events::Events::with_taps`].
    pub fn tap(&self) -> Arc<dyn crate::events::EventTap> {
        Arc::new(MetricsTap::new(&self.messages))
    }

    /// Reads the queue and the spool's counters, the event log's losses and the Redis
    /// backend's counters at each scrape.
    pub fn watch(
        &self,
        spool: crate::spool::Spool,
        events: crate::events::Events,
        state: Arc<dyn crate::state::StateBackend>,
    ) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let scraped = scrape::Scraped {
            spool,
            events,
            state,
        };
        registry.register_collector(Box::new(scraped));
    }

    /// The handles of one loaded plugin (a reload makes new ones; the series go on).
    pub fn plugin(&self, name: &str) -> PluginInstruments {
        PluginInstruments::new(name, self.plugins.clone())
    }

    /// `recipients` recipients of `address`'s domain attempted through `pool` (`mx` for MX
    /// delivery, `smarthost` for hosts a route named) with `outcome`.
    pub fn delivery(&self, pool: &str, address: &str, outcome: &str, recipients: u64) {
        let domain = self.delivery.domain(address);
        let pool = label_value(pool);
        let mut labels = vec![("domain", domain), ("pool", pool)];
        self.delivery
            .attempts
            .get_or_create(&labels)
            .inc_by(recipients);
        labels.push(("outcome", outcome.to_string()));
        self.delivery
            .outcomes
            .get_or_create(&labels)
            .inc_by(recipients);
    }
}

/// The listeners' instruments. The default is unregistered: it counts, nothing shows it.
#[derive(Clone, Debug, Default)]
pub struct ConnectionInstruments {
    open: Gauge,
    accepted: Counter,
    refused_total: Counter,
    refused_per_ip: Counter,
}

impl ConnectionInstruments {
    fn register(registry: &mut Registry) -> ConnectionInstruments {
        let refused = Family::<Labels, Counter>::default();
        let reason = |r: &str| refused.get_or_create_owned(&vec![("reason", r.to_string())]);
        let c = ConnectionInstruments {
            refused_total: reason("max_connections"),
            refused_per_ip: reason("max_connections_per_ip"),
            ..Default::default()
        };
        registry.register(
            "connections_open",
            "SMTP connections open now",
            c.open.clone(),
        );
        registry.register(
            "connections",
            "SMTP connections accepted",
            c.accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "SMTP connections refused at accept, by reason (the limit they hit)",
            refused,
        );
        c
    }

    /// A connection was admitted; [`Self::closed`] when it ends.
    pub fn opened(&self) {
        self.accepted.inc();
        self.open.inc();
    }

    pub fn closed(&self) {
        self.open.dec();
    }

    /// Refused at accept: `per_ip` for `limits.max_connections_per_ip`, else the total cap.
    pub fn refused(&self, per_ip: bool) {
        if per_ip {
            self.refused_per_ip.inc()
        } else {
            self.refused_total.inc()
        };
    }
}

/// Families the event tap counts into.
#[derive(Clone, Default)]
struct MessageFamilies {
    accepted: Counter,
    rejected: Family<Labels, Counter>,
    tempfailed: Family<Labels, Counter>,
    tracking: Family<Labels, Counter>,
}

#[derive(Default)]
struct DeliveryFamilies {
    attempts: Family<Labels, Counter>,
    outcomes: Family<Labels, Counter>,
    max_domains: usize,
    /// Domains that have a series of their own.
    domains: RwLock<HashSet<String>>,
}

impl DeliveryFamilies {
    /// The `domain` label of `address`: its domain while fewer than `max_domains` have been
    /// seen, else `other`.
    fn domain(&self, address: &str) -> String {
        let domain = label_value(&crate::delivery::domain_of(address));
        let known = |d: &HashSet<String>| d.contains(&domain);
        if known(&self.domains.read().unwrap_or_else(|p| p.into_inner())) {
            return domain;
        }
        let mut domains = self.domains.write().unwrap_or_else(|p| p.into_inner());
        if known(&domains) || domains.len() < self.max_domains {
            domains.insert(domain.clone());
            return domain;
        }
        "other".to_string()
    }
}

/// `value` as a label value, or `invalid` if it holds anything but the characters of host
/// names, address literals and plugin names: prometheus-client writes label values as they
/// are, so a quote or newline from a peer would break the text format.
pub(crate) fn label_value(value: &str) -> String {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    if ok {
        value.to_string()
    } else {
        "invalid".to_string()
    }
}
