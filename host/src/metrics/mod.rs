//! The relay's Prometheus metrics: one registry per relay, served as text on the admin
//! address (`/metrics`). Instruments are registered here and handed to the code they count.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Every metric of one relay. Shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::with_prefix("wasmrelay");
        Metrics {
            registry: Mutex::new(registry),
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
}
