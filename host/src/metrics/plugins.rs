//! Per-plugin instruments: calls by hook and verdict, failures by kind, call latency by
//! hook. A plugin's handles are looked up once per label set and then kept, so a hook call
//! costs a few atomic adds and no lock.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::histogram::LatencyHistogram;
use crate::plugins::{FailureKind, Hook, VerdictKind};

/// `plugin`, `hook`, and the third label of the family (`verdict`, `kind`), if any.
pub(super) type PluginLabels = Vec<(&'static str, String)>;

/// The relay-wide families every plugin's handles come from.
#[derive(Clone, Default)]
pub(super) struct PluginFamilies {
    pub calls: Family<PluginLabels, Counter>,
    pub errors: Family<PluginLabels, Counter>,
    pub latency: Family<PluginLabels, LatencyHistogram>,
}

/// Failure kinds as counted (`wasmrelay_plugin_errors_total{kind}`).
const KINDS: [&str; 7] = [
    "trap",
    "cpu",
    "wall_time",
    "memory",
    "capabilities",
    "malformed",
    "instantiate",
];

fn kind_index(kind: &FailureKind) -> usize {
    match kind {
        FailureKind::Trap(_) => 0,
        FailureKind::Cpu => 1,
        FailureKind::WallTime => 2,
        FailureKind::Memory => 3,
        FailureKind::Capabilities => 4,
        FailureKind::Malformed(_) => 5,
        FailureKind::Instantiate(_) => 6,
    }
}

/// One loaded plugin's handles. A label set appears in the output from its first use, so a
/// plugin shows only the hooks and verdicts it has had.
pub struct PluginInstruments {
    name: String,
    families: PluginFamilies,
    calls: [[OnceLock<Counter>; VerdictKind::ALL.len()]; Hook::ALL.len()],
    errors: [[OnceLock<Counter>; KINDS.len()]; Hook::ALL.len()],
    latency: [OnceLock<LatencyHistogram>; Hook::ALL.len()],
}

impl PluginInstruments {
    pub(super) fn new(name: &str, families: PluginFamilies) -> PluginInstruments {
        PluginInstruments {
            name: super::label_value(name),
            families,
            calls: Default::default(),
            errors: Default::default(),
            latency: Default::default(),
        }
    }

    fn labels(&self, hook: Hook, third: Option<(&'static str, &str)>) -> PluginLabels {
        let mut labels = vec![
            ("plugin", self.name.clone()),
            ("hook", hook.name().to_string()),
        ];
        labels.extend(third.map(|(k, v)| (k, v.to_string())));
        labels
    }

    /// One call of `hook` ended with `verdict` (`error` when it failed).
    pub fn verdict(&self, hook: Hook, verdict: VerdictKind) {
        self.calls[hook as usize][verdict as usize]
            .get_or_init(|| {
                let labels = self.labels(hook, Some(("verdict", verdict.name())));
                self.families.calls.get_or_create_owned(&labels)
            })
            .inc();
    }

    /// One call of `hook` failed with `kind`.
    pub fn failure(&self, hook: Hook, kind: &FailureKind) {
        let i = kind_index(kind);
        self.errors[hook as usize][i]
            .get_or_init(|| {
                let labels = self.labels(hook, Some(("kind", KINDS[i])));
                self.families.errors.get_or_create_owned(&labels)
            })
            .inc();
    }

    /// How long one call of `hook` took, instantiation included when it needed one.
    pub fn latency(&self, hook: Hook, took: Duration) {
        self.latency[hook as usize]
            .get_or_init(|| {
                let labels = self.labels(hook, None);
                self.families.latency.get_or_create_owned(&labels)
            })
            .observe(took);
    }
}

impl std::fmt::Debug for PluginInstruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstruments")
            .field("plugin", &self.name)
            .finish()
    }
}
